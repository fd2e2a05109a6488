"""`python -m benchmark`: read the checkpoints, plan, run or submit the tasks, print the table, write the report.

Every check that can fail on bad input (the task names, the checkpoints) runs before any task starts.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from plumbing import CheckpointError, ConfigError, RunLock, check_output_dir

from .config import BenchmarkConfig, closest
from .launch import require_submitit, run_local, submit
from .plan import load_times, make_plan, model_names, plan_record, render_plan, selected
from .state import render, rows, write_plan
from .table import load_table


def absolute(cfg: BenchmarkConfig) -> BenchmarkConfig:
    """Paths made absolute: the command lines then work from any folder and inside cluster jobs."""

    def ab(p: str) -> str:
        return str(Path(p).expanduser().absolute()) if p else p

    return dataclasses.replace(cfg, pretrained=[ab(p) for p in cfg.checkpoints], data_root=ab(cfg.data_root),
                               data={k: ab(v) for k, v in cfg.data.items()}, output_dir=ab(cfg.output_dir))  # fmt: skip


def read_models(cfg: BenchmarkConfig) -> list[dict[str, Any]]:
    """Per checkpoint: its folder name, architecture (read from the file), weights fingerprint and whether it
    holds the iBOT head. An unreadable file stops here (CheckpointError), before any task starts."""
    from pretrain import load_backbone, load_head, weights_fingerprint

    paths = cfg.checkpoints
    names = model_names(paths)
    models = []
    for name, path in zip(names, paths, strict=True):
        if not Path(path).is_file():
            raise CheckpointError(f"checkpoint not found: pretrained={path} (nothing was run)")
        backbone, info = load_backbone(path, cfg.checkpoint_key)
        window = getattr(backbone, "window_size", None)  # Swin-T/7 and /14 name the window, ViT-S/16 the patch
        size = window if str(info["arch"]).startswith("swin") and window else info["patch_size"]
        try:
            load_head(path, cfg.checkpoint_key)
            has_head = True
        except CheckpointError:
            has_head = False
        models.append({"name": name, "folder": name if len(paths) > 1 else "", "pretrained": path,
                       "arch": info["arch"], "patch_size": info["patch_size"], "arch_key": f"{info['arch']}/{size}",
                       "fingerprint": weights_fingerprint(backbone), "has_head": has_head})  # fmt: skip
    return models


def visible_gpus() -> int:
    """CUDA devices this process sees (1 without any: one CPU process)."""
    import torch

    return max(1, torch.cuda.device_count())


def run(cfg: BenchmarkConfig) -> int:
    """The benchmark (see the package docstring); returns the exit status: 1 if a task failed."""
    cfg = absolute(cfg)
    table = load_table(cfg.table_path)
    selected(table, cfg)  # unknown task names: one line, before the checkpoints are read
    for name in cfg.keys:
        if name not in table.tasks:
            raise ConfigError(f"keys.{name}: {closest(name, list(table.tasks), 'task')}")
    check_output_dir(cfg.output_dir)
    if cfg.launcher != "local":
        require_submitit()
        if cfg.launcher == "slurm" and not cfg.dry_run and shutil.which("sbatch") is None:
            raise ConfigError("launcher=slurm: no sbatch on this machine (run it where SLURM's commands are)")
    models = read_models(cfg)
    if cfg.launcher != "slurm" and not cfg.gpus:  # this machine: at most its GPUs (1 process on a CPU)
        cfg = dataclasses.replace(cfg, gpus=visible_gpus())
    times = load_times(cfg.throughput_path)
    if cfg.dry_run:
        print(render_plan(cfg, models, make_plan(table, cfg, models, times)), flush=True)
        return 0
    with RunLock(cfg.output_dir):  # one runner per output folder (its tasks lock their own folders)
        plan = make_plan(table, cfg, models, times)
        print(render_plan(cfg, models, plan), flush=True)
        return _run_plan(cfg, models, plan)


def _run_plan(cfg: BenchmarkConfig, models: list[dict[str, Any]], plan: list) -> int:
    """Record the plan, run or submit its tasks, print the table and write the report."""
    write_plan(cfg.output_dir, plan_record(cfg, models, plan))
    if cfg.launcher == "local":
        run_local(plan)
    else:
        jobs = submit(plan, cfg)
        if not cfg.wait:
            print("jobs: " + ", ".join(f"{p.task.model}/{p.task.name} {job.job_id}" for p, job in jobs))
            print(f"python -m benchmark status output_dir={cfg.output_dir} shows where they stand")
            return 0
    table_rows = rows(cfg.output_dir)
    print("\n" + render(table_rows), flush=True)
    if cfg.report:
        report(cfg.output_dir)
    return 1 if any(r["status"] == "failed" for r in table_rows) else 0


def report(output_dir: str) -> None:
    """`python -m report run_dir=<output_dir>`: a sibling command of the orchestration layer, so it is run,
    not imported. A report that fails is said, and does not fail the benchmark (the tasks' results stand)."""
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, "-m", "report", f"run_dir={output_dir}"], env=env, capture_output=True,
                          text=True)  # fmt: skip
    print(proc.stdout.strip(), flush=True)
    if proc.returncode:
        print(f"report: python -m report exited {proc.returncode}: {proc.stderr.strip()[-1000:]}", flush=True)
