"""Natural adversarial examples: accuracy and calibration on a class subset (reference §3.8).

ImageNet-A protocol: Resize(256) + CenterCrop(224) + normalisation (`evalkit.eval_transform`);
the logits are restricted to the outputs of the dataset's classes (`class_map`: `imagenet_a` or
`imagenet_r`, the 1000 -> 200 index lists timm ships as package data; `names`; `identity`; or any
map file, see `common.load_output_map`; every dataset class must have exactly one output), the
prediction is the argmax over them and the confidence the max softmax over them. Calibration as
the reference (Hendrycks' calibration tools):
- RMS calibration error: sort by confidence, bins of `bin_size` (100) samples, the last bin taking
  the remainder; sqrt(sum_bins n_bin / n * (mean confidence - mean accuracy)^2). The reference's loop
  skips the last bin (`rms_calibration_error`); `rms_calibration_error_all_bins` counts it.
- AURRA: mean over response rates r = 1..n of the accuracy on the r most confident samples.

    python -m analysis.robustness.natural_adv classifier=... data_path=/data/imagenet-a class_map=imagenet_a
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from evalkit import eval_transform
from plumbing import ConfigError, autocast
from pretrain import ImageFolderDataset

from ..common import on_device, save_figure
from .common import (
    batches,
    classifier_info,
    image_size,
    load_output_map,
    make_loader,
    subset,
)
from .config import NaturalAdvConfig


def rms_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, bin_size: int = 100, skip_last: bool = True
) -> float:
    """RMS calibration error over bins of `bin_size` samples sorted by confidence (see the module doc).

    With fewer than `bin_size` samples there is one bin. `skip_last=True` reproduces the reference,
    whose loop leaves out the last bin (so fewer than 2 bins give 0).
    """
    order = np.argsort(confidence, kind="stable")
    conf, hit = np.asarray(confidence, float)[order], np.asarray(correct, float)[order]
    n = len(conf)
    edges = [i * bin_size for i in range(max(n // bin_size, 1))] + [n]  # last bin absorbs the remainder
    bins = list(zip(edges[:-1], edges[1:], strict=True))
    total = 0.0
    for lo, hi in bins[:-1] if skip_last else bins:
        total += (hi - lo) / n * (conf[lo:hi].mean() - hit[lo:hi].mean()) ** 2
    return float(np.sqrt(total))


def aurra(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Area under the response-rate accuracy curve: mean over r of the accuracy of the r most confident."""
    order = np.argsort(-np.asarray(confidence, float), kind="stable")
    hits = np.cumsum(np.asarray(correct, float)[order])
    return float(np.mean(hits / np.arange(1, len(hits) + 1)))


def subset_outputs(out_map: torch.Tensor, num_labels: int) -> torch.Tensor:
    """(K,) the one classifier output of each dataset label 0..K-1; error if a label has several."""
    counts = torch.bincount(out_map[out_map >= 0], minlength=num_labels)
    if (counts != 1).any():
        raise ConfigError("a subset evaluation needs exactly one classifier output per dataset class")
    outputs = torch.empty(num_labels, dtype=torch.long)
    labelled = (out_map >= 0).nonzero().flatten()
    outputs[out_map[labelled]] = labelled
    return outputs


def _plot(conf: np.ndarray, hit: np.ndarray, path: Path) -> str:
    """Accuracy vs response rate (the curve under AURRA)."""
    order = np.argsort(-conf, kind="stable")
    acc = np.cumsum(hit[order]) / np.arange(1, len(hit) + 1)
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    ax.plot(np.arange(1, len(hit) + 1) / len(hit), 100 * acc)
    ax.set(xlabel="response rate", ylabel="accuracy % of the answered", title="natural adversarial examples")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def run_natural_adv(classifier: nn.Module, cfg: NaturalAdvConfig, info: dict | None = None) -> dict:
    """Top-1, RMS calibration error and AURRA over the dataset's class subset."""
    info = classifier_info(classifier, info)
    size = image_size(cfg, info)
    if not cfg.data_path:
        raise ConfigError("data_path=FOLDER is required (class sub-folders, e.g. ImageNet-A's 200)")
    base = ImageFolderDataset(cfg.data_path, eval_transform(size))
    out_map = load_output_map(cfg.class_map, info["num_classes"], base.classes, info.get("classes"))
    outputs = subset_outputs(out_map, len(base.classes))  # (K,)
    confs, hits = [], []
    with on_device([classifier], cfg.device) as dev:
        for x, y in batches(make_loader(subset(base, cfg.max_images, cfg.seed), cfg), dev, "natural adv", cfg.progress):
            with autocast(dev, cfg.precision):
                logits = classifier(x).float()[:, outputs.to(dev)]  # (B, K)
            conf, pred = logits.softmax(dim=1).max(dim=1)
            confs.append(conf.cpu())
            hits.append((pred == y).cpu())
    conf, hit = torch.cat(confs).numpy(), torch.cat(hits).numpy().astype(float)
    out = {
        "num_images": len(hit),
        "num_classes": len(base.classes),
        "top1": 100.0 * float(hit.mean()),
        "rms_calibration_error": 100.0 * rms_calibration_error(conf, hit, cfg.bin_size),
        "rms_calibration_error_all_bins": 100.0 * rms_calibration_error(conf, hit, cfg.bin_size, skip_last=False),
        "aurra": 100.0 * aurra(conf, hit),
        "mean_confidence": 100.0 * float(conf.mean()),
    }
    out["figure"] = _plot(conf, hit, Path(cfg.output_dir) / "natural_adv.png")
    return out
