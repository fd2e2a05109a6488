"""Linear probing with a sweep: `run(backbone, cfg) -> dict` and the `python -m eval_linear` CLI.

Frozen backbone, training images augmented online (RandomResizedCrop + horizontal flip), val images
center-cropped (Resize(256) + CenterCrop(224), scaled to `image_size`) and extracted once. All heads
of the grid are validated every epoch; the reported number is the best val top-1 over heads and
epochs (reference §3.2 and §5 item 18). Output files in `output_dir`:
- `linear_checkpoint.pth`: heads, optimizer, epoch and bests; a rerun with the same grid resumes;
- `linear_head_best.pth`: the best head and its feature recipe (`pretrain.load_linear_classifier`
  turns it plus the backbone into a classifier);
- `config.yaml`, `results.json` (CLI) with every head's best accuracy.

    python -m eval_linear pretrained=ckpt.pth data_path=/data/imagenet output_dir=out/linear
    torchrun --nproc_per_node=8 -m eval_linear pretrained=... data_path=...   # lr x 8*128/256
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from evalkit import (
    FEATURE_RECIPES,
    PAPER_LRS,
    BestTracker,
    HeadGrid,
    block_widths,
    eval_transform,
    evaluate_heads,
    extract_features,
    feature_cache_file,
    feature_fn,
    frozen,
    image_splits,
    linear_train_transform,
    make_grid,
    make_optimizer,
    run_backbone_cli,
    save_linear_head,
    set_epoch_lr,
    train_one_epoch,
    widest_recipe,
)
from pretrain import ConfigError, atomic_save, resolve_device, safe_load

log = logging.getLogger(__name__)
CHECKPOINT, BEST_HEAD = "linear_checkpoint.pth", "linear_head_best.pth"
CHECKPOINT_FORMAT = "ibot-suite/linear-probe-checkpoint"


@dataclass
class LinearConfig:
    """Linear-probe sweep; defaults are the paper's (45 lrs, 100 epochs, batch 128 per GPU, SGD)."""

    pretrained: str = ""  # backbone file or training checkpoint (CLI only)
    checkpoint_key: str = "teacher"
    data_path: str = ""  # ImageFolder root holding train/ and val/
    train_list: str | None = None  # optional subset files (1% / 10% splits)
    val_list: str | None = None
    output_dir: str = "output/eval_linear"
    image_size: int = 224
    recipes: list[str] = field(default_factory=lambda: ["auto"])  # auto | cls | cls+avgpool
    n_last_blocks: int | None = None  # None: 4 for ViT-S and smaller, 1 for ViT-B/L
    lrs: list[float] = field(default_factory=lambda: list(PAPER_LRS))  # before scaling by batch/256
    wds: list[float] = field(default_factory=lambda: [0.0])
    epochs: int = 100
    batch_size: int = 128  # per process; lr scale = batch_size * world_size / 256
    momentum: float = 0.9
    num_workers: int = 8
    seed: int = 0
    device: str = "auto"
    resume: bool = True  # continue from output_dir/linear_checkpoint.pth when present
    cache_dir: str | None = None  # cache of the val features
    progress: bool = True


def resolve_recipes(cfg: LinearConfig, backbone: nn.Module) -> tuple[list[str], int]:
    """Recipes with `auto` replaced by the paper's per-size choice, and n_last_blocks."""
    small = backbone.embed_dim <= 384  # ViT-S and smaller: 4 [CLS]; ViT-B/L: [CLS] + patch mean
    recipes = []
    for r in cfg.recipes:
        r = ("cls" if small else "cls+avgpool") if r == "auto" else r
        if r not in FEATURE_RECIPES:
            raise ConfigError(f"unknown recipe {r!r} in recipes; valid: auto, {', '.join(FEATURE_RECIPES)}")
        recipes += [r] * (r not in recipes)
    n = cfg.n_last_blocks if cfg.n_last_blocks is not None else (min(4, backbone.depth) if small else 1)
    if not 1 <= n <= backbone.depth:
        raise ConfigError(f"n_last_blocks must be in [1, {backbone.depth}] for this backbone, got {n}")
    return recipes, n


def check_config(cfg: LinearConfig) -> None:
    """Raise ConfigError on settings that cannot work."""
    if not cfg.recipes or not cfg.lrs or not cfg.wds:
        raise ConfigError("recipes, lrs and wds must each hold at least one value")
    if min(cfg.lrs) <= 0 or min(cfg.wds) < 0 or cfg.epochs < 1 or cfg.batch_size < 1:
        raise ConfigError("lrs must be > 0, wds >= 0, epochs >= 1 and batch_size >= 1")


def _dist() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _train_loader(dataset, cfg: LinearConfig, epoch: int, world: int, device: torch.device) -> DataLoader:
    """Epoch-seeded shuffling and augmentation, so a resumed run repeats the same batches."""
    torch.manual_seed(cfg.seed + epoch)  # crops (main process) and worker seeds
    if world > 1:
        sampler = DistributedSampler(dataset, shuffle=True, seed=cfg.seed)
        sampler.set_epoch(epoch)
    else:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(cfg.seed + epoch))
    return DataLoader(
        dataset, cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers, pin_memory=device.type == "cuda"
    )


