"""mIoU, mAcc and aAcc from an accumulated confusion matrix (mmseg's definitions).

conf[g, p] counts pixels of ground-truth class g predicted as p (ignored pixels left out).
- IoU_k = conf[k, k] / (row_k + col_k - conf[k, k]); NaN when class k is neither in the ground truth
  nor predicted; a class predicted but absent from the ground truth has IoU 0.
- Acc_k = conf[k, k] / row_k; NaN when class k is absent from the ground truth.
- mIoU, mAcc: NaN-ignoring means over classes; aAcc = trace / total. Reported in percent.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def confusion_matrix(pred: Tensor, gt: Tensor, num_classes: int, ignore_index: int = 255) -> Tensor:
    """(K, K) int64 counts from same-shaped prediction and ground-truth label maps."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ in shape")
    valid = gt != ignore_index
    g, p = gt[valid].long(), pred[valid].long()
    if len(g) and (g.max() >= num_classes or g.min() < 0):
        raise ValueError(f"ground-truth label outside 0..{num_classes - 1} (and {ignore_index})")
    return torch.bincount(g * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def _none_if_nan(values: Tensor) -> list[float | None]:
    return [None if math.isnan(v) else round(v * 100, 4) for v in values.tolist()]


def segmentation_metrics(conf: Tensor) -> dict:
    """mIoU, mAcc, aAcc (percent) and the per-class IoU / Acc lists (None where undefined)."""
    conf = conf.double()
    tp = conf.diag()
    gt_area, pred_area = conf.sum(1), conf.sum(0)
    union = gt_area + pred_area - tp
    iou = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, math.nan))
    acc = torch.where(gt_area > 0, tp / gt_area.clamp_min(1), torch.full_like(tp, math.nan))
    total = conf.sum()
    return {
        "mIoU": float(iou.nanmean() * 100) if (union > 0).any() else math.nan,
        "mAcc": float(acc.nanmean() * 100) if (gt_area > 0).any() else math.nan,
        "aAcc": float(tp.sum() / total * 100) if total > 0 else math.nan,
        "per_class_IoU": _none_if_nan(iou),
        "per_class_Acc": _none_if_nan(acc),
    }
