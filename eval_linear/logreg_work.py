"""Logistic regression on frozen features (DINO issue #121 protocol, reference §3.3).

Features as for k-NN: the last block's [CLS] after the final norm, center-crop transform,
L2-normalised. Multinomial logistic regression without intercept (scikit-learn, lbfgs) for each
regularisation strength lambda of the sweep; val accuracy of each and the best are reported.

lambda is the authors' (Cyanure's) parameter of the averaged objective
    (1/n) sum_i CE(W x_i, y_i) + (lambda / 2) ||W||^2,
which is scikit-learn's objective  C sum_i CE + (1/2) ||W||^2  with C = 1 / (lambda * n).

`run_logreg(backbone, cfg) -> dict`; CLI: `python -m eval_linear.logreg pretrained=ckpt.pth data_path=/data/imagenet`.
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from torch import nn

from evalkit import eval_transform, frozen, image_splits, split_features
from plumbing import resolve_device

from .config import LogRegConfig

log = logging.getLogger(__name__)


def fit_logreg(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    lam: float,
    max_iter: int,
    tol: float,
) -> tuple[float, bool]:
    """Val top-1 (%) of an l2-regularised multinomial logistic regression; and whether it converged."""
    clf = LogisticRegression(C=1.0 / (lam * len(train_y)), fit_intercept=False, max_iter=max_iter, tol=tol)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(train_x, train_y)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return float((clf.predict(val_x) == val_y).mean() * 100.0), converged


def run_logreg(backbone: nn.Module, cfg: LogRegConfig) -> dict:
    """Fit one classifier per lambda on train features, score on val; returns all and the best."""
    cfg.check()  # the work's one check of cfg: callers may skip the shell
    device = resolve_device(cfg.device)
    with frozen(backbone):
        return _evaluate(backbone.to(device), cfg, device)


def _evaluate(backbone: nn.Module, cfg: LogRegConfig, device: torch.device) -> dict:
    tf = eval_transform(cfg.image_size)
    train_set, val_set = image_splits(cfg.data_path, tf, tf, cfg.train_list, cfg.val_list)
    train_x, train_y = (t.cpu().numpy() for t in split_features(backbone, train_set, cfg, device, "train features"))
    val_x, val_y = (t.cpu().numpy() for t in split_features(backbone, val_set, cfg, device, "val features"))
    sweep = []
    for lam in cfg.lambdas:
        t0 = time.perf_counter()
        top1, converged = fit_logreg(train_x, train_y, val_x, val_y, lam, cfg.max_iter, cfg.tol)
        sweep.append(
            {"lambda": lam, "top1": top1, "converged": converged, "seconds": round(time.perf_counter() - t0, 3)}
        )
        log.info("logistic regression lambda=%g: top-1 %.2f%s", lam, top1, "" if converged else " (not converged)")
    best = max(sweep, key=lambda r: r["top1"])
    return {
        "best": {"lambda": best["lambda"], "top1": best["top1"]},
        "sweep": sweep,
        "num_train": len(train_set),
        "num_val": len(val_set),
        "num_classes": len(train_set.classes),
        "feature_dim": int(train_x.shape[1]),
    }
