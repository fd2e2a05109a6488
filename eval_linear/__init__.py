"""Linear evaluations of frozen features.

`run(backbone, cfg)` / `python -m eval_linear`: linear probing with a grid of heads trained in one
pass (recipes `cls`, `cls+avgpool`, `avgpool_prenorm`). Logistic regression on L2-normalised [CLS]
features: `run_logreg(backbone, cfg)` / `python -m eval_linear.logreg`.
"""

from pretrain import lazy_exports

_EXPORTS = {
    "LinearConfig": "config", "run": "probe", "main": "cli",
    "LogRegConfig": "config", "run_logreg": "logistic:run", "main_logreg": "logreg:main",
}  # fmt: skip

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
