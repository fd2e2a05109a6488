"""`python -m report run_dir=DIR [output=DIR/report]`: read a run folder, write report.md and report.html.

    python -m report run_dir=demo_out
    python -m report run_dir=runs output=runs/report arch=ViT-S/16

`build(run_dir, output)` does the same from Python (the demo ends with it) and returns the paths.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from plumbing import ConfigError, parse_config

from .config import ReportConfig

log = logging.getLogger(__name__)
PROG = "report"


def build(run_dir: str | os.PathLike, output: str | os.PathLike | None = None, **options: Any) -> dict[str, Any]:
    """Write `report.md` and `report.html` for the run folder `run_dir` into `output` (default run_dir/report).

    `options` are the other `ReportConfig` keys (arch, title, max_figures_per_folder, curves).
    Returns {"markdown", "html", "output", "results", "evaluations", "other", "figures"} (paths and counts).
    Raises ConfigError (one line) for a run_dir that is not a folder or an output that is a file.
    """
    cfg = ReportConfig(run_dir=str(run_dir), output=str(output or ""), **options)
    cfg.check()
    return _write(cfg)


def _write(cfg: ReportConfig) -> dict[str, Any]:
    from .collect import collect
    from .document import ReportData, document
    from .figures import draw_curves
    from .published import load_published
    from .render import html_page, markdown

    out = cfg.output_dir()
    found = collect(cfg.run_dir, exclude=out, default_arch=cfg.arch)
    out.mkdir(parents=True, exist_ok=True)
    curves = draw_curves(found.results, out / "curves") if cfg.curves else []
    data = ReportData(cfg.title, Path(cfg.run_dir), found.results, load_published(), found.figures, curves,
                      found.unreadable, cfg.max_figures_per_folder)  # fmt: skip
    blocks = document(data)
    md_path, html_path = out / "report.md", out / "report.html"
    _atomic_text(md_path, markdown(blocks, out))
    _atomic_text(html_path, html_page(blocks, cfg.title))
    evaluations = [r for r in found.results if r.evaluation is not None and r.evaluation.kind == "model"]
    return {
        "markdown": md_path,
        "html": html_path,
        "output": out,
        "results": len(found.results),
        "evaluations": len(evaluations),
        "other": sum(r.evaluation is None for r in found.results),
        "figures": sum(len(v) for v in found.figures.values()) + len(curves),
    }


def _atomic_text(path: Path, text: str) -> None:
    """Write via a temporary file and a rename: a reader never sees half a report."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """The CLI: parse, check, write, print the report's path. One line and exit 2 on a user error."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        cfg = parse_config(ReportConfig, argv, PROG)
        cfg.check()
        paths = _write(cfg)
    except ConfigError as e:
        print(f"{PROG}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(f"{PROG}: {paths['evaluations']} evaluations, {paths['other']} other results, {paths['figures']} figures")
    print(f"{PROG}: markdown written to {paths['markdown']}")
    print(f"{PROG}: report written to {paths['html']}")
    return 0
