"""`python -m detection.eval detector=detector.pth [data_path=COCO_ROOT | val_images=DIR val_annotations=JSON]`

Evaluates a detector written by `python -m detection` (detector.pth or checkpoint.pth) with COCOeval,
bbox and segm; by default on the val split named in the file's config. Writes config.yaml,
{bbox,segm}_results.json and results.json into output_dir. Runs under torchrun too (sharded).
"""

import sys

from evalkit import run_cli

from .config import DetectorEvalConfig


def main(argv: list[str] | None = None) -> int:
    """`python -m detection.eval`: evaluate the detector file `detector=`."""
    return run_cli(DetectorEvalConfig, argv, "detection.eval", _run_eval)


def _run_eval(cfg: DetectorEvalConfig) -> dict:
    from .eval_work import run_eval  # the work imports torch: only after the config parsed

    return run_eval(cfg)


if __name__ == "__main__":
    sys.exit(main())
