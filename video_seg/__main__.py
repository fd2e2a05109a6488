"""`python -m video_seg key=value ...`: DAVIS-2017 video object segmentation by label propagation (the work:
`video_seg.work.run`, imported after the config parsed so that `--help` imports no torch)."""

from __future__ import annotations

import sys

from evalkit import run_backbone_cli

from .config import VideoSegConfig


def main(argv: list[str] | None = None) -> int:
    """`python -m video_seg key=value ...`; returns the exit status."""
    return run_backbone_cli(VideoSegConfig, argv, "video_seg", _run)


def _run(backbone, cfg: VideoSegConfig) -> dict:
    from .work import run  # the work imports torch: only after the config parsed

    return run(backbone, cfg)


if __name__ == "__main__":
    sys.exit(main())
