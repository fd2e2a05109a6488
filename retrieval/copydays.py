"""`python -m retrieval.copydays key=value ...`: copy detection on Copydays (the work:
`retrieval.copydays_work.run_copydays`, imported after the config parsed so that `--help` imports no torch)."""

from __future__ import annotations

import sys

from evalkit import run_backbone_cli

from .config import CopydaysConfig


def main(argv: list[str] | None = None) -> int:
    """`python -m retrieval.copydays key=value ...`: Copydays copy detection; returns the exit status."""
    return run_backbone_cli(CopydaysConfig, argv, "retrieval.copydays", _run)


def _run(backbone, cfg: CopydaysConfig) -> dict:
    from .copydays_work import run_copydays  # the work imports torch: only after the config parsed

    return run_copydays(backbone, cfg)


if __name__ == "__main__":
    sys.exit(main())
