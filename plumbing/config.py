"""Typed configs for every entry point: dataclass defaults, YAML with differences, dotted overrides.

`python -m <module> [--config FILE.yaml] key=value ...` -> `parse_config(Schema, argv)`. Unknown keys
(in the YAML or on the command line) are errors that name the closest known key; values of the wrong
type are errors too. `--help` lists every key with its default and the comment written beside the
field in the dataclass (this module imports no torch, so help answers at once).
"""

from __future__ import annotations

import dataclasses
import difflib
import errno
import inspect
import io
import math
import os
import re
import sys
import tempfile
import tokenize
import typing
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError

T = TypeVar("T")


def _field_types(schema: type) -> dict[str, Any]:
    """Field name -> type, resolved also when the module uses `from __future__ import annotations`."""
    try:
        return typing.get_type_hints(schema)
    except Exception:  # an unresolvable annotation: fall back to what the dataclass holds
        return {f.name: f.type for f in dataclasses.fields(schema)}


def _nested(schema: type) -> dict[str, type]:
    """Fields whose type is itself a dataclass (a nested spec), by name."""
    types = _field_types(schema)
    return {n: t for n, t in types.items() if isinstance(t, type) and dataclasses.is_dataclass(t)}


def _keys(schema: type, prefix: str = "") -> list[str]:
    """Every dotted key of `schema` (nested dataclasses included)."""
    out = []
    nested = _nested(schema)
    for f in dataclasses.fields(schema):
        out.append(prefix + f.name)
        if f.name in nested:
            out += _keys(nested[f.name], prefix + f.name + ".")
    return out


def _unknown_key_message(schema: type, err: str, where: str) -> str | None:
    m = re.search(r"Key '([^']+)' not in '(\w+)'", err)
    if not m:
        return None
    key = m.group(1)
    valid = [f.name for f in dataclasses.fields(schema)]
    owner = next((name for name, t in _nested(schema).items() if t.__name__ == m.group(2)), None)
    if owner is not None:  # a key inside a nested spec: suggest among that spec's keys
        valid = [f"{owner}.{f.name}" for f in dataclasses.fields(_nested(schema)[owner])]
        key = f"{owner}.{key}"
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5) or difflib.get_close_matches(
        key, _keys(schema), n=1, cutoff=0.6
    )
    hint = (f"did you mean {close[0]}? " if close else "") + f"Valid keys: {', '.join(valid)}"
    return f"unknown key {key!r} ({where}); {hint}"


