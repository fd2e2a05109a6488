"""Linear evaluations of frozen features.

`run(backbone, cfg)` / `python -m eval_linear`: linear probing with a grid of heads trained in one
pass. Logistic regression on L2-normalised features: `run_logreg` / `python -m eval_linear.logreg`.
"""

from pretrain import lazy_exports

_EXPORTS = {
    "LinearConfig": "probe", "run": "probe", "main": "probe",
    "LogRegConfig": "logreg", "run_logreg": "logreg:run",
}  # fmt: skip

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
