"""J and F as the official DAVIS-2017 tool (davis2017-evaluation, semi-supervised task) defines them.

- J (region similarity) = |S n G| / |S u G| per object and frame, 1 when the union is empty.
- F (boundary F-measure): boundary maps (a pixel whose value differs from its east, south or south-east
  neighbour; the last row compares east only, the last column south only, the corner is never a
  boundary), each dilated with a disk of radius d = ceil(0.008 * image diagonal) px (8 px at 480x854);
  precision = |B_S n dil(B_G)| / |B_S|, recall = |B_G n dil(B_S)| / |B_G| (no prediction boundary: P = 1,
  R = 0; no ground-truth boundary: P = 0, R = 1; neither: 1, 1), F = 2PR / (P + R) (0 when P + R = 0).
- Frames: the first and the last are excluded; the objects are the ids 1..K present in the first
  annotation (the tool takes its largest id as K; a gap is refused, see `davis.object_ids`); void (255)
  counts as background (the semi-supervised task ignores no pixel).
- Per object over its frames: mean, recall = share of frames > 0.5, decay = mean of the first quarter -
  mean of the last, with bins round(linspace(1, N, 5)) - 1 inclusive at both ends (they overlap).
- Every statistic is averaged over all objects of all videos (not per video); J&F = (J + F) / 2.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

BOUND_TH = 0.008  # boundary tolerance: a fraction of the image diagonal (>= 1: pixels)
VOID = 255
STATS = ("Mean", "Recall", "Decay")


def region_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Jaccard index of two binary masks (H, W); 1 when both are empty."""
    pred, gt = pred.astype(bool), gt.astype(bool)
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundaries (H, W) bool of a binary mask, offset half a pixel towards the origin (see above)."""
    seg = mask.astype(bool)
    east, south, south_east = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    b[-1, :] = seg[-1, :] ^ east[-1, :]  # the image's edge is no boundary: last row east only
    b[:, -1] = seg[:, -1] ^ south[:, -1]  # last column south only
    b[-1, -1] = False
    return b


def boundary_tolerance(shape: tuple[int, int], bound_th: float = BOUND_TH) -> int:
    """Dilation radius in pixels: `bound_th` itself when >= 1, else ceil(bound_th * diagonal)."""
    return int(bound_th) if bound_th >= 1 else math.ceil(bound_th * math.hypot(*shape))


def disk(radius: int) -> np.ndarray:
    """(2r+1, 2r+1) uint8 structuring element: offsets with x^2 + y^2 <= r^2."""
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (x * x + y * y <= radius * radius).astype(np.uint8)


def boundary_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = BOUND_TH) -> float:
    """Boundary F-measure of two binary masks (H, W) with the DAVIS tolerance."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    kernel = disk(boundary_tolerance(gt.shape, bound_th))
    b_pred, b_gt = boundary_map(pred), boundary_map(gt)
    n_pred, n_gt = int(b_pred.sum()), int(b_gt.sum())
    if n_pred == 0 or n_gt == 0:
        precision, recall = (1.0 if n_pred == 0 else 0.0), (1.0 if n_gt == 0 else 0.0)
    else:
        pred_dil = cv2.dilate(b_pred.astype(np.uint8), kernel) > 0
        gt_dil = cv2.dilate(b_gt.astype(np.uint8), kernel) > 0
        precision = float((b_pred & gt_dil).sum() / n_pred)
        recall = float((b_gt & pred_dil).sum() / n_gt)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def frame_scores(pred: np.ndarray, gt: np.ndarray, num_objects: int) -> tuple[np.ndarray, np.ndarray]:
    """J and F (each (num_objects,)) of objects 1..K in one frame: predicted and annotated ids (H, W)."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and annotation {gt.shape} differ in size")
    gt = np.where(gt == VOID, 0, gt)
    j = np.array([region_iou(pred == k, gt == k) for k in range(1, num_objects + 1)])
    f = np.array([boundary_f(pred == k, gt == k) for k in range(1, num_objects + 1)])
    return j, f


def statistics(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, recall, decay) of one object's per-frame scores, as the DAVIS tool computes them."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(np.nanmean(values))
    recall = float(np.nanmean(values > 0.5))
    ids = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(np.int64)  # +1e-10: .5 rounds up
    bins = [values[ids[i] : ids[i + 1] + 1] for i in range(4)]  # inclusive at both ends
    decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
    return mean, recall, decay


def object_statistics(j: np.ndarray, f: np.ndarray) -> np.ndarray:
    """(K, 6) rows J-Mean, J-Recall, J-Decay, F-Mean, F-Recall, F-Decay from per-frame scores (K, frames)."""
    return np.array([[*statistics(jk), *statistics(fk)] for jk, fk in zip(j, f, strict=True)]).reshape(-1, 6)


def summarise(per_object: np.ndarray) -> dict[str, float]:
    """The tool's global numbers (percent) from all objects' (n, 6) statistics: means over objects."""
    means = per_object.mean(axis=0) * 100
    out = {"J&F-Mean": float((means[0] + means[3]) / 2)}
    for i, name in enumerate(f"{m}-{s}" for m in "JF" for s in STATS):
        out[name] = float(means[i])
    return out
