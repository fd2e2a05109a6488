"""The one CLI shell of every evaluation and analysis command.

`run_cli(Schema, argv, prog, body)`: parse the config (`--help` prints every key without importing
torch), check the common keys before any work (output_dir usable, sizes in range, device and
precision known, the backbone file present), join torchrun's process group, run `body(cfg)`, and
write `config.yaml` and `results.json` on rank 0. A user error (bad config, dataset, checkpoint,
device) prints one line `prog: error: ...` and exits 2; nothing is written for a run that failed on
bad input. A full disk prints one line naming the path and the free space (exit 1).

`body` may be a callable or "module:function": the module is imported only after the config parsed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pretrain import ConfigError, parse_config

Body = Callable[[Any], dict] | str


def _resolve(fn: Callable | str) -> Callable:
    if callable(fn):
        return fn
    module, _, name = fn.partition(":")
    return getattr(importlib.import_module(module), name)


def check_common(cfg: Any, require_pretrained: bool = False) -> None:
    """The checks every command shares; then the schema's own `check()` when it has one."""
    from pretrain import check_output_dir, check_precision, resolve_device

    names = {f.name for f in dataclasses.fields(cfg)}
    for key in sorted(n for n in names if n.startswith("batch_size") or n in ("epochs", "max_images")):
        value = getattr(cfg, key)
        low = 0 if key == "max_images" else 1
        if isinstance(value, int) and value < low:
            raise ConfigError(f"{key} must be >= {low}, got {value}")
    if "num_workers" in names and cfg.num_workers < 0:
        raise ConfigError(f"num_workers must be >= 0, got {cfg.num_workers}")
    try:  # their own error types (the core raises them elsewhere too) become config errors here
        if "precision" in names:
            check_precision(cfg.precision)
        if "device" in names:
            resolve_device(cfg.device)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if "output_dir" in names:
        check_output_dir(cfg.output_dir)
    if require_pretrained:
        if not cfg.pretrained:
            raise ConfigError("pretrained=PATH is required (an exported backbone or a training checkpoint)")
        if not Path(cfg.pretrained).is_file():
            raise ConfigError(f"checkpoint not found: pretrained={cfg.pretrained} (check the path; nothing was loaded)")
    if callable(getattr(cfg, "check", None)):
        cfg.check()


def user_errors() -> tuple[type[BaseException], ...]:
    from pretrain import CheckpointError, DatasetError, DeviceError, ImageReadError, PrecisionError, RunFolderError

    return (ConfigError, DatasetError, CheckpointError, ImageReadError, FileNotFoundError, DeviceError, PrecisionError,
            RunFolderError)  # fmt: skip


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def run_cli(schema: type, argv: list[str] | None, prog: str, body: Body, require_pretrained: bool = False) -> int:
    """Parse, check, run `body(cfg) -> results`, write config.yaml + results.json (rank 0). Returns the exit code."""
    main_rank = os.environ.get("RANK", "0") == "0"  # torchrun's rank, known before torch is imported
    logging.basicConfig(level=logging.INFO if main_rank else logging.WARNING, format="%(message)s")
    try:
        cfg = parse_config(schema, argv, prog)
        check_common(cfg, require_pretrained)
    except ConfigError as e:
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    from pretrain import (
        RunLock,
        disk_full_message,
        init_distributed,
        is_main_process,
        save_config,
        shutdown_distributed,
        write_results,
    )

    errors = user_errors()
    out = Path(cfg.output_dir)
    created = [p for p in (out, *out.parents) if not p.exists()]  # folders this run may create
    lock = RunLock(out) if is_main_process() else contextlib.nullcontext()
    try:
        with lock:  # one run per output_dir for the life of the run (rank 0 holds it)
            init_distributed(getattr(cfg, "device", "auto"))
            results = _resolve(body)(cfg)
            if is_main_process():  # nothing is written for a run that failed on bad input
                save_config(cfg, cfg.output_dir)
                path = write_results(results, cfg.output_dir)
                print(f"{prog}: results written to {path}")
    except errors as e:
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as e:  # a full disk: torch.save raises a RuntimeError around it
        line = disk_full_message(e)
        if line is None:
            raise
        print(f"{prog}: error: {line}", file=sys.stderr)
        return 1
    finally:
        shutdown_distributed()
        for folder in created:  # a run that failed before writing anything leaves no empty folders behind
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
    return 0


def run_backbone_cli(schema: type, argv: list[str] | None, prog: str, run: Callable | str) -> int:
    """`run_cli` for evaluations of one backbone: loads `cfg.pretrained` (key `cfg.checkpoint_key`),
    calls `run(backbone, cfg)` and adds the backbone's info to the results."""

    def body(cfg: Any) -> dict:
        from pretrain import load_backbone

        backbone, info = load_backbone(cfg.pretrained, cfg.checkpoint_key)
        return {**_resolve(run)(backbone, cfg), "backbone": info}

    return run_cli(schema, argv, prog, body, require_pretrained=True)
