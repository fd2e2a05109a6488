"""`python -m retrieval key=value ...`: image retrieval on revisited Oxford / Paris (the work: `retrieval.work.run`)."""

from __future__ import annotations

import sys

from evalkit import run_backbone_cli

from .config import RetrievalConfig


def main(argv: list[str] | None = None) -> int:
    """`python -m retrieval key=value ...`: revisited Oxford/Paris retrieval; returns the exit status."""
    return run_backbone_cli(RetrievalConfig, argv, "retrieval", _run)


def _run(backbone, cfg: RetrievalConfig) -> dict:
    from .work import run  # the work imports torch: only after the config parsed

    return run(backbone, cfg)


if __name__ == "__main__":
    sys.exit(main())
