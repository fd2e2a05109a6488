"""Does a backbone beat another on the demo's dense rows by more than their spread over world seeds?

Runs the demo's own detection or segmentation config (`demo/dense.py`: `detection_config`,
`segmentation_config`, through `evalkit.evaluate`) for each model on each demo world, with the demo's quick
or full budgets and any config key changed, then prints one row per world (each model's score and the first
model's margin over the second) and, per model, the mean and the spread (max - min) over the worlds. A run
folder holding a results.json is read again instead of retrained, so an interrupted call goes on where it
stopped (each run's folder is named after its task, budgets, keys, world and model, so a changed call never
reads another call's runs). bench/README.md, "The dense rows at the full budget", holds what it measured.

    python -m demo output_dir=/tmp/s1 stages=world seed=1        # one world per seed
    python bench/dense_seeds.py task=upernet worlds=demo_out/world,/tmp/s1/world \\
        models=demo/reference/vit_tiny_silhouette.pth,demo_out/models/random_init.pth budget=full lr=1e-3

(`demo_out/models/random_init.pth`: the demo recipe's random init, written by `make demo` or by any evaluation
stage of `python -m demo`.)

task: detection (box and mask AP50) | upernet | linear (mIoU). Other KEY=VALUE pairs: a budget key of
`demo/config.py` BUDGETS (upernet_iters=120, detection_s=60), else a key of the task's config
(layer_decay=0.01, model.out_indices=[3,3,3,3] for the detector's DetectorSpec); device=cpu (default) | cuda;
out=FOLDER (default bench_out/dense_seeds) holds the runs and <task>.json.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from demo import BUDGETS, Context, detection_config, segmentation_config  # noqa: E402
from plumbing import ConfigError, parse_config, save_config  # noqa: E402

TASKS = {"detection": ("box_AP50", "mask_AP50"), "upernet": ("mIoU",), "linear": ("mIoU",)}


def schema(task: str) -> type:
    """The config class of `task` (its keys are what KEY=VALUE may change)."""
    from detection import DetectionConfig
    from segmentation import SegConfig

    return DetectionConfig if task == "detection" else SegConfig


def configure(task: str, ctx: Context, path: str, out: str, overrides: list[str]):
    """The demo's config of `task` for the backbone file `path`, `overrides` (KEY=VALUE) applied on top of it by
    `plumbing.parse_config` (the commands' own parser: typed values, nested `model.*` keys)."""
    from pretrain import load_backbone, mask_grid

    backbone, info = load_backbone(path)
    if task == "detection":
        cfg = detection_config(ctx, path, ctx.device, out)
    else:
        cfg = segmentation_config(ctx, task, mask_grid(backbone), ctx.device, out)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = parse_config(schema(task), ["--config", str(save_config(cfg, tmp)), *overrides])
    return backbone, info, cfg


def score(task: str, result: dict) -> dict[str, float]:
    if task == "detection":
        return {"box_AP50": result["metrics"]["bbox_AP50"], "mask_AP50": result["metrics"]["segm_AP50"]}
    return {"mIoU": result["mIoU"]}


def digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def run_folder(root: Path, task: str, budgets: dict, overrides: list[str], world: Path, model: str) -> Path:
    """`root/task/<hash>`: one folder per (task, budgets, overrides, world and its config, model file and its
    bytes), its identity in identity.json."""
    identity = {"task": task, "budgets": budgets, "overrides": overrides, "world": str(world.resolve()),
                "world_config": digest(world / "config.yaml"), "model": str(Path(model).resolve()),
                "model_sha1": digest(Path(model))}  # fmt: skip
    text = json.dumps(identity, sort_keys=True)
    folder = root / task / hashlib.sha1(text.encode()).hexdigest()[:12]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "identity.json").write_text(text + "\n")
    return folder


def run_one(task: str, ctx: Context, path: str, out: Path, overrides: list[str]) -> dict[str, float]:
    """One model on one world; a finished run folder is read, not run again."""
    done = out / "results.json"
    finished = json.loads(done.read_text()) if done.is_file() else {}
    if finished and finished.get("status", "done") == "done":  # detection's results.json has no status
        return score(task, finished)
    from detection import run as detection_run
    from evalkit import evaluate
    from segmentation import run as segmentation_run

    backbone, info, cfg = configure(task, ctx, path, str(out), overrides)
    command = detection_run if task == "detection" else segmentation_run
    return score(task, evaluate(command, backbone, cfg, "detection" if task == "detection" else "segmentation", info))


