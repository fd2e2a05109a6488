"""What `python -m benchmark` planned for a folder and where each task stands (`benchmark.json` and each task's
`benchmark_state.json`): the settings (the paper's or small ones), and every task that did not finish, with
its reason, so that a table with a missing number says why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .blocks import Block, Grid, Heading, Para


def _json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def task_states(run_dir: Path, plan: dict[str, Any]) -> list[dict[str, str]]:
    """Every planned task with its status and reason (the task's own state file wins over the plan's word)."""
    out = []
    for t in plan.get("tasks") or []:
        if not isinstance(t, dict):
            continue
        folder = Path(str(t.get("folder") or ""))
        folder = folder if folder.is_absolute() else run_dir / folder
        state = _json(folder / "benchmark_state.json") or {}
        finished = "done" if (folder / "results.json").is_file() else None  # a task run before the runner kept state
        out.append({"model": str(t.get("model") or ""), "task": str(t.get("task") or ""),
                    "status": str(state.get("status") or finished or t.get("status") or "planned"),
                    "reason": str(state.get("reason") or t.get("reason") or ""),
                    "log": str(state.get("log") or "")})  # fmt: skip
    return out


def benchmark_blocks(run_dir: Path) -> list[Block]:
    """The benchmark's settings and its unfinished tasks; nothing for a folder the benchmark did not write."""
    plan = _json(run_dir / "benchmark.json")
    if plan is None:
        return []
    tasks = task_states(run_dir, plan)
    done = sum(t["status"] == "done" for t in tasks)
    settings = plan.get("settings")
    words = "the paper's settings" if settings == "paper" else "small settings (not the paper's: the numbers only " \
            "show that every task runs)" if settings == "small" else f"settings {settings!r}"  # fmt: skip
    blocks: list[Block] = [Heading(2, "Benchmark plan (benchmark.json)")]
    blocks.append(Para(f"python -m benchmark ran at {words}, precision={plan.get('precision', '?')}, launcher="
                       f"{plan.get('launcher', '?')}: {done} of {len(tasks)} tasks done."))  # fmt: skip
    rest = [[t["model"], t["task"], t["status"], t["reason"] or "-", t["log"] or "-"] for t in tasks
            if t["status"] != "done"]  # fmt: skip
    if rest:
        blocks.append(Grid(["model", "task", "status", "reason", "log"], rest))
    return blocks
