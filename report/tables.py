"""The paper's tables in the paper's layout, filled with the run's results (format-free; see `render`).

Rows are the models found (one per model label; see `records.model_label`), then the published rows
(method + architecture) of the data file. A model cell holds the run's number and, beside it, the
published number for the model's own architecture; "not run" where the model has no such result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .published import Published, PublishedNumbers
from .records import Result

NO_PAPER = "The reference docs do not restate the paper's numbers for this table, so none are shown."


@dataclass(frozen=True)
class Table:
    """A paper table: column headers, and row groups (protocol label, one metric id per column)."""

    key: str
    title: str
    paper: str  # where the layout comes from
    headers: tuple[str, ...]
    groups: tuple[tuple[str, tuple[str, ...]], ...]
    note: str = ""

    def metric_ids(self) -> list[str]:
        """Every metric id of the table."""
        return [m for _, ids in self.groups for m in ids]


def _simple(key, title, paper, columns, note="") -> Table:
    return Table(key, title, paper, tuple(c for c, _ in columns), (("", tuple(m for _, m in columns)),), note)


def _semi(protocols: list[tuple[str, str]]) -> Table:
    groups = tuple((label, (f"{m}@1%", f"{m}@10%")) for label, m in protocols)
    return Table("semi", "Semi-supervised ImageNet-1k (1% and 10% of the labels)", "paper: semi-supervised table",
                 ("1%", "10%"), groups, NO_PAPER)  # fmt: skip


TABLES: tuple[Table, ...] = (
    _simple("imagenet", "ImageNet-1k classification: k-NN, linear probing, fine-tuning (top-1 %)",
            "paper Tables 1-2 (numbers: README)", [("k-NN (k=20)", "knn_top1"), ("Linear", "linear_top1"),
            ("Fine-tuning", "finetune_top1"), ("Logistic regression", "logreg_top1")]),
    _semi([("fine-tuning", "finetune_top1"), ("logistic regression", "logreg_top1"), ("linear", "linear_top1"),
           ("k-NN", "knn_top1")]),
    _simple("unsup", "Unsupervised classification (prototype argmax as clusters, %)", "paper: unsupervised table",
            [("ACC", "unsup_acc"), ("ARI", "unsup_ari"), ("NMI", "unsup_nmi"), ("FMI", "unsup_fmi")], NO_PAPER),
    _simple("coco", "COCO object detection and instance segmentation", "paper: COCO table (numbers: README)",
            [("AP box", "coco_box_ap"), ("AP mask", "coco_mask_ap")]),
    _simple("ade", "ADE20K semantic segmentation (mIoU)", "paper: ADE20K table (numbers: README)",
            [("UperNet", "ade_upernet_miou"), ("Linear head (frozen)", "ade_linear_miou")]),
    _simple("robust", "Robustness: occlusion, shuffle, corruptions, natural adversarial (top-1 % / error %)",
            "paper: robustness table", [("clean", "occ_clean"), ("random drop 50%", "occ_random50"),
            ("salient drop lambda 0.5", "occ_salient50"), ("shuffle 4x4", "shuffle_4x4"),
            ("corruptions mean error", "corr_mean_error"), ("mCE (AlexNet)", "corr_mce"),
            ("natural adv. top-1", "nat_adv_top1"), ("calibration error", "nat_adv_calib")], NO_PAPER),
    _simple("backgrounds", "Robustness: backgrounds challenge (top-1 %)", "paper: robustness table",
            [("Original", "bg_original"), ("Only-FG", "bg_only_fg"), ("Mixed-Same", "bg_mixed_same"),
             ("Mixed-Rand", "bg_mixed_rand"), ("BG-Gap", "bg_gap"), ("challenge", "bg_challenge")], NO_PAPER),
    _simple("nn", "Retrieval (mAP), copy detection (mAP), DAVIS-2017 video segmentation",
            "paper appendix: nearest-neighbour tasks", [("ROx M", "rox_medium"), ("ROx H", "rox_hard"),
            ("RPar M", "rpar_medium"), ("RPar H", "rpar_hard"), ("Copydays strong", "copydays_map"),
            ("DAVIS J&F", "davis_jf"), ("DAVIS J", "davis_j"), ("DAVIS F", "davis_f")],
            "iBOT's own numbers for these tasks were not retrieved; DINO's published numbers are shown instead "
            "(labelled DINO)."),
    _simple("analysis", "Analysis (the suite's own measures; not in the paper)", "suite",
            [("attention Jaccard, best head", "attn_jaccard_best"), ("attention Jaccard, mean", "attn_jaccard_mean"),
             ("correspondence accuracy %", "corr_accuracy"), ("mutual NN %", "corr_mutual"),
             ("prototypes used", "patterns_used"), ("part-wise top-1 (k=56)", "partwise_top1_k56")]),
)  # fmt: skip


@dataclass
class Model:
    """A table row's model: its label, architecture and numbers (metric id -> (value, result))."""

    label: str
    arch: str
    metrics: dict[str, tuple[float, Result]] = field(default_factory=dict)


