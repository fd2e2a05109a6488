"""A run folder that can never mix two runs: a lock for the life of the run, and resumes that check
what they resume.

- `RunLock(output_dir)`: `output_dir/.lock` holds the pid and host of the run using the folder. A second
  run on the folder stops with one line; a lock left by a dead process (same host, pid gone) is taken
  over with a notice.
- `RunIdentity`: what a run was started from, written as `output_dir/run_identity.json`: fingerprints of
  the weights it starts from (backbone, head), the dataset's identity and the config keys that change
  the result. `check_resume` compares a new start against it: a different fingerprint or an
  incompatible key stops with one line naming what differs and the two ways on; keys listed as
  compatible (more epochs, say) are allowed and reported.
- `move_aside(output_dir)`: `resume=false` on a folder that holds a run moves the old files into
  `output_dir/previous-<time>/` rather than overwriting them.
- `remove_stale_temps(output_dir)`: temporary files of a write that was killed (`.name.*.tmp`).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import atomic_write
from .errors import RunFolderError

log = logging.getLogger(__name__)
LOCK_NAME = ".lock"
# Keys that never change a result, in any run: a resume may change them freely (and is told in the log).
BOOKKEEPING = frozenset({"output_dir", "resume", "epochs", "num_workers", "device", "progress", "log_every",
                         "time_limit_min"})  # fmt: skip
IDENTITY_NAME = "run_identity.json"


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

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                owner = self._read()
                if owner.get("pid") == me["pid"] and owner.get("host") == me["host"]:
                    self.held = False  # an outer RunLock of this process holds it
                    return
                stale = owner.get("host") == me["host"] and not _pid_alive(int(owner.get("pid", -1)))
                if not stale:
                    raise RunFolderError(
                        f"output_dir={self.path.parent} is in use by pid {owner.get('pid', '?')} on "
                        f"{owner.get('host', '?')} (since {owner.get('started', '?')}): wait for it to end, or "
                        f"choose another output_dir"
                    ) from None
                log.warning("taking over the stale lock of pid %s (no longer running) in %s", owner.get("pid"),
                            self.path.parent)  # fmt: skip
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return
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


def _enospc(e: BaseException | None) -> OSError | None:
    """The ENOSPC OSError in `e`'s chain (torch's zip writer wraps it in a RuntimeError), or None."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return e
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def disk_full_message(error: BaseException) -> str | None:
    """One line for a full disk (naming the path and the free space), None for other errors."""
    e = _enospc(error)
    if e is None:
        return None
    where = Path(e.filename or ".")
    probe = where if where.is_dir() else where.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free / 2**20
    name = e.filename or "a file"
    return f"disk full writing {name} ({free:.0f} MiB free there): free space or choose another output_dir"
