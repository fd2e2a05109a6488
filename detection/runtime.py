"""Process set-up for the detection entry points: torchrun, devices, precision, the CLI shell.

The core has twins of the first three (not exported); see the report in the issue for moving them.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import torch

from pretrain import (
    CheckpointError,
    ConfigError,
    DatasetError,
    ImageReadError,
    get_rank,
    get_world_size,
    init_distributed,
    parse_config,
    resolve_device,
    save_config,
    shutdown_distributed,
    write_results,
)

USER_ERRORS = (ConfigError, DatasetError, CheckpointError, ImageReadError, FileNotFoundError)
PRECISIONS = ("auto", "fp32", "bf16")


def setup(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device). Joins the process group under torchrun (NCCL on CUDA, gloo on CPU)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, resolve_device(device_name)
    return init_distributed(device_name)


def rank_world() -> tuple[int, int]:
    return get_rank(), get_world_size()


def use_bf16(device: torch.device, precision: str) -> bool:
    """bf16 autocast of the backbone on CUDA (`auto` or `bf16`); fp32 otherwise. bf16 on CPU is refused."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if device.type != "cuda" and precision == "bf16":
        raise ConfigError("precision=bf16 needs a CUDA device (CPU runs in fp32)")
    return device.type == "cuda" and precision != "fp32"


def main_rank() -> bool:
    """True in the process that writes files (rank 0; the only process without torchrun)."""
    return int(os.environ.get("RANK", "0")) == 0


def run_entry(schema: type, argv: list[str] | None, prog: str, body: Callable[[Any], dict]) -> int:
    """Parse the config, run `body(cfg) -> results` on every rank; rank 0 writes config.yaml and
    results.json. Bad input prints one line `prog: error: ...` and returns 2."""
    logging.basicConfig(level=logging.INFO if main_rank() else logging.WARNING, format="%(message)s")
    try:
        cfg = parse_config(schema, argv, prog)
        if main_rank():
            save_config(cfg, cfg.output_dir)
        results = body(cfg)
    except USER_ERRORS as e:
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    finally:
        shutdown_distributed()
    if main_rank():
        path = write_results(results, cfg.output_dir)
        print(f"{prog}: results written to {path}")
    return 0
