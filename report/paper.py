"""The paper's published numbers (`report/data/ibot-paper-tables.json`) and how they meet the suite's metrics.

The file (a copy of `shared/data/published/ibot-paper-tables.json`, see its README there) holds 345 records,
one per cell of the iBOT paper's tables (arXiv v3): the iBOT and DINO rows of every comparison table and
every row of the authors' ablations, each with its table, method, variant, architecture, epochs (and
whether they are *effective* epochs, actual x ~4 for multi-crop, or actual ones), metric, value, source and
caveats. `suite_metric` maps a paper metric to the metric id the report reads from a results.json (None:
no command of the suite measures it, e.g. throughput or the transfer data sets).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "ibot-paper-tables.json"
DEFAULT_DATA = "ImageNet-1K"
# paper metric -> suite metric id (registry.EVALUATIONS); the semi-supervised and IN-9 ones by pattern below
SAME = {
    "knn_top1": "knn_top1",
    "linear_top1": "linear_top1",
    "finetune_top1": "finetune_top1",
    "unsup_acc": "unsup_acc",
    "unsup_ari": "unsup_ari",
    "unsup_nmi": "unsup_nmi",
    "unsup_fmi": "unsup_fmi",
    "coco_ap_box": "coco_box_ap",
    "coco_ap_mask": "coco_mask_ap",
    "coco_ap50_box": "coco_box_ap50",
    "coco_ap75_box": "coco_box_ap75",
    "coco_ap50_mask": "coco_mask_ap50",
    "coco_ap75_mask": "coco_mask_ap75",
    "ade20k_upernet_miou": "ade_upernet_miou",
    "ade20k_upernet_macc": "ade_upernet_macc",
    "ade20k_linear_miou": "ade_linear_miou",
    "ade20k_linear_macc": "ade_linear_macc",
    "occlusion_salient_drop50_top1": "occ_salient50",
    "occlusion_nonsalient_drop50_top1": "occ_nonsalient50",
    "imagenet_a_top1": "nat_adv_top1",
    "imagenet_c_mce": "corr_mean_error",  # the paper's "mCE" is the unnormalised mean top-1 error (README)
    "imagenet_val_top1": "occ_clean",  # Table 8's clean top-1 of the robustness linear head
    "roxford_medium_map": "rox_medium",
    "roxford_hard_map": "rox_hard",
    "rparis_medium_map": "rpar_medium",
    "rparis_hard_map": "rpar_hard",
    "davis2017_jf_mean": "davis_jf",
    "davis2017_j_mean": "davis_j",
    "davis2017_f_mean": "davis_f",
}
SEMI = re.compile(r"semisup_(1|10)pct_(knn|linear|logreg|ft|ft_proj)_top1")
SEMI_IDS = {"knn": "knn_top1", "linear": "linear_top1", "logreg": "logreg_top1", "ft": "finetune_top1",
            "ft_proj": "finetune_proj_top1"}  # fmt: skip
IN9 = re.compile(r"in9_(\w+)_top1")
# column labels of the paper metrics that no command of the suite measures
PAPER_ONLY = {
    "throughput_im_per_s": "im/s",
    "train_hours_100ep": "hours, 100 ep",
    "train_hours_300ep": "hours, 300 ep",
    "train_hours_800ep": "hours, 800 ep",
    "train_gpu_memory_gb": "GPU memory (GB)",
    "linear_top1_300ep": "linear, 300 ep",
    "linear_top1_800ep": "linear, 800 ep",
    "finetune_top1_800ep": "fine-tuning, 800 ep",
    "partwise_linear_top56_gain_over_dino": "part-wise top-56, gain over DINO",
    "partwise_linear_top1_gain_over_dino": "part-wise top-1, gain over DINO",
}


def suite_metric(paper_metric: str) -> str | None:
    """The suite's metric id for a paper metric ('semisup_1pct_knn_top1' -> 'knn_top1@1%'), None if unmeasured."""
    if paper_metric in SAME:
        return SAME[paper_metric]
    m = SEMI.fullmatch(paper_metric)
    if m:
        return f"{SEMI_IDS[m.group(2)]}@{m.group(1)}%"
    m = IN9.fullmatch(paper_metric)
    return f"bg_{m.group(1)}" if m else None


