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

import dataclasses
import errno
import importlib
import logging
import os
import shutil
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


def check_output_dir(output_dir: str | os.PathLike) -> None:
    """output_dir must be a folder or creatable, and writable: checked before any work starts."""
    if not str(output_dir):
        raise ConfigError("output_dir is empty: give output_dir=FOLDER")
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise ConfigError(
            f"output_dir={str(output_dir)!r} is an existing file, not a folder: choose another output_dir"
        )
    existing = path if path.exists() else next((p for p in path.parents if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"output_dir={str(output_dir)!r}: {existing} is not writable: choose another output_dir")


def check_common(cfg: Any, require_pretrained: bool = False) -> None:
    """The checks every command shares; then the schema's own `check()` when it has one."""
    if require_pretrained:
        if not cfg.pretrained:
            raise ConfigError("pretrained=PATH is required (an exported backbone or a training checkpoint)")
        if not Path(cfg.pretrained).is_file():
            raise ConfigError(f"checkpoint not found: pretrained={cfg.pretrained} (check the path; nothing was loaded)")
    from pretrain import check_precision, resolve_device

    names = {f.name for f in dataclasses.fields(cfg)}
    for key in sorted(n for n in names if n.startswith("batch_size") or n in ("epochs", "max_images")):
        value = getattr(cfg, key)
        low = 0 if key == "max_images" else 1
        if isinstance(value, int) and value < low:
            raise ConfigError(f"{key} must be >= {low}, got {value}")
    if "num_workers" in names and cfg.num_workers < 0:
        raise ConfigError(f"num_workers must be >= 0, got {cfg.num_workers}")
    if "precision" in names:
        check_precision(cfg.precision)
    if "device" in names:
        resolve_device(cfg.device)
    if "output_dir" in names:
        check_output_dir(cfg.output_dir)
    if callable(getattr(cfg, "check", None)):
        cfg.check()


def user_errors() -> tuple[type[BaseException], ...]:
    from pretrain import CheckpointError, DatasetError, DeviceError, ImageReadError, PrecisionError

    return ConfigError, DatasetError, CheckpointError, ImageReadError, FileNotFoundError, DeviceError, PrecisionError


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _disk_full(e: OSError) -> str:
    where = Path(e.filename or ".")
    probe = where if where.is_dir() else where.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free / 2**20
    where = e.filename or "a file"
    return f"disk full writing {where} ({free:.0f} MiB free there): free space or choose another output_dir"


def run_cli(schema: type, argv: list[str] | None, prog: str, body: Body, require_pretrained: bool = False) -> int:
    """Parse, check, run `body(cfg) -> results`, write config.yaml + results.json (rank 0). Returns the exit code."""
    from pretrain import is_main_process

    logging.basicConfig(level=logging.INFO if is_main_process() else logging.WARNING, format="%(message)s")
    try:
        cfg = parse_config(schema, argv, prog)
        check_common(cfg, require_pretrained)
    except ConfigError as e:
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    from pretrain import init_distributed, save_config, shutdown_distributed, write_results

    errors = user_errors()
    try:
        init_distributed(getattr(cfg, "device", "auto"))
        results = _resolve(body)(cfg)
        if is_main_process():  # nothing is written for a run that failed on bad input
            save_config(cfg, cfg.output_dir)
            path = write_results(results, cfg.output_dir)
            print(f"{prog}: results written to {path}")
    except errors as e:
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        print(f"{prog}: error: {_disk_full(e)}", file=sys.stderr)
        return 1
    finally:
        shutdown_distributed()
    return 0


def run_backbone_cli(schema: type, argv: list[str] | None, prog: str, run: Callable | str) -> int:
    """`run_cli` for evaluations of one backbone: loads `cfg.pretrained` (key `cfg.checkpoint_key`),
    calls `run(backbone, cfg)` and adds the backbone's info to the results."""

    def body(cfg: Any) -> dict:
        from pretrain import load_backbone

        backbone, info = load_backbone(cfg.pretrained, cfg.checkpoint_key)
        return {**_resolve(run)(backbone, cfg), "backbone": info}

    return run_cli(schema, argv, prog, body, require_pretrained=True)
