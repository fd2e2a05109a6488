"""The report as a list of format-free blocks (headings, paragraphs, tables, configs, figures).

`render.markdown` and `render.html_page` turn the same blocks into report.md and report.html, so both
always say the same thing. Order: a demo's verdict and learning curve (when the folder is a demo's),
the checkpoints, how to read the tables, the checkpoints side by side, every table of the paper, then
the appendices (`appendix`): what was read, figures, configurations and the paper's numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .appendix import appendix
from .blocks import Block, Figure, Grid, Heading, Link, Para, ReportData
from .plan import benchmark_blocks
from .tables import Model, models_of, paper_table, side_by_side
from .verdict import summary_lines, verdict_grid

HOW_TO_READ = (
    "Rows: first the checkpoints found in this folder, named by their folder (or benchmark.json), with the "
    "architecture their results.json records; then the paper's own rows, marked 'paper:'. A checkpoint's cell is "
    "its number; in brackets, where the paper has one, the paper's iBOT number for the same architecture in the "
    "same table (e.g. '70.50 (paper 75.2)'). 'not run': the suite measures this column but this folder holds no "
    "result for it; 'n/a': no command of the suite measures it. A paper table for which no checkpoint has a number "
    "is one line. Numbers in percent unless the column says otherwise."
)


def _distinct(values: list[Any]) -> str:
    found = list(dict.fromkeys(str(v) for v in values if v not in (None, "")))
    if len(found) > 1:
        return f"{len(found)} different: " + ", ".join(found)
    return found[0] if found else "-"


def _checkpoint_row(m: Model) -> list[str]:
    backbones = [r.results["backbone"] for r in m.results if isinstance(r.results.get("backbone"), dict)]
    prov = [r.results["provenance"] for r in m.results if isinstance(r.results.get("provenance"), dict)]
    precision = [p["precision"].get("ran") for p in prov if isinstance(p.get("precision"), dict)]
    versions = [p.get("versions") or {} for p in prov]
    if backbones:
        recorded = f"{m.arch or 'unknown'} ({len(backbones)} of {len(m.results)} results record it)"
    else:
        recorded = f"{m.arch} (not recorded: from the log's folder name or size, or arch=)" if m.arch else "unknown"
    return [m.label, recorded, _distinct([Path(str(b.get("path") or "")).name for b in backbones]),
            _distinct([b.get("format") for b in backbones]), _distinct([str(b.get("fingerprint") or "")[:12]
            for b in backbones]), _distinct(precision), _distinct([p.get("device") for p in prov]),
            _distinct([v.get("torch") for v in versions])]  # fmt: skip


def _checkpoints(models: list[Model]) -> list[Block]:
    if not models:
        return [Heading(2, "Checkpoints"), Para("No evaluation results of a backbone were found in this folder.")]
    head = ["model", "architecture (recorded)", "checkpoint file", "format", "fingerprint", "precision", "device",
            "torch"]  # fmt: skip
    return [Heading(2, f"Checkpoints ({len(models)})"), Grid(head, [_checkpoint_row(m) for m in models])]


def _demo(data: ReportData) -> list[Block]:
    if data.demo is None:
        return []
    headers, rows = verdict_grid(data.demo)
    blocks: list[Block] = [Heading(2, "Does pre-training beat random init?")]
    blocks.append(Para("The demo's closing table (summary.json): each measurement for every model, and whether "
                       "each trained model beats random init by more than the row's margin (the difference a "
                       "second seed or a few validation images can make)."))  # fmt: skip
    blocks.append(Grid(headers, rows) if rows else Para("No measurement ran."))
    blocks += [Para(line) for line in summary_lines(data.demo)]
    pre = {r.rel for r in data.results if r.evaluation is not None and r.evaluation.kind == "pretrain"}
    curves = [(p, c) for p, c, rel in data.curves if rel in pre]
    if curves:
        blocks.append(Heading(3, "Learning curve of the pre-training"))
        blocks += [Figure(p, c) for p, c in curves]
    return blocks


def _pages(data: ReportData) -> list[Block]:
    """Links to the interactive explorer pages (analysis.explore) found in the folder."""
    pages = [(r, Path(r.results["page"])) for r in data.results if isinstance(r.results.get("page"), str)]
    pages = [(r, p if p.is_absolute() else r.folder / p.name) for r, p in pages]
    pages = [(r, p) for r, p in pages if p.is_file()]
    if not pages:
        return []
    blocks: list[Block] = [Heading(2, "Explore the backbones"),
                           Para("Interactive pages (open from disk, offline): attention per head, PCA colours, "
                                "click a patch for its similarity over every image.")]  # fmt: skip
    return blocks + [Link(p, f"{r.model}: {r.rel}/{p.name}") for r, p in pages]


def _tables(data: ReportData, models: list[Model]) -> list[Block]:
    blocks: list[Block] = [Heading(2, "How to read the tables"), Para(HOW_TO_READ)]
    side = side_by_side(models, data.paper)
    if side:
        title = "The checkpoints side by side" + (f" (differences to {models[0].label})" if len(models) > 1 else "")
        blocks += [Heading(2, title), Grid(side["headers"], side["rows"])]
    blocks.append(Heading(2, "The paper's tables"))
    archs = ", ".join(sorted({r.arch for r in data.paper.records}))
    if models and not any(m.arch in archs.split(", ") for m in models):
        blocks.append(Para(f"None of these checkpoints has an architecture the paper reports ({archs}), so no paper "
                           "number stands beside their cells: the paper's rows show where such a model's numbers "
                           "would sit."))  # fmt: skip
    for table in data.paper.tables():
        t = paper_table(table, models, data.paper)
        if not t["ran"]:
            why = "not run in this folder" if t["measurable"] else "not measured by any command of the suite"
            blocks.append(Para(f"{table}: {why} ({t['count']} paper numbers, listed at the end)."))
            continue
        blocks += [Heading(3, table), Grid(t["headers"], t["rows"])]
        blocks += [Para("Note: " + note) for note in t["notes"]]
    return blocks


def document(data: ReportData) -> list[Block]:
    """Every block of the report, in order."""
    models = models_of(data.results, data.order)
    n_models = sum(len(m.results) for m in models)
    names = ", ".join(m.name() for m in models) or "none"
    n_figures = sum(len(v) for v in data.figures.values())
    intro = (f"Run folder: {data.run_dir}. Checkpoints: {names}. Read {len(data.results)} result folders "
             f"({n_models} evaluations of checkpoints); {n_figures} figure{'s' * (n_figures != 1)}.")  # fmt: skip
    return [Heading(1, data.title), Para(intro), *_demo(data), *_pages(data), *_checkpoints(models),
            *benchmark_blocks(data.run_dir), *_tables(data, models),
            *appendix(data)]  # fmt: skip
