"""Detections -> COCO result json -> pycocotools COCOeval (bbox and segm: AP, AP50, AP75, APs/m/l).

Figures are in percent, as the reference reports them (e.g. 49.4 AP box for ViT-S/16); an area range
without ground truth gives None (COCOeval's -1).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor

IOU_TYPES = ("bbox", "segm")
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def to_coco_results(
    detections: dict[int, dict[str, Tensor]], cat_ids: Sequence[int], mask_threshold: float = 0.5
) -> dict[str, list[dict]]:
    """Per image id: boxes (N, 4) xyxy, labels (N,) in 1..K, scores (N,), masks (N, 1, H, W) probabilities
    -> {"bbox": [...], "segm": [...]} in the COCO results format (segmentation as compressed RLE)."""
    out: dict[str, list[dict]] = {"bbox": [], "segm": []}
    for image_id, det in sorted(detections.items()):
        boxes = det["boxes"].float().cpu().numpy()
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1) if len(boxes) else boxes
        cats = [int(cat_ids[int(k) - 1]) for k in det["labels"].cpu()]
        scores = det["scores"].float().cpu().tolist()
        for b, c, s in zip(xywh.tolist(), cats, scores, strict=True):
            box = [round(v, 2) for v in b]
            out["bbox"].append({"image_id": int(image_id), "category_id": c, "bbox": box, "score": s})
        if "masks" in det and len(boxes):
            binary = (det["masks"][:, 0] > mask_threshold).cpu().numpy().astype(np.uint8)  # (N, H, W)
            rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0)))  # (H, W, N) in
            for rle, c, s in zip(rles, cats, scores, strict=True):
                rle = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
                out["segm"].append({"image_id": int(image_id), "category_id": c, "segmentation": rle, "score": s})
    return out


def write_coco_results(results: dict[str, list[dict]], output_dir: str | Path) -> dict[str, Path]:
    """`{bbox,segm}_results.json` in the COCO results format (what the COCO server also accepts)."""
    paths = {}
    for iou_type, dets in results.items():
        path = Path(output_dir) / f"{iou_type}_results.json"
        path.write_text(json.dumps(dets))
        paths[iou_type] = path
    return paths


def _percent(x: float) -> float | None:
    return None if x < 0 else round(100.0 * float(x), 2)


def coco_evaluate(
    coco_gt: COCO, results: dict[str, list[dict] | str | Path], image_ids: Sequence[int] | None = None
) -> dict[str, float | None]:
    """COCOeval per IoU type over `image_ids` (default: all) -> {"bbox_AP": ..., "segm_APl": ...}.

    `results[iou_type]` is a list of result dicts or the path of a results json. No detections at all
    score 0 (pycocotools cannot load an empty list).
    """
    ids = sorted(coco_gt.getImgIds()) if image_ids is None else sorted(int(i) for i in image_ids)
    metrics: dict[str, float | None] = {}
    for iou_type, dets in results.items():
        if iou_type not in IOU_TYPES:
            raise ValueError(f"unknown IoU type {iou_type!r}; valid: {IOU_TYPES}")
        dets = json.loads(Path(dets).read_text()) if isinstance(dets, (str, Path)) else dets
        if not dets:
            metrics.update({f"{iou_type}_{m}": 0.0 for m in METRICS})
            continue
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its tables
            ev = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(list(dets))), iou_type)  # loadRes edits its input
            ev.params.imgIds = ids
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        metrics.update({f"{iou_type}_{m}": _percent(v) for m, v in zip(METRICS, ev.stats[:6], strict=True)})
    return metrics
