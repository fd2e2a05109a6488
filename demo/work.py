"""`make demo`: the suite end to end on the silhouette world, and whether pre-training learned.

  python -m demo [output_dir=demo_out] [minutes=7] [stages=world,pretrain,...] [full=false] [models=...] [key=value ...]

1. world: the silhouette world of `bench/learning.py` (64 px) with the COCO / ADE scene parts the dense
   tasks read, the background variants, and the retrieval and video parts where this tree has them;
2. pretrain: live iBOT pre-training of a ViT-T/8 (depth 4, `pretrain/recipes/demo_cpu.yaml`) for at most
   `minutes`, with the progress bar and the online k-NN monitor; the cosine schedule is sized to the
   budget from a few timed steps;
3. frozen, finetune, dense, robustness, analysis, retrieval, video: every evaluation and figure on three
   models side by side, `live`, `reference` (the shipped `demo/reference/vit_tiny_silhouette.pth`) and
   `random_init` (the live run's own initialisation), each into `<output_dir>/<stage>/<model>/<evaluation>/`.
   Every evaluation is its command's own `run(backbone, cfg)` called through `evalkit.evaluate` (the
   checks, the run folder, config.yaml and results.json with provenance, as `python -m <command>` does),
   with a config sized to the demo's budget (`demo/config.py`'s BUDGETS: epochs or steps, and
   `time_limit_min` as the stop on a slower machine);
4. the closing table (`<output_dir>/summary.json`): one line per measurement saying whether each trained
   model beats random init; then `report` writes `<output_dir>/report/report.html` and prints its path.

`run(cfg)` is the work of `python -m demo` (`demo/__main__.py`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from plumbing import ConfigError

from .config import OPTIONAL_PARTS, ROOT, WORLD, DemoConfig, resolve

MARKER = ".demo_out"  # a folder holding it is the demo's own: its stage folders may be replaced
PER_MODEL = ("frozen", "finetune", "dense", "robustness", "analysis", "retrieval", "video")
log = logging.getLogger("demo")


@contextlib.contextmanager
def pretraining_threads(threads: int, num_workers: int, device: str):
    """threads=0: pre-training on the cores its loader workers leave (`plumbing.cpu_threads`), then torch's
    default again for the evaluations, which load in-process and are a little faster on every core
    (bench/README.md). threads=N is set for the whole run already; on a GPU the count is left alone."""
    from plumbing import cpu_threads, resolve_device

    if threads:
        yield
        return
    on = str(resolve_device(device))
    with cpu_threads(0, num_workers, on) as n:
        if on == "cpu":
            print(f"pre-training on {n} CPU thread(s) beside {num_workers} loader worker(s) "
                  f"(threads=0; give threads=N to choose)", flush=True)  # fmt: skip
        yield


class Demo:
    """One demo run: the stages in order, their wall times, and what failed or could not run."""

    def __init__(self, cfg: DemoConfig):
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.world = self.out / "world"
        self.seconds: dict[str, float] = {}
        self.errors: list[str] = []
        self.not_run: list[str] = []
        self.pretrain_cfg = None

    # ---------------------------------------------------------------- stages
    def make_world(self) -> None:
        from demo_world import WorldConfig, write_world

        have = {f.name for f in fields(WorldConfig)}
        asked = {**WORLD, **{p: True for p in OPTIONAL_PARTS if p in have}, **self.cfg.world}
        manifest = self.world / "world.json"
        if manifest.is_file():
            there = json.loads(manifest.read_text())["config"]
            if there.get("seed") == self.cfg.seed and all(_plain(there.get(k)) == _plain(v) for k, v in asked.items()):
                print(f"world: {self.world} already holds this world", flush=True)
                return
        write_world(self.world, seed=self.cfg.seed, **{"progress": False, **asked})

    def train_config(self):
        from .pretraining import recipe_config

        if self.pretrain_cfg is None:
            self.pretrain_cfg = recipe_config(resolve(self.cfg.recipe), self.world, self.out / "pretrain",
                                              self.cfg.pretrain, self.cfg.seed, self.cfg.device)  # fmt: skip
        return self.pretrain_cfg

    def pretrain(self) -> None:
        from .common import write_json
        from .pretraining import live_pretraining

        shutil.rmtree(self.out / "pretrain", ignore_errors=True)
        cfg = self.train_config()
        with pretraining_threads(self.cfg.threads, cfg.num_workers, self.cfg.device):
            res = live_pretraining(cfg, self.world / "classification", self.random_init_path, self.cfg.minutes)
        write_json(self.out / "pretrain" / "demo_schedule.json", {k: res[k] for k in
                   ("schedule", "timing", "knn_random_init", "knn_curve", "stage_minutes")})  # fmt: skip

    @property
    def random_init_path(self) -> Path:
        return self.out / "models" / "random_init.pth"

    def model_paths(self) -> dict[str, Path]:
        """Backbone file per model; the random init is exported from the live recipe if not there yet."""
        if "random_init" in self.cfg.model_list and not self.random_init_path.is_file():
            from pretrain import TrainingRun, export_backbone

            run = TrainingRun(self.train_config())  # the live run's initialisation, as the pretrain stage exports
            self.random_init_path.parent.mkdir(parents=True, exist_ok=True)
            export_backbone(run.teacher.backbone, self.random_init_path, head=run.teacher.head)
        paths = {"live": self.out / "pretrain" / "backbone.pth", "reference": resolve(self.cfg.reference),
                 "random_init": self.random_init_path}  # fmt: skip
        return {m: paths[m] for m in self.cfg.model_list}

    def per_model(self, stage: str) -> None:
        from . import dense, evaluations, robustness
        from .common import Context

        fn = {"frozen": evaluations.frozen, "finetune": evaluations.finetune, "dense": dense.dense,
              "robustness": robustness.robustness, "analysis": dense.analysis, "retrieval": evaluations.retrieval,
              "video": evaluations.video}[stage]  # fmt: skip
        paths: dict[str, Path] = {}
        self.attempt(f"{stage} (models)", lambda: paths.update(self.model_paths()))
        ctx = Context(self.out, self.world, paths, self.cfg.budgets(), self.cfg.device, threads=self.cfg.threads)
        for model, path in paths.items():
            shutil.rmtree(self.out / stage / model, ignore_errors=True)
            if not path.is_file():
                what = "run the pretrain stage first" if model == "live" else "the file is missing"
                self.not_run.append(f"{stage}/{model}: {path} not found ({what})")
                continue
            self.attempt(f"{stage}/{model}", lambda fn=fn, model=model: fn(ctx, model))

    def report(self) -> None:
        """`python -m report run_dir=<out>`: the report is a sibling in the orchestration layer, so it is run,
        not imported; it writes <out>/report/report.md and report.html and prints their paths."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        cmd = [sys.executable, "-m", "report", f"run_dir={self.out.resolve()}"]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        print(proc.stdout.strip(), flush=True)
        if proc.returncode:
            raise RuntimeError(f"python -m report exited with {proc.returncode}: {proc.stderr.strip()[-2000:]}")

    # ---------------------------------------------------------------- running
    def attempt(self, name: str, fn: Callable[[], None]) -> None:
        """Run one piece; a failure is recorded and the demo goes on (the exit status tells)."""
        from .common import NotRun

        try:
            fn()
        except NotRun as e:
            self.not_run.append(f"{name}: {e}")
            print(f"{name}: not run ({e})", flush=True)
        except Exception:  # keep going: the other stages still say something
            self.errors.append(f"{name}: {traceback.format_exc(limit=4)}")
            print(f"{name}: FAILED (the traceback is in summary.json)", flush=True)

    def stage(self, name: str) -> None:
        t0 = time.time()
        print(f"\n=== {name} ===", flush=True)
        if name in PER_MODEL:
            self.per_model(name)
        else:
            self.attempt(name, {"world": self.make_world, "pretrain": self.pretrain, "report": self.report}[name])
        self.seconds[name] = round(time.time() - t0, 1)
        print(f"=== {name}: {self.seconds[name]:.0f} s ===", flush=True)

    def run(self) -> int:
        from .summary import pretrain_line, table

        if self.cfg.threads:
            import torch

            torch.set_num_threads(self.cfg.threads)
        wanted = self.cfg.stage_list  # always in the pipeline's order
        for name in (s for s in wanted if s != "report"):
            self.stage(name)
        rows = table(self.out, list(self.cfg.model_list))
        lines = [line for line in [pretrain_line(self.out)] if line] + [r["line"] for r in rows]
        settings = {f.name: getattr(self.cfg, f.name) for f in fields(self.cfg)}
        summary = {"rows": rows, "lines": lines, "stage_seconds": self.seconds, "not_run": self.not_run,
                   "errors": self.errors, "config": settings}  # fmt: skip
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        print("\nDoes pre-training beat random init? (live: trained here; reference: the shipped checkpoint)")
        print("\n".join(lines) if lines else "(no results)")
        print("stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in self.seconds.items()))
        for item in self.not_run:
            print(f"not run: {item}")
        if "report" in wanted:
            self.stage("report")
            summary["stage_seconds"] = self.seconds
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        for err in self.errors:
            print(f"\nERROR in {err}", file=sys.stderr)
        return 1 if self.errors else 0


def _plain(v):
    return list(v) if isinstance(v, tuple | list) else v


def prepare_out(out: Path) -> None:
    """Create `out`, or accept one the demo wrote before; refuse a foreign non-empty folder."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output_dir={str(out)!r} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise ConfigError(f"output_dir={str(out)!r} is not empty and holds no demo run ({MARKER} missing); "
                          f"choose another")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by python -m demo; its stage folders are replaced when a stage runs again\n")


def run(cfg: DemoConfig) -> int:
    """The demo of a checked config: 0, or 1 when a stage failed (the others still ran; summary.json says)."""
    prepare_out(Path(cfg.output_dir))
    return Demo(cfg).run()
