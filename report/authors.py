"""Result folders written by the authors' own scripts, where their logs are machine-readable.

Read here (best effort; the reference docs do not spell out the log formats, so anything that looks
like them is accepted):
- `log.txt` of JSON lines, one per epoch, as the authors' scripts append them: pre-training
  (`main_ibot.py`: `train_loss`, `train_cls`, `train_patch`, `train_nmi`, ..., `epoch`), linear
  probing (`train_lr`, `train_loss`, `test_acc1`, `test_acc5`, `epoch`) and BEiT-style fine-tuning
  (the same plus `n_parameters`, `train_loss_scale`, `train_min_lr`, ...). The reported number is the
  best value over the lines of the first accuracy-like key found: `test_acc1`, `acc1`, `best_acc`,
  `test_acc`, `top1`, `acc` (the paper reports the best epoch).
- `log.txt` lines of DINO's k-NN print, `20-NN classifier result: Top1: 75.2, Top5: 91.0` (k = 20
  is taken; else the largest k printed).
- mmdetection / mmsegmentation `*.log.json` (the detection and segmentation code bases): the last
  `"mode": "val"` line's `bbox_mAP` / `segm_mAP` or `mIoU`, fractions turned into percent.
Which evaluation a log belongs to: the folder's name first (`linear`, `knn`, `cls`/`finetune`,
`unsup`, `seg`/`linear` for mmseg, ...), else its keys (pre-training keys; fine-tuning keys;
`test_acc1` alone = linear probing). The 1% / 10% label fractions come from the folder name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .registry import BY_NAME, EVALUATIONS, SPLITS, Evaluation, tokens

ACC_KEYS = ("test_acc1", "acc1", "best_acc", "test_acc", "top1", "acc")
PRETRAIN_KEYS = ("train_cls", "train_patch", "train_nmi")
FINETUNE_KEYS = ("n_parameters", "train_loss_scale", "train_min_lr", "train_weight_decay", "train_grad_norm")
KNN_LINE = re.compile(r"(\d+)-NN classifier result: Top1: ([\d.]+), Top5: ([\d.]+)")
ACC_EVALS = ("eval_knn", "eval_linear", "eval_linear.logreg", "finetune", "eval_knn.unsup")


def is_authors_log(path: Path) -> bool:
    """A file this module reads: `log.txt` or an mm* `*.log.json`."""
    return path.name == "log.txt" or path.name.endswith(".log.json")


def json_lines(path: Path) -> list[dict]:
    """Every line of `path` that parses as a JSON object (other lines skipped)."""
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def _by_folder(folder: Path, mm: bool) -> Evaluation | None:
    words = set(tokens(folder.name)) | (set(tokens(folder.parent.name)) if mm else set())
    if mm:  # mmseg folders: linear head vs UperNet; mmdet: anything else with bbox numbers
        return BY_NAME["segmentation.linear"] if "linear" in words else None
    return next((e for e in EVALUATIONS if e.name in ACC_EVALS and e.tokens & words), None)


def _number(row: dict, key: str) -> float | None:
    v = row.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _pretrain(rows: list[dict]) -> tuple[Evaluation, dict, dict]:
    epochs = [r["epoch"] for r in rows if _number(r, "epoch") is not None]
    loss = [(r["epoch"], r["train_loss"]) for r in rows if _number(r, "train_loss") is not None and "epoch" in r]
    nmi = [(r["epoch"], r["train_nmi"]) for r in rows if _number(r, "train_nmi") is not None and "epoch" in r]
    metrics = {"pretrain_epochs": float(max(epochs) + 1)} if epochs else {}
    if loss:
        metrics["pretrain_last_loss"] = float(loss[-1][1])
    curves = {"train_loss": loss, **({"train_nmi": nmi} if nmi else {})}
    return BY_NAME["pretrain"], metrics, curves


def _accuracy(rows: list[dict], ev: Evaluation | None) -> tuple[Evaluation | None, dict, dict]:
    key = next((k for k in ACC_KEYS if any(_number(r, k) is not None for r in rows)), None)
    if key is None:
        return None, {}, {}
    if ev is None:
        ev = BY_NAME["finetune"] if any(k in r for r in rows for k in FINETUNE_KEYS) else BY_NAME["eval_linear"]
    points = [(r.get("epoch", i), _number(r, key)) for i, r in enumerate(rows) if _number(r, key) is not None]
    metric = ev.metrics[0].id
    return ev, {metric: max(v for _, v in points)}, {key: points}


def _knn_text(path: Path) -> tuple[Evaluation | None, dict, dict]:
    found = {int(k): float(t1) for k, t1, _ in KNN_LINE.findall(path.read_text(errors="replace"))}
    if not found:
        return None, {}, {}
    k = 20 if 20 in found else max(found)
    return BY_NAME["eval_knn"], {"knn_top1": found[k]}, {}


def _mm(rows: list[dict], folder: Path) -> tuple[Evaluation | None, dict, dict]:
    val = [r for r in rows if r.get("mode") == "val"]
    if not val:
        return None, {}, {}
    last = val[-1]

    def percent(key: str) -> float | None:
        v = _number(last, key)
        return None if v is None else (v * 100 if v <= 1 else v)

    if percent("bbox_mAP") is not None:
        metrics = {"coco_box_ap": percent("bbox_mAP")}
        if percent("segm_mAP") is not None:
            metrics["coco_mask_ap"] = percent("segm_mAP")
        return BY_NAME["detection"], metrics, {}
    if percent("mIoU") is not None:
        ev = _by_folder(folder, mm=True) or BY_NAME["segmentation"]
        curve = [(r.get("iter", i), _number(r, "mIoU")) for i, r in enumerate(val) if _number(r, "mIoU") is not None]
        return ev, {ev.metrics[0].id: percent("mIoU")}, {"val_mIoU": curve}
    return None, {}, {}


def read_log(path: Path) -> dict[str, Any] | None:
    """{evaluation, metrics, curves, split, n_parameters, lines} for one authors' log, or None if unreadable."""
    folder = path.parent
    rows = json_lines(path)
    if path.name.endswith(".log.json"):
        ev, metrics, curves = _mm(rows, folder)
    elif any(k in r for r in rows for k in PRETRAIN_KEYS):
        ev, metrics, curves = _pretrain(rows)
    elif rows:
        ev, metrics, curves = _accuracy(rows, _by_folder(folder, mm=False))
    else:
        ev, metrics, curves = _knn_text(path)
    if ev is None or not metrics:
        return None
    split = SPLITS.split_of(None, str(folder)) if ev.kind == "model" else None
    if split and ev.metrics and ev.metrics[0].id in SPLITS.metrics:
        metrics = {f"{k}@{split}": v for k, v in metrics.items()}
    n_params = next((r["n_parameters"] for r in rows if "n_parameters" in r), None)
    return {"evaluation": ev, "metrics": metrics, "curves": curves, "split": split, "n_parameters": n_params,
            "lines": len(rows)}  # fmt: skip
