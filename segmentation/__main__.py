"""`python -m segmentation [--config FILE.yaml] key=value ...` (also under `torchrun -m segmentation`):
train a segmentation head on the backbone `pretrained=` over an ADE20K-layout folder, then evaluate."""

import sys

from evalkit import run_backbone_cli

from .config import SegConfig


def main(argv: list[str] | None = None) -> int:
    """`python -m segmentation`; bad input: one line on stderr, exit 2."""
    return run_backbone_cli(SegConfig, argv, "segmentation", _run)


def _run(backbone, cfg: SegConfig) -> dict:
    from .work import run  # the work imports torch: only after the config parsed

    return run(backbone, cfg)


if __name__ == "__main__":
    sys.exit(main())
