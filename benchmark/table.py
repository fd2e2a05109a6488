"""The task table (`recipes/tasks.yaml`) and one task resolved for one checkpoint: its command line.

Torch-free. Nothing here knows what a task measures: a task is a command (`python -m <module>`) and the
key=value arguments the table gives it for the checkpoint's architecture, with the dataset folders and the
run folders of other tasks filled in.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from plumbing import ConfigError

from .config import BenchmarkConfig

ROOT = Path(__file__).resolve().parents[1]  # recipe files are named relative to the repository root
WORLD_MARKER = ".demo_world"
PLACEHOLDER = re.compile(r"\{([a-z0-9_]+(?::[a-z0-9_]+)?)\}")


@dataclass
class TaskSpec:
    """One row of the table (see the comment at the top of tasks.yaml)."""

    name: str
    command: str
    keys: dict[str, Any] = field(default_factory=dict)
    archs: dict[str, dict[str, Any]] = field(default_factory=dict)
    gpus: int = 1
    head: bool = False
    small: dict[str, Any] = field(default_factory=dict)


@dataclass
class Table:
    """Datasets (key -> standard folder and demo-world folder) and tasks, in the table's order."""

    datasets: dict[str, dict[str, str | None]]
    tasks: dict[str, TaskSpec]


def load_table(path: str | Path) -> Table:
    """Read and check a task table file (ConfigError naming the file and the problem)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"task table not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    datasets = raw.get("datasets") or {}
    tasks = {}
    for name, row in (raw.get("tasks") or {}).items():
        unknown = set(row) - set(TaskSpec.__dataclass_fields__) - {"name"}
        if unknown or "command" not in row:
            raise ConfigError(f"{path}: task {name!r} needs a command and takes only "
                              f"{', '.join(f for f in TaskSpec.__dataclass_fields__ if f != 'name')}")  # fmt: skip
        tasks[name] = TaskSpec(name=name, **row)
    return Table(datasets=datasets, tasks=tasks)


def world_layout(cfg: BenchmarkConfig) -> bool:
    """Whether the dataset folders are a demo world's (layout=demo_world, or auto and the world's marker)."""
    if cfg.layout != "auto":
        return cfg.layout == "demo_world"
    return bool(cfg.data_root) and (Path(cfg.data_root) / WORLD_MARKER).is_file()


def dataset_path(table: Table, cfg: BenchmarkConfig, key: str) -> Path | None:
    """Where dataset `key` is (data.<key>, else its folder under data_root); None: this layout has none."""
    if key in cfg.data:
        return Path(cfg.data[key])
    row = table.datasets[key]
    folder = row.get("world") if world_layout(cfg) else row.get("folder")
    return Path(cfg.data_root) / folder if folder and cfg.data_root else None


@dataclass
class Task:
    """A task resolved for one model: the command it amounts to, or why it is skipped."""

    name: str
    model: str
    module: str
    folder: Path
    keys: dict[str, Any]
    recipe: str | None = None
    gpus: int = 1
    paper_gpus: int = 1  # processes of the table's run (the paper's; 1 at small settings)
    needs: list[str] = field(default_factory=list)  # tasks of the same model whose run folders it reads
    data: dict[str, str] = field(default_factory=dict)  # dataset key -> the folder found
    skipped: str | None = None  # the reason, when it cannot run

    def module_args(self) -> list[str]:
        """What follows `python -m` (or torchrun's `-m`): the module, `--config RECIPE`, then key=value."""
        config = ["--config", self.recipe] if self.recipe else []
        return [self.module, *config, *(f"{k}={format_value(v)}" for k, v in self.keys.items())]

    def command_line(self) -> str:
        """The task as a line to paste into a shell: `python -m ...`, or `torchrun --nproc_per_node=N -m ...`."""
        shown = ["torchrun", f"--nproc_per_node={self.gpus}", "-m"] if self.gpus > 1 else ["python", "-m"]
        return shlex.join([*shown, *self.module_args()])


def format_value(value: Any) -> str:
    """A key's value as the config parser reads it back (lists as [a,b], booleans true/false, None null)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


def _arch_settings(spec: TaskSpec, arch_key: str) -> dict[str, Any] | None:
    """The table's settings for `arch_key` ("vit_small/16": that row, else "vit_small"); {} when the task
    has none per architecture; None when it has some but not this one."""
    if not spec.archs:
        return {}
    return spec.archs.get(arch_key, spec.archs.get(arch_key.split("/")[0]))


def resolve_task(spec: TaskSpec, table: Table, cfg: BenchmarkConfig, model: dict[str, Any]) -> Task:
    """`spec` for one model (`model`: name, folder, pretrained, arch_key, has_head): keys, recipe, GPUs,
    the dataset paths filled in and checked, the tasks it needs."""
    folder = Path(cfg.output_dir) / model["folder"] / spec.name
    task = Task(spec.name, model["name"], spec.command, folder, {}, gpus=spec.gpus)
    arch = _arch_settings(spec, model["arch_key"])
    if arch is None and not cfg.small:
        task.skipped = f"the paper gives no {spec.name} settings for {model['arch_key']} (small=true runs it small)"
        arch = {}
    keys = {**spec.keys, **(arch or {}).get("keys", {}), **(spec.small if cfg.small else {})}
    if cfg.precision == "auto":
        keys["precision"] = "auto"
    keys.update(cfg.keys.get(spec.name, {}))
    task.recipe = str(ROOT / arch["recipe"]) if (arch or {}).get("recipe") else None
    paper_gpus = 1 if cfg.small else int((arch or {}).get("gpus", spec.gpus))
    task.paper_gpus = paper_gpus
    task.gpus = min(cfg.gpus, paper_gpus) if cfg.gpus else paper_gpus
    base = {"pretrained": model["pretrained"], "checkpoint_key": cfg.checkpoint_key, "output_dir": str(folder)}
    task.keys = {**base, **{k: _fill(v, task, table, cfg, model) for k, v in keys.items()}}
    if spec.head and not model.get("has_head", True) and not task.skipped:
        task.skipped = f"{model['pretrained']} holds no iBOT head (this task reads the head's prototypes)"
    return task


def _fill(value: Any, task: Task, table: Table, cfg: BenchmarkConfig, model: dict[str, Any]) -> Any:
    """Placeholders in a key's value: {<dataset>} (its folder, checked), {task:<name>}, {pretrained}."""
    if isinstance(value, list | tuple):
        return [_fill(v, task, table, cfg, model) for v in value]
    if not isinstance(value, str) or "{" not in value:
        return value
    datasets_used = []

    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name == "pretrained":
            return model["pretrained"]
        if name.startswith("task:"):
            needed = name.split(":", 1)[1]
            if needed not in task.needs:
                task.needs.append(needed)
            return str(Path(cfg.output_dir) / model["folder"] / needed)
        if name not in table.datasets:
            raise ConfigError(
                f"task {task.name}: unknown placeholder {{{name}}} (datasets: {', '.join(table.datasets)})"
            )
        path = dataset_path(table, cfg, name)
        datasets_used.append(name)
        if path is not None:
            task.data[name] = str(path)
        return str(path) if path is not None else f"<no {name}>"

    filled = PLACEHOLDER.sub(sub, value)
    if datasets_used and not task.skipped:
        if "<no " in filled:
            task.skipped = f"no data: the {'demo world' if world_layout(cfg) else 'layout'} has no {datasets_used[0]}"
        elif not Path(filled).exists():
            task.skipped = f"no data at {filled}"
    return filled
