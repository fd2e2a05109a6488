"""The report (orchestration, layer 4): a run folder's results beside the paper's published numbers.

`python -m report run_dir=DIR [output_dir=DIR/report]` reads every `results.json` (with its `config.yaml`)
and the authors' machine-readable logs under DIR, and writes `report.md` and a self-contained
`report.html`: a demo's verdict and learning curve first (when DIR is a demo's), the checkpoints found
(architecture, file, fingerprint, precision and device as their results record them), the checkpoints
side by side with their differences, and every table of the iBOT paper (`report/data/ibot-paper-tables.json`,
345 published numbers) with each checkpoint beside the paper's rows; then every evaluation's config and
every figure. `build(run_dir, output_dir)` does the same from Python; `run(cfg)` is the command's work.
Which evaluation wrote which file, and which numbers are taken, is one table: `EVALUATIONS`.
"""

from typing import TYPE_CHECKING

from plumbing import lazy_package

from .config import ReportConfig
from .registry import EVALUATIONS, Evaluation, Metric, identify

if TYPE_CHECKING:
    from .collect import collect
    from .paper import load_paper
    from .work import build, run

__getattr__, __dir__, __all__ = lazy_package(__name__)