@dataclass(frozen=True)
class Record:
    """One published number (one cell of one paper table)."""

    table: str
    method: str
    variant: str
    arch: str
    pretrain_data: str
    epochs: int | None
    epochs_kind: str  # 'effective', 'actual' or ''
    pretrain_epochs: int | None
    metric: str
    value: float
    unit: str
    verified: bool
    note: str
    dataset: str

    @property
    def suite(self) -> str | None:
        """The suite's metric id for this number (None: no command of the suite measures it)."""
        return suite_metric(self.metric)

    def row_key(self) -> tuple:
        """What makes a row of its table: method, variant, architecture, pre-training data and epochs."""
        return self.method, self.variant, self.arch, self.pretrain_data, self.epochs, self.epochs_kind

    def row_label(self) -> str:
        """'iBOT ViT-S/16, 3200 ep effective (800 actual)', '..., IN-22K', '..., <variant>'."""
        parts = [f"{self.method} {self.arch}"]
        if self.epochs and self.epochs_kind == "effective":
            actual = f", {self.pretrain_epochs} actual" if self.pretrain_epochs else ""
            parts.append(f"{self.epochs} ep (effective{actual})")
        elif self.epochs or self.pretrain_epochs:
            parts.append(f"{self.epochs or self.pretrain_epochs} ep")
        if self.pretrain_data != DEFAULT_DATA:
            parts.append(self.pretrain_data.replace("ImageNet-", "IN-"))
        if self.variant:
            parts.append(self.variant)
        return ", ".join(parts) + ("" if self.verified else " [README, not in the paper]")

    def is_default_ibot(self) -> bool:
        """The paper's own iBOT model (no ablation variant, ImageNet-1K): the number shown beside a cell."""
        default = not self.variant or "(default)" in self.variant
        return self.method == "iBOT" and default and self.pretrain_data == DEFAULT_DATA and self.verified


@dataclass(frozen=True)
class Paper:
    """Every record, the notes of whole tables and what the paper does not report."""

    records: tuple[Record, ...]
    table_notes: dict[str, str]
    not_found: tuple[str, ...]
    inconsistencies: tuple[str, ...]
    about: str

    def tables(self) -> list[str]:
        """The table names in the file's (the paper's) order."""
        return list(dict.fromkeys(r.table for r in self.records))

    def of_table(self, table: str) -> list[Record]:
        """The records of one table, in the file's order."""
        return [r for r in self.records if r.table == table]

    def beside(self, suite_id: str, arch: str, table: str | None = None) -> Record | None:
        """The paper's default iBOT number for `suite_id` at `arch` (in `table`, else the first table having it)."""
        if not arch:
            return None
        found = [r for r in self.records if r.suite == suite_id and r.arch == arch and r.is_default_ibot()]
        in_table = [r for r in found if table is None or r.table == table]
        return in_table[0] if len(in_table) == 1 or (table is None and in_table) else None


def _record(e: dict) -> Record:
    def whole(v) -> int | None:
        return int(v) if isinstance(v, (int, float)) else None

    return Record(e["table"], e["method"], e.get("variant") or "", e["arch"], e.get("pretrain_data") or DEFAULT_DATA,
                  whole(e.get("epochs")), e.get("epochs_kind") or "", whole(e.get("pretrain_epochs")), e["metric"],
                  float(e["value"]), e.get("unit") or "", bool(e.get("verified", True)), e.get("note") or "",
                  e.get("dataset") or "")  # fmt: skip


@cache
def load_paper(path: str | None = None) -> Paper:
    """Read the paper's numbers (default: the copy shipped in `report/data/`)."""
    data = json.loads(Path(path or DATA).read_text())
    about = f"{data.get('description', '')} Read from: {data.get('paper', {}).get('version_read', '')}."
    records = tuple(_record(e) for e in data["records"])
    notes = dict(data.get("table_notes", {}))
    return Paper(records, notes, tuple(data.get("not_found", [])), tuple(data.get("inconsistencies_in_the_paper", [])),
                 about)  # fmt: skip
