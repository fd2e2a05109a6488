"""`python -m video_seg key=value ...`: DAVIS-2017 video object segmentation by label propagation."""

import sys

from evalkit import run_backbone_cli

from .config import VideoSegConfig

sys.exit(run_backbone_cli(VideoSegConfig, None, "video_seg", "video_seg.evaluate:run"))
