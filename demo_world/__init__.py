"""The demo "shapes" world: a small synthetic dataset in the formats users have for real data.

`python -m demo_world out_dir=PATH seed=0 key=value ...` or `write_world(out_dir, seed=0, **overrides)`.
Formats and conventions: `demo_world/README.md`.
"""

from .config import WorldConfig
from .generate import VARIANTS, generate, write_world
from .shapes import SHAPES

__all__ = ["SHAPES", "VARIANTS", "WorldConfig", "generate", "write_world"]
