"""The report as a list of format-free blocks (headings, paragraphs, tables, configs, figures).

`render.markdown` and `render.html` turn the same blocks into report.md and report.html, so both
always say the same thing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from .published import PublishedNumbers
from .records import Result
from .tables import TABLES, Cell, build_table, models_of


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Grid:
    headers: list[str]
    rows: list[list[Cell | str]]


@dataclass(frozen=True)
class Code:
    summary: str
    text: str


@dataclass(frozen=True)
class Figure:
    path: Path
    caption: str


Block = Heading | Para | Grid | Code | Figure


@dataclass
class ReportData:
    """What the report shows, gathered by `build`."""

    title: str
    run_dir: Path
    results: list[Result]
    published: PublishedNumbers
    figures: dict[str, list[Path]] = field(default_factory=dict)  # group -> PNGs found in the run folder
    curves: list[tuple[Path, str]] = field(default_factory=list)  # curves drawn by the report
    unreadable: list[str] = field(default_factory=list)
    max_figures_per_folder: int = 0


def _num(v: object) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def _top_numbers(results: dict) -> str:
    nums = [f"{k}={_num(v)}" for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return ", ".join(nums) if nums else "no top-level numbers (keys: " + ", ".join(list(results)[:12]) + ")"


def _tables(data: ReportData) -> list[Block]:
    models = models_of(data.results)
    blocks: list[Block] = [Heading(2, "Results beside the paper")]
    blocks.append(Para("Each cell: this run's number, then in brackets the published number for the same "
                       "architecture (iBOT paper/README unless labelled DINO). 'not run' = no result for that model. "
                       "Rows 'published: ...' list the data file's numbers in the paper's layout."))  # fmt: skip
    if not models:
        blocks.append(Para("No evaluation results of a backbone were found in this folder."))
    for table in TABLES:
        t = build_table(table, models, data.published)
        blocks.append(Heading(3, t["title"]))
        blocks.append(Para(f"Layout: {t['paper']}." + (f" {t['note']}" if t["note"] else "")))
        blocks.append(Grid(t["headers"], t["rows"]))
    return blocks


def _evaluations(data: ReportData) -> list[Block]:
    found = [r for r in data.results if r.evaluation is not None and r.evaluation.kind == "model"]
    blocks: list[Block] = [Heading(2, f"Evaluations found ({len(found)})")]
    rows = [[r.rel, r.evaluation.name, r.model, r.arch or "unknown", r.source,
             ", ".join(f"{k}={_num(v)}" for k, v in r.metrics.items())] for r in found]  # fmt: skip
    blocks.append(Grid(["folder", "evaluation", "model", "arch", "read from", "numbers"], rows) if rows else
                  Para("None."))  # fmt: skip
    pre = [r for r in data.results if r.evaluation is not None and r.evaluation.kind == "pretrain"]
    if pre:
        blocks.append(Heading(2, f"Pre-training runs ({len(pre)})"))
        rows = []
        for r in pre:
            knn = r.curves.get("online k-NN top-1") or []
            rows.append([r.rel, r.arch or "unknown", r.source, _num(r.metrics.get("pretrain_epochs", "-")),
                         _num(r.metrics.get("pretrain_minutes", "-")), _num(r.metrics.get("pretrain_last_loss", "-")),
                         _num(knn[-1][1]) if knn else "-"])  # fmt: skip
        blocks.append(Grid(["folder", "arch", "read from", "epochs", "minutes", "last loss", "last online k-NN"], rows))
    others = [r for r in data.results if r.evaluation is None]
    blocks.append(Heading(2, f"Other results ({len(others)})"))
    if others:
        blocks.append(Para("results.json files of no known evaluation, with their top-level numbers."))
        blocks.append(Grid(["folder", "numbers"], [[r.rel, _top_numbers(r.results)] for r in others]))
    else:
        blocks.append(Para("None."))
    if data.unreadable:
        blocks.append(Heading(2, "Files that could not be read"))
        blocks.append(Grid(["folder: problem"], [[u] for u in data.unreadable]))
    return blocks


def _published(data: ReportData) -> list[Block]:
    pub = data.published
    rows = [
        [e.metric, e.arch, e.method, f"{e.value:.1f}", e.variant or "default", e.note, e.source] for e in pub.entries
    ]
    blocks: list[Block] = [Heading(2, "Published numbers (report/data/published.json)"), Para(pub.about)]
    blocks.append(Grid(["metric", "arch", "method", "value", "variant", "note", "source"], rows))
    blocks.append(Grid(["source", "where"], [[k, v] for k, v in pub.sources.items()]))
    return blocks


def _configs(data: ReportData) -> list[Block]:
    with_config = [r for r in data.results if r.config_text]
    blocks: list[Block] = [Heading(2, f"Configurations ({len(with_config)})")]
    for r in with_config:
        what = r.evaluation.name if r.evaluation else "unknown evaluation"
        blocks.append(Code(f"{r.rel} ({what})", r.config_text))
    return blocks or [Para("No config.yaml files.")]


def _figures(data: ReportData) -> list[Block]:
    from .figures import caption

    total = sum(len(v) for v in data.figures.values()) + len(data.curves)
    blocks: list[Block] = [Heading(2, f"Figures ({total})")]
    titles = {r.rel: r.evaluation.title for r in data.results if r.evaluation is not None}
    for group, pngs in sorted(data.figures.items()):
        blocks.append(Heading(3, f"{group}" + (f" ({titles[group]})" if group in titles else "")))
        limit = data.max_figures_per_folder or len(pngs)
        group_dir = data.run_dir / group
        blocks += [Figure(p, caption(p, group_dir)) for p in pngs[:limit]]
        if len(pngs) > limit:
            rest = ", ".join(p.relative_to(group_dir).as_posix() for p in pngs[limit:])
            more = f"{len(pngs) - limit} more figures not embedded (max_figures_per_folder={limit})"
            blocks.append(Para(f"{more}: {rest}"))
    if data.curves:
        blocks.append(Heading(3, "Learning curves (drawn by the report from the training logs)"))
        blocks += [Figure(p, c) for p, c in data.curves]
    if total == 0:
        blocks.append(Para("No figures (*.png) were found."))
    return blocks


def document(data: ReportData) -> list[Block]:
    """Every block of the report, in order."""
    n_models = len([r for r in data.results if r.evaluation is not None and r.evaluation.kind == "model"])
    intro = (f"Run folder: {data.run_dir}. Read {len(data.results)} result folders ({n_models} evaluations of "
             f"backbones); {sum(len(v) for v in data.figures.values())} figures.")  # fmt: skip
    return [Heading(1, data.title), Para(intro), *_tables(data), *_evaluations(data), *_figures(data),
            *_configs(data), *_published(data)]  # fmt: skip
