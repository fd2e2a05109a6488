"""Typed configs for every entry point: dataclass defaults, YAML with differences, dotted overrides.

`python -m <module> [--config FILE.yaml] key=value ...` -> `parse_config(Schema, argv)`. Unknown keys
(in the YAML or on the command line) and values of the wrong type are errors that list what is valid.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad configuration: unknown key, wrong type, missing file."""


def _valid_keys(schema: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(schema))


def parse_config(schema: type[T], argv: list[str] | None = None, prog: str | None = None) -> T:
    """Build a `schema` instance from `--config FILE.yaml` and `key=value` arguments."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(config_help(schema, prog))
        raise SystemExit(0)
    merged = OmegaConf.structured(schema)  # struct mode: unknown keys raise
    layers = []
    while argv and argv[0] == "--config" or argv and argv[0].startswith("--config="):
        flag = argv.pop(0)
        path = flag.split("=", 1)[1] if "=" in flag else (argv.pop(0) if argv else "")
        if not Path(path).is_file():
            raise ConfigError(f"config file not found: {path!r}")
        layers.append((path, OmegaConf.load(path)))
    bad = [a for a in argv if "=" not in a or a.startswith("-")]
    if bad:
        raise ConfigError(f"arguments must be key=value (or --config FILE first); got {bad}")
    layers.append(("command line", OmegaConf.from_dotlist(argv)))
    for where, layer in layers:
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as e:
            raise ConfigError(
                f"bad config ({where}): {str(e).splitlines()[0]}. Valid keys: {_valid_keys(schema)}"
            ) from None
    return OmegaConf.to_object(merged)


def config_help(schema: type, prog: str | None = None) -> str:
    lines = [
        f"usage: python -m {prog or '<module>'} [--config FILE.yaml] key=value ...",
        "",
        "keys (default):",
    ]
    for f in dataclasses.fields(schema):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        lines.append(f"  {f.name} = {default!r}")
    return "\n".join(lines)


def to_plain(obj: Any) -> Any:
    """Dataclasses, paths and tuples -> JSON/YAML-friendly plain types."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _atomic_write_text(path: Path, text: str) -> None:
    """Temporary file with a unique name, then rename: concurrent writers never share a temp file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def save_config(cfg: Any, output_dir: str | os.PathLike) -> Path:
    """Write the resolved config as `config.yaml` into `output_dir`."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "config.yaml"
    _atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.create(to_plain(cfg))))
    return path


def write_results(results: dict, output_dir: str | os.PathLike) -> Path:
    """Write `results.json` (atomically) into `output_dir`."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    _atomic_write_text(path, json.dumps(to_plain(results), indent=2))
    return path
