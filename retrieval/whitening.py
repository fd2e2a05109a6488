"""PCA-whitening learned on a set of descriptors, as the copy-detection protocol defines it (numpy only).

Learning on descriptors W (n, d): the mean m = mean(W); the covariance C = W^T W / n of the **uncentred**
W (DINO's and iBOT's quirk; `centred=True` uses W - m instead, a textbook PCA-whitening); eigenvalues
below 1e-5 * max raised to that floor; all d components kept, sorted by decreasing eigenvalue; the
projection P = diag(lambda^-1/2) V^T. Applying it: x -> P (x - m). P is computed in float64 and applied
in float32, as the authors do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EIGEN_FLOOR = 1e-5  # eigenvalues below this times the largest are raised to it
POWER = 0.5  # whitening power: lambda^-POWER


@dataclass
class Whitening:
    """A learned whitening: `mean` (d,), `projection` (d, d) whose rows are the scaled components."""

    mean: np.ndarray
    projection: np.ndarray
    energy_kept: float  # share of the eigenvalue sum in the kept components (1.0: all are kept)
    floored: int  # eigenvalues raised to the floor

    def apply(self, x: np.ndarray) -> np.ndarray:
        """(n, d) descriptors -> (n, d) whitened float32 descriptors: P (x - m)."""
        x = np.asarray(x, dtype=np.float32) - self.mean.astype(np.float32)
        return x @ self.projection.astype(np.float32).T


def learn_whitening(train: np.ndarray, centred: bool = False, dim: int | None = None) -> Whitening:
    """Learn the whitening on `train` (n, d); `dim` keeps the first components (default all, as the protocol)."""
    w = np.asarray(train, dtype=np.float64)  # (n, d)
    if w.ndim != 2 or len(w) < 1:
        raise ValueError(f"train must be (n, d) with n >= 1, got shape {w.shape}")
    mean = w.mean(axis=0)  # (d,)
    x = w - mean if centred else w
    cov = x.T @ x / len(x)  # (d, d)
    eigval, eigvec = np.linalg.eigh(cov)  # ascending
    if not eigval.max() > 0:
        raise ValueError("the whitening descriptors are all zero: nothing to learn")
    floor = eigval.max() * EIGEN_FLOOR
    floored = int((eigval < floor).sum())
    eigval = np.maximum(eigval, floor)
    order = np.argsort(eigval)[::-1][: dim or len(eigval)]
    kept = eigval[order]
    projection = np.diag(kept**-POWER) @ eigvec[:, order].T  # (dim, d)
    return Whitening(mean, projection, float(kept.sum() / eigval.sum()), floored)
