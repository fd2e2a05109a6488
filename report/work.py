"""The work of `python -m report`: read a run folder, write report.md and report.html.

    python -m report run_dir=demo_out
    python -m report run_dir=runs output_dir=runs/report arch=ViT-S/16

`build(run_dir, output_dir)` does the same from Python and returns the paths; `run(cfg)` is the command's work.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from plumbing import DatasetError, atomic_write_text

from .blocks import ReportData
from .collect import collect
from .config import ReportConfig
from .document import document
from .figures import draw_curves
from .paper import load_paper
from .render import html_page, markdown
from .verdict import demo_summary

log = logging.getLogger(__name__)


def build(run_dir: str | os.PathLike, output_dir: str | os.PathLike | None = None, **options: Any) -> dict[str, Any]:
    """Write `report.md` and `report.html` for the run folder `run_dir` into `output_dir` (default run_dir/report).

    `options` are the other `ReportConfig` keys (arch, title, max_figures_per_folder, curves).
    Returns {"markdown", "html", "output_dir", "results", "evaluations", "other", "figures"} (paths and counts).
    Raises ConfigError (one line) for a run_dir that is not a folder or an output_dir that is a file, and
    DatasetError for a folder that holds no run (no results, training log or benchmark plan).
    """
    cfg = ReportConfig(run_dir=str(run_dir), output_dir=str(output_dir or ""), **options)
    cfg.check()
    return run(cfg)


def run(cfg: ReportConfig) -> dict[str, Any]:
    """Read `cfg.run_dir`, write the report into `cfg.report_dir()`; returns the paths and counts (see `build`)."""
    out = cfg.report_dir()
    found = collect(cfg.run_dir, exclude=out, default_arch=cfg.arch)
    if not (found.results or found.planned or found.unreadable):
        raise DatasetError(
            f"run_dir={cfg.run_dir} holds no run: no results.json, training log (log.jsonl, the authors' "
            "log.txt) or benchmark.json below it; give the output_dir of a command, a demo or a benchmark"
        )
    out.mkdir(parents=True, exist_ok=True)
    curves = draw_curves(found.results, out / "curves") if cfg.curves else []
    data = ReportData(cfg.title, Path(cfg.run_dir), found.results, load_paper(), found.figures, curves,
                      found.unreadable, cfg.max_figures_per_folder, demo_summary(Path(cfg.run_dir)),
                      found.planned)  # fmt: skip
    blocks = document(data)
    md_path, html_path = out / "report.md", out / "report.html"
    atomic_write_text(md_path, markdown(blocks, out))
    atomic_write_text(html_path, html_page(blocks, cfg.title, out))
    evaluations = [r for r in found.results if r.evaluation is not None and r.evaluation.kind == "model"]
    return {
        "markdown": md_path,
        "html": html_path,
        "output_dir": out,
        "results": len(found.results),
        "evaluations": len(evaluations),
        "other": sum(r.evaluation is None for r in found.results),
        "figures": sum(len(v) for v in found.figures.values()) + len(curves),
    }
