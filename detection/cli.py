"""The two commands' entry points, through the one CLI shell (`evalkit`); no torch until the config parsed.

python -m detection pretrained=BACKBONE.pth data_path=COCO_ROOT [--config RECIPE.yaml] key=value ...
python -m detection.eval detector=OUTPUT_DIR/detector.pth [data_path=COCO_ROOT] key=value ...
"""

from __future__ import annotations

from evalkit import run_backbone_cli, run_cli

from .config import DetectionConfig, DetectorEvalConfig


def main(argv: list[str] | None = None) -> int:
    """`python -m detection`: fine-tune a detector on the backbone `pretrained=`, then evaluate it."""
    return run_backbone_cli(DetectionConfig, argv, "detection", "detection.engine:run")


def main_eval(argv: list[str] | None = None) -> int:
    """`python -m detection.eval`: evaluate the detector file `detector=`."""
    return run_cli(DetectorEvalConfig, argv, "detection.eval", "detection.inference:run_eval")
