"""Orchestration (layer 4): `python -m demo` (`make demo`) runs the suite end to end on the demo world."""

from pretrain import lazy_exports

_EXPORTS = {"Demo": "run", "main": "run"}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
