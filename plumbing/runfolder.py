"""A run folder that can never mix two runs: a lock for the life of the run, and resumes that check
what they resume.

- `RunLock(output_dir)`: `output_dir/.lock` holds the pid and host of the run using the folder. A second
  run on the folder stops with one line; a lock left by a dead process (same host, pid gone), or an empty
  or unreadable one (the lock is written whole, so that is a write that failed), is taken over with a notice.
- `RunIdentity`: what a run was started from, written as `output_dir/run_identity.json`: fingerprints of
  the weights it starts from (backbone, head), the dataset's identity and the config keys that change
  the result. `check_resume` compares a new start against it: a different fingerprint or an
  incompatible key stops with one line naming what differs and the two ways on; keys listed as
  compatible (more epochs, say) are allowed and reported.
- `move_aside(output_dir)`: `resume=false` on a folder that holds a run moves the old files into
  `output_dir/previous-<time>/` rather than overwriting them.
- `remove_stale_temps(output_dir)`: temporary files of a write that was killed (`.name.*.tmp`).
- `check_folder_owner(output_dir, prog, keys)`: no command writes into another command's run (read from
  results.json's provenance, the recorded identity, or the files of an older pre-training run).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import _write_temp, atomic_write, enospc_error
from .errors import RunFolderError

log = logging.getLogger(__name__)
LOCK_NAME = ".lock"
# Keys that never change a result, in any run: a resume may change them freely (and is told in the log).
BOOKKEEPING = frozenset({"output_dir", "resume", "epochs", "num_workers", "device", "progress", "log_every",
                         "time_limit_min"})  # fmt: skip
IDENTITY_NAME = "run_identity.json"
# Runs written before results.json recorded its command, known by their files: command -> (files, what it is).
LEGACY_RUNS = {"pretrain": (("checkpoint.pth", "log.jsonl"), "pre-training run")}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


class RunLock:
    """Exclusive use of `output_dir` for the life of a run (a context manager; re-entrant per process)."""

    def __init__(self, output_dir: str | os.PathLike):
        self.path = Path(output_dir) / LOCK_NAME
        self.held = False

    def owner(self) -> dict:
        """The lock's record ({"pid", "host", "started"}); {} when there is none or it is unreadable."""
        try:
            owner = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return owner if isinstance(owner, dict) and isinstance(owner.get("pid"), int) else {}

    def _create(self, me: dict) -> bool:
        """Write the lock holding `me` atomically (a complete temporary file hard-linked to the lock's name,
        which fails if a lock exists): a reader never sees an empty lock, and a full disk leaves none.
        False if a lock exists."""
        tmp = _write_temp(self.path, lambda f: f.write(json.dumps(me).encode()), sync=False)
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            return False
        except FileNotFoundError:  # another run's remove_stale_temps took the temporary file: try again
            return False if self.path.exists() else self._create(me)
        except OSError:  # a file system without hard links: exclusive create (not atomic)
            return self._create_exclusive(me)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return True

    def _create_exclusive(self, me: dict) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            return False
        try:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(me))
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise
        return True

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            if self._create(me):
                self.held = True
                return
            owner = self.owner()
            if owner.get("pid") == me["pid"] and owner.get("host") == me["host"]:
                self.held = False  # an outer RunLock of this process holds it
                return
            if not owner:  # locks are written whole: an empty one is a write that failed (a full disk)
                log.warning("taking over the empty or unreadable lock %s (left by a run whose lock write failed)",
                            self.path)  # fmt: skip
            elif owner.get("host") == me["host"] and not _pid_alive(int(owner.get("pid", -1))):
                log.warning("taking over the stale lock of pid %s (no longer running) in %s", owner.get("pid"),
                            self.path.parent)  # fmt: skip
            else:
                raise RunFolderError(
                    f"output_dir={self.path.parent} is in use by pid {owner.get('pid', '?')} on "
                    f"{owner.get('host', '?')} (since {owner.get('started', '?')}): wait for it to end, or "
                    f"choose another output_dir"
                )
            self.path.unlink(missing_ok=True)
        raise RunFolderError(f"could not lock {self.path.parent}: another run took it at the same time")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


