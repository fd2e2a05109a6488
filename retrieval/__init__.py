"""Nearest-neighbour evaluations of frozen descriptors: image retrieval and copy detection.

- `python -m retrieval`: revisited Oxford 5k / Paris 6k (mAP and mP@k, Medium and Hard protocols),
  multi-scale [CLS] descriptors (`retrieval.evaluate`).
- `python -m retrieval.copydays`: Copydays "strong" copy detection with distractors and PCA-whitening
  (`retrieval.copy_detection`).

Each is `run(backbone, cfg) -> dict` behind the common CLI shell (`main(argv)` returns the exit code).
The metrics (`trapezoid_ap`, `revisited_labels`, `revisited_map`, `topk_map`), the whitening and the
restricted ground-truth reader need no torch.
"""

from typing import TYPE_CHECKING

from plumbing import lazy_package

if TYPE_CHECKING:
    from .cli import main, main_copydays
    from .config import CopydaysConfig, RetrievalConfig
    from .copy_detection import copy_descriptor, run_copydays
    from .evaluate import descriptor_fn, run
    from .gnd import GroundTruth, load_ground_truth, restricted_load
    from .metrics import adjusted_ranks, precision_at, revisited_labels, revisited_map, topk_map, trapezoid_ap
    from .whitening import Whitening, learn_whitening

__getattr__, __dir__, __all__ = lazy_package(__name__)
