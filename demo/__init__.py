"""Orchestration (layer 4): `python -m demo` (`make demo`) runs the suite end to end on the silhouette world
and says, for every evaluation, whether the live and the reference models beat random initialisation."""

from typing import TYPE_CHECKING

from plumbing import lazy_package

if TYPE_CHECKING:
    from .config import MODELS, STAGES, DemoConfig
    from .run import Demo, main
    from .schedule import Schedule, size_schedule

__getattr__, __dir__, __all__ = lazy_package(__name__)
