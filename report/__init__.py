"""The report (orchestration, layer 4): a run folder's results beside the paper's published numbers.

`python -m report run_dir=DIR [output=DIR/report]` reads every `results.json` (with its `config.yaml`)
and the authors' machine-readable logs under DIR, and writes `report.md` and a self-contained
`report.html`: the paper's tables in the paper's layout, each cell beside the published number for the
same architecture, every evaluation's config, and every figure. `build(run_dir, output)` does the same
from Python. Which evaluation wrote which file, and which numbers are taken, is one table:
`report.registry.EVALUATIONS` (exported as `EVALUATIONS`). Names are imported on first use.
"""

from pretrain import lazy_exports

_EXPORTS = {
    "ReportConfig": "config", "build": "build", "main": "build",
    "EVALUATIONS": "registry", "Evaluation": "registry", "Metric": "registry", "identify": "registry",
    "TABLES": "tables", "load_published": "published", "collect": "collect",
}  # fmt: skip

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
