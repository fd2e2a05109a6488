"""`python -m benchmark status output_dir=DIR` (also `python -m benchmark.status`): the table of a
benchmark's tasks (done / running / submitted / interrupted / failed / skipped) at any time, from the plan
and the tasks' state files. Imports no torch."""

from __future__ import annotations

import sys

from plumbing import parse_config, run_command

from .config import StatusConfig

PROG = "benchmark status"


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmark status output_dir=DIR`; returns 1 if a task failed, else 0."""
    return run_command(PROG, lambda: _run(argv))


def _run(argv: list[str] | None) -> int:
    cfg = parse_config(StatusConfig, argv, PROG)
    cfg.check()
    from .status_work import run_status

    return run_status(cfg)


if __name__ == "__main__":
    sys.exit(main())
