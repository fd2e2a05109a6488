"""Frozen features for every evaluation: transforms, pooling recipes, batched extraction, a cache.

Conventions of reference §3.0: a feature recipe pools the outputs of the last `n` blocks (each after
the final LayerNorm) returned by `get_intermediate_layers`:
- `cls`: concatenation of the n [CLS] tokens -> n*D (ViT-S linear probe: n = 4; k-NN: n = 1);
- `cls+avgpool`: the n [CLS] tokens, then the mean of the last block's patch tokens -> (n+1)*D
  (ViT-B/L linear probe: n = 1).
The layout is [CLS of block L-n+1, ..., CLS of block L, patch mean], so `cls` features are a prefix
of `cls+avgpool` features: one forward serves both recipes.
- `avgpool_prenorm`: the mean of the last block's patch tokens BEFORE the final LayerNorm -> D (the
  authors' `avgpool_patchtokens=1`, whose model replaces the final norm by the identity; ViT only,
  `n` is unused). Its tokens come from `get_block_outputs(x, [-1], norm=False)`.

`extract_features` runs a frozen model over a dataset once (inference mode, progress bar, `precision`
as everywhere: auto = bf16 on CUDA and on CPUs with native bf16); features that hold NaN or inf stop it
(NonFiniteError naming the first bad batch). Under `torch.distributed` each rank
reads its `DistributedSampler` shard and the features are all-gathered back into dataset order. An
optional cache file skips the work next time; `feature_cache_file` names it from a hash of the weights,
the dataset and the transform.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler
from torchvision import transforms as T
from tqdm import tqdm

from plumbing import CheckpointError, DatasetError, NonFiniteError, autocast, get_rank, get_world_size
from pretrain import IMAGENET_MEAN, IMAGENET_STD, ImageFolderDataset, atomic_save, safe_load, weights_fingerprint

log = logging.getLogger(__name__)

FEATURE_RECIPES = ("cls", "cls+avgpool", "avgpool_prenorm")


# ------------------------------------------------------------------------------ transforms
def eval_transform(image_size: int = 224) -> Callable:
    """Resize(256, bicubic) + CenterCrop(224) + normalise, scaled to `image_size` (ratio 256/224)."""
    return T.Compose(
        [
            T.Resize(round(image_size * 256 / 224), interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(image_size),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def linear_train_transform(image_size: int) -> Callable:
    """Linear-probe training: RandomResizedCrop (scale (0.08, 1), bilinear) + flip + normalise."""
    return T.Compose(
        [
            T.RandomResizedCrop(image_size),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def image_splits(
    data_path: str | os.PathLike,
    train_transform: Callable | None,
    val_transform: Callable | None,
    train_list: str | None = None,
    val_list: str | None = None,
) -> tuple[ImageFolderDataset, ImageFolderDataset]:
    """`data_path/train` and `data_path/val` image folders; val must have the same class folders."""
    root = Path(data_path)
    if not str(data_path) or not root.is_dir():
        raise DatasetError(
            f"data_path={str(data_path)!r} is not a folder: give data_path=ROOT with ROOT/train and ROOT/val"
        )
    for split, listing in (("train", train_list), ("val", val_list)):
        check_file_list(root / split, listing)
    train = ImageFolderDataset(root / "train", train_transform, file_list=train_list)
    val = ImageFolderDataset(root / "val", val_transform, file_list=val_list, classes=train.classes)
    labels = sorted(set(train.targets))
    if len(labels) < 2:
        only = train.classes[labels[0]] if labels else "none"
        raise DatasetError(
            f"a classification needs at least 2 classes; {root / 'train'} gives images of 1 ({only}"
            f"{', as train_list selects them' if train_list else ''}): every score would be 100 % by construction"
        )
    return train, val


def check_file_list(root: str | os.PathLike, file_list: str | os.PathLike | None) -> None:
    """Every entry of `file_list` with a folder part (`class/image.jpg`) exists under `root`: a typo'd
    folder never falls back to another class's file of the same name. Bare names (the authors' 1% / 10%
    ImageNet lists) are left to the dataset, which matches them by name. DatasetError naming the
    missing entries and their count."""
    if file_list is None or not Path(file_list).is_file():
        return  # no list, or a missing one (the dataset says so)
    entries = [line.split()[0] for line in Path(file_list).read_text().splitlines() if line.strip()]
    missing = [e for e in entries if "/" in e and not (Path(root) / e).is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        count = f"{len(missing)} listed files do not" if len(missing) > 1 else "1 listed file does not"
        raise DatasetError(f"{file_list}: {count} exist under {root}: {shown}")


@contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Eval mode inside the block; every submodule's train/eval flag is restored on exit.

    Evaluations called on a model that is being trained (online monitoring) leave it as they found it.
    """
    flags = [(sub, sub.training) for m in modules for sub in m.modules()]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for sub, flag in flags:
            sub.training = flag


