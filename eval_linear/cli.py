"""`main(argv)` of `python -m eval_linear` (the work, `eval_linear.probe:run`, is imported after parsing)."""

from __future__ import annotations

from evalkit import run_backbone_cli

from .config import LinearConfig


def main(argv: list[str] | None = None) -> int:
    """`python -m eval_linear key=value ...`; returns the exit status."""
    return run_backbone_cli(LinearConfig, argv, "eval_linear", "eval_linear.probe:run")
