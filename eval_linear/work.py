"""Linear probing with a sweep: `run(backbone, cfg) -> dict` (CLI: `python -m eval_linear`).

Frozen backbone, training images augmented online (RandomResizedCrop + horizontal flip), val images
center-cropped (Resize(256) + CenterCrop(224), scaled to `image_size`) and extracted once. All heads
of the grid are validated every epoch; the reported number is the best val top-1 over heads and
epochs (reference §3.2 and §5 item 18). Recipes: `cls` (ViT-S: the last 4 blocks' [CLS]),
`cls+avgpool` (ViT-B/L: [CLS] + the normed patch mean) and `avgpool_prenorm` (the authors'
`avgpool_patchtokens=1`: the patch mean before the final norm). Output files in `output_dir`:
- `linear_checkpoint.pth`: heads, optimizer, epoch and bests; a rerun with the same grid resumes;
- `linear_head_best.pth`: the best head and its feature recipe (`evalkit.load_classifier` turns it
  plus the backbone into a classifier);
- `tensorboard/`: per epoch the train loss, the best head's lr and val top-1;
- `config.yaml`, `results.json` (CLI) with every head's best accuracy.

    python -m eval_linear pretrained=ckpt.pth data_path=/data/imagenet
    torchrun --nproc_per_node=8 -m eval_linear pretrained=... data_path=...   # lr x 8*128/256
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from evalkit import (
    BestTracker,
    HeadSpec,
    ScalarLog,
    block_widths,
    describe_datasets,
    eval_transform,
    evaluate_heads,
    extract_features,
    feature_cache_file,
    frozen,
    image_splits,
    linear_train_transform,
    make_grid,
    make_optimizer,
    open_evaluation_folder,
    save_linear_head,
    set_epoch_lr,
    train_one_epoch,
)
from plumbing import ConfigError, autocast, get_rank, get_world_size, resolve_device
from pretrain import atomic_save, safe_load

from .config import LinearConfig
from .layout import PRENORM, OffsetHeadGrid, grid_layout

log = logging.getLogger(__name__)
CHECKPOINT, BEST_HEAD = "linear_checkpoint.pth", "linear_head_best.pth"
CHECKPOINT_FORMAT = "ibot-suite/linear-probe-checkpoint"


def resolve_recipes(cfg: LinearConfig, backbone: nn.Module) -> tuple[list[str], int]:
    """Check `cfg` (ConfigError), then its recipes with `auto` replaced by the paper's per-size choice, and
    n_last_blocks (both checked against `backbone`)."""
    cfg.check()
    small = backbone.embed_dim <= 384  # ViT-S and smaller: 4 [CLS]; ViT-B/L: [CLS] + patch mean
    recipes = []
    for r in cfg.recipes:
        r = ("cls" if small else "cls+avgpool") if r == "auto" else r
        recipes += [r] * (r not in recipes)
    if PRENORM in recipes and not hasattr(backbone, "get_block_outputs"):
        raise ConfigError(f"recipe {PRENORM} needs a ViT backbone (block outputs before the final norm)")
    n = cfg.n_last_blocks if cfg.n_last_blocks is not None else (min(4, backbone.depth) if small else 1)
    if not 1 <= n <= backbone.depth:
        raise ConfigError(f"n_last_blocks must be in [1, {backbone.depth}] for this backbone, got {n}")
    return recipes, n


def _in_precision(fn: Callable[[Tensor], Tensor], device: torch.device, precision: str) -> Callable:
    """`fn` under the run's precision (for the val features; the grid trainer takes `precision` itself)."""

    def wrapped(images: Tensor) -> Tensor:
        with autocast(device, precision):
            return fn(images)

    return wrapped


def _train_loader(dataset, cfg: LinearConfig, epoch: int, world: int, device: torch.device) -> DataLoader:
    """Epoch-seeded shuffling and augmentation, so a resumed run repeats the same batches."""
    torch.manual_seed(cfg.seed + epoch)  # crops (main process) and worker seeds
    if world > 1:
        sampler = DistributedSampler(dataset, shuffle=True, seed=cfg.seed)
        sampler.set_epoch(epoch)
    else:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(cfg.seed + epoch))
    return DataLoader(
        dataset, cfg.batch_size_per_gpu, sampler=sampler, num_workers=cfg.num_workers, pin_memory=device.type == "cuda"
    )


def _resume(path: Path, cfg: LinearConfig, identity: dict, heads: OffsetHeadGrid, optimizer, tracker: BestTracker):
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
    recipes, n = resolve_recipes(cfg, backbone)  # the work's one check of cfg: callers may skip the shell
    device = resolve_device(cfg.device)
    # Epoch-seeded shuffles and crops must not disturb the caller's random stream (online monitoring).
    with frozen(backbone), torch.random.fork_rng(devices=[]):
        return _train_and_validate(backbone.to(device), cfg, recipes, n, device)


