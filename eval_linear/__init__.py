"""Linear evaluations of frozen features.

`run(backbone, cfg)` / `python -m eval_linear`: linear probing with a grid of heads trained in one
pass (recipes `cls`, `cls+avgpool`, `avgpool_prenorm`). Logistic regression on L2-normalised [CLS]
features: `run_logreg(backbone, cfg)` / `python -m eval_linear.logreg`.
"""

from typing import TYPE_CHECKING

from plumbing import lazy_package

from .config import LinearConfig, LogRegConfig

if TYPE_CHECKING:
    from .logreg_work import run_logreg
    from .work import run

__getattr__, __dir__, __all__ = lazy_package(__name__)
