"""The launchers: engines users know, not a home-made one.

- `run_local`: the tasks one after another in this process's machine, each `python -m <module>` (torchrun's
  module for several processes), output appended to `<task>/log.txt`.
- `submit`: one submitit job per task, on SLURM (launcher=slurm: nodes, GPUs per node, CPUs, memory,
  partition, account, qos and time limit from the `slurm.*` keys; a task that reads another's run folder
  waits for it with `--dependency=afterok`) or on this machine (launcher=submitit_local, submitit's
  LocalExecutor: the same path without a cluster). A job that is preempted or reaches its time limit is
  requeued by submitit and resumes from its run folder (TaskJob.checkpoint).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from plumbing import ConfigError, MissingExtraError

from .config import BenchmarkConfig, SlurmSpec
from .job import TaskJob
from .plan import Planned
from .state import FINAL, LOG, current_status, read_state, write_state

SLURM_EXTRA = "pip install 'ibot-suite[slurm]'"
POLL_S = 2.0


def require_submitit() -> Any:
    """The optional submitit package (MissingExtraError naming the extra when it is not installed)."""
    try:
        import submitit
    except ImportError:
        raise MissingExtraError(f"launcher=slurm needs the optional package submitit: {SLURM_EXTRA}") from None
    return submitit


def task_job(p: Planned, per_node: int | None = None) -> TaskJob:
    """The TaskJob of a planned task (`per_node`: processes per node of a multi-node job)."""
    return TaskJob(folder=str(p.task.folder), module_args=p.task.module_args(), gpus=per_node or p.task.gpus,
                   identity=p.identity, precision=p.task.keys.get("precision"))  # fmt: skip


def _blocked(p: Planned, folders: dict[str, Path]) -> str | None:
    """Why a task cannot start now: a task whose run folder it reads is not done."""
    for need in p.task.needs:
        folder = folders[need]
        status = current_status(read_state(folder), folder)
        if status != "done":
            return f"not run: needs {need}, which is {status}"
    return None


def _folders(p: Planned) -> dict[str, Path]:
    return {need: p.task.folder.parent / need for need in p.task.needs}


def run_local(plan: list[Planned]) -> None:
    """Run the tasks to run, one after another; a failure is recorded and the next task starts."""
    todo = [p for p in plan if p.action == "run"]
    for i, p in enumerate(todo, 1):
        why = _blocked(p, _folders(p))
        if why:
            write_state(p.task.folder, status="failed", reason=why, identity=p.identity, log=str(p.task.folder / LOG))
            print(f"[{i}/{len(todo)}] {p.task.model}/{p.task.name}: {why}", flush=True)
            continue
        print(f"[{i}/{len(todo)}] {p.task.model}/{p.task.name}: {p.task.command_line()}", flush=True)
        state = task_job(p)()
        end = state["status"] + (f": {state['reason']}" if state.get("reason") else "")
        print(f"    {end} ({state.get('seconds', '?')} s; log {p.task.folder / LOG})", flush=True)


def slurm_parameters(spec: SlurmSpec, gpus: int, name: str) -> tuple[dict[str, Any], int]:
    """(SlurmExecutor parameters, processes per node) of a task on `gpus` processes."""
    nodes = spec.nodes or max(1, math.ceil(gpus / spec.gpus_per_node))
    per_node = max(1, math.ceil(gpus / nodes))
    params: dict[str, Any] = dict(job_name=name, nodes=nodes, ntasks_per_node=1, gpus_per_node=per_node,
                                  cpus_per_task=spec.cpus_per_task * per_node, time=spec.timeout_min,
                                  stderr_to_stdout=True)  # fmt: skip
    for key in ("partition", "account", "qos"):
        if getattr(spec, key):
            params[key] = getattr(spec, key)
    if spec.mem_gb:
        params["mem"] = f"{spec.mem_gb}GB"  # SLURM reads a bare number as MB
    return params, per_node


def _executor(cfg: BenchmarkConfig, p: Planned, after: list[str]) -> tuple[Any, int]:
    submitit = require_submitit()
    folder = p.task.folder / "submitit"
    if cfg.launcher == "submitit_local":
        executor = submitit.LocalExecutor(folder=folder)
        # gpus_per_node sets CUDA_VISIBLE_DEVICES to that many devices (harmless on a CPU machine)
        executor.update_parameters(timeout_min=cfg.slurm.timeout_min, tasks_per_node=1, gpus_per_node=p.task.gpus)
        return executor, p.task.gpus
    try:
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=cfg.slurm.max_requeues)
    except RuntimeError as e:  # submitit looks for srun
        raise ConfigError(f"launcher=slurm: {e} (run it where sbatch and srun are; or launcher=local)") from None
    params, per_node = slurm_parameters(cfg.slurm, p.task.gpus, f"ibot-{p.task.model}-{p.task.name}")
    if after:
        params["additional_parameters"] = {"dependency": "afterok:" + ":".join(after), "kill-on-invalid-dep": "yes"}
    executor.update_parameters(**params)
    return executor, per_node


def submit(plan: list[Planned], cfg: BenchmarkConfig) -> list[tuple[Planned, Any]]:
    """Submit every task to run and, with wait=true (always on submitit_local), wait for the jobs. On SLURM a
    task that reads another's run folder waits for its job (afterok); the local executor has no
    dependencies, so such a task goes in a later wave. Returns (task, job) of the jobs submitted."""
    require_submitit()
    todo = [p for p in plan if p.action == "run"]
    jobs: list[tuple[Planned, Any]] = []
    ids: dict[tuple[str, str], str] = {}
    local = cfg.launcher == "submitit_local"
    while todo:
        keys = {q.key for q in todo}
        wave = [p for p in todo if not (local and any((p.task.model, n) in keys for n in p.task.needs))]
        submitted = []
        for p in wave:
            why = None if not local else _blocked(p, _folders(p))
            if why:
                write_state(
                    p.task.folder, status="failed", reason=why, identity=p.identity, log=str(p.task.folder / LOG)
                )
                continue
            after = [ids[(p.task.model, n)] for n in p.task.needs if (p.task.model, n) in ids]
            executor, per_node = _executor(cfg, p, after)
            # recorded before the job can start (it records its own start and end), its id once known
            write_state(p.task.folder, status="submitted", job_id=None, identity=p.identity, reason="",
                        log=str(p.task.folder / LOG), started=time.strftime("%Y-%m-%dT%H:%M:%S"))  # fmt: skip
            job = executor.submit(task_job(p, per_node))
            ids[p.key] = str(job.job_id)
            if (read_state(p.task.folder) or {}).get("status") == "submitted":
                write_state(p.task.folder, job_id=str(job.job_id))
            print(f"submitted {p.task.model}/{p.task.name}: job {job.job_id}", flush=True)
            submitted.append((p, job))
        jobs += submitted
        todo = [p for p in todo if p not in wave]
        if local or cfg.wait:
            wait(submitted)
    return jobs


def wait(jobs: list[tuple[Planned, Any]]) -> None:
    """Wait for every job; a job that ended without recording its end (cancelled, killed) is marked failed."""
    left = list(jobs)
    while left:
        for p, job in list(left):
            if job.done():
                left.remove((p, job))
                _settle(p, job)
        if left:
            time.sleep(POLL_S)


def _settle(p: Planned, job: Any) -> None:
    state = read_state(p.task.folder) or {}
    if state.get("status") in FINAL:
        print(f"job {job.job_id} ({p.task.model}/{p.task.name}): {state['status']}", flush=True)
        return
    try:
        job.result()
        reason = f"job {job.job_id} ended without recording its end"
    except Exception as e:  # the job's own error, or the scheduler's end (cancelled, node failure)
        reason = f"job {job.job_id} ended {job.state}: " + " ".join(str(e).split())[-300:]
    write_state(p.task.folder, status="failed", reason=reason)
    print(f"job {job.job_id} ({p.task.model}/{p.task.name}): failed ({reason})", flush=True)