def _val_features(backbone: nn.Module, fn: Callable, layout: str, n: int, val_set, cfg: LinearConfig, device):
    """Val features (N, F) of the grid's layout, extracted once (and cached with `cache_dir`)."""
    key = {"recipe": layout, "n_last_blocks": n, "device": device.type}
    cache = feature_cache_file(cfg.cache_dir, backbone, val_set, **key) if cfg.cache_dir else None
    return extract_features(
        fn, val_set, cfg.batch_size_per_gpu, cfg.num_workers, device, cache, cfg.progress, "val", cfg.precision
    )


def _train_and_validate(backbone: nn.Module, cfg: LinearConfig, recipes: list[str], n: int, device) -> dict:
    grid = make_grid(recipes, cfg.lrs, cfg.wds)
    train_set, val_set = image_splits(
        cfg.data_path,
        linear_train_transform(cfg.image_size),
        eval_transform(cfg.image_size),
        cfg.train_list,
        cfg.val_list,
    )
    out = Path(cfg.output_dir)
    datasets = describe_datasets(train=train_set, val=val_set)
    open_evaluation_folder(cfg, out / CHECKPOINT, {"backbone": backbone}, datasets, what="linear-probe setup")
    widths = block_widths(backbone)
    fn, offsets, layout = grid_layout(backbone, grid, n, widths)
    fn = _in_precision(fn, device, cfg.precision)
    val_x, val_y = _val_features(backbone, fn, layout, n, val_set, cfg, device)
    rank, world = get_rank(), get_world_size()
    torch.manual_seed(cfg.seed)
    heads = OffsetHeadGrid(grid, widths, n, len(train_set.classes), offsets).to(device)
    optimizer = make_optimizer(heads, cfg.batch_size_per_gpu * world / 256, cfg.momentum)
    tracker = BestTracker(len(grid))
    identity = {"grid": [asdict(h) for h in grid], "n_last_blocks": n, "classes": train_set.classes}
    start, history = _resume(out / CHECKPOINT, cfg, identity, heads, optimizer, tracker)
    scalars = ScalarLog(cfg.output_dir)
    for epoch in range(start, cfg.epochs):
        set_epoch_lr(optimizer, epoch, cfg.epochs)
        loader = _train_loader(train_set, cfg, epoch, world, device)
        loss = train_one_epoch(fn, heads, optimizer, loader, device, cfg.progress and rank == 0, cfg.precision)
        accs = evaluate_heads(heads, val_x, val_y)
        improved = tracker.update(accs, epoch)
        history.append({"epoch": epoch, "loss": loss, "best_top1": max(a[0] for a in accs)})
        log.info("epoch %d: loss %.4f, best head top-1 %.2f", epoch, loss, history[-1]["best_top1"])
        _log_scalars(scalars, epoch, loss, accs, optimizer)
        if rank == 0:
            _save(out, epoch, grid, heads, optimizer, tracker, identity, history, improved, n, train_set.classes, cfg)
    scalars.close()
    return _results(grid, tracker, history, n, cfg, len(train_set), len(val_set), len(train_set.classes))


def _log_scalars(scalars: ScalarLog, epoch: int, loss: float, accs: list, optimizer) -> None:
    """TensorBoard, step = epochs done: the mean train loss over heads, the epoch's best head's lr and top-1."""
    head = max(range(len(accs)), key=lambda i: (accs[i][0], -i))
    scalars.log({"loss": loss, "lr": optimizer.param_groups[head]["lr"]}, epoch + 1, "train")
    scalars.log({"top1": accs[head][0], "top5": accs[head][1]}, epoch + 1, "val")


def _save(out: Path, epoch: int, grid: list[HeadSpec], heads, optimizer, tracker: BestTracker, identity: dict,
          history: list, improved: bool, n: int, classes: list[str], cfg: LinearConfig) -> None:  # fmt: skip
    """Rank 0: the best head when the epoch improved it, and the resumable checkpoint."""
    if improved:
        spec, best = grid[tracker.best["head"]], tracker.best
        meta = {**asdict(spec), **best, "classes": classes, "image_size": cfg.image_size}
        save_linear_head(out / BEST_HEAD, heads.heads[best["head"]], spec.recipe, n, meta)
    state = {"format": CHECKPOINT_FORMAT, "identity": identity, "epoch": epoch + 1, "history": history}
    state.update(heads=heads.state_dict(), optimizer=optimizer.state_dict(), tracker=tracker.state_dict())
    atomic_save(state, out / CHECKPOINT)


def _results(grid, tracker: BestTracker, history, n, cfg, num_train, num_val, num_classes) -> dict:
    best = tracker.best
    spec = grid[best["head"]]
    scale = cfg.batch_size_per_gpu * get_world_size() / 256
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
