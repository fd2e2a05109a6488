"""The closing table: one line per measurement saying whether the trained models beat random init.

Read from the results.json files on disk (so a stage re-run alone still lands in the table). A model
counts as better only when it beats random init by more than the row's margin: the differences a
second seed or a few val images can make (e.g. 2 points of top-1 on 400 val images, whose binomial
standard error is 2.3 points at 30%).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BASELINE = "random_init"
TRAINED = ("live", "reference")


@dataclass(frozen=True)
class Row:
    """One number of the closing table: where it is read from and how large a difference counts."""

    label: str
    folder: str  # relative to the run folder; {m} is the model folder
    paths: tuple[str, ...]  # dotted paths into the file, the first one present is read
    margin: float  # a difference within +-margin of random init is "no better"
    scale: float = 1.0
    higher_is_better: bool = True
    file: str = "results.json"


ROWS = (
    Row("k-NN top-1 (k=20, %)", "frozen/{m}/knn", ("knn.k=20.top1",), 2.0),
    Row("linear probe top-1 (%)", "frozen/{m}/linear", ("best.top1",), 2.0),
    Row("logistic regression top-1 (%)", "frozen/{m}/logreg", ("best.top1",), 2.0),
    Row("unsupervised clusters NMI (%)", "frozen/{m}/unsup", ("nmi",), 2.0, scale=100),
    Row("fine-tuning top-1 (%)", "finetune/{m}", ("best_top1",), 2.0),
    Row("detection box AP50", "dense/{m}/detection", ("summary.bbox_AP50", "metrics.bbox_AP50"), 1.0),
    Row("instance segmentation mask AP50", "dense/{m}/detection", ("summary.segm_AP50", "metrics.segm_AP50"), 1.0),
    Row("segmentation mIoU (UperNet)", "dense/{m}/segmentation_upernet", ("mIoU",), 1.0),
    Row("segmentation mIoU (linear head)", "dense/{m}/segmentation_linear", ("mIoU",), 1.0),
    Row("robustness: top-1 with 50% of patches dropped (%)", "robustness/{m}", ("occlusion_50pct_top1",), 2.0,
        file="summary.json"),
    Row("robustness: mean corruption error (%)", "robustness/{m}", ("corruption_mean_error",), 2.0,
        higher_is_better=False, file="summary.json"),
    Row("attention Jaccard, mean over heads", "analysis/{m}/attention", ("jaccard_mean_over_heads",), 0.01),
    Row("attention Jaccard, best head", "analysis/{m}/attention", ("jaccard_best_head",), 0.01),
    Row("correspondence accuracy (two views, %)", "analysis/{m}/correspondence", ("accuracy",), 2.0, scale=100),
    Row("retrieval mAP (Medium, %)", "retrieval/{m}/roxford5k", ("mAP.medium",), 5.0),  # 4 queries
    Row("copy detection mAP (strong, %)", "retrieval/{m}/copydays", ("mAP_strong",), 5.0),  # 12 queries
    Row("video segmentation J&F (%)", "video/{m}/davis", ("J&F-Mean", "jf_mean"), 2.0),
)  # fmt: skip


def get_path(data: Any, dotted: str) -> Any:
    """data["a"]["b"] for "a.b" (None when absent)."""
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def read_value(out: Path, row: Row, model: str) -> float | None:
    """The row's number for `model`, or None when that evaluation did not run (or wrote no number)."""
    path = out / row.folder.format(m=model) / row.file
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    for p in row.paths:
        value = get_path(data, p)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value) * row.scale
    return None


def verdict(row: Row, value: float | None, baseline: float | None) -> tuple[str, float | None]:
    """'learned' / 'no better than random init' / 'worse than random init' / 'not run', and the gain."""
    if value is None:
        return "not run", None
    if baseline is None:
        return "random init not run", None
    gain = (value - baseline) * (1 if row.higher_is_better else -1)  # > 0: better than random init
    if gain > row.margin:
        return "learned", gain
    if gain < -row.margin:
        return "worse than random init", gain
    return f"no better than random init (within +-{row.margin:g})", gain


def _fmt(v: float | None) -> str:
    return "not run" if v is None else (f"{v:.3f}" if abs(v) < 1.5 else f"{v:.1f}")


def table(out: Path, models: list[str]) -> list[dict]:
    """The rows that have a number for at least one model: values, gains and verdicts per trained model."""
    rows = []
    for row in ROWS:
        values = {m: read_value(out, row, m) for m in models}
        if all(v is None for v in values.values()):
            continue
        base = values.get(BASELINE)
        entry = {"metric": row.label, "higher_is_better": row.higher_is_better, "margin": row.margin,
                 "values": values, "verdicts": {}, "gains": {}}  # fmt: skip
        parts = []
        for m in (m for m in TRAINED if m in models):
            word, gain = verdict(row, values[m], base)
            entry["verdicts"][m], entry["gains"][m] = word, gain
            sign = "" if gain is None else f" ({(values[m] - base):+.{3 if abs(values[m]) < 1.5 else 1}f})"
            parts.append(f"{m} {_fmt(values[m])}{sign} {word}")
        random = f"random {_fmt(base)}" if BASELINE in models else "random init not evaluated"
        entry["line"] = f"{row.label}: " + " | ".join(["; ".join(parts), random] if parts else [random])
        rows.append(entry)
    return rows


def pretrain_line(out: Path) -> str | None:
    """One line on the live run: epochs, minutes and its online k-NN from random init to the end."""
    res_path, sched_path = out / "pretrain" / "results.json", out / "pretrain" / "demo_schedule.json"
    if not res_path.is_file():
        return None
    res = json.loads(res_path.read_text())
    done = "the whole schedule" if res.get("completed") else "stopped by the time limit"
    line = f"live pre-training: {res.get('epoch')} epochs ({done}) in {res.get('minutes', 0):.1f} min"
    if sched_path.is_file():
        s = json.loads(sched_path.read_text())
        curve = "".join(f", {v:.1f} (epoch {e})" for e, v in s.get("knn_curve", []))
        line += f"; online k-NN top-1 {s['knn_random_init']:.1f} (random init){curve}"
    return line
