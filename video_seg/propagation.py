"""Label propagation through frozen patch features (the DINO/iBOT DAVIS protocol, after UVC).

For target frame t the context is frame 0 (its one-hot annotation) plus a FIFO queue of the last
`n_last_frames` predicted frames (their *soft* label maps, never argmaxed). Every target patch takes the
affinity exp(cos / T) to every context patch inside a (2r+1) x (2r+1)-cell window (the same window for
every context frame, frame 0 included), keeps the top k over all context frames jointly (ties with the
k-th are kept), normalises them to sum 1 and averages the sources' label vectors. The output mask is the
soft map upsampled x patch (bilinear), min-max normalised per channel, argmaxed, and resized to the frame
size with nearest.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

MAX_AFFINITY_ELEMENTS = 2**26  # affinity rows are computed in chunks of at most this many floats (256 MiB)


def neighbourhood_window(h: int, w: int, radius: int, device: torch.device | str | None = None) -> torch.Tensor | None:
    """(h*w, h*w) bool: target cell (i, j) may take labels from source cell (i', j') iff |i - i'| <= radius and
    |j - j'| <= radius (clipped at the borders). None when radius is 0 (no restriction)."""
    if radius <= 0:
        return None
    rows = torch.arange(h, device=device).repeat_interleave(w)  # (N,) row of each cell, row-major
    cols = torch.arange(w, device=device).repeat(h)  # (N,)
    return ((rows[:, None] - rows[None]).abs() <= radius) & ((cols[:, None] - cols[None]).abs() <= radius)


def label_propagation(
    target: torch.Tensor,
    keys: torch.Tensor,
    labels: torch.Tensor,
    window: torch.Tensor | None = None,
    topk: int = 5,
    temperature: float = 0.1,
) -> torch.Tensor:
    """Soft labels (C, N) of a target frame from its context.

    target: (N, D) features of the target patches (normalised here); keys: (ctx, M, D) L2-normalised context
    features; labels: (ctx, C, M) context label vectors; window: (N, M) bool or None. Each target patch keeps
    its `topk` largest affinities exp(cos / temperature) over all ctx * M sources jointly (window applied
    first), normalised to sum 1.
    """
    q = F.normalize(target.float(), dim=1)  # (N, D)
    ctx, m, _ = keys.shape
    n_sources = ctx * m
    flat_labels = labels.float().permute(1, 0, 2).reshape(labels.shape[1], n_sources)  # (C, ctx*M), context-major
    k = min(topk, n_sources)
    rows = max(1, MAX_AFFINITY_ELEMENTS // n_sources)
    out = []
    for start in range(0, q.shape[0], rows):  # row chunks: every step below is per target row
        aff = torch.exp(torch.einsum("nd,cmd->ncm", q[start : start + rows], keys.float()) / temperature)  # (n,ctx,M)
        if window is not None:
            aff = aff * window[start : start + rows, None, :]  # the same window for every context frame
        aff = aff.reshape(aff.shape[0], n_sources)  # (n, ctx*M): all context frames jointly
        kth = aff.topk(k, dim=1).values.amin(dim=1, keepdim=True)  # (n, 1) the k-th largest weight
        aff = torch.where(aff < kth, torch.zeros_like(aff), aff)  # ties with the k-th are kept
        aff = aff / aff.sum(dim=1, keepdim=True)
        out.append(flat_labels @ aff.T)  # (C, n)
    return torch.cat(out, dim=1)


class LabelPropagator:
    """One video's state: frame 0's normalised features and one-hot labels, and the queue of past predictions.

    `step(features)` predicts the next frame's soft labels (C, h, w) and pushes them into the queue (the
    oldest entry leaves when it holds `n_last_frames`). The window is built once per video.
    """

    def __init__(
        self,
        first_features: torch.Tensor,
        first_labels: torch.Tensor,
        n_last_frames: int = 7,
        size_mask_neighborhood: int = 12,
        topk: int = 5,
        temperature: float = 0.1,
    ):
        c, h, w = first_labels.shape
        if first_features.shape[0] != h * w:
            raise ValueError(f"first frame: {first_features.shape[0]} feature vectors for a {h}x{w} label grid")
        self.grid = (h, w)
        # frame 0: normalised features (N, D) and one-hot labels (C, N)
        self.first = (F.normalize(first_features.float(), dim=1), first_labels.reshape(c, h * w).float())
        self.queue: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=n_last_frames)
        self.window = neighbourhood_window(h, w, size_mask_neighborhood, first_features.device)
        self.topk, self.temperature = topk, temperature

    def context_size(self) -> int:
        """Frames the next step attends to: frame 0 plus the queue."""
        return 1 + len(self.queue)

    def step(self, features: torch.Tensor) -> torch.Tensor:
        """Soft labels (C, h, w) of the frame with patch features `features` (h*w, D)."""
        context = [self.first, *self.queue]  # frame 0 first, then the queue oldest first
        keys = torch.stack([f for f, _ in context])  # (ctx, N, D)
        labels = torch.stack([y for _, y in context])  # (ctx, C, N)
        soft = label_propagation(features, keys, labels, self.window, self.topk, self.temperature)  # (C, N)
        if self.queue.maxlen:
            self.queue.append((F.normalize(features.float(), dim=1), soft))
        return soft.reshape(soft.shape[0], *self.grid)


def propagate(
    first_features: torch.Tensor, first_labels: torch.Tensor, features: Iterable[torch.Tensor], **settings
) -> Iterator[torch.Tensor]:
    """Soft labels (C, h, w) of frames 1, 2, ... from frame 0's features (h*w, D) and one-hot labels (C, h, w),
    given the later frames' features one at a time (`settings`: LabelPropagator's keywords)."""
    propagator = LabelPropagator(first_features, first_labels, **settings)
    for f in features:
        yield propagator.step(f)


def soft_to_mask(soft: torch.Tensor, patch_size: int, size: tuple[int, int]) -> np.ndarray:
    """Object ids (H0, W0) uint8 from soft labels (C, h, w): bilinear x patch_size (align_corners False), each
    channel with a positive maximum min-max normalised to [0, 1], argmax, nearest resize to `size` = (H0, W0).

    A constant positive channel is 0/0 in the authors' code (NaN, which wins their max); +inf here, same effect.
    """
    up = F.interpolate(soft[None].float(), scale_factor=patch_size, mode="bilinear", align_corners=False)[0]
    lo, hi = up.amin(dim=(1, 2), keepdim=True), up.amax(dim=(1, 2), keepdim=True)  # (C, 1, 1)
    scaled = torch.where(hi > lo, (up - lo) / (hi - lo), torch.full_like(up, float("inf")))
    up = torch.where(hi > 0, scaled, up)  # (C, h*p, w*p)
    ids = up.argmax(dim=0).to(torch.uint8).cpu().numpy()  # (h*p, w*p)
    return np.array(Image.fromarray(ids).resize((size[1], size[0]), Image.NEAREST))
