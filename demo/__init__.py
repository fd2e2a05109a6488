"""Orchestration (layer 4): `python -m demo` (`make demo`) runs the suite end to end on the silhouette world
and says, for every evaluation, whether the live and the reference models beat random initialisation."""

from pretrain import lazy_exports

_EXPORTS = {
    "Demo": "run", "main": "run", "DemoConfig": "config", "STAGES": "config", "MODELS": "config",
    "size_schedule": "schedule", "Schedule": "schedule",
}  # fmt: skip

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