def _resume(path: Path, cfg: LinearConfig, identity: dict, heads: HeadGrid, optimizer, tracker: BestTracker):
    """Load `path` into heads/optimizer/tracker when resuming; returns (start epoch, history)."""
    if not cfg.resume or not path.is_file():
        return 0, []
    state = safe_load(path)
    if state.get("format") != CHECKPOINT_FORMAT or state.get("identity") != identity:
        raise ConfigError(
            f"{path} was written by a different linear-probe setup (grid, classes or blocks); "
            "use another output_dir or resume=false"
        )
    heads.load_state_dict(state["heads"])
    optimizer.load_state_dict(state["optimizer"])
    tracker.load_state_dict(state["tracker"])
    log.info("resumed from %s at epoch %d", path, state["epoch"])
    return state["epoch"], state["history"]


def run(backbone: nn.Module, cfg: LinearConfig) -> dict:
    """Train the grid of linear heads on frozen features; returns best and per-head accuracies."""
    check_config(cfg)
    device = resolve_device(cfg.device)
    # Epoch-seeded shuffles and crops must not disturb the caller's random stream (online monitoring).
    with frozen(backbone), torch.random.fork_rng(devices=[]):
        return _train_and_validate(backbone.to(device), cfg, device)


def _train_and_validate(backbone: nn.Module, cfg: LinearConfig, device: torch.device) -> dict:
    recipes, n = resolve_recipes(cfg, backbone)
    grid = make_grid(recipes, cfg.lrs, cfg.wds)
    train_set, val_set = image_splits(
        cfg.data_path,
        linear_train_transform(cfg.image_size),
        eval_transform(cfg.image_size),
        cfg.train_list,
        cfg.val_list,
    )
    widest = widest_recipe(grid)
    fn = feature_fn(backbone, widest, n)
    key = {"recipe": widest, "n_last_blocks": n, "device": device.type}
    cache = feature_cache_file(cfg.cache_dir, backbone, val_set, **key) if cfg.cache_dir else None
    val_x, val_y = extract_features(fn, val_set, cfg.batch_size, cfg.num_workers, device, cache, cfg.progress, "val")
    rank, world = _dist()
    torch.manual_seed(cfg.seed)
    heads = HeadGrid(grid, block_widths(backbone), n, len(train_set.classes)).to(device)
    optimizer = make_optimizer(heads, cfg.batch_size * world / 256, cfg.momentum)
    tracker = BestTracker(len(grid))
    out = Path(cfg.output_dir)
    identity = {"grid": [asdict(h) for h in grid], "n_last_blocks": n, "classes": train_set.classes}
    start, history = _resume(out / CHECKPOINT, cfg, identity, heads, optimizer, tracker)
    for epoch in range(start, cfg.epochs):
        set_epoch_lr(optimizer, epoch, cfg.epochs)
        loader = _train_loader(train_set, cfg, epoch, world, device)
        loss = train_one_epoch(fn, heads, optimizer, loader, device, cfg.progress and rank == 0)
        accs = evaluate_heads(heads, val_x, val_y)
        improved = tracker.update(accs, epoch)
        history.append({"epoch": epoch, "loss": loss, "best_top1": max(a[0] for a in accs)})
        log.info("epoch %d: loss %.4f, best head top-1 %.2f", epoch, loss, history[-1]["best_top1"])
        if rank == 0 and improved:
            spec, best = grid[tracker.best["head"]], tracker.best
            meta = {**asdict(spec), **best, "classes": train_set.classes, "image_size": cfg.image_size}
            save_linear_head(out / BEST_HEAD, heads.heads[best["head"]], spec.recipe, n, meta)
        if rank == 0:
            state = {"format": CHECKPOINT_FORMAT, "identity": identity, "epoch": epoch + 1, "history": history}
            state.update(heads=heads.state_dict(), optimizer=optimizer.state_dict(), tracker=tracker.state_dict())
            atomic_save(state, out / CHECKPOINT)
    return _results(grid, tracker, history, n, cfg, len(train_set), len(val_set), len(train_set.classes))


def _results(grid, tracker: BestTracker, history, n, cfg, num_train, num_val, num_classes) -> dict:
    best = tracker.best
    spec = grid[best["head"]]
    scale = cfg.batch_size * _dist()[1] / 256
    heads = [
        {
            "recipe": h.recipe,
            "lr": h.lr,
            "wd": h.wd,
            "best_top1": r["top1"],
            "best_top5": r["top5"],
            "best_epoch": r["epoch"],
        }
        for h, r in zip(grid, tracker.per_head, strict=True)
    ]
    return {
        "best": {**best, "recipe": spec.recipe, "lr": spec.lr, "lr_scaled": spec.lr * scale, "wd": spec.wd},
        "heads": heads,
        "n_last_blocks": n,
        "epochs": cfg.epochs,
        "history": history,
        "num_train": num_train,
        "num_val": num_val,
        "num_classes": num_classes,
        "best_head_file": str(Path(cfg.output_dir) / BEST_HEAD),
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m eval_linear key=value ...`; returns the exit status."""
    return run_backbone_cli(LinearConfig, argv, "eval_linear", run)
