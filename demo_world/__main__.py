"""CLI: `python -m demo_world [--config FILE.yaml] out_dir=PATH seed=0 key=value ...`."""

from __future__ import annotations

import sys
import time

from pretrain import ConfigError, parse_config

from .config import WorldConfig
from .generate import generate


def main(argv: list[str] | None = None) -> dict:
    """Parse the config, write the world and print where each part went."""
    cfg = parse_config(WorldConfig, argv, prog="demo_world")
    start = time.perf_counter()
    result = generate(cfg)
    print(f"demo world (seed {cfg.seed}) written to {result['out_dir']} in {time.perf_counter() - start:.1f} s")
    for part in ("classification", "backgrounds", "coco", "ade"):
        if part in result:
            print(f"  {part}: {result[part]['counts']}")
    print(f"  manifest: {result['manifest']}")
    return result


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (ConfigError, FileExistsError) as e:  # a bad key or value, or a folder that is not a world: one line
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
