"""The demo's question first: does pre-training beat random init? (`python -m demo`'s `summary.json`).

A run folder written by the demo holds `summary.json` with the closing table: one row per measurement,
each model's value (`values`), and per trained model a verdict against random init (`verdicts`, `gains`).
The report opens with that table and the pre-training's learning curve.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

BASELINE = "random_init"


def demo_summary(run_dir: Path) -> dict[str, Any] | None:
    """The demo's summary.json in `run_dir` (None when absent, unreadable or not the demo's)."""
    path = run_dir / "summary.json"
    try:
        data = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "metric" in r for r in rows):
        return None
    return data


def _fmt(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "not run"
    return f"{value:.3f}" if abs(value) < 1.5 else f"{value:.1f}"


def _models(rows: list[dict]) -> list[str]:
    """Every model with a value, the trained ones first, random init last."""
    names = list(dict.fromkeys(m for r in rows for m in (r.get("values") or {})))
    return [m for m in names if m != BASELINE] + [m for m in names if m == BASELINE]


def verdict_grid(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of the closing table: measurement, each model's value, then each trained model's verdict."""
    rows = summary["rows"]
    models = _models(rows)
    trained = list(dict.fromkeys(m for r in rows for m in (r.get("verdicts") or {})))
    headers = ["measurement", *models, *(f"{m} vs {BASELINE}" for m in trained)]
    grid = []
    for r in rows:
        values = r.get("values") or {}
        cells = [str(r["metric"]) + ("" if r.get("higher_is_better", True) else " (lower is better)")]
        cells += [_fmt(values.get(m)) for m in models]
        for m in trained:
            word = (r.get("verdicts") or {}).get(m, "not run")
            gain = (r.get("gains") or {}).get(m)
            cells.append(word if gain is None else f"{word} ({gain:+.{3 if abs(gain) < 1.5 else 1}f})")
        grid.append(cells)
    return headers, grid


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The live pre-training's line, then what did not run and what failed (one line each)."""
    lines = [ln for ln in summary.get("lines") or [] if isinstance(ln, str) and ln.startswith("live pre-training")]
    lines += [f"not run: {item}" for item in summary.get("not_run") or []]
    lines += [f"failed: {str(err).splitlines()[0]}" for err in summary.get("errors") or []]
    return lines