@dataclass
class RunIdentity:
    """What a run is started from. `config` holds only keys that change the result."""

    weights: dict[str, str] = field(default_factory=dict)  # name -> weights fingerprint (backbone, head)
    dataset: str = ""  # a digest or description of the data (paths and sizes)
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"weights": dict(self.weights), "dataset": self.dataset, "config": dict(self.config)}


def write_identity(output_dir: str | os.PathLike, identity: RunIdentity) -> None:
    text = json.dumps(identity.to_dict(), indent=2, default=str) + "\n"
    atomic_write(Path(output_dir) / IDENTITY_NAME, lambda f: f.write(text.encode()))


def read_identity(output_dir: str | os.PathLike) -> dict | None:
    path = Path(output_dir) / IDENTITY_NAME
    return json.loads(path.read_text()) if path.is_file() else None


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def check_resume(
    output_dir: str | os.PathLike, identity: RunIdentity, compatible: Iterable[str] = (), what: str = "run"
) -> list[str]:
    """Stop (RunFolderError) if `output_dir` holds a run started from something else; return the
    compatible keys that changed (the caller logs them). A folder without a recorded identity passes."""
    old = read_identity(output_dir)
    if old is None:
        return []
    new = _plain(identity.to_dict())
    differ = [f"{name} weights" for name in sorted(set(old["weights"]) | set(new["weights"]))
              if old["weights"].get(name) != new["weights"].get(name)]  # fmt: skip
    if old.get("dataset") != new["dataset"]:
        differ.append("dataset")
    allowed = set(compatible)
    changed = []
    for key in sorted(set(old["config"]) | set(new["config"])):
        if old["config"].get(key) != new["config"].get(key):
            (changed if key in allowed else differ).append(key)
    if differ:
        raise RunFolderError(
            f"output_dir={output_dir} holds a different {what}: started from another {', '.join(differ)} "
            f"({_detail(old, new, differ)}): choose a new output_dir, or give resume=false to start afresh "
            f"(the old run is moved aside, not overwritten)"
        )
    return [f"{k}: {old['config'].get(k)!r} -> {new['config'].get(k)!r}" for k in changed]


def _detail(old: dict, new: dict, differ: list[str]) -> str:
    first = differ[0]
    if first.endswith(" weights"):
        name = first[: -len(" weights")]
        return (
            f"{name} fingerprint {str(old['weights'].get(name))[:12]} there, {str(new['weights'].get(name))[:12]} now"
        )
    if first == "dataset":
        return f"dataset {old.get('dataset')!r} there, {new['dataset']!r} now"
    return f"{first}={old['config'].get(first)!r} there, {new['config'].get(first)!r} now"


def move_aside(output_dir: str | os.PathLike) -> Path | None:
    """Move every entry of `output_dir` but the lock and earlier `previous-*` folders into
    `output_dir/previous-<time>/`; returns that folder (None if there was nothing to move)."""
    out = Path(output_dir)
    if not out.is_dir():
        return None
    entries = [p for p in out.iterdir() if p.name != LOCK_NAME and not p.name.startswith("previous-")]
    if not entries:
        return None
    dest = out / time.strftime("previous-%Y%m%d-%H%M%S")
    n = 1
    while dest.exists():
        dest, n = out / f"{dest.name.split('.')[0]}.{n}", n + 1
    dest.mkdir()
    for p in entries:
        shutil.move(str(p), dest / p.name)
    log.warning("resume=false: the earlier run in %s was moved to %s", out, dest)
    return dest


