"""How hard is the learning benchmark's world with labels? A reference for `bench/learning.py`.

  python bench/supervised.py [minutes=8] [world=bench_out/learning/world] [recipe=pretrain/recipes/learning_cpu.yaml]
                             [out=bench_out/supervised] [eval_every=200] [lr=...] [max_steps=0 (no limit)]
                             [key=value ...]   (other keys override the recipe)

Trains the recipe's backbone (same architecture and initialisation, crops of the recipe's global
scale, bf16 autocast if the recipe says so, AdamW at the recipe's lr with the batch/256 rule unless
`lr` is given) with a linear classifier on the shape labels of the world's train split for `minutes`.
Every `eval_every` steps it reports the val top-1 of that classifier and the weighted k-NN that
`bench/learning.py` reports (k = 20, [CLS]); evaluation time is not counted. The world must exist
(`bench/learning.py` writes it). Writes `results.json`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torchvision import datasets
from torchvision import transforms as T

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.learning import RECIPE, knn_top1, world_config  # noqa: E402
from plumbing import parse_config  # noqa: E402
from pretrain import TrainConfig, build_models  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def main(argv: list[str]) -> dict:
    opts = {"minutes": "8", "world": "bench_out/learning/world", "recipe": str(RECIPE), "out": "bench_out/supervised",
            "eval_every": "200", "max_steps": "0"}  # fmt: skip
    given = dict(a.split("=", 1) for a in argv)
    overrides = [f"{k}={v}" for k, v in given.items() if k not in opts and k != "lr"]  # recipe keys
    opts.update({k: v for k, v in given.items() if k in opts or k == "lr"})
    world, out = Path(opts["world"]), Path(opts["out"])
    if not (world / "world.json").exists():
        raise SystemExit(f"no world at {world}: run bench/learning.py first (it writes one), or pass world=")
    cfg = parse_config(TrainConfig, ["--config", opts["recipe"], f"data_path={world}", *overrides])
    size = world_config(world)["image_size"]
    torch.manual_seed(cfg.seed)
    backbone = build_models(cfg)[0].backbone
    train_tf = T.Compose([T.RandomResizedCrop(size, scale=tuple(cfg.global_crops_scale)), T.RandomHorizontalFlip(),
                          T.ToTensor(), T.Normalize(MEAN, STD)])  # fmt: skip
    train = datasets.ImageFolder(str(world / "classification" / "train"), train_tf)
    val = datasets.ImageFolder(str(world / "classification" / "val"), T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)]))
    loader = torch.utils.data.DataLoader(train, cfg.batch_size_per_gpu, shuffle=True, num_workers=1, drop_last=True)
    head = nn.Linear(backbone.embed_dim, len(train.classes))
    lr = float(opts.get("lr", cfg.lr * cfg.batch_size_per_gpu / 256))
    opt = torch.optim.AdamW([*backbone.parameters(), *head.parameters()], lr=lr, weight_decay=cfg.weight_decay)
    autocast = torch.autocast("cpu", torch.bfloat16, enabled=cfg.precision == "bf16")

    def evaluate(step: int, minutes: float) -> dict:
        backbone.eval()
        with torch.no_grad():
            hits = sum(
                (head(backbone(x)[:, 0]).argmax(1) == y).sum().item() for x, y in torch.utils.data.DataLoader(val, 200)
            )
        row = {"step": step, "minutes": round(minutes, 2), "linear_top1": 100.0 * hits / len(val),
               "knn_top1": knn_top1(backbone, world)}  # fmt: skip
        backbone.train()
        print(json.dumps(row), flush=True)
        return row

    max_steps = int(opts["max_steps"]) or float("inf")
    curve, step, t0 = [evaluate(0, 0.0)], 0, time.monotonic()
    while (time.monotonic() - t0) / 60 < float(opts["minutes"]) and step < max_steps:
        for x, y in loader:
            with autocast:
                loss = nn.functional.cross_entropy(head(backbone(x)[:, 0]).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % int(opts["eval_every"]) == 0:
                paused = time.monotonic()
                curve.append(evaluate(step, (paused - t0) / 60))
                t0 += time.monotonic() - paused  # the minutes count training only
            if (time.monotonic() - t0) / 60 >= float(opts["minutes"]) or step >= max_steps:
                break
    if curve[-1]["step"] != step:
        curve.append(evaluate(step, (time.monotonic() - t0) / 60))
    res = {"world": world_config(world), "lr": lr, "batch": cfg.batch_size_per_gpu, "curve": curve}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
