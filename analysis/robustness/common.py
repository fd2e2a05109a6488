"""What every robustness test shares: the classifier file, the evaluation data, class maps, plots, CLI.

A classifier is `images (B, 3, H, W), ImageNet-normalised -> logits (B, C)` with a `backbone`
attribute (for the tests that read its [CLS] attention), read by the evaluation layer's one loader
(`evalkit.load_classifier`): a linear-probe head from `python -m eval_linear` plus the backbone it was
trained on, or a fine-tuned classifier from `python -m finetune`.

Class maps say which dataset label an output of the classifier stands for: a tensor
`out_map[num_outputs]` holding the dataset label of every output, or -1 for outputs that are not one
of the dataset's classes (always wrong). See `load_output_map` for the accepted specifications.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from evalkit import load_classifier
from plumbing import ConfigError
from pretrain import ImageFolderDataset

from ..common import save_figure
from .config import RobustConfig

log = logging.getLogger(__name__)
DATA_DIR = Path(__file__).resolve().parent / "data"
SHIPPED_MAPS = {"in_to_in9": DATA_DIR / "in_to_in9.json"}  # the backgrounds challenge's ImageNet-1k -> IN-9 map
TIMM_SUBSETS = ("imagenet_a", "imagenet_r")  # 200-class subsets of ImageNet-1k, read from timm's package data


def classifier_info(model: nn.Module, info: dict | None) -> dict:
    """`info` as `load_classifier` returns it, or one inferred from an in-memory classifier."""
    if info is not None:
        return info
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear):
        raise ConfigError("pass the classifier's info (load_classifier's second value) for this model")
    return {"kind": "in-memory", "num_classes": head.out_features, "classes": None, "image_size": None}


def image_size(cfg: RobustConfig, info: dict) -> int:
    """cfg.image_size, else the classifier file's, else 224."""
    return cfg.image_size or info.get("image_size") or 224


# ----------------------------------------------------------------------------------- data
def eval_folder(root: str | os.PathLike, transform: Callable | None, info: dict) -> ImageFolderDataset:
    """An ImageFolder whose labels are the classifier's outputs (same class folders when known)."""
    if not str(root):
        raise ConfigError("data_path=FOLDER is required (an ImageFolder with class sub-folders)")
    ds = ImageFolderDataset(root, transform, classes=info.get("classes"))
    if len(ds.classes) != info["num_classes"]:
        raise ConfigError(
            f"{root} has {len(ds.classes)} class folders but the classifier has {info['num_classes']} outputs"
        )
    return ds


def subset(dataset: Dataset, max_images: int, seed: int) -> Dataset:
    """A seeded random subset of `max_images` items (the whole set for 0)."""
    if max_images <= 0 or max_images >= len(dataset):
        return dataset
    idx = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:max_images]
    return Subset(dataset, sorted(idx.tolist()))


def make_loader(dataset: Dataset, cfg: RobustConfig, shuffle: bool = False) -> DataLoader:
    """Batches of (images, labels, index); a shuffled order is seeded by cfg.seed."""
    gen = torch.Generator().manual_seed(cfg.seed) if shuffle else None
    return DataLoader(dataset, cfg.batch_size_per_gpu, shuffle=shuffle, generator=gen, num_workers=cfg.num_workers)


def batches(loader: DataLoader, device: torch.device, desc: str, progress: bool = True) -> Iterator[tuple]:
    """(images, labels) on `device`, with a progress bar."""
    for images, labels, *_ in tqdm(loader, desc=desc, disable=not progress, leave=False):
        yield images.to(device, non_blocking=True), torch.as_tensor(labels).to(device)


def correct(logits: Tensor, labels: Tensor, out_map: Tensor | None = None) -> int:
    """Number of top-1 hits; with `out_map` the argmax output is first mapped to a dataset label."""
    pred = logits.argmax(dim=1)  # (B,)
    if out_map is not None:
        pred = out_map.to(pred.device)[pred]  # -1 never equals a label
    return int((pred == labels).sum())


def accuracy(hits: int, total: int) -> float:
    """Top-1 in percent."""
    return 100.0 * hits / max(total, 1)