def _load_yaml(path: str) -> Any:
    """The mapping in the YAML file `path`; ConfigError naming the file (and the line of a YAML error)."""
    if not Path(path).is_file():
        raise ConfigError(f"config file not found: {path!r}")
    try:
        layer = OmegaConf.load(path)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path} is not valid YAML{where}: {problem}") from None
    except (OmegaConfBaseException, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{path} cannot be read as a config: {str(e).splitlines()[0]}") from None
    if not isinstance(layer, DictConfig):
        raise ConfigError(f"{path} must hold `key: value` lines (a mapping), not a list")
    return layer


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
        layers.append((path, _load_yaml(path)))
    bad = [a for a in argv if "=" not in a or a.startswith("-")]
    if bad:
        raise ConfigError(f"arguments must be key=value (or --config FILE first); got {bad}")
    layers.append(("command line", OmegaConf.from_dotlist(argv)))
    for where, layer in layers:
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as e:
            first = str(e).splitlines()[0]
            key = re.search(r"full_key: (\S+)", str(e))
            what = f"bad value for {key.group(1)}" if key and key.group(1) else "bad config"
            raise ConfigError(_unknown_key_message(schema, first, where) or f"{what} ({where}): {first}") from None
    return OmegaConf.to_object(merged)


@cache
def _comments(cls: type) -> dict[str, str]:
    """`name: type = default  # meaning` -> {name: meaning}, read from the class's own source."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    name = None
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME and tok.start[1] == 4 and name is None:
            name = tok.string
        elif tok.type == tokenize.COMMENT and name and tok.start[1] > 4:
            out.setdefault(name, tok.string.lstrip("# ").strip())
        if tok.type in (tokenize.NEWLINE, tokenize.NL):
            name = None
    return out


def field_help(schema: type) -> dict[str, str]:
    """One-line meaning of each field of `schema`: its comment, from the class that defines it last."""
    meanings: dict[str, str] = {}
    for cls in reversed(schema.__mro__):
        if dataclasses.is_dataclass(cls):
            meanings.update(_comments(cls))
    return meanings


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


def config_help(schema: type, prog: str | None = None) -> str:
    """Usage, the schema's docstring and every key with its default and meaning."""
    doc = (schema.__doc__ or "").strip().splitlines()
    lines = [f"usage: python -m {prog or '<module>'} [--config FILE.yaml] key=value ...", ""]
    if doc and not doc[0].startswith(schema.__name__ + "("):
        lines += [doc[0], ""]
    lines.append("keys (default): meaning")
    meanings = field_help(schema)
    for f in dataclasses.fields(schema):
        meaning = meanings.get(f.name, "")
        lines.append(f"  {f.name} = {_default(f)!r}" + (f"  # {meaning}" if meaning else ""))
        if f.name in _nested(schema):
            spec = _nested(schema)[f.name]
            sub = field_help(spec)
            for g in dataclasses.fields(spec):
                m = sub.get(g.name, "")
                lines.append(f"    {f.name}.{g.name} = {_default(g)!r}" + (f"  # {m}" if m else ""))
    return "\n".join(lines)


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


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _bounds(ge: float | None, gt: float | None, le: float | None, lt: float | None) -> str:
    """ ">= 1", "> 0", "in [0, 1]", "in (0, 1)", ... for a message."""
    low = (ge, "[", ">=") if ge is not None else (gt, "(", ">") if gt is not None else None
    high = (le, "]", "<=") if le is not None else (lt, ")", "<") if lt is not None else None
    if low and high:
        return f"in {low[1]}{_number(low[0])}, {_number(high[0])}{high[1]}"
    side = low or high
    return f"{side[2]} {_number(side[0])}" if side else ""


def _in_range(v: float, ge: float | None, gt: float | None, le: float | None, lt: float | None) -> bool:
    return not ((ge is not None and v < ge) or (gt is not None and v <= gt) or (le is not None and v > le)
                or (lt is not None and v >= lt))  # fmt: skip


def check_range(
    cfg: Any,
    keys: str | typing.Iterable[str],
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    finite: bool = True,
) -> None:
    """ConfigError unless each of `keys` of `cfg` is a number (or a list of numbers) within the bounds:
    `ge` (>=), `gt` (>), `le` (<=), `lt` (<), finite unless `finite=False` (NaN is always refused).
    A key whose value is None (an optional key left unset) passes. For every command's `check()`:
    `check_range(self, "lr", gt=0)`, `check_range(self, ("short_side", "topk"), ge=1)`,
    `check_range(self, "pred_ratio", ge=0, le=1)`."""
    bounds = _bounds(ge, gt, le, lt)
    for key in (keys,) if isinstance(keys, str) else keys:
        value = getattr(cfg, key)
        if value is None:
            continue
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        each = "each " if isinstance(value, (list, tuple)) else ""
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ConfigError(f"{key} must {each}be a number, got {value!r}")
        if any(math.isnan(v) or (finite and math.isinf(v)) for v in values):
            raise ConfigError(f"{key} must {each}be a finite number{' ' * bool(bounds)}{bounds}, got {value}")
        if not all(_in_range(v, ge, gt, le, lt) for v in values):
            raise ConfigError(f"{key} must {each}be {bounds}, got {value}")


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


def _umask() -> int:
    """The process umask, read without changing it where Linux shows it (os.umask only sets)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but only where /proc is missing)
    os.umask(mask)
    return mask


def _umask_mode(fd: int) -> None:
    """Give a `mkstemp` file (mode 0600) the mode `open()` would have: 0666 & ~umask (0644 under 022)."""
    os.fchmod(fd, 0o666 & ~_umask())


def enospc_error(e: BaseException | None) -> OSError | None:
    """The ENOSPC OSError in `e`'s chain (torch's zip writer may wrap it in a RuntimeError), or None."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return e
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def _name_full_disk(e: BaseException, path: Path) -> None:
    """Re-raise a full disk in `e`'s chain as an ENOSPC OSError naming `path` (a failed write() names no
    file, or names the temporary one); return for any other error."""
    full = enospc_error(e)
    if full is not None and full.filename != str(path):
        raise OSError(errno.ENOSPC, full.strerror or "No space left on device", str(path)) from e


def _write_temp(path: Path, write: Callable[[BinaryIO], Any], sync: bool = True) -> str:
    """`write(file)` into a new temporary file `.NAME.<random>.tmp` beside `path`, with the mode `open()`
    would give it (0666 & ~umask, not mkstemp's 0600), fsynced unless `sync=False`; returns its name. On a
    failure the temporary file is removed, and a full disk raises an ENOSPC OSError naming `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            _umask_mode(f.fileno())
            write(f)
            f.flush()
            if sync:
                os.fsync(f.fileno())
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        _name_full_disk(e, path)
        raise
    return tmp


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> None:
    """`write(file)` into a temporary file in the same folder, then rename: a crash never leaves half a
    file. The file gets the mode `open()` would give it (0666 & ~umask), not mkstemp's 0600. A full disk
    raises an ENOSPC OSError naming `path` (never the temporary name)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temp(path, write)
    try:
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        _name_full_disk(e, path)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) atomically: a reader never sees half a file."""
    atomic_write(path, lambda f: f.write(text.encode()))


def save_config(cfg: Any, output_dir: str | os.PathLike) -> Path:
    """Write the resolved config as `config.yaml` into `output_dir`."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "config.yaml"
    atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.create(to_plain(cfg))))
    return path
