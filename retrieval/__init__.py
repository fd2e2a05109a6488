"""Nearest-neighbour evaluations of frozen descriptors: image retrieval and copy detection.

- `python -m retrieval`: revisited Oxford 5k / Paris 6k (mAP and mP@k, Medium and Hard protocols),
  multi-scale [CLS] descriptors (`retrieval.evaluate`).
- `python -m retrieval.copydays`: Copydays "strong" copy detection with distractors and PCA-whitening
  (`retrieval.copy_detection`).

Each is `run(backbone, cfg) -> dict` behind the common CLI shell (`main(argv)` returns the exit code).
The metrics (`trapezoid_ap`, `revisited_labels`, `revisited_map`, `topk_map`), the whitening and the
restricted ground-truth reader need no torch.
"""

from pretrain import lazy_exports

_EXPORTS = {
    "RetrievalConfig": "config", "CopydaysConfig": "config",
    "run": "evaluate", "run_copydays": "copy_detection:run", "main": "cli", "main_copydays": "cli",
    "descriptor_fn": "evaluate", "copy_descriptor": "copy_detection",
    # metrics
    "trapezoid_ap": "metrics", "revisited_labels": "metrics", "revisited_map": "metrics", "topk_map": "metrics",
    "adjusted_ranks": "metrics", "precision_at": "metrics",
    # whitening and the ground truth
    "Whitening": "whitening", "learn_whitening": "whitening",
    "GroundTruth": "gnd", "load_ground_truth": "gnd", "restricted_load": "gnd",
}  # fmt: skip

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