# ------------------------------------------------------------------------------ class maps
def _map_from_json(path: Path, num_outputs: int) -> Tensor:
    """A JSON dict {"<output>": label or -1} (in_to_in9.json) or list (position = label) of outputs."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"class map {path}: cannot read it as JSON: {e}") from None
    out_map = torch.full((num_outputs,), -1, dtype=torch.long)
    pairs = data.items() if isinstance(data, dict) else ((o, j) for j, o in enumerate(data))
    for out, label in pairs:
        if not 0 <= int(out) < num_outputs:
            raise ConfigError(f"class map {path}: output {out} outside the classifier's {num_outputs} outputs")
        out_map[int(out)] = int(label)
    return out_map


def timm_subset(name: str) -> tuple[list[int], list[str]]:
    """(ImageNet-1k output index, WordNet id) of every class of `name` (imagenet_a | imagenet_r), in
    the order of the dataset's sorted class folders: timm's package data, read where timm is installed."""
    info = importlib.resources.files("timm") / "data" / "_info"
    indices = [int(v) for v in (info / f"{name}_indices.txt").read_text().split()]
    synsets = (info / f"{name}_synsets.txt").read_text().split()
    return indices, synsets


def in9_classes() -> list[str]:
    """The nine ImageNet-9 class names, in label order (the shipped in9_classes.txt)."""
    return [line.split()[0] for line in (DATA_DIR / "in9_classes.txt").read_text().splitlines() if line.strip()]


def _builtin_map(spec: str, num_outputs: int, data_classes: Sequence[str]) -> Tensor:
    """out_map of a shipped map (in_to_in9) or of timm's ImageNet-A / -R subsets."""
    if num_outputs != 1000:
        raise ConfigError(
            f"class_map={spec} maps ImageNet-1k's 1000 outputs, the classifier has {num_outputs}: "
            "give class_map=names, identity or a map file"
        )
    if spec in SHIPPED_MAPS:
        return _map_from_json(SHIPPED_MAPS[spec], num_outputs)
    indices, synsets = timm_subset(spec)
    if list(data_classes) != synsets:
        log.warning("class folders are not %s's %d WordNet ids: labels follow the sorted folders", spec, len(synsets))
    out_map = torch.full((num_outputs,), -1, dtype=torch.long)
    out_map[torch.tensor(indices)] = torch.arange(len(indices))  # output indices[j] stands for dataset class j
    return out_map


def load_output_map(
    spec: str, num_outputs: int, data_classes: Sequence[str], model_classes: Sequence[str] | None
) -> Tensor:
    """out_map (num_outputs,) long: the dataset label of every classifier output, -1 for none.

    `spec`: `names` (match the classifier's recorded class names to the dataset's folder names),
    `identity` (output i is dataset class i), `in_to_in9` (the shipped backgrounds-challenge map of
    ImageNet-1k to IN-9), `imagenet_a` / `imagenet_r` (their 200 ImageNet-1k outputs, in the order of
    the sorted class folders, from timm's package data), or a JSON file, either {"<output index>":
    dataset label or -1} (the format of in_to_in9.json) or a list of output indices, one per dataset
    class in sorted folder order.
    """
    k = len(data_classes)
    if spec == "names":
        if model_classes is None:
            raise ConfigError("class_map=names needs class names in the classifier file; give a class map file")
        index = {c: i for i, c in enumerate(data_classes)}
        out_map = torch.tensor([index.get(c, -1) for c in model_classes], dtype=torch.long)
    elif spec == "identity":
        if k != num_outputs:
            raise ConfigError(f"class_map=identity needs {num_outputs} dataset classes, found {k}")
        out_map = torch.arange(num_outputs)
    elif spec in SHIPPED_MAPS or spec in TIMM_SUBSETS:
        out_map = _builtin_map(spec, num_outputs, data_classes)
    else:
        if not Path(spec).is_file():
            valid = ", ".join(("names", "identity", *SHIPPED_MAPS, *TIMM_SUBSETS))
            raise ConfigError(f"class map {spec!r}: not a file, nor one of {valid}")
        out_map = _map_from_json(Path(spec), num_outputs)
    bad = out_map[(out_map < -1) | (out_map >= k)]
    if len(bad):
        raise ConfigError(f"class map {spec!r}: labels {bad.tolist()[:5]} outside the dataset's {k} classes")
    missing = sorted(set(range(k)) - set(out_map.tolist()))
    if missing:
        names = [data_classes[i] for i in missing[:5]]
        raise ConfigError(f"class map {spec!r}: no classifier output stands for dataset classes {names}")
    return out_map


def identity_map_file(path: str | os.PathLike, num_classes: int) -> Path:
    """Write {"i": i} for i < num_classes: the in_to_in9.json format for a world whose classes are the outputs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({str(i): i for i in range(num_classes)}, indent=1))
    return path


# ----------------------------------------------------------------------------------- plots
def plot_curves(
    path: Path,
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    title: str,
    xticks: Sequence[str] | None = None,
) -> str:
    """One line per entry `name: (xs, ys)`; `xticks` labels positions 0, 1, ... when x is categorical."""
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    for name, (xs, ys) in curves.items():
        ax.plot(list(xs), list(ys), marker="o", label=name)
    if xticks is not None:
        ax.set_xticks(range(len(xticks)), list(xticks), rotation=30)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend(fontsize=8)
    return save_figure(fig, path)


# ------------------------------------------------------------------------------------- CLI
def classifier_results(run: Callable[..., dict], cfg: RobustConfig) -> dict:
    """The body of a classifier test's command: load `cfg.classifier` (+ `cfg.pretrained` for a linear
    head) with the one loader, `run(model, cfg, info)` (a `run_<test>`), and record what the classifier is."""
    if not cfg.classifier:
        raise ConfigError("classifier=FILE is required (a linear head from eval_linear or a fine-tuned classifier)")
    model, info = load_classifier(cfg.classifier, cfg.pretrained or None, cfg.checkpoint_key)
    results = run(model, cfg, info)
    keys = ("kind", "num_classes", "image_size", "recipe", "n_last_blocks", "arch")
    results["classifier"] = {k: info[k] for k in keys if k in info}
    return results
