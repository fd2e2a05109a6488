"""Sizing the live pre-training schedule to a time budget (pure arithmetic: no torch).

A cosine schedule cut by a time limit ends with a high learning rate and a teacher still moving; one
sized to the budget decays fully. The demo times a few training steps and the k-NN monitor first,
then asks `size_schedule` for the largest number of epochs whose planned time fits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    """Epochs to train, epochs between k-NN monitor calls, and the planned seconds."""

    epochs: int
    every: int
    planned_s: float


def planned_seconds(epochs: int, every: int, epoch_s: float, knn_s: float) -> float:
    """Time of `epochs` epochs of `epoch_s` seconds with a k-NN call (`knn_s`) after every `every`-th."""
    return epochs * epoch_s + (epochs // every) * knn_s


def size_schedule(budget_s: float, step_s: float, steps_per_epoch: int, epoch_overhead_s: float = 0.0,
                  knn_s: float = 0.0, points: int = 8, max_epochs: int = 10_000) -> Schedule:  # fmt: skip
    """The most epochs (at least 1) that fit `budget_s`, with about `points` k-NN monitor calls.

    One epoch costs `steps_per_epoch * step_s + epoch_overhead_s` (the data loader's restart, the
    checkpoint); each monitor call `knn_s`. `every` is chosen first from the epochs that would fit
    without monitoring, then the epochs are counted with the monitor's cost included.
    """
    if budget_s <= 0 or step_s <= 0 or steps_per_epoch < 1:
        raise ValueError(f"need budget_s > 0, step_s > 0, steps_per_epoch >= 1; got {budget_s}, {step_s}, "
                         f"{steps_per_epoch}")  # fmt: skip
    epoch_s = steps_per_epoch * step_s + max(epoch_overhead_s, 0.0)
    rough = max(1, int(budget_s // epoch_s))
    every = max(1, math.ceil(rough / max(points, 1)))
    epochs = max(1, min(max_epochs, int(budget_s // (epoch_s + max(knn_s, 0.0) / every))))
    while epochs < max_epochs and planned_seconds(epochs + 1, every, epoch_s, knn_s) <= budget_s:
        epochs += 1  # the amortised count rounds down; take any whole epoch that still fits
    return Schedule(epochs, every, planned_seconds(epochs, every, epoch_s, knn_s))
