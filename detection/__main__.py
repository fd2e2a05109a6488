"""`python -m detection [--config FILE.yaml] key=value ...`: fine-tune a detector on COCO, then evaluate.

    python -m detection --config detection/recipes/vit_small_cascade.yaml backbone=ckpt.pth \
        output_dir=runs/det_vits
    torchrun --nproc_per_node=8 -m detection --config detection/recipes/vit_small_cascade.yaml ...

Writes config.yaml, checkpoint.pth (each epoch; re-running resumes), detector.pth,
{bbox,segm}_results.json and results.json into output_dir. `--help` lists every key.
"""

from __future__ import annotations

import sys

from .config import DetectionConfig
from .engine import run
from .runtime import run_entry


def main(argv: list[str] | None = None) -> int:
    return run_entry(DetectionConfig, argv, "detection", run)


if __name__ == "__main__":
    sys.exit(main())
