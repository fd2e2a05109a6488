"""The report's tables, format-free (see `render`): the checkpoints side by side, and every table of the paper.

A checkpoint's cell holds its number and, where the paper has one, the paper's iBOT number for the same
architecture (`Cell.published`); the paper's own rows follow the checkpoints' rows in each paper table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .paper import PAPER_ONLY, Paper, Record
from .records import Result
from .registry import LOWER_IS_BETTER, metric_label, metric_order

BASELINES = ("random_init", "random")  # a model of this name is the one the others are compared with


@dataclass
class Model:
    """A checkpoint (a table row): its label, architecture, numbers (metric id -> (value, result)) and results."""

    label: str
    arch: str
    metrics: dict[str, tuple[float, Result]] = field(default_factory=dict)
    results: list[Result] = field(default_factory=list)

    def name(self) -> str:
        """'label (ViT-S/16)'."""
        return f"{self.label} ({self.arch or 'arch unknown'})"


@dataclass(frozen=True)
class Cell:
    """One cell: kind run (a checkpoint's value, None = not run, and the paper's number beside it), published
    (a paper row's value), diff (a difference between checkpoints), na (the suite does not measure it), label."""

    value: float | None
    published: Record | None = None
    kind: str = "run"
    text: str = ""


def label(text: str) -> Cell:
    """A row-label cell."""
    return Cell(None, None, "label", text)


def models_of(results: list[Result], order: list[str] | None = None) -> list[Model]:
    """One Model per label over the evaluations of backbones, newest result wins. In the order `order` names
    them (benchmark.json's), then as found; a model named random_init (or random) goes first: the others'
    differences are taken against it."""
    models: dict[str, Model] = {}
    for r in results:
        if r.evaluation is None or r.evaluation.kind != "model":
            continue
        m = models.setdefault(r.model, Model(r.model, r.arch))
        m.results.append(r)
        if len(r.arch) > len(m.arch):  # the most specific label: 'ViT-S/16' over 'ViT-S'
            m.arch = r.arch
        for k, v in r.metrics.items():
            if k not in m.metrics or m.metrics[k][1].mtime <= r.mtime:
                m.metrics[k] = (v, r)
    rank = {name: i for i, name in enumerate(order or [])}
    return sorted(models.values(), key=lambda m: (m.label not in BASELINES, rank.get(m.label, len(rank))))


def side_by_side(models: list[Model], paper: Paper) -> dict | None:
    """{headers, rows}: one row per metric any checkpoint has, one column per checkpoint (its number, the paper's
    beside it) and, with several checkpoints, one column per difference to the first (the baseline)."""
    if not models:
        return None
    have = {k for m in models for k in m.metrics}
    extra = sorted(have - set(metric_order()))
    base = models[0]
    headers = ["measure"] + [m.name() for m in models] + [f"{m.label} - {base.label}" for m in models[1:]]
    rows = []
    for mid in [k for k in metric_order() if k in have] + extra:
        values = [m.metrics[mid][0] if mid in m.metrics else None for m in models]
        cells = [label(metric_label(mid))]
        cells += [Cell(v, paper.beside(mid, m.arch)) for v, m in zip(values, models, strict=True)]
        better = "lower" if mid.partition("@")[0] in LOWER_IS_BETTER else "higher"  # how render colours it
        cells += [Cell(None if v is None or values[0] is None else v - values[0], kind="diff", text=better)
                  for v in values[1:]]  # fmt: skip
        rows.append(cells)
    return {"headers": headers, "rows": rows}


def column_label(record: Record) -> str:
    """A paper table's column header: the suite's label for the metric, else the paper's own name for it."""
    suite = record.suite
    if suite:
        return metric_label(suite)
    return PAPER_ONLY.get(record.metric, record.metric.replace("_", " "))


def paper_table(table: str, models: list[Model], paper: Paper) -> dict:
    """{title, notes, headers, rows, ran, measurable}: checkpoints with a number in this table, then the paper's rows.

    `ran` is False when no checkpoint has a number for any column (the report then gives the table one line);
    `measurable` is False when no command of the suite measures any of its columns.
    """
    records = paper.of_table(table)
    columns = list(dict.fromkeys(r.metric for r in records))
    first = {c: next(r for r in records if r.metric == c) for c in columns}
    suite = {c: first[c].suite for c in columns}
    ran = [m for m in models if any(suite[c] in m.metrics for c in columns if suite[c])]
    rows = []
    for m in ran:
        cells = [label(m.name())]
        for c in columns:
            if suite[c] is None:
                cells.append(Cell(None, kind="na"))
                continue
            got = m.metrics.get(suite[c])
            cells.append(Cell(got[0] if got else None, paper.beside(suite[c], m.arch, table)))
        rows.append(cells)
    groups: dict[tuple, dict[str, Record]] = {}
    for r in records:
        groups.setdefault(r.row_key(), {})[r.metric] = r
    for cols in groups.values():
        any_record = next(iter(cols.values()))
        cells = [Cell(cols[c].value if c in cols else None, cols.get(c), "published") for c in columns]
        rows.append([label("paper: " + any_record.row_label()), *cells])
    return {"title": table, "notes": table_notes(table, records, paper), "headers": ["model"] +
            [column_label(first[c]) for c in columns], "rows": rows, "ran": bool(ran), "count": len(records),
            "measurable": any(suite.values())}  # fmt: skip


def table_notes(table: str, records: list[Record], paper: Paper) -> list[str]:
    """The caveats of a table: the file's note for the whole table, the epochs convention, each row's own note."""
    notes = [paper.table_notes[table]] if table in paper.table_notes else []
    if any(r.epochs_kind == "effective" for r in records) and "effective" not in " ".join(notes):
        notes.append("'effective' epochs are printed as the paper prints them: actual epochs x the multi-crop "
                     "factor (about 4 for 2 x 224 + 10 x 96 crops); the actual count follows in brackets.")  # fmt: skip
    if any(not r.verified for r in records):
        notes.append("Rows marked [README, not in the paper] come from the authors' README, not the paper.")
    unmeasured = {r.metric for r in records if r.suite is None}
    if unmeasured:
        cols = ", ".join(column_label(next(r for r in records if r.metric == m)) for m in sorted(unmeasured))
        notes.append(f"n/a: no command of the suite measures {cols}.")
    rows: dict[str, list[str]] = {}
    for r in records:
        if r.note:
            rows.setdefault(r.note, [])
            if f"{r.method} {r.arch}" not in rows[r.note]:
                rows[r.note].append(f"{r.method} {r.arch}")
    everyone = {f"{r.method} {r.arch}" for r in records}
    return notes + [note if set(who) == everyone else f"{'; '.join(who)}: {note}" for note, who in rows.items()]


def cell_text(cell: Cell) -> str:
    """Plain text of a cell: '12.34 (paper 75.2)', 'not run (paper 75.2)', '75.2', '+1.20', 'n/a' or '-'."""
    if cell.kind == "label":
        return cell.text
    if cell.kind == "na":
        return "n/a"
    if cell.kind == "published":
        return "-" if cell.value is None else f"{cell.value:.1f}"
    if cell.kind == "diff":
        return "-" if cell.value is None else f"{cell.value:+.2f}"
    ours = "not run" if cell.value is None else f"{cell.value:.2f}"
    return ours if cell.published is None else f"{ours} ({paper_text(cell.published)})"


def paper_text(record: Record) -> str:
    """'paper 75.2' (the number beside a checkpoint's cell)."""
    return f"paper {record.value:.1f}"
