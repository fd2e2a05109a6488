"""The plan of one call: every (model, task) with its command line, what happens to it, and its estimate.

Torch-free: the models come in as plain dicts (name, folder, pretrained, arch_key, fingerprint, has_head).
What happens to a task: `run`; `done` (finished before with the same identity); `failed` (failed before
with the same identity: kept unless retry_failed=true); `running` (a live process or job holds it);
`skipped` (the reason: no data, no settings for the architecture, no head, a task it needs cannot run).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import BenchmarkConfig, closest
from .state import PLAN, current_status, identity, read_state
from .table import Table, Task, resolve_task, world_layout


@dataclass
class Planned:
    """One task of one model in this call."""

    task: Task
    action: str  # run | done | failed | running | skipped
    identity: str = ""
    reason: str = ""
    estimate: str = "unmeasured"

    @property
    def key(self) -> tuple[str, str]:
        return self.task.model, self.task.name


def selected(table: Table, cfg: BenchmarkConfig) -> list[str]:
    """The task names asked for (tasks=, minus skip=), in the table's order; unknown names are errors."""
    names = list(table.tasks)
    for name in [*cfg.tasks, *cfg.skip]:
        if name not in table.tasks:
            raise closest(name, names, "task")
    chosen = [n for n in names if (not cfg.tasks or n in cfg.tasks) and n not in cfg.skip]
    return chosen


def model_names(paths: list[str]) -> list[str]:
    """A folder name per checkpoint: its stem; equal stems get their parent folder's name in front, then -2, -3."""
    stems = [Path(p).stem for p in paths]
    names = [f"{Path(p).parent.name}_{s}" if stems.count(s) > 1 else s for p, s in zip(paths, stems, strict=True)]
    out: list[str] = []
    for name in names:
        unique, n = name, 2
        while unique in out:
            unique, n = f"{name}-{n}", n + 1
        out.append(unique)
    return out


def make_plan(table: Table, cfg: BenchmarkConfig, models: list[dict[str, Any]], times: dict) -> list[Planned]:
    """Every selected task for every model, with its action (see the module docstring)."""
    chosen = selected(table, cfg)
    plan: list[Planned] = []
    for model in models:
        resolved = {name: resolve_task(spec, table, cfg, model) for name, spec in table.tasks.items()}
        actions = {name: _action(task, cfg, model) for name, task in resolved.items()}
        for name in chosen:
            item = actions[name]
            if item.action not in ("skipped", "done"):
                _needs(item, actions, chosen)
            item.estimate = estimate(times, name, model["arch_key"], cfg.small)
            plan.append(item)
    return plan


def _action(task: Task, cfg: BenchmarkConfig, model: dict[str, Any]) -> Planned:
    if task.skipped:
        return Planned(task, "skipped", reason=task.skipped)
    recipe = Path(task.recipe).read_text() if task.recipe else ""
    ident = identity(task.module_args() + [f"gpus={task.gpus}"], model["fingerprint"], recipe)
    state = read_state(task.folder)
    status = current_status(state, task.folder)
    same = state is not None and state.get("identity") == ident
    if status == "done" and same:
        return Planned(task, "done", ident, "finished before")
    if status == "failed" and same and not cfg.retry_failed:
        return Planned(task, "failed", ident, state.get("reason", ""))
    if status in ("running", "submitted"):
        return Planned(task, "running", ident, "held by another run: see python -m benchmark status")
    return Planned(task, "run", ident)


def _needs(item: Planned, actions: dict[str, Planned], chosen: list[str]) -> None:
    """A task that reads another task's run folder runs only if that one is done or runs first."""
    for need in item.task.needs:
        other = actions[need]
        if other.action == "done":
            continue
        if need not in chosen:
            item.action, item.reason = "skipped", f"needs {need}, which is not done: add it to tasks="
        elif other.action in ("skipped", "failed"):
            item.action, item.reason = "skipped", f"needs {need}, which is {other.action} ({other.reason})"


def load_times(path: Path) -> dict:
    """The measured task times (bench/throughput.json), {} when there are none."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def estimate(times: dict, task: str, arch_key: str, small: bool) -> str:
    """GPU-hours (seconds x processes of a measured run of the same task, settings and architecture; wall
    hours for a CPU measurement) with the machine and date; "unmeasured" where there is none."""
    settings = "small" if small else "paper"
    for m in times.get("measurements", []):
        if (m.get("task"), m.get("settings"), m.get("arch")) == (task, settings, arch_key):
            where = f"({m.get('machine', '?')}, {m.get('date', '?')})"
            if m.get("device", "cuda") == "cpu":
                return f"{m['seconds'] / 3600:.2g} CPU-h {where}"
            return f"{m['seconds'] * max(int(m.get('processes', 1)), 1) / 3600:.2g} GPU-h {where}"
    return "unmeasured"


def plan_record(cfg: BenchmarkConfig, models: list[dict[str, Any]], plan: list[Planned]) -> dict[str, Any]:
    """What benchmark.json holds (the report and `status` read it)."""
    return {
        "models": {
            m["name"]: {k: m.get(k) for k in ("pretrained", "arch", "patch_size", "arch_key", "folder", "fingerprint")}
            for m in models
        },  # fmt: skip
        "settings": "small" if cfg.small else "paper",
        "precision": cfg.precision,
        "launcher": cfg.launcher,
        "layout": "demo_world" if world_layout(cfg) else "standard",
        "tasks": [
            {
                "model": p.task.model,
                "task": p.task.name,
                "module": p.task.module,
                "folder": str(p.task.folder),
                "status": "skipped" if p.action == "skipped" else "planned",
                "reason": p.reason,
                "command": p.task.command_line(),
                "gpus": p.task.gpus,
                "estimate": p.estimate,
            }
            for p in plan
        ],  # fmt: skip
    }


def render_plan(cfg: BenchmarkConfig, models: list[dict[str, Any]], plan: list[Planned]) -> str:
    """The plan as printed before anything runs: per task its action, GPUs, estimate and full command line."""
    settings = "small settings (not the paper's)" if cfg.small else "the paper's settings"
    lines = [f"benchmark plan: {len(models)} model(s) at {settings}, precision={cfg.precision}, "
             f"launcher={cfg.launcher}, output_dir={cfg.output_dir} (state: {PLAN})"]  # fmt: skip
    for model in models:
        lines.append(f"\nmodel {model['name']}: {model['pretrained']} ({model['arch_key']}, "
                     f"{cfg.checkpoint_key}, weights {model['fingerprint'][:12]})")  # fmt: skip
        for p in (p for p in plan if p.task.model == model["name"]):
            if p.action == "skipped":
                lines.append(f"  {p.task.name:<20} skipped: {p.reason}")
                continue
            what = {"run": "to run", "done": "done (finished before)", "failed": "failed before (retry_failed=true "
                    "runs it again)", "running": "running elsewhere"}[p.action]  # fmt: skip
            paper = f" (the paper's run: {p.task.paper_gpus})" if p.task.gpus != p.task.paper_gpus else ""
            data = f"; data found: {', '.join(p.task.data.values())}" if p.task.data else ""
            lines.append(f"  {p.task.name:<20} {what}; {p.task.gpus} GPU(s){paper}; est. {p.estimate}{data}")
            lines.append(f"      {p.task.command_line()}")
    return "\n".join(lines)
