"""`python -m pretrain [--config FILE.yaml] key=value ...` (also under `torchrun -m pretrain`).

The config is parsed and checked before torch is imported (`--help` is instant); bad input is one line
and exit 2 before any work; a full disk is one line naming the path and the free space (exit 1).
"""

import logging
import sys

from plumbing import ConfigError, check_output_dir, parse_config

from .train_config import TrainConfig


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        cfg = parse_config(TrainConfig, argv, prog="pretrain")
        check_output_dir(cfg.output_dir)
    except ConfigError as e:
        print(f"pretrain: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    from plumbing import CheckpointError, DatasetError, DeviceError, PrecisionError, RunFolderError, disk_full_message

    from . import train

    try:
        results = train(cfg)
    except (ConfigError, DatasetError, CheckpointError, FileNotFoundError, FloatingPointError, DeviceError,
            PrecisionError, RunFolderError) as e:  # fmt: skip
        print(f"pretrain: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as e:  # a full disk: torch.save raises a RuntimeError around it
        if disk_full_message(e) is None:
            raise
        print(f"pretrain: error: {disk_full_message(e)}", file=sys.stderr)
        return 1
    print(f"done: epoch {results['epoch']}, exported backbone: {results['backbone']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
