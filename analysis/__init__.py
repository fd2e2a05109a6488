"""Analysis tools on a backbone: attention maps and their Jaccard with object masks, correspondence,
patch patterns of the iBOT head's prototypes, PCA of patch features; robustness in `analysis.robustness`.

Each tool is `run_<tool>(backbone, cfg) -> dict` and `python -m analysis.<tool> key=value ...`.
"""

from typing import TYPE_CHECKING

from plumbing import lazy_package

if TYPE_CHECKING:
    from .config import AnalysisConfig, AttentionConfig, CorrespondenceConfig, PatternsConfig, PCAConfig
    from .robustness import demo_robustness
    from .tools.attention import run_attention
    from .tools.correspondence import run_correspondence
    from .tools.patterns import run_patterns
    from .tools.pca import run_pca

__getattr__, __dir__, __all__ = lazy_package(__name__)
