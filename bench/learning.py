"""Learning benchmark: does iBOT pre-training learn shape on the demo world within an hour of CPU?

  python bench/learning.py [minutes=45] [out=bench_out/learning] [epochs=90] [export_every=10] [eval_only=false]
                           [recipe=pretrain/recipes/learning_cpu.yaml] [world=OUT/world] [image_size=64]
                           [object_scale=0.3,0.7] [min_contrast=0.2] [n_train=200] [n_val=50] [num_classes=8]
                           [silhouette=true]
                           [procedural=plain,gradient,noise]   (the world: WorldConfig)
                           [key=value ...]   (other keys override the training recipe)

1. writes the benchmark world (`image_size` px, 8 shape classes, white silhouettes on black: colour,
   intensity and texture removed as shortcuts; `silhouette=false` gives the earlier grey world with
   procedural backgrounds; see bench/README.md) unless `world` already holds one (runs of a sweep
   share it),
2. measures weighted k-NN top-1 (k = 20, T = 0.07, teacher [CLS]) of the same architecture at random
   initialisation,
3. pre-trains with the recipe (default `pretrain/recipes/learning_cpu.yaml`; extra key=value
   arguments override it) for at most `minutes`, exporting the teacher every `export_every` epochs,
4. evaluates every export and writes `curve.json`, `curve.png` and `results.json` with the gain over
   random init and the target min(15 points, half the random-init error).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from demo_world import write_world  # noqa: E402
from eval_knn import KNNConfig  # noqa: E402
from eval_knn import run as knn_run  # noqa: E402
from plumbing import parse_config  # noqa: E402
from pretrain import TrainConfig, build_models, load_backbone  # noqa: E402

RECIPE = ROOT / "pretrain" / "recipes" / "learning_cpu.yaml"
WORLD = dict(silhouette=True, photo_fraction=0.0, grayscale=True, n_train=200, n_val=50, coco=False, ade=False,
             backgrounds=False)  # fmt: skip
# world options on the command line and how each is read, e.g. object_scale=0.5,0.9 procedural=plain,gradient
WORLD_OPTIONS = {
    "object_scale": lambda v: tuple(float(x) for x in v.split(",")),  # object diameter / image side
    "min_contrast": float,
    "n_train": int,  # training images per class (the k-NN bank too)
    "n_val": int,  # val images per class (the k-NN queries)
    "num_classes": int,  # the first N shape classes (circle, square, triangle, star, ...)
    "silhouette": lambda v: _bool("silhouette", v),  # white objects on black
    "procedural": lambda v: tuple(v.split(",")),  # background kinds (default all three)
}


def _bool(key: str, v: str) -> bool:
    if v not in ("true", "false"):
        raise SystemExit(f"{key}={v}: expected true or false")
    return v == "true"


def world_options(opts: dict[str, str]) -> dict:
    """The world asked for by command-line options: `image_size` and the WORLD_OPTIONS keys given."""
    asked = {k: read(opts[k]) for k, read in WORLD_OPTIONS.items() if k in opts}
    return {"image_size": int(opts.get("image_size", 64)), **asked}


def ensure_world(world: Path, image_size: int = 64, **difficulty) -> None:
    """Write the benchmark world to `world` unless one is already there; one that is there must be the
    benchmark world (WORLD) with the `image_size` and `difficulty` asked for (WORLD_OPTIONS fields)."""
    asked = {**WORLD, "image_size": image_size, **difficulty}
    if not (world / "world.json").exists():
        write_world(world, seed=0, progress=False, **asked)
        return
    have = world_config(world)
    differ = {k: (have.get(k), v) for k, v in asked.items() if _plain(have.get(k)) != _plain(v)}
    if differ:
        raise SystemExit(f"{world} holds a different world ({differ}, as (there, asked)); choose another world=")


def world_config(world: Path) -> dict:
    """The WorldConfig a world folder was written with (its world.json)."""
    return json.loads((world / "world.json").read_text())["config"]


def _plain(v):
    return list(v) if isinstance(v, tuple | list) else v


def knn_top1(backbone, world: Path) -> float:
    cfg = KNNConfig(data_path=str(world / "classification"), image_size=world_config(world)["image_size"], ks=[20],
                    batch_size_per_gpu=200, num_workers=0, progress=False, output_dir="")  # fmt: skip
    return knn_run(backbone, cfg)["knn"]["k=20"]["top1"]


def plot(curve: list[dict], baseline: float, target: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([c["minutes"] for c in curve], [c["top1"] for c in curve], "o-", label="iBOT teacher")
    ax.axhline(baseline, color="grey", ls="--", label=f"random init ({baseline:.1f}%)")
    ax.axhline(baseline + target, color="green", ls=":", label=f"target (+{target:.1f})")
    ax.set_xlabel(f"training minutes ({'GPU' if torch.cuda.is_available() else '2 CPU cores'})")
    ax.set_ylabel("k-NN top-1 on shape class (%)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str]) -> dict:
    keys = ("minutes", "out", "epochs", "export_every", "eval_only", "recipe", "world", "image_size", *WORLD_OPTIONS)
    opts = dict(a.split("=", 1) for a in argv if a.split("=", 1)[0] in keys)
    overrides = [a for a in argv if a.split("=", 1)[0] not in opts]
    out = Path(opts.get("out", "bench_out/learning"))
    minutes, epochs, every = (
        float(opts.get("minutes", 45)),
        int(opts.get("epochs", 90)),
        int(opts.get("export_every", 10)),
    )
    recipe = Path(opts.get("recipe", RECIPE))
    world = Path(opts.get("world", out / "world"))
    ensure_world(world, **world_options(opts))
    args = [f"data_path={world / 'classification' / 'train'}", f"output_dir={out / 'run'}", f"epochs={epochs}",
            f"export_every={every}", f"time_limit_min={minutes}", *overrides]  # fmt: skip
    cfg = parse_config(TrainConfig, ["--config", str(recipe), *args])
    torch.manual_seed(cfg.seed)
    baseline = knn_top1(build_models(cfg)[1].backbone, world)  # the teacher at initialisation
    cmd = [sys.executable, "-m", "pretrain", "--config", str(recipe), *args]
    if opts.get("eval_only", "false") != "true":  # eval_only=true: evaluate the exports already there
        subprocess.run(cmd, cwd=ROOT, check=True)
    curve = [{"epoch": 0, "minutes": 0.0, "top1": baseline}]
    final = [out / "run" / "backbone.pth"] if (out / "run" / "backbone.pth").exists() else []
    for path in sorted((out / "run").glob("backbone_ep*.pth")) + final:
        backbone, info = load_backbone(path)
        meta = torch.load(path, weights_only=True)["meta"]
        curve.append({"epoch": info["epoch"], "minutes": round(meta["minutes"], 2), "top1": knn_top1(backbone, world)})
        print(json.dumps(curve[-1]), flush=True)
    target = min(15.0, (100.0 - baseline) / 2)
    final = curve[-1]["top1"]
    res = {"random_init_top1": baseline, "final_top1": final, "best_top1": max(c["top1"] for c in curve),
           "gain": final - baseline, "target_gain": target, "reached": final - baseline >= target,
           "chance": 100.0 / world_config(world)["num_classes"], "curve": curve, "overrides": overrides,
           "minutes_budget": minutes, "world": world_config(world)}  # fmt: skip
    (out / "results.json").write_text(json.dumps(res, indent=2))
    (out / "curve.json").write_text(json.dumps(curve, indent=2))
    plot(curve, baseline, target, out / "curve.png")
    print(json.dumps({k: v for k, v in res.items() if k != "curve"}))
    return res


if __name__ == "__main__":
    from plumbing import ConfigError

    try:
        main(sys.argv[1:])
    except ConfigError as e:  # a bad recipe key or value: one line, as `python -m pretrain` says it
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
