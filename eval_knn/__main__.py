"""`python -m eval_knn key=value ...`: weighted k-NN of a frozen backbone (the work: `eval_knn.work.run`)."""

from __future__ import annotations

import sys

from evalkit import run_backbone_cli

from .config import KNNConfig


def main(argv: list[str] | None = None) -> int:
    """`python -m eval_knn key=value ...`; returns the exit status."""
    return run_backbone_cli(KNNConfig, argv, "eval_knn", _run)


def _run(backbone, cfg: KNNConfig) -> dict:
    from .work import run  # the work imports torch: only after the config parsed

    return run(backbone, cfg)


if __name__ == "__main__":
    sys.exit(main())
