"""Record the task times of a finished `python -m benchmark` run into the table its estimates read.

    python bench/benchmark_times.py output_dir=bench_out/benchmark machine="2-core AMD EPYC VM, shared" [device=cpu]

Every done task of the run folder adds (or replaces) one measurement in `bench/throughput.json`: task,
settings (small or paper), architecture, processes, device, seconds, machine and date. The dry run of
`python -m benchmark` turns a measurement into GPU-hours (seconds x processes; CPU-hours for device=cpu)
for the same task, settings and architecture, and says "unmeasured" where there is none.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmark import read_state
from plumbing import ConfigError, atomic_write_text, parse_config, run_command

TABLE = Path(__file__).resolve().parent / "throughput.json"


@dataclass
class TimesConfig:
    """Fold a benchmark run's task times into the throughput table."""

    output_dir: str = ""  # the benchmark's output folder (benchmark.json, one folder per task)
    machine: str = ""  # the machine, in words (CPU model and cores, or GPU), and whether it was shared
    device: str = "cuda"  # cuda or cpu: what the tasks ran on
    into: str = str(TABLE)  # the table to update


def measurements(output_dir: Path, machine: str, device: str) -> list[dict]:
    """One measurement per done task of the run."""
    plan = json.loads((output_dir / "benchmark.json").read_text())
    models = plan["models"]
    out = []
    for entry in plan["tasks"]:
        state = read_state(entry["folder"]) or {}
        if entry.get("status") == "skipped" or state.get("status") != "done":
            continue
        out.append({"task": entry["task"], "settings": plan["settings"], "arch": models[entry["model"]]["arch_key"],
                    "processes": entry["gpus"], "device": device, "seconds": state["seconds"], "machine": machine,
                    "date": str(state.get("finished", ""))[:10] or time.strftime("%Y-%m-%d")})  # fmt: skip
    return out


def record(cfg: TimesConfig) -> int:
    if not (Path(cfg.output_dir) / "benchmark.json").is_file() or not cfg.machine:
        raise ConfigError('give output_dir=<a benchmark\'s output folder> and machine="..."')
    new = measurements(Path(cfg.output_dir), cfg.machine, cfg.device)
    path = Path(cfg.into)
    table = json.loads(path.read_text()) if path.is_file() else {"measurements": []}
    keys = {(m["task"], m["settings"], m["arch"], m["device"]) for m in new}
    kept = [m for m in table["measurements"] if (m["task"], m["settings"], m["arch"], m["device"]) not in keys]
    table["measurements"] = kept + new
    atomic_write_text(path, json.dumps(table, indent=2) + "\n")
    print(f"{len(new)} measurements written to {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("benchmark_times", lambda: record(parse_config(TimesConfig, argv, "bench/benchmark_times.py")))


if __name__ == "__main__":
    sys.exit(main())
