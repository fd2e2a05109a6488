"""The demo "shapes" world: a small synthetic dataset in the formats users have for real data.

`python -m demo_world output_dir=PATH seed=0 key=value ...`, or from Python `run(WorldConfig(...))` /
`write_world(output_dir, seed=0, **overrides)`. Formats and conventions: `demo_world/README.md`.
"""

from typing import TYPE_CHECKING

from plumbing import lazy_package

from .config import WorldConfig
from .shapes import SHAPES

if TYPE_CHECKING:  # the writers: imported on first use
    from .work import VARIANTS, run, write_world

__getattr__, __dir__, __all__ = lazy_package(__name__)
