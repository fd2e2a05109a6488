"""`python -m detection [--config FILE.yaml] key=value ...`: fine-tune a detector on COCO, then evaluate.

    python -m detection --config detection/recipes/vit_small_cascade.yaml pretrained=ckpt.pth \
        data_path=data/coco output_dir=runs/det_vits
    torchrun --nproc_per_node=8 -m detection --config detection/recipes/vit_small_cascade.yaml ...

Writes checkpoint.pth (each epoch; re-running resumes), detector.pth, {bbox,segm}_results.json,
tensorboard/, config.yaml and results.json into output_dir. `--help` lists every key.
"""

import sys

from evalkit import run_backbone_cli

from .config import DetectionConfig


def main(argv: list[str] | None = None) -> int:
    """`python -m detection`: fine-tune a detector on the backbone `pretrained=`, then evaluate it."""
    return run_backbone_cli(DetectionConfig, argv, "detection", _run)


def _run(backbone, cfg: DetectionConfig) -> dict:
    from .work import run  # the work imports torch: only after the config parsed

    return run(backbone, cfg)


if __name__ == "__main__":
    sys.exit(main())