@dataclass(frozen=True)
class Cell:
    """One table cell: the run's value (None = not run) and the published number beside it."""

    value: float | None
    published: Published | None = None
    kind: str = "run"  # run | published | label
    text: str = ""  # a label cell's text


def _label(text: str) -> Cell:
    return Cell(None, None, "label", text)


def models_of(results: list[Result]) -> list[Model]:
    """One Model per label over the evaluations of backbones, in order of first appearance; newest result wins."""
    models: dict[str, Model] = {}
    for r in results:
        if r.evaluation is None or r.evaluation.kind != "model":
            continue
        m = models.setdefault(r.model, Model(r.model, r.arch))
        if len(r.arch) > len(m.arch):  # the most specific label: 'ViT-S/16' over 'ViT-S'
            m.arch = r.arch
        for k, v in r.metrics.items():
            if k not in m.metrics or m.metrics[k][1].mtime <= r.mtime:
                m.metrics[k] = (v, r)
    return list(models.values())


def build_table(table: Table, models: list[Model], published: PublishedNumbers) -> dict:
    """{title, paper, note, headers, rows}: each row a list of Cells, the first one(s) labels."""
    grouped = any(label for label, _ in table.groups)
    headers = ["model"] + (["protocol"] if grouped else []) + list(table.headers)
    rows = []
    for model in models:
        for label, ids in table.groups:
            if "/" in model.label and not any(mid in model.metrics for mid in ids):
                continue  # a run inside a model's folder (e.g. finetune/live/one_epoch) only where it has numbers
            name = f"{model.label} ({model.arch or 'arch unknown'})"
            cells = [_label(name)] + ([_label(label)] if grouped else [])
            for mid in ids:
                got = model.metrics.get(mid)
                cells.append(Cell(got[0] if got else None, published.lookup(mid, model.arch)))
            rows.append(cells)
    for method, arch in published.archs(table.metric_ids()):
        for label, ids in table.groups:
            entries = published.row(method, arch, list(ids))
            if not any(entries):
                continue
            cells = [_label(f"published: {method} {arch}")] + ([_label(label)] if grouped else [])
            rows.append(cells + [Cell(e.value if e else None, e, "published") for e in entries])
    return {"key": table.key, "title": table.title, "paper": table.paper, "note": table.note, "headers": headers,
            "rows": rows, "empty": not models}  # fmt: skip


def cell_text(cell: Cell) -> str:
    """Plain text of a cell: '12.34 (paper 75.2)', 'not run (paper 75.2)', '75.2' or '-'."""
    if cell.kind == "label":
        return cell.text
    if cell.kind == "published":
        return "-" if cell.value is None else f"{cell.value:.1f}"
    ours = "not run" if cell.value is None else f"{cell.value:.2f}"
    if cell.published is None:
        return ours
    who = "paper" if cell.published.method == "iBOT" else cell.published.method
    return f"{ours} ({who} {cell.published.value:.1f})"
