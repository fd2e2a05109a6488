"""Walk a run folder: every `results.json` (with its `config.yaml`), the authors' logs, and the figures.

A result folder is a folder holding `results.json` (or, without one, an authors' log). Figures (`*.png`)
belong to the nearest result folder above them, else to their own folder. Data, not figures, is
skipped: folders of a generated world (`world.json`), feature caches, TensorBoard logs, the report's
own output (and earlier reports), and PNGs whose name is only digits (dataset images, DAVIS frame masks).
A pre-training folder that has not written results.json yet (config.yaml + log.jsonl) is read too.

The architecture of a result is what its results.json records (`backbone`: the loaded checkpoint's arch,
patch size, depth, ...; for pre-training, its config), else the plan of `python -m benchmark`
(`benchmark.json`), else the `arch=` key; only the authors' logs are placed by their names and sizes.
A folder written by `python -m benchmark` names its models in `benchmark.json` (`models.<name>.folder`:
'' for one checkpoint, whose tasks sit in the folder itself, else the model's subfolder).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .authors import is_authors_log, json_lines, read_log
from .records import (
    Result,
    arch_from_name,
    arch_from_params,
    arch_from_results,
    arch_label,
    model_label,
    pretrained_label,
)
from .registry import BY_NAME, SPLITS, identify, take_metrics

log = logging.getLogger(__name__)
SKIP_DIRS = {"tensorboard", "feature_cache", "__pycache__", ".git", "node_modules"}


@dataclass
class Collection:
    """Everything found under one run folder."""

    run_dir: Path
    results: list[Result] = field(default_factory=list)  # identified or not, in path order
    figures: dict[str, list[Path]] = field(default_factory=dict)  # group (folder relative to run_dir) -> PNGs
    unreadable: list[str] = field(default_factory=list)  # 'path: why' for files that could not be read
    planned: list[str] = field(default_factory=list)  # the models of benchmark.json, in the order they were given


def _rel(path: Path, root: Path) -> str:
    rel = path.relative_to(root).as_posix()
    return rel or "."


def _load_config(folder: Path) -> tuple[dict | None, str]:
    path = folder / "config.yaml"
    if not path.is_file():
        return None, ""
    text = path.read_text(errors="replace")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None, text
    return (data if isinstance(data, dict) else None), text


def _jsonl(path: Path) -> list[dict]:
    """The JSON-object lines of a `.jsonl` log (none when the file is missing)."""
    return json_lines(path) if path.is_file() else []


def _training_curves(folder: Path) -> dict[str, list[tuple[float, float]]]:
    """The suite's pre-training logs: loss per step (log.jsonl) and the online k-NN per epoch (knn.jsonl)."""
    steps = [r for r in _jsonl(folder / "log.jsonl") if isinstance(r.get("loss"), (int, float))]
    curves = {}
    if steps:
        curves["loss"] = [(r.get("step", i), r["loss"]) for i, r in enumerate(steps)]  # step: the global iteration
    knn = [(r["epoch"], r["knn_top1"]) for r in _jsonl(folder / "knn.jsonl") if "knn_top1" in r and "epoch" in r]
    if knn:
        curves["online k-NN top-1"] = knn
    return curves


def _in_progress(folder: Path, config: dict | None) -> dict[str, float]:
    """Numbers of a pre-training run that has not written results.json yet (its log.jsonl so far)."""
    rows = [r for r in _jsonl(folder / "log.jsonl") if isinstance(r.get("loss"), (int, float))]
    if not rows:
        return {}
    epochs = [r["epoch"] for r in rows if isinstance(r.get("epoch"), int)]
    out = {"pretrain_last_loss": float(rows[-1]["loss"])}
    if epochs:
        out["pretrain_epochs"] = float(max(epochs))  # epochs finished before the current one
    return out


def benchmark_models(root: Path) -> dict[str, tuple[str, str]]:
    """{model folder ('' = the run folder itself): (model name, architecture)} from `benchmark.json`, if any."""
    path = root / "benchmark.json"
    try:
        plan = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    models = plan.get("models") if isinstance(plan, dict) else None
    if not isinstance(models, dict):
        return {}
    return {str(m.get("folder") or ""): (name, arch_label(m)) for name, m in models.items() if isinstance(m, dict)}


def _planned(rel: str, models: dict[str, tuple[str, str]]) -> tuple[str, str] | None:
    """The benchmark model a result folder belongs to (its first path component, or the run folder's model)."""
    top = Path(rel).parts[0] if rel != "." else ""
    return models.get(top) or (models.get("") if "" in models and len(models) == 1 else None)


