"""`python -m segmentation [--config FILE.yaml] key=value ...` (also under `torchrun -m segmentation`)."""

import sys

from evalkit import run_backbone_cli

from .config import SegConfig

sys.exit(run_backbone_cli(SegConfig, None, "segmentation", "segmentation.trainer:run"))
