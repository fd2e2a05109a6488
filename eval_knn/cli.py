"""`main(argv)` of `python -m eval_knn` (the work, `eval_knn.evaluate:run`, is imported after parsing)."""

from __future__ import annotations

from evalkit import run_backbone_cli

from .config import KNNConfig


def main(argv: list[str] | None = None) -> int:
    """`python -m eval_knn key=value ...`; returns the exit status."""
    return run_backbone_cli(KNNConfig, argv, "eval_knn", "eval_knn.evaluate:run")
