"""Weighted k-NN evaluation of frozen features (DINO/iBOT protocol) and unsupervised classification.

`run(backbone, cfg)` / `python -m eval_knn`: k-NN top-1/top-5 of the last block's [CLS] features on an
image folder; `knn_classify` / `knn_classify_many` work on feature tensors (evalkit's, re-exported).
`run_unsup(backbone, cfg)` / `python -m eval_knn.unsup`: clusters from the iBOT head's prototypes.

Top-5 on datasets with fewer than 1,000 classes: the votes here range over the dataset's own classes.
The authors' script always votes over 1,000 classes, so when a query's neighbours vote for fewer than 5
classes, its empty top-5 slots can go to classes that do not exist in the dataset, and its top-5
differs from this suite's there. The two agree on ImageNet-1k; top-1 agrees everywhere.
"""

from typing import TYPE_CHECKING

from plumbing import lazy_package

from .config import KNNConfig, UnsupConfig

if TYPE_CHECKING:
    from evalkit import knn_classify, knn_classify_many

    from .unsup_work import cluster_metrics, hungarian_accuracy, run_unsup
    from .work import run

__getattr__, __dir__, __all__ = lazy_package(__name__)
