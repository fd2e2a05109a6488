"""The report's appendices: every result read (with where its numbers came from), the figures, every
configuration, and the paper's numbers with what the paper does not report and where it contradicts itself."""

from __future__ import annotations

import math

from .blocks import Block, Code, Figure, Grid, Heading, Para, ReportData


def _num(v: object) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def _top_numbers(results: dict) -> str:
    nums = [f"{k}={_num(v)}" for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return ", ".join(nums) if nums else "no top-level numbers (keys: " + ", ".join(list(results)[:12]) + ")"


def _ran(results: dict) -> str:
    """'bf16 on cuda' from a results.json's provenance ('-' when it has none)."""
    prov = results.get("provenance")
    if not isinstance(prov, dict):
        return "-"
    precision = prov.get("precision", {}).get("ran") if isinstance(prov.get("precision"), dict) else None
    return " on ".join(str(x) for x in (precision, prov.get("device")) if x) or "-"


def evaluations(data: ReportData) -> list[Block]:
    """The evaluations, pre-training runs and other results read, and the files that could not be read."""
    found = [r for r in data.results if r.evaluation is not None and r.evaluation.kind == "model"]
    blocks: list[Block] = [Heading(2, f"Evaluations found ({len(found)})")]
    rows = [[r.rel, r.evaluation.name, r.model, r.arch or "unknown", r.source, _ran(r.results),
             ", ".join(f"{k}={_num(v)}" for k, v in r.metrics.items())] for r in found]  # fmt: skip
    head = ["folder", "evaluation", "model", "arch", "read from", "precision, device", "numbers"]
    blocks.append(Grid(head, rows) if rows else Para("None."))
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


def configs(data: ReportData) -> list[Block]:
    """Every config.yaml, folded."""
    with_config = [r for r in data.results if r.config_text]
    blocks: list[Block] = [Heading(2, f"Configurations ({len(with_config)})")]
    for r in with_config:
        what = r.evaluation.name if r.evaluation else "unknown evaluation"
        blocks.append(Code(f"{r.rel} ({what})", r.config_text))
    return blocks if with_config else blocks + [Para("No config.yaml files.")]


def figures(data: ReportData) -> list[Block]:
    """The PNGs found (per result folder) and the learning curves drawn (those not shown at the top)."""
    from .figures import caption

    shown = {r.rel for r in data.results if r.evaluation is not None and r.evaluation.kind == "pretrain"}
    curves = [(p, c) for p, c, rel in data.curves if data.demo is None or rel not in shown]
    total = sum(len(v) for v in data.figures.values()) + len(curves)
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
    if curves:
        blocks.append(Heading(3, "Learning curves (drawn by the report from the training logs)"))
        blocks += [Figure(p, c) for p, c in curves]
    if total == 0:
        blocks.append(Para("No figures (*.png) were found."))
    return blocks


def paper_numbers(data: ReportData) -> list[Block]:
    """Every published number, what the paper does not report and its inconsistencies."""
    paper = data.paper
    blocks: list[Block] = [
        Heading(2, f"The paper's numbers ({len(paper.records)}, report/data/ibot-paper-tables.json)")
    ]
    blocks.append(Para(paper.about))
    rows = [[r.table.split(" (")[0], r.row_label(), r.metric, f"{r.value:.1f}", r.unit, r.note] for r in paper.records]
    blocks.append(Grid(["table", "row", "metric", "value", "unit", "note"], rows))
    blocks.append(Heading(3, "Not reported in the paper"))
    blocks += [Para(line) for line in paper.not_found]
    blocks.append(Heading(3, "Inconsistencies in the paper (numbers kept as printed)"))
    blocks += [Para(line) for line in paper.inconsistencies]
    return blocks


def appendix(data: ReportData) -> list[Block]:
    """Every appendix block, in order."""
    return [*evaluations(data), *figures(data), *configs(data), *paper_numbers(data)]
