"""The benchmark's settings (imports no torch: `python -m benchmark --help` answers at once).

The tasks, their commands and their per-architecture settings are not here: they are data, in the task
table `benchmark/recipes/tasks.yaml` (`table=FILE` reads another).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plumbing import ConfigError

LAUNCHERS = ("local", "slurm", "submitit_local")
PRECISIONS = ("paper", "auto")
LAYOUTS = ("auto", "standard", "demo_world")
TABLE = Path(__file__).resolve().parent / "recipes" / "tasks.yaml"
THROUGHPUT = Path(__file__).resolve().parents[1] / "bench" / "throughput.json"


@dataclass
class SlurmSpec:
    """Resources of each task's SLURM job (launcher=slurm); nodes x gpus_per_node = the task's processes."""

    partition: str = ""  # SLURM partition ('' = the cluster's default)
    account: str = ""  # SLURM account ('' = none given)
    qos: str = ""  # SLURM quality of service ('' = none given)
    nodes: int = 0  # nodes per job (0: as many as the task's GPUs need at gpus_per_node)
    gpus_per_node: int = 8  # GPUs (= processes) per node
    cpus_per_task: int = 10  # CPU cores per GPU process (loader workers + 1)
    mem_gb: int = 0  # memory per node in GB (0 = the partition's default)
    timeout_min: int = 4320  # time limit of one job; a job that reaches it is requeued and resumes
    max_requeues: int = 3  # requeues after a time-out (preemptions do not count)


@dataclass
class BenchmarkConfig:
    """Every evaluation a checkpoint can have, at the paper's settings for its architecture, resumable."""

    pretrained: Any = ""  # the checkpoint, or a list [a.pth,b.pth] (one folder per model); any file load_backbone reads
    checkpoint_key: str = "teacher"  # teacher or student, in files that hold both
    data_root: str = ""  # folder holding the datasets under their standard names (imagenet/, coco/, ade20k/, ...)
    data: dict[str, str] = field(default_factory=dict)  # a dataset elsewhere, e.g. data.imagenet=/datasets/ILSVRC2012
    output_dir: str = "runs/benchmark"  # one folder per task (per model and task for several checkpoints)
    tasks: list[str] = field(default_factory=list)  # only these tasks (empty: every task whose data is present)
    skip: list[str] = field(default_factory=list)  # leave these tasks out
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-task key overrides: keys.linear.epochs=10
    small: bool = False  # small settings (few epochs, small images, CPU): a check of the pipeline, not the paper
    precision: str = "paper"  # paper: each task as its reference script ran (fp32 where it did); auto: faster
    layout: str = "auto"  # dataset folder names: standard, demo_world (python -m demo_world), auto (by its marker)
    dry_run: bool = False  # print the plan (commands, data found, GPUs, estimated GPU-hours) and stop
    launcher: str = "local"  # local (one task after another, torchrun for gpus > 1), slurm, submitit_local
    gpus: int = 0  # at most N processes per task (0: the paper's count; local: at most this machine's GPUs)
    retry_failed: bool = False  # run again the tasks that failed in an earlier call (else they stay failed)
    wait: bool = True  # slurm: wait for the jobs and print the table (false: print the job ids and return)
    report: bool = True  # end with python -m report on output_dir (the checkpoint beside the paper's numbers)
    table: str = ""  # the task table ('' = benchmark/recipes/tasks.yaml)
    throughput: str = ""  # measured task times for the estimates ('' = bench/throughput.json)
    slurm: SlurmSpec = field(default_factory=SlurmSpec)  # launcher=slurm: slurm.partition=... etc.

    @property
    def checkpoints(self) -> list[str]:
        """The checkpoint files asked for, in order."""
        items = self.pretrained if isinstance(self.pretrained, list | tuple) else [self.pretrained]
        return [str(p) for p in items if str(p)]

    @property
    def table_path(self) -> Path:
        return Path(self.table) if self.table else TABLE

    @property
    def throughput_path(self) -> Path:
        return Path(self.throughput) if self.throughput else THROUGHPUT

    def check(self) -> None:
        """One-line ConfigError for settings that cannot work, before any file is read."""
        if not self.checkpoints:
            raise ConfigError("pretrained=FILE is required (or pretrained=[a.pth,b.pth])")
        for key, value, valid in (("launcher", self.launcher, LAUNCHERS), ("precision", self.precision, PRECISIONS),
                                  ("layout", self.layout, LAYOUTS)):  # fmt: skip
            if value not in valid:
                raise ConfigError(f"{key}={value!r}; valid: {', '.join(valid)}")
        if not self.data_root and not self.data:
            raise ConfigError("data_root=FOLDER is required (the datasets under their standard names)")
        if self.gpus < 0 or self.slurm.nodes < 0 or self.slurm.gpus_per_node < 1:
            raise ConfigError("gpus and slurm.nodes must be >= 0 and slurm.gpus_per_node >= 1")
        if not self.output_dir:
            raise ConfigError("output_dir is empty: give output_dir=FOLDER")


@dataclass
class StatusConfig:
    """The table of a benchmark's tasks (done / running / failed / skipped), at any time."""

    output_dir: str = "runs/benchmark"  # the benchmark's output folder

    def check(self) -> None:
        if not (Path(self.output_dir) / "benchmark.json").is_file():
            raise ConfigError(f"output_dir={self.output_dir!r} holds no benchmark (benchmark.json missing)")


def closest(name: str, valid: list[str], what: str) -> ConfigError:
    """A ConfigError for an unknown `name` naming the closest valid one."""
    near = difflib.get_close_matches(name, valid, n=1, cutoff=0.4)
    hint = f"did you mean {near[0]}? " if near else ""
    return ConfigError(f"unknown {what} {name!r}; {hint}valid: {', '.join(valid)}")
