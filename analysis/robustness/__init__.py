"""Robustness suite (reference §3.8): occlusion, patch shuffle, common corruptions, backgrounds
challenge, natural adversarial examples and part-wise linear probing.

Each test is `run(classifier, cfg[, info]) -> dict` (in `analysis.robustness.protocols`) plus
`python -m analysis.robustness.<test> classifier=FILE [pretrained=FILE] key=value` writing
config.yaml, results.json and a plot into `output_dir`; classifiers are read by
`evalkit.load_classifier`. `demo_robustness` is the short run on the demo world.
"""

from typing import TYPE_CHECKING

from plumbing import lazy_package

if TYPE_CHECKING:
    from .common import in9_classes, load_output_map, timm_subset
    from .config import (
        BackgroundsConfig,
        CorruptionsConfig,
        NaturalAdvConfig,
        OcclusionConfig,
        PartwiseConfig,
        RobustConfig,
        ShuffleConfig,
    )
    from .demo import demo_robustness

__getattr__, __dir__, __all__ = lazy_package(__name__)