def summarise(task: str, names: list[str], rows: list[dict]) -> list[str]:
    """Table lines: per world each model's scores and the first's margin; per model mean and spread."""
    lines = []
    for metric in TASKS[task]:
        lines.append(f"{metric}: world | " + " | ".join(names) + f" | margin {names[0]} - {names[1]}")
        for row in rows:
            s = [row["scores"][n][metric] for n in names]
            lines.append(f"  {row['world']} | " + " | ".join(f"{v:.1f}" for v in s) + f" | {s[0] - s[1]:+.1f}")
        per = {n: [r["scores"][n][metric] for r in rows] for n in names}
        lines.append("  mean | " + " | ".join(f"{sum(v) / len(v):.1f}" for v in per.values()))
        lines.append("  spread (max - min) | " + " | ".join(f"{max(v) - min(v):.1f}" for v in per.values()))
        margins = [a - b for a, b in zip(per[names[0]], per[names[1]], strict=True)]
        spread = max(max(v) - min(v) for v in per.values())
        if len(rows) < 2:
            lines.append(f"  margin {margins[0]:+.1f}; a spread needs two or more worlds")
            continue
        lines.append(f"  smallest margin {min(margins):+.1f}; larger than both spreads: {min(margins) > spread}; "
                     f"ranges apart: {min(per[names[0]]) > max(per[names[1]])}")  # fmt: skip
    return lines


def main(argv: list[str]) -> list[dict]:
    bad = [a for a in argv if "=" not in a]
    if bad:
        raise ConfigError(f"{bad[0]!r}: arguments are KEY=VALUE (task=, worlds=, models=, budget=, out=, device=, ...)")
    args = dict(a.split("=", 1) for a in argv)
    task, budget = args.pop("task", "detection"), args.pop("budget", "quick")
    worlds = [Path(w) for w in args.pop("worlds", "").split(",") if w]
    models = [m for m in args.pop("models", "").split(",") if m]
    out = Path(args.pop("out", "bench_out/dense_seeds"))
    device = args.pop("device", "cpu")
    if task not in TASKS or budget not in BUDGETS or len(models) < 2 or not worlds:
        raise ConfigError(f"give task={'|'.join(TASKS)}, worlds=W1,W2,..., models=A,B (A is compared with B) "
                          f"and budget={'|'.join(BUDGETS)}")  # fmt: skip
    missing = [str(p) for p in [w / "config.yaml" for w in worlds] + [Path(m) for m in models] if not p.is_file()]
    if missing:
        world = "config.yaml" in missing[0]
        hint = " (write a world: python -m demo output_dir=DIR stages=world seed=S)" if world else ""
        raise ConfigError(f"not found: {', '.join(missing)}{hint}")
    budgets = dict(BUDGETS[budget])
    for key in [k for k in args if k in budgets]:
        try:
            budgets[key] = float(args.pop(key))
        except ValueError:
            raise ConfigError(f"{key} must be a number (a budget of demo/config.py BUDGETS)") from None
    overrides = [f"{k}={v}" for k, v in args.items()]  # the task config's keys
    parse_config(schema(task), overrides)  # an unknown key or a bad value is refused here, before any run
    names = [f"{i}_{Path(m).stem}" for i, m in enumerate(models)]
    rows = []
    for world in worlds:
        ctx = Context(out=out, world=world, models={}, budgets=budgets, device=device)
        scores = {n: run_one(task, ctx, m, run_folder(out, task, budgets, overrides, world, m), overrides)
                  for n, m in zip(names, models, strict=True)}  # fmt: skip
        rows.append({"world": str(world), "scores": scores})
    out.mkdir(parents=True, exist_ok=True)
    record = {"budgets": budgets, "overrides": overrides, "rows": rows}
    (out / f"{task}.json").write_text(json.dumps(record, indent=2) + "\n")
    print("\n".join(summarise(task, names, rows)))
    return rows


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