def open_run_folder(
    output_dir: str | os.PathLike,
    identity: RunIdentity,
    resume: bool,
    earlier_run: bool,
    compatible: Iterable[str] = (),
    what: str = "run",
) -> list[str]:
    """The gate every resumable run passes before it reads or writes anything in `output_dir` (rank 0):
    leftover temporary files go; if the folder holds an earlier run (`earlier_run`, or a recorded
    identity), `resume=true` checks it against `identity` (RunFolderError on a difference; the compatible
    changes are logged and returned) and `resume=false` moves it aside; then `identity` is recorded."""
    remove_stale_temps(output_dir)
    changes: list[str] = []
    if earlier_run or read_identity(output_dir) is not None:
        if resume:
            changes = check_resume(output_dir, identity, BOOKKEEPING | set(compatible), what=what)
            for change in changes:
                log.warning("resuming with a changed setting: %s", change)
        else:
            move_aside(output_dir)
    write_identity(output_dir, identity)
    return changes


def folder_command(output_dir: str | os.PathLike) -> str | None:
    """The command whose results `output_dir/results.json` holds, as its provenance records it
    (`python -m eval_knn ...` -> "eval_knn"); None without a readable provenance."""
    try:
        command = json.loads((Path(output_dir) / "results.json").read_text())["provenance"]["command"]
        words = shlex.split(command)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if "-m" in words[:-1]:
        return words[words.index("-m") + 1]
    return words[0] if words else None


def check_folder_owner(output_dir: str | os.PathLike, prog: str, keys: Iterable[str]) -> None:
    """RunFolderError unless `output_dir` is new or holds a run of `prog` itself (whose config has `keys`):
    no command writes into another command's run. Read, in order: results.json's provenance; a recorded
    run identity with config keys that `prog` does not have (keys added since are allowed); the files of
    a run from before either (LEGACY_RUNS)."""
    out = Path(output_dir)
    if not out.is_dir():
        return
    refuse = f"{prog} never writes into another command's run: choose another output_dir"
    owner = folder_command(out)
    if owner is not None:
        if owner != prog:
            raise RunFolderError(f"output_dir={out} holds a run of another command ({owner}, as its results.json "
                                 f"records): {refuse}")  # fmt: skip
        return
    try:
        identity = read_identity(out)
    except ValueError:  # an unreadable identity: resumes refuse it; here it says nothing
        identity = None
    if identity is not None:
        unknown = sorted(set(identity.get("config", {})) - set(keys))  # keys a newer version added are fine
        if unknown:
            raise RunFolderError(f"output_dir={out} holds another command's run (or an older version's: its "
                                 f"{IDENTITY_NAME} records settings {prog} does not have: {', '.join(unknown[:4])}"
                                 f"{', ...' if len(unknown) > 4 else ''}): {refuse}")  # fmt: skip
        return
    for command, (files, what) in LEGACY_RUNS.items():
        if command != prog and all((out / name).is_file() for name in files):
            raise RunFolderError(f"output_dir={out} holds a {what} ({' and '.join(files)}): {refuse}")


def remove_stale_temps(output_dir: str | os.PathLike) -> list[Path]:
    """Delete `.<name>.*.tmp` files left by a write that was killed; returns what was removed."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    stale = [p for p in out.glob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    if stale:
        log.warning("removed %d leftover temporary file(s) of an interrupted write in %s", len(stale), out)
    return stale


def _final_name(filename: str) -> Path:
    """A temporary file's name `.NAME.<random>.tmp` (atomic_write) -> the file it was to become."""
    path = Path(filename)
    m = re.fullmatch(r"\.(.+)\.[^.]+\.tmp", path.name)
    return path.with_name(m.group(1)) if m else path


def disk_full_message(error: BaseException) -> str | None:
    """One line for a full disk (naming the file and the free space of its disk), None for other errors."""
    e = enospc_error(error)
    if e is None:
        return None
    if not e.filename:
        return "disk full (no space left on device): free space or choose another output_dir"
    where = _final_name(str(e.filename))
    probe = where if where.is_dir() else where.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free / 2**20
    return f"disk full writing {where} ({free:.0f} MiB free there): free space or choose another output_dir"
