"""The report (orchestration, layer 4): a run folder's results beside the paper's published numbers.

`python -m report run_dir=DIR [output=DIR/report]` reads every `results.json` (with its `config.yaml`)
and the authors' machine-readable logs under DIR, and writes `report.md` and a self-contained
`report.html`: the paper's tables in the paper's layout, each cell beside the published number for the
same architecture, every evaluation's config, and every figure. `build(run_dir, output)` does the same
from Python. Which evaluation wrote which file, and which numbers are taken, is one table:
`report.registry.EVALUATIONS` (exported as `EVALUATIONS`). Names are imported on first use.
"""

from typing import TYPE_CHECKING

from plumbing import lazy_package

if TYPE_CHECKING:
    from .build import build, main
    from .collect import collect
    from .config import ReportConfig
    from .published import load_published
    from .registry import EVALUATIONS, Evaluation, Metric, identify
    from .tables import TABLES

__getattr__, __dir__, __all__ = lazy_package(__name__)
