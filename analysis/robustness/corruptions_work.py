"""Common corruptions: top-1 error per corruption and severity (reference §3.8, "Common corruptions").

Sources of corrupted images:
- on the fly (`data_path`, any ImageFolder): Resize + CenterCrop (`evalkit.eval_transform`'s
  geometry, 224 px), then the corruption of `imagecorruptions` (package `imagecorruptions-imaug`,
  the optional extra `pip install 'ibot-suite[robustness]'`: without it this source stops with one
  line saying so) on the uint8 image, then normalisation. The corruption's randomness is seeded per
  image (seed, corruption, severity, index), so a run is reproducible whatever the number of workers.
- pre-corrupted (`imagenet_c`, the ImageNet-C layout `<root>/<corruption>/<severity>/<class>/...`):
  CenterCrop(224) without resizing, then normalisation, as the reference.

Corruption names are the library's (19: the 15 standard ImageNet-C ones and speckle_noise,
gaussian_blur, spatter, saturate); `all`, `common` (15) and `validation` (4 extra) expand to theirs.
Per corruption, CE = mean over severities of the top-1 error (%); the reference's printed "mCE" is
the plain mean of those CEs (`mean_error`, unnormalised, including the extra corruptions). With
AlexNet's errors (fractions, mean over the 5 severities) in `alexnet_errors`, or the 15 published
ones with `standard_alexnet=true`, the standard AlexNet-normalised mCE is reported too:
CE_c = mean_s E(c, s) / E_AlexNet(c), mCE = 100 * mean_c CE_c over the corruptions that have one.

    python -m analysis.robustness.corruptions classifier=... data_path=/data/imagenet/val standard_alexnet=true
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from torch import nn
from torch.utils.data import Dataset
from torchvision import transforms as T

from evalkit import eval_transform
from plumbing import ConfigError, DatasetError, autocast
from pretrain import IMAGENET_MEAN, IMAGENET_STD, ImageFolderDataset

from ..common import on_device
from .common import (
    DATA_DIR,
    accuracy,
    batches,
    classifier_info,
    correct,
    eval_folder,
    image_size,
    make_loader,
    plot_curves,
    subset,
)
from .config import CorruptionsConfig, require_imagecorruptions

GROUPS = ("all", "common", "validation")


def _library():
    """The optional package `imagecorruptions`; a missing one stops with one line naming the extra."""
    require_imagecorruptions()
    import imagecorruptions

    return imagecorruptions


def corruption_names(requested: list[str]) -> list[str]:
    """The library's names for `requested` (names or the groups all / common / validation), in order."""
    lib = _library()
    valid = lib.get_corruption_names("all")
    names: list[str] = []
    for r in requested:
        group = lib.get_corruption_names(r) if r in GROUPS else [r]
        unknown = [g for g in group if g not in valid]
        if unknown:
            raise ConfigError(f"unknown corruption {unknown[0]!r}; valid: {', '.join(GROUPS + tuple(valid))}")
        names += [g for g in group if g not in names]
    return names


def check_severities(severities: list[int]) -> list[int]:
    """Severities are 1..5."""
    if not severities or any(s not in range(1, 6) for s in severities):
        raise ConfigError(f"severities must be in 1..5, got {severities}")
    return list(severities)


