"""The work of `python -m benchmark status`: print the table of the plan's tasks as they stand now."""

from __future__ import annotations

from .config import StatusConfig
from .state import render, rows


def run_status(cfg: StatusConfig) -> int:
    """Print the table; returns 1 if a task failed, else 0."""
    table_rows = rows(cfg.output_dir)
    print(render(table_rows))
    return 1 if any(r["status"] == "failed" for r in table_rows) else 0