def read_result(folder: Path, run_dir: Path, default_arch: str, models: dict | None = None) -> Result:
    """One results.json folder (or a pre-training folder still running: config.yaml + log.jsonl) -> Result.

    The evaluation is None when not recognised. `models`: see `benchmark_models`.
    """
    rel = _rel(folder, run_dir)
    running = not (folder / "results.json").is_file()
    raw: Any = {} if running else json.loads((folder / "results.json").read_text(errors="replace"))
    results = raw if isinstance(raw, dict) else {"value": raw}
    config, config_text = _load_config(folder)
    ev = identify(config, results, rel)
    metrics = take_metrics(ev, results) if ev else {}
    if running:
        if ev is None or ev.kind != "pretrain":
            raise ValueError("a log.jsonl without results.json outside a pre-training folder")
        metrics, results = _in_progress(folder, config), {"status": "running (no results.json yet)"}
    if ev is not None and ev.metrics and not metrics:
        ev = None  # recognised by name only, or none of its numbers present: shown under "other results"
    split = SPLITS.split_of(config, rel) if ev is not None and ev.kind == "model" else None
    if split:
        metrics = {(f"{k}@{split}" if k in SPLITS.metrics else k): v for k, v in metrics.items()}
    planned = _planned(rel, models or {})
    arch = arch_from_results(results, config) or (planned[1] if planned else "") or default_arch
    if ev is not None and ev.kind == "pretrain":
        model = rel
    else:
        model = planned[0] if planned else model_label(rel, pretrained_label(config, results, run_dir))
    source = "log.jsonl (running: no results.json yet)" if running else "results.json"
    res = Result(folder, rel, ev, model, arch, metrics, split, source, config_text, results)
    if ev is not None and ev.kind == "pretrain":
        res.curves = _training_curves(folder)
    res.mtime = (folder / ("log.jsonl" if running else "results.json")).stat().st_mtime
    return res


def read_authors(path: Path, run_dir: Path, default_arch: str) -> Result | None:
    """One authors' log -> Result, or None when it holds nothing this report reads."""
    found = read_log(path)
    if found is None:
        return None
    folder = path.parent
    rel = _rel(folder, run_dir)
    ev = found["evaluation"]
    arch = arch_from_name(rel) or arch_from_params(found["n_parameters"]) or default_arch
    model = rel if ev.kind == "pretrain" else "authors: " + model_label(rel, folder.name)
    summary = {"log": path.name, "lines": found["lines"], **found["metrics"]}
    res = Result(folder, rel, ev, model, arch, found["metrics"], found["split"], f"authors' {path.name}", "",
                 summary, found["curves"], path.stat().st_mtime)  # fmt: skip
    return res


def _running_pretrain(folder: Path, filenames: list[str]) -> bool:
    """A pre-training folder without results.json yet: its config names the pre-training keys."""
    if "log.jsonl" not in filenames or "config.yaml" not in filenames:
        return False
    config, _ = _load_config(folder)
    return bool(config) and identify(config, {}, "") is BY_NAME["pretrain"]


def _data_or_report(folder: Path) -> bool:
    """A generated world (world.json) or an earlier report (report.html + report.md): not results."""
    earlier_report = (folder / "report.html").is_file() and (folder / "report.md").is_file()
    return (folder / "world.json").is_file() or earlier_report


def _is_data_png(path: Path) -> bool:
    return path.stem.isdigit()


def collect(run_dir: str | os.PathLike, exclude: str | os.PathLike | None = None, default_arch: str = "") -> Collection:
    """Read every result folder and list every figure under `run_dir` (skipping `exclude`, the report's output)."""
    root = Path(run_dir)
    skip = Path(exclude).resolve() if exclude else None
    out = Collection(root)
    models = benchmark_models(root)
    out.planned = [name for name, _ in models.values()]
    pngs: list[Path] = []
    result_dirs: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames
            if d not in SKIP_DIRS and (here / d).resolve() != skip and not _data_or_report(here / d)
        )  # fmt: skip
        pngs += [here / f for f in sorted(filenames) if f.lower().endswith(".png") and not _is_data_png(here / f)]
        try:
            if "results.json" in filenames or _running_pretrain(here, filenames):
                out.results.append(read_result(here, root, default_arch, models))
                result_dirs.add(here)
                continue
            for name in sorted(filenames):
                if is_authors_log(here / name):
                    res = read_authors(here / name, root, default_arch)
                    if res is not None:
                        out.results.append(res)
                        result_dirs.add(here)
        except (OSError, ValueError, UnicodeDecodeError) as e:  # a half-written or foreign file: list it, go on
            out.unreadable.append(f"{_rel(here, root)}: {' '.join(str(e).split())}")
            log.warning("could not read %s: %s", here, e)
    for png in pngs:
        group = next((p for p in [png.parent, *png.parent.parents] if p in result_dirs), png.parent)
        out.figures.setdefault(_rel(group, root), []).append(png)
    return out
