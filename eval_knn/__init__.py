"""Weighted k-NN evaluation of frozen features (DINO/iBOT protocol).

`knn_classify` / `knn_classify_many` work on feature tensors; `run(backbone, cfg)` evaluates a backbone
on an image folder; `python -m eval_knn` is the CLI. Unsupervised classification with the iBOT head's
prototypes lives in `eval_knn.unsup` (`python -m eval_knn.unsup`).
"""

from evalkit import SEARCH_BACKENDS, knn_classify, knn_classify_many, search_neighbours

from .evaluate import KNNConfig, main, run

__all__ = ["SEARCH_BACKENDS", "KNNConfig", "knn_classify", "knn_classify_many", "main", "run", "search_neighbours"]