# -------------------------------------------------------------------------------- recipes
def check_recipe(recipe: str) -> None:
    """Raise a ValueError listing the valid recipes if `recipe` is not one."""
    if recipe not in FEATURE_RECIPES:
        raise ValueError(f"unknown feature recipe {recipe!r}; valid: {', '.join(FEATURE_RECIPES)}")


def block_widths(backbone: nn.Module) -> list[int]:
    """Width of each block's tokens: all `embed_dim` for a ViT, per stage for a Swin (`block_dims`)."""
    return list(getattr(backbone, "block_dims", None) or [backbone.embed_dim] * backbone.depth)


def recipe_dim(recipe: str, widths: int | Sequence[int], n_last_blocks: int) -> int:
    """Feature width of `recipe` from the embed dim (ViT) or the per-block widths (`block_widths`):
    the last n blocks' [CLS] for `cls`, plus the last block's patch mean for `cls+avgpool`; the last
    block's width alone for `avgpool_prenorm`."""
    check_recipe(recipe)
    dims = [widths] * n_last_blocks if isinstance(widths, int) else list(widths)[-n_last_blocks:]
    if recipe == "avgpool_prenorm":
        return dims[-1]
    return sum(dims) + (dims[-1] if recipe == "cls+avgpool" else 0)


def pool_tokens(layers: Sequence[Tensor], recipe: str) -> Tensor:
    """Pool the last blocks' tokens (each (B, 1+N, D)) into (B, F) features.

    The tokens are after the final norm for `cls` and `cls+avgpool`, before it for `avgpool_prenorm`
    (which reads the last entry only).
    """
    check_recipe(recipe)
    if recipe == "avgpool_prenorm":
        return layers[-1][:, 1:].mean(dim=1)  # (B, D)
    parts = [x[:, 0] for x in layers]  # n x (B, D)
    if recipe == "cls+avgpool":
        parts.append(layers[-1][:, 1:].mean(dim=1))  # (B, D)
    return torch.cat(parts, dim=-1)  # (B, F)


def feature_fn(backbone: nn.Module, recipe: str = "cls", n_last_blocks: int = 1) -> Callable[[Tensor], Tensor]:
    """images (B, 3, H, W) -> pooled features (B, F) of the frozen `backbone`."""
    check_recipe(recipe)
    if not 1 <= n_last_blocks <= backbone.depth:
        raise ValueError(f"n_last_blocks must be in [1, {backbone.depth}] for this backbone, got {n_last_blocks}")

    if recipe == "avgpool_prenorm":
        if not hasattr(backbone, "get_block_outputs"):
            raise ValueError("recipe avgpool_prenorm needs a ViT backbone (block outputs before the final norm)")

        def prenorm(images: Tensor) -> Tensor:
            return pool_tokens(backbone.get_block_outputs(images, [-1], norm=False), recipe)  # (B, D)

        return prenorm

    def fn(images: Tensor) -> Tensor:
        return pool_tokens(backbone.get_intermediate_layers(images, n_last_blocks), recipe)

    return fn


# ----------------------------------------------------------------------------- extraction
def _gather(local: Tensor, world: int) -> Tensor:
    """all_gather equal-sized per-rank tensors -> (world * n, ...) on the same device."""
    out = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(out, local.contiguous())
    return torch.cat(out)


