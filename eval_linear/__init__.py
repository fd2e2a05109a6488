"""Linear evaluations of frozen features.

`run(backbone, cfg)` / `python -m eval_linear`: linear probing with a grid of heads trained in one
pass. Logistic regression on L2-normalised features lives in `eval_linear.logreg`
(`python -m eval_linear.logreg`).
"""

from pretrain import PAPER_LRS, HeadSpec, make_grid

from .probe import LinearConfig, main, run

__all__ = ["PAPER_LRS", "HeadSpec", "LinearConfig", "main", "make_grid", "run"]
