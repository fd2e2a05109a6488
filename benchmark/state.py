"""Where each task stands: `<task>/benchmark_state.json` (written atomically) and the plan `benchmark.json`.

Torch-free, so `python -m benchmark status` answers at once, also while jobs run. A task is
- done: its command exited 0 and wrote results.json, from the same identity (command and weights);
- failed: it exited otherwise (the reason is the command's `error:` line or the last line of its log);
- running / submitted: a process or a SLURM job holds it; a local process that is gone is "interrupted",
  and the next `python -m benchmark` call runs it again (it resumes from its run folder);
- skipped: it cannot run here (no data, no settings for the architecture, no head); only in the plan.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from plumbing import atomic_write_text

STATE = "benchmark_state.json"
PLAN = "benchmark.json"
LOG = "log.txt"
FINAL = ("done", "failed")


def identity(task_argv: list[str], weights: str, recipe_text: str = "") -> str:
    """What a task's result depends on: its command line (after the launcher), the recipe file's content and
    the weights' fingerprint. A finished task with the same identity is not run again."""
    blob = json.dumps({"argv": task_argv, "recipe": recipe_text, "weights": weights}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_state(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The task's state, or None when it has none (never started)."""
    path = Path(folder) / STATE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_state(folder: str | os.PathLike, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into the task's state and write it atomically; returns the new state."""
    state = {**(read_state(folder) or {}), **fields, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}
    Path(folder).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(folder) / STATE, json.dumps(state, indent=2, default=str) + "\n")
    return state


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def current_status(state: dict[str, Any] | None, folder: str | os.PathLike) -> str:
    """The status now: the recorded one, except a local process that is gone ("interrupted") and a done
    task whose results.json is missing ("interrupted": it runs again)."""
    if state is None:
        return "pending"
    status = state.get("status", "pending")
    if status == "running" and not state.get("job_id") and state.get("host") == socket.gethostname():
        if not _pid_alive(int(state.get("pid") or -1)):
            return "interrupted"
    if status == "done" and not (Path(folder) / "results.json").is_file():
        return "interrupted"
    return status


def write_plan(output_dir: str | os.PathLike, plan: dict[str, Any]) -> Path:
    """`benchmark.json`: the models and every task of the latest call (skipped ones with their reason)."""
    path = Path(output_dir) / PLAN
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(plan, indent=2, default=str) + "\n")
    return path


def read_plan(output_dir: str | os.PathLike) -> dict[str, Any]:
    return json.loads((Path(output_dir) / PLAN).read_text())


def rows(output_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """One row per task of the plan: model, task, status and its detail (reason, log, job, time)."""
    out = []
    for entry in read_plan(output_dir)["tasks"]:
        row = {"model": entry["model"], "task": entry["task"], "status": "skipped", "detail": entry.get("reason", "")}
        if entry.get("status") != "skipped":
            folder = Path(entry["folder"])
            state = read_state(folder)
            row["status"] = current_status(state, folder)
            row["detail"] = _detail(row["status"], state or {}, folder)
        out.append(row)
    return out


def _detail(status: str, state: dict[str, Any], folder: Path) -> str:
    log = str(folder / LOG)
    if status == "done":
        return f"{state.get('seconds', '?')} s, {state.get('precision') or 'precision as the command'}"
    if status == "failed":
        return f"{state.get('reason', '?')} (log: {log})"
    if status in ("running", "submitted"):
        job = f"job {state['job_id']}, " if state.get("job_id") else f"pid {state.get('pid')}, "
        return f"{job}since {state.get('started') or state.get('updated')} (log: {log})"
    if status == "interrupted":
        return f"stopped before it finished: the next call resumes it (log: {log})"
    return ""


def render(table_rows: list[dict[str, Any]]) -> str:
    """The table every call ends with (and `status` prints), then one count line."""
    several = len({r["model"] for r in table_rows}) > 1
    lines = []
    for r in table_rows:
        name = f"{r['model']}/{r['task']}" if several else r["task"]
        lines.append(f"  {name:<28} {r['status']:<12} {r['detail']}")
    counts: dict[str, int] = {}
    for r in table_rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return "\n".join([f"  {'task':<28} {'status':<12} detail", *lines, f"{len(table_rows)} tasks: {summary}"])
