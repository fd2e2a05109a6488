"""`python -m benchmark pretrained=FILE data_root=DIR [key=value ...]`: every evaluation the checkpoint can
have, at the paper's settings for its architecture, resumable; `python -m benchmark status output_dir=DIR`:
where the tasks stand. The work, `benchmark.work.run`, is imported after the config parsed (so `--help`
and bad input answer before torch is imported).
"""

from __future__ import annotations

import sys

from plumbing import parse_config, run_command

from .config import BenchmarkConfig

PROG = "benchmark"


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmark key=value ...` (or `python -m benchmark status ...`); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["status"]:
        from .status import main as status_main

        return status_main(argv[1:])
    return run_command(PROG, lambda: _run(argv))


def _run(argv: list[str]) -> int:
    cfg = parse_config(BenchmarkConfig, argv, PROG)
    cfg.check()
    from .work import run  # reads checkpoints with torch: only after the config parsed

    return run(cfg)


if __name__ == "__main__":
    sys.exit(main())
