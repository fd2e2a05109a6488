"""The one writer of `results.json`: a run's numbers with what made them.

`write_results(results, output_dir, prog, cfg)` adds `provenance`: the command line that reproduces
the run (`python -m <prog>` and every key that differs from its default), when it finished, the
precision asked for and the one that ran, the device, and the versions of Python and the libraries
that move numbers. Evaluations add `backbone` (architecture, format, fingerprint) before calling it,
so a report reads what ran instead of guessing it from folder names.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shlex
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from .config import atomic_write_text, to_plain

LIBRARIES = ("ibot-suite", "torch", "torchvision", "numpy", "timm", "faiss-cpu", "scikit-learn")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str]:
    """Python and the installed libraries among LIBRARIES (name -> version)."""
    found = {name: _version(name) for name in LIBRARIES}
    return {"python": platform.python_version(), **{k: v for k, v in found.items() if v}}


def _changed_keys(cfg: Any, prefix: str = "") -> list[str]:
    """`key=value` for every field of the dataclass `cfg` that differs from its default; nested groups dotted."""
    args = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            args += _changed_keys(value, f"{prefix}{f.name}.")
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if value != default:
            plain = to_plain(value)
            text = json.dumps(plain) if isinstance(plain, list | dict) else str(plain)
            args.append(f"{prefix}{f.name}={text}")
    return args


def command_line(prog: str, cfg: Any) -> str:
    """`python -m prog key=value ...` with every key of `cfg` (a dataclass) that differs from its default."""
    launcher = "torchrun --nproc_per_node=N -m" if "WORLD_SIZE" in os.environ else "python -m"
    return " ".join([launcher, prog, *(shlex.quote(a) for a in _changed_keys(cfg))])


def provenance(prog: str, cfg: Any | None = None, precision: str | None = None, device: str | None = None) -> dict:
    """What made a run's numbers (see the module docstring)."""
    record: dict[str, Any] = {
        "command": command_line(prog, cfg) if cfg is not None else " ".join([prog, *sys.argv[1:]]),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": library_versions(),
        "host": platform.node(),
    }
    if cfg is not None and hasattr(cfg, "precision"):
        record["precision"] = {"requested": cfg.precision, "ran": precision or cfg.precision}
    if device is not None:
        record["device"] = device
    return record


def write_results(
    results: dict,
    output_dir: str | os.PathLike,
    prog: str | None = None,
    cfg: Any | None = None,
    precision: str | None = None,
    device: str | None = None,
) -> Path:
    """Write `results.json` (atomically) into `output_dir`; with `prog`, add the run's `provenance`."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if prog is not None:
        results = {**results, "provenance": provenance(prog, cfg, precision, device)}
    path = out / "results.json"
    atomic_write_text(path, json.dumps(to_plain(results), indent=2))
    return path
