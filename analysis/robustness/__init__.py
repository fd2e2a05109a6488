"""Robustness suite (reference §3.8): occlusion, patch shuffle, common corruptions, backgrounds
challenge, natural adversarial examples and part-wise linear probing.

Each test is `run(classifier, cfg[, info]) -> dict` (in `analysis.robustness.protocols`) plus
`python -m analysis.robustness.<test> classifier=FILE [pretrained=FILE] key=value` writing
config.yaml, results.json and a plot into `output_dir`; classifiers are read by
`evalkit.load_classifier`. `demo_robustness` is the short run on the demo world.
"""

from pretrain import lazy_exports

_EXPORTS = {
    "RobustConfig": "config", "OcclusionConfig": "config", "ShuffleConfig": "config",
    "CorruptionsConfig": "config", "BackgroundsConfig": "config", "NaturalAdvConfig": "config",
    "PartwiseConfig": "config",
    "load_output_map": "common", "timm_subset": "common", "in9_classes": "common",
    "demo_robustness": "demo",
}  # fmt: skip

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
