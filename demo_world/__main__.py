"""`python -m demo_world [--config FILE.yaml] output_dir=PATH seed=0 key=value ...`: write the shapes world."""

import sys

from plumbing import parse_config, run_command

from .config import WorldConfig

PROG = "demo_world"


def main(argv: list[str] | None = None) -> int:
    """`python -m demo_world` / `ibot-world`: 0, or 2 with one line (a bad key, a folder that is not a world)."""
    return run_command(PROG, lambda: _run(parse_config(WorldConfig, argv, prog=PROG)))


def _run(cfg: WorldConfig) -> None:
    """Write the world and print where each part went."""
    import time

    from .work import run  # the writers draw and save thousands of images: only after the config parsed

    start = time.perf_counter()
    result = run(cfg)
    print(f"demo world (seed {cfg.seed}) written to {result['output_dir']} in {time.perf_counter() - start:.1f} s")
    for part, value in result.items():
        if isinstance(value, dict) and "counts" in value:
            print(f"  {part}: {value['counts']}")
    print(f"  manifest: {result['manifest']}")


if __name__ == "__main__":
    sys.exit(main())
