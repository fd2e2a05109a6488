"""Analysis tools on a backbone: attention maps and their Jaccard with object masks, correspondence,
patch patterns of the iBOT head's prototypes, PCA of patch features; robustness in `analysis.robustness`.

Each tool is `run_<tool>(backbone, cfg) -> dict` and `python -m analysis.<tool> key=value ...`.
"""

from pretrain import lazy_exports

_EXPORTS = {
    "AnalysisConfig": "config", "AttentionConfig": "config", "CorrespondenceConfig": "config",
    "PatternsConfig": "config", "PCAConfig": "config",
    "run_attention": "tools.attention:run", "run_correspondence": "tools.correspondence:run",
    "run_patterns": "tools.patterns:run", "run_pca": "tools.pca:run",
    "demo_robustness": "robustness:demo_robustness",
}  # fmt: skip

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
