"""`python -m pretrain [--config FILE.yaml] key=value ...` (also under `torchrun -m pretrain`)."""

import logging
import sys

from .checkpoint import CheckpointError
from .config import ConfigError, parse_config
from .data import DatasetError
from .loop import train
from .train_config import TrainConfig


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        cfg = parse_config(TrainConfig, argv, prog="pretrain")
        results = train(cfg)
    except (ConfigError, DatasetError, CheckpointError, FileNotFoundError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"done: epoch {results['epoch']}, exported backbone: {results['backbone']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