def extract_features(
    fn: Callable[[Tensor], Tensor],
    dataset: Dataset,
    batch_size: int = 128,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    cache_file: str | os.PathLike | None = None,
    progress: bool = True,
    desc: str = "features",
    precision: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Run `fn` over `dataset` ((img, label, index) items); returns (features (N, F) float32, labels (N,)) on CPU.

    Rows follow dataset order on every rank. With `cache_file`, a file written by an earlier call is
    read instead of computing (rank 0 writes it).
    """
    if cache_file is not None and Path(cache_file).is_file():
        cached = safe_load(cache_file)
        if cached.get("num_samples") != len(dataset):
            raise CheckpointError(f"{cache_file}: feature cache does not match the dataset; delete it")
        log.info("features read from cache %s", cache_file)
        return cached["features"], cached["labels"]
    device = torch.device(device)
    rank, world = get_rank(), get_world_size()
    sampler = DistributedSampler(dataset, shuffle=False) if world > 1 else None
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )  # fmt: skip
    feats, labels, index = [], [], []
    with torch.inference_mode(), autocast(device, precision):
        for images, y, i in tqdm(loader, desc=desc, disable=not progress or rank != 0, leave=False):
            feats.append(fn(images.to(device, non_blocking=True)).float())  # (B, F)
            labels.append(torch.as_tensor(y).to(device))
            index.append(torch.as_tensor(i).to(device))
    feats_l, labels_l, index_l = torch.cat(feats), torch.cat(labels), torch.cat(index)
    if world > 1:  # the sampler pads every shard to the same length; duplicates land on the same row
        feats_l, labels_l, index_l = (_gather(t, world) for t in (feats_l, labels_l, index_l))
    features = torch.zeros(len(dataset), feats_l.shape[1])  # (N, F)
    out_labels = torch.full((len(dataset),), -1, dtype=torch.long)
    features[index_l.cpu()] = feats_l.cpu()
    out_labels[index_l.cpu()] = labels_l.cpu().long()
    _check_finite_features(features, dataset, batch_size, desc)
    if cache_file is not None and rank == 0:
        atomic_save({"features": features, "labels": out_labels, "num_samples": len(dataset)}, cache_file)
    return features, out_labels


def _check_finite_features(features: Tensor, dataset: Dataset, batch_size: int, desc: str) -> None:
    """NonFiniteError naming the first batch (and image) whose features hold NaN or inf (every rank sees
    the gathered features, so all stop together)."""
    bad = (~torch.isfinite(features)).any(dim=1).nonzero()
    if len(bad) == 0:
        return
    i = int(bad[0])
    b = i // batch_size
    samples = getattr(dataset, "samples", None)
    name = f" ({samples[i][0]})" if samples is not None else ""
    raise NonFiniteError(
        f"{desc}: batch {b} (images {b * batch_size}-{min((b + 1) * batch_size, len(dataset)) - 1}) gives "
        f"non-finite features (NaN or inf), first at image {i}{name}; {len(bad)} images in all: the backbone "
        f"overflows (try precision=fp32) or its weights are broken"
    )


def check_finite_weights(module: nn.Module, source: str | os.PathLike = "the model") -> None:
    """NonFiniteError naming the first parameter or buffer of `module` that holds NaN or inf."""
    for name, t in module.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            n = int((~torch.isfinite(t)).sum())
            raise NonFiniteError(
                f"{source}: the weights hold NaN or infinite values ({name}: {n} of {t.numel()}): a diverged "
                f"or damaged checkpoint; nothing was evaluated"
            )


# ---------------------------------------------------------------------------------- cache
def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def feature_cache_file(cache_dir: str | os.PathLike, backbone: nn.Module, dataset: Any, **extra: Any) -> Path:
    """Cache path keyed by the backbone weights, the dataset's samples, its transform and `extra`."""
    samples = [(str(p), y) for p, y in getattr(dataset, "samples", [])]
    key = {
        "weights": weights_fingerprint(backbone),
        "dataset": _digest(samples or len(dataset)),
        "transform": repr(getattr(dataset, "transform", None)),
        **extra,
    }
    return Path(cache_dir) / f"features-{_digest(key)[:24]}.pt"


def split_features(
    backbone: nn.Module, dataset: Dataset, cfg: Any, device: torch.device, desc: str
) -> tuple[Tensor, Tensor]:
    """L2-normalised last-block [CLS] features (N, D) and labels (N,) of one split, on `device`: the
    input of k-NN and logistic regression. Reads `cfg.batch_size_per_gpu`, `num_workers`, `progress`,
    `precision` and `cache_dir` (a feature cache keyed by weights, data and transform when set)."""
    cache = None
    if getattr(cfg, "cache_dir", ""):
        cache = feature_cache_file(cfg.cache_dir, backbone, dataset, recipe="cls", n_last_blocks=1, device=device.type)
    feats, labels = extract_features(
        feature_fn(backbone, "cls", 1), dataset, cfg.batch_size_per_gpu, cfg.num_workers, device, cache,
        cfg.progress, desc, cfg.precision,
    )  # fmt: skip
    return torch.nn.functional.normalize(feats.to(device), dim=1, p=2), labels.to(device)
