"""`python -m eval_linear key=value ...`: linear probing with a sweep of heads (the work: `eval_linear.work.run`)."""

from __future__ import annotations

import sys

from evalkit import run_backbone_cli

from .config import LinearConfig


def main(argv: list[str] | None = None) -> int:
    """`python -m eval_linear key=value ...`; returns the exit status."""
    return run_backbone_cli(LinearConfig, argv, "eval_linear", _run)


def _run(backbone, cfg: LinearConfig) -> dict:
    from .work import run  # the work imports torch: only after the config parsed

    return run(backbone, cfg)


if __name__ == "__main__":
    sys.exit(main())
