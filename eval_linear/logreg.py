"""`python -m eval_linear.logreg key=value ...`: logistic regression on frozen [CLS] features.

    python -m eval_linear.logreg pretrained=ckpt.pth data_path=/data/imagenet

The work is `eval_linear.logreg_work.run_logreg`, imported after the config parsed (so `--help` imports no torch).
"""

from __future__ import annotations

import sys

from evalkit import run_backbone_cli

from .config import LogRegConfig


def main(argv: list[str] | None = None) -> int:
    """`python -m eval_linear.logreg key=value ...`; returns the exit status."""
    return run_backbone_cli(LogRegConfig, argv, "eval_linear.logreg", _run)


def _run(backbone, cfg: LogRegConfig) -> dict:
    from .logreg_work import run_logreg  # the work imports torch: only after the config parsed

    return run_logreg(backbone, cfg)


if __name__ == "__main__":
    sys.exit(main())
