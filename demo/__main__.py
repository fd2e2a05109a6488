"""`python -m demo [output_dir=demo_out] [minutes=7] [stages=...] [full=false] ...` (`make demo`).

Bad input is one line `demo: error: ...` and exit 2 before any work (`plumbing.run_command`); a stage that
fails is recorded and the others still run (exit 1); else 0. The work is `demo.work.run`.
"""

import logging
import sys

from plumbing import parse_config, run_command

from .config import DemoConfig


def main(argv: list[str] | None = None) -> int:
    """`python -m demo key=value ...`; returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    return run_command("demo", lambda: _run(argv))


def _run(argv: list[str] | None) -> int:
    cfg = parse_config(DemoConfig, argv, "demo")
    cfg.check()
    from .work import run  # the work imports torch: only after the config parsed

    return run(cfg)


if __name__ == "__main__":
    sys.exit(main())