class Corrupted(Dataset):
    """(normalised corrupted image, label, index) of `base` (PIL items), one corruption and severity."""

    def __init__(self, base: ImageFolderDataset, geometry: Callable, name: str, severity: int, seed: int):
        self.base, self.geometry, self.name, self.severity = base, geometry, name, severity
        self.key = (seed, corruption_names(["all"]).index(name), severity)
        self.finish = T.Compose([T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        img, label, _ = self.base[i]
        arr = np.asarray(self.geometry(img), dtype=np.uint8)  # (H, W, 3)
        state = np.random.get_state()  # the library draws from numpy's global generator: seed it, then restore
        np.random.seed(np.random.SeedSequence([*self.key, i]).generate_state(1)[0])
        try:
            out = _library().corrupt(arr, corruption_name=self.name, severity=self.severity)
        finally:
            np.random.set_state(state)
        return self.finish(Image.fromarray(np.uint8(out))), label, i


def standard_alexnet_errors() -> dict[str, float]:
    """AlexNet's top-1 error (fraction, mean over severities) on the 15 ImageNet-C corruptions."""
    return json.loads((DATA_DIR / "alexnet_errors.json").read_text())["errors"]


def summarise(errors: dict[str, dict[int, float]], alexnet: dict[str, float]) -> dict:
    """CE per corruption, the reference's mean error and (with AlexNet errors) the normalised mCE.

    `errors[c][s]` is the top-1 error in % at severity s; `alexnet[c]` AlexNet's error as a fraction.
    """
    ce = {c: sum(per.values()) / len(per) for c, per in errors.items()}
    out: dict = {"ce": ce, "mean_error": sum(ce.values()) / max(len(ce), 1)}
    normalised = {c: ce[c] / (100.0 * alexnet[c]) for c in ce if c in alexnet}
    if normalised:
        out["ce_alexnet_normalised"] = {c: 100.0 * v for c, v in normalised.items()}
        out["mce_alexnet"] = 100.0 * sum(normalised.values()) / len(normalised)
        out["mce_alexnet_over"] = sorted(normalised)
    return out


def _alexnet(cfg: CorruptionsConfig) -> dict[str, float]:
    table = {**(standard_alexnet_errors() if cfg.standard_alexnet else {}), **cfg.alexnet_errors}
    bad = {k: v for k, v in table.items() if not 0 < v <= 1}
    if bad:
        raise ConfigError(f"alexnet_errors are fractions in (0, 1] (0.886 for 88.6 %), got {bad}")
    return table


def _dataset(cfg: CorruptionsConfig, info: dict, size: int, name: str, severity: int) -> Dataset:
    if cfg.imagenet_c:
        root = Path(cfg.imagenet_c) / name / str(severity)
        tf = T.Compose([T.CenterCrop(size), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
        return eval_folder(root, tf, info)
    # eval_transform's resize and crop; the corruption works on the uint8 image before normalising.
    geometry = T.Compose([t for t in eval_transform(size).transforms if not isinstance(t, (T.ToTensor, T.Normalize))])
    return Corrupted(eval_folder(cfg.data_path, None, info), geometry, name, severity, cfg.seed)


def _plot(errors: dict[str, dict[int, float]], severities: list[int], path: Path) -> str:
    curves = {c: (severities, [per[s] for s in severities]) for c, per in errors.items()}
    if len(curves) > 8:  # too many lines to tell apart: the mean over corruptions
        mean = [sum(per[s] for per in errors.values()) / len(errors) for s in severities]
        curves = {f"mean of {len(errors)} corruptions": (severities, mean)}
    return plot_curves(path, curves, "severity", "top-1 error %", "common corruptions")


def run_corruptions(classifier: nn.Module, cfg: CorruptionsConfig, info: dict | None = None) -> dict:
    """Top-1 error for every corruption x severity; CE, mean error and (optionally) AlexNet mCE."""
    info = classifier_info(classifier, info)
    size = image_size(cfg, info)
    if cfg.imagenet_c and not Path(cfg.imagenet_c).is_dir():
        raise DatasetError(f"imagenet_c={cfg.imagenet_c}: no such folder (<corruption>/<severity>/<class>/...)")
    names = corruption_names(cfg.corruptions) if not cfg.imagenet_c else cfg.corruptions
    if cfg.imagenet_c and any(n in GROUPS for n in names):  # the folder's own corruptions
        names = sorted(p.name for p in Path(cfg.imagenet_c).iterdir() if p.is_dir())
    severities, alexnet = check_severities(cfg.severities), _alexnet(cfg)
    errors: dict[str, dict[int, float]] = {}
    with on_device([classifier], cfg.device) as dev:
        for name in names:
            errors[name] = {}
            for s in severities:
                ds = subset(_dataset(cfg, info, size, name, s), cfg.max_images, cfg.seed)
                hits, n = 0, 0
                for x, y in batches(make_loader(ds, cfg), dev, f"{name} s{s}", cfg.progress):
                    with autocast(dev, cfg.precision):
                        hits += correct(classifier(x), y)
                    n += len(y)
                errors[name][s] = 100.0 - accuracy(hits, n)
    out = {
        "source": cfg.imagenet_c or cfg.data_path,
        "image_size": size,
        "errors": errors,
        **summarise(errors, alexnet),
    }
    out["figure"] = _plot(errors, severities, Path(cfg.output_dir) / "corruptions.png")
    return out
