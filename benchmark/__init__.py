"""Checkpoint in, paper tables out: `python -m benchmark` runs every evaluation a checkpoint can have, at the
paper's settings for its architecture, one resumable task per folder, locally or on SLURM (submitit).

The task table is data (`benchmark/recipes/tasks.yaml`: task -> command, datasets, keys per architecture,
GPUs); each task is an existing command's command line, so any task can be re-run by hand. The output
layout: one folder per task (`<output_dir>/<task>/`, or `<output_dir>/<model>/<task>/` for several
checkpoints) holding the evaluation's own files, `benchmark_state.json` and `log.txt`; `benchmark.json`
is the plan; `report/` the report.
"""

from typing import TYPE_CHECKING

from plumbing import lazy_package

from .config import BenchmarkConfig, SlurmSpec, StatusConfig
from .state import read_state, rows
from .table import Table, Task, TaskSpec, load_table, resolve_task

if TYPE_CHECKING:
    from .job import TaskJob
    from .status_work import run_status
    from .work import run

__getattr__, __dir__, __all__ = lazy_package(__name__)
