"""`python -m pretrain [--config FILE.yaml] key=value ...` (also under `torchrun -m pretrain`).

The config (`pretrain.config.TrainConfig`) is parsed and checked before torch is imported (`--help` is
instant); the work is `pretrain.work.train`. A user error is one line and exit 2, a full disk one line
naming the path and the free space (exit 1): `plumbing.run_command`. A run stopped by SIGTERM (after its
checkpoint) exits 143 (128 + SIGTERM, what a shell and SLURM's requeue expect), saying where it stopped.
"""

import logging
import signal
import sys

from plumbing import check_output_dir, parse_config, run_command

from .config import TrainConfig


def main(argv: list[str] | None = None) -> int:
    """`python -m pretrain key=value ...`; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    return run_command("pretrain", lambda: _train(argv))


def _train(argv: list[str] | None) -> int:
    cfg = parse_config(TrainConfig, argv, prog="pretrain")
    cfg.check()
    check_output_dir(cfg.output_dir)
    from .work import train  # the work imports torch: only after the config parsed

    results = train(cfg)
    where = f"at epoch {results['epoch']} step {results['step']}; resume with the same command"
    if results.get("stopped") == "SIGTERM":
        print(f"pretrain: stopped by SIGTERM {where}", file=sys.stderr)
        return 128 + signal.SIGTERM
    if results.get("stopped"):
        print(f"stopped at the time limit ({cfg.time_limit_min} min) {where}; exported backbone: {results['backbone']}")
        return 0
    print(f"done: epoch {results['epoch']}, exported backbone: {results['backbone']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
