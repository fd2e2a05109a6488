"""CLI: `python -m demo_world [--config FILE.yaml] out_dir=PATH seed=0 key=value ...`."""

from __future__ import annotations

import sys
import time

from plumbing import ConfigError, parse_config

from .config import WorldConfig
from .generate import generate


def write(argv: list[str] | None = None) -> dict:
    """Parse the config, write the world and print where each part went; returns the paths written."""
    cfg = parse_config(WorldConfig, argv, prog="demo_world")
    start = time.perf_counter()
    result = generate(cfg)
    print(f"demo world (seed {cfg.seed}) written to {result['out_dir']} in {time.perf_counter() - start:.1f} s")
    for part, value in result.items():
        if isinstance(value, dict) and "counts" in value:
            print(f"  {part}: {value['counts']}")
    print(f"  manifest: {result['manifest']}")
    return result


def main(argv: list[str] | None = None) -> int:
    """`python -m demo_world` / `ibot-world`: 0, or 2 with one line (a bad key, a folder that is not a world)."""
    try:
        write(argv)
    except (ConfigError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
