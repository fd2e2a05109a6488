"""Run several learning-benchmark recipes side by side and compare their k-NN curves.

  python bench/learning_sweep.py sweep=bench/sweeps/NAME.yaml [out=bench_out/sweep] [parallel=4] [threads=2]

The YAML holds `common` (arguments for every run of bench/learning.py, e.g. epochs, export_every,
precision) and `runs` (name -> list of key=value overrides). Runs share one world (`out/world`), run
`parallel` at a time with `threads` torch threads each, and log to `out/NAME.log`; a run whose
`out/NAME/results.json` exists is not run again (an interrupted sweep continues). The summary table
is printed and written to `out/sweep.json`, the curves to `out/sweep.png`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.learning import ensure_world, world_options  # noqa: E402


def run_one(name: str, args: list[str], out: Path, threads: int) -> dict:
    result = out / name / "results.json"
    if not result.exists():
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
        cmd = [sys.executable, str(ROOT / "bench" / "learning.py"), f"out={out / name}", *args]
        t = time.time()
        with (out / f"{name}.log").open("w") as log:
            code = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
        print(f"{name}: exit {code} after {(time.time() - t) / 60:.1f} min", flush=True)
        if code != 0:
            return {"name": name, "error": f"exit {code}, see {out / name}.log"}
    res = json.loads(result.read_text())
    steps = [json.loads(ln)["step"] for ln in (out / name / "run" / "log.jsonl").read_text().splitlines()[-1:]]
    return {"name": name, "args": args, "random_init": res["random_init_top1"], "final": res["final_top1"],
            "best": res["best_top1"], "gain": round(res["gain"], 2), "steps": steps[0] + 1 if steps else 0,
            "minutes": res["curve"][-1]["minutes"], "curve": res["curve"]}  # fmt: skip


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        if "curve" in r:
            ax.plot([c["epoch"] for c in r["curve"]], [c["top1"] for c in r["curve"]], "o-", ms=3, label=r["name"])
    ax.set_xlabel("epoch")
    ax.set_ylabel("k-NN top-1 on shape class (%)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str]) -> list[dict]:
    opts = dict(a.split("=", 1) for a in argv)
    unknown = set(opts) - {"sweep", "out", "parallel", "threads"}
    if unknown or "sweep" not in opts:
        raise SystemExit(f"usage: learning_sweep.py sweep=FILE.yaml [out=] [parallel=] [threads=]; bad: {unknown}")
    spec = yaml.safe_load(Path(opts["sweep"]).read_text())
    out = Path(opts.get("out", "bench_out/sweep"))
    out.mkdir(parents=True, exist_ok=True)
    common = [*spec.get("common", []), f"world={out / 'world'}"]
    ensure_world(out / "world", **world_options(dict(a.split("=", 1) for a in common)))  # before the runs
    threads = int(opts.get("threads", 2))
    with ThreadPoolExecutor(int(opts.get("parallel", 4))) as pool:
        rows = list(pool.map(lambda n: run_one(n, [*common, *spec["runs"][n]], out, threads), spec["runs"]))
    (out / "sweep.json").write_text(json.dumps(rows, indent=2))
    plot(rows, out / "sweep.png")
    print(f"{'run':<24}{'init':>7}{'final':>7}{'best':>7}{'gain':>7}{'steps':>7}{'min':>6}")
    for r in sorted(rows, key=lambda r: -r.get("gain", -99)):
        if "error" in r:
            print(f"{r['name']:<24}{r['error']}")
        else:
            print(f"{r['name']:<24}{r['random_init']:>7.2f}{r['final']:>7.2f}{r['best']:>7.2f}{r['gain']:>7.2f}"
                  f"{r['steps']:>7}{r['minutes']:>6.1f}")  # fmt: skip
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
