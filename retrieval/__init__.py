"""Nearest-neighbour evaluations of frozen descriptors: image retrieval and copy detection.

- `python -m retrieval`: revisited Oxford 5k / Paris 6k (mAP and mP@k, Medium and Hard protocols),
  multi-scale [CLS] descriptors: `run(backbone, cfg)` (`retrieval.work`).
- `python -m retrieval.copydays`: Copydays "strong" copy detection with distractors
  (PCA-whitening): `run_copydays(backbone, cfg)` (`retrieval.copydays_work`).

Each returns the results dict behind the common CLI shell (`retrieval.__main__.main` and
`retrieval.copydays.main` return the exit code).
The metrics (`trapezoid_ap`, `revisited_labels`, `revisited_map`, `topk_map`), the whitening and the
restricted ground-truth reader need no torch.
"""

from typing import TYPE_CHECKING

from plumbing import lazy_package

from .config import CopydaysConfig, RetrievalConfig

if TYPE_CHECKING:
    from .copydays_work import copy_descriptor, run_copydays
    from .gnd import GroundTruth, load_ground_truth, restricted_load
    from .metrics import adjusted_ranks, precision_at, revisited_labels, revisited_map, topk_map, trapezoid_ap
    from .whitening import Whitening, learn_whitening
    from .work import descriptor_fn, run

__getattr__, __dir__, __all__ = lazy_package(__name__)
