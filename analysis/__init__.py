"""Analysis tools on a backbone: attention maps and their Jaccard with object masks, correspondence,
patch patterns of the iBOT head's prototypes, PCA of patch features; the robustness suite in
`analysis/robustness/` (its tests, configs and class-map helpers are exported here: one door).

Each tool is `run_<tool>(backbone, cfg) -> dict` (in `analysis/<tool>_work.py`; results go back to the caller)
and `python -m analysis.<tool> key=value ...` (`analysis/<tool>.py`: writes config.yaml and results.json).
"""

from typing import TYPE_CHECKING

from plumbing import lazy_package

if TYPE_CHECKING:
    from .attention_work import run_attention
    from .config import (
        AnalysisConfig,
        AttentionConfig,
        CorrespondenceConfig,
        ExploreConfig,
        PatternsConfig,
        PCAConfig,
    )
    from .correspondence_work import run_correspondence
    from .explore_work import run_explore
    from .patterns_work import run_patterns
    from .pca_work import run_pca
    from .robustness.backgrounds_work import run_backgrounds
    from .robustness.common import identity_map_file, in9_classes, load_output_map, timm_subset
    from .robustness.config import (
        BackgroundsConfig,
        CorruptionsConfig,
        NaturalAdvConfig,
        OcclusionConfig,
        PartwiseConfig,
        RobustConfig,
        ShuffleConfig,
        require_imagecorruptions,
    )
    from .robustness.corruptions_work import run_corruptions
    from .robustness.natural_adv_work import run_natural_adv
    from .robustness.occlusion_work import run_occlusion
    from .robustness.partwise_work import run_partwise
    from .robustness.shuffle_work import parse_grid, run_shuffle

__getattr__, __dir__, __all__ = lazy_package(__name__)
