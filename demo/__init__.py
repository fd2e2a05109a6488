"""Orchestration (layer 4): `python -m demo` (`make demo`) runs the suite end to end on the silhouette world
and says, for every evaluation, whether the live and the reference models beat random initialisation.

`run(cfg)` (`demo/work.py`) is the work of the command (`demo/__main__.py`); every evaluation stage calls
its command's `run(backbone, cfg)` through `evalkit.evaluate`, with configs sized to the demo's budget.
"""

from typing import TYPE_CHECKING

from plumbing import lazy_package

from .config import BUDGETS, MODELS, STAGES, DemoConfig
from .schedule import Schedule, size_schedule

if TYPE_CHECKING:
    from .common import Context
    from .dense import detection_config, segmentation_config
    from .work import Demo, run

__getattr__, __dir__, __all__ = lazy_package(__name__)
