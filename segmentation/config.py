"""The segmentation config: reference defaults (§3.7 of the iBOT reference) and their per-size values.

Defaults are the ADE20K 512x512, 160k-iteration protocol. `lr`, `layer_decay` and `drop_path_rate`
left at None take the reference value for the head and backbone size (`REFERENCE`, README overrides
included); sizes without a reference value (e.g. ViT-Tiny) must pass them explicitly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from pretrain import ConfigError, arch_name, is_swin

HEADS = ("upernet", "linear")
TEST_MODES = ("slide", "whole")
PRECISIONS = ("auto", "fp32", "bf16")
MS_RATIOS = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]

# (head, size) -> lr, layer decay, drop path (total batch 16; lrs are absolute, never batch-scaled).
REFERENCE: dict[tuple[str, str], dict[str, float]] = {
    ("upernet", "vit_small"): {"lr": 3e-5, "layer_decay": 0.9, "drop_path_rate": 0.1},
    ("upernet", "vit_base"): {"lr": 8e-5, "layer_decay": 0.65, "drop_path_rate": 0.1},  # README (config 7e-4)
    ("upernet", "vit_large"): {"lr": 2e-5, "layer_decay": 0.95, "drop_path_rate": 0.2},
    ("linear", "vit_small"): {"lr": 3e-5, "layer_decay": 1.0, "drop_path_rate": 0.0},
    ("linear", "vit_base"): {"lr": 8e-4, "layer_decay": 1.0, "drop_path_rate": 0.0},  # README (config 7e-4)
}
SIZES = {(192, 12): "vit_tiny", (384, 12): "vit_small", (768, 12): "vit_base", (1024, 24): "vit_large"}


@dataclass
class SegConfig:
    """`python -m segmentation` keys; defaults = the reference ADE20K recipe (UperNet, 512 crops)."""

    pretrained: str = ""  # backbone file or training checkpoint (CLI only)
    checkpoint_key: str = "teacher"
    data_path: str = ""  # ADEChallengeData2016 root (images/, annotations/), or the demo world's ade/
    output_dir: str = "output/segmentation"
    head: str = "upernet"  # upernet | linear
    num_classes: int | None = None  # None: classes.json if present, else 150 (ADE20K)
    reduce_zero_label: bool = True  # label 0 -> ignore, v -> v - 1 (ADE20K's "other")
    out_indices: list[int] | None = None  # None: blocks 3, 5, 7, 11 scaled to the depth (ViT; Swin: None)
    out_with_norm: bool = True  # final LayerNorm on each of the four block outputs (ViT; Swin: stage norms)
    channels: int | None = None  # UperNet channels; None: the embedding width D
    aux_channels: int = 256
    aux_weight: float = 0.4
    dropout: float = 0.1  # UperNet and auxiliary heads; the linear head has none
    # train pipeline
    img_scale: list[int] = field(default_factory=lambda: [2048, 512])
    ratio_range: list[float] = field(default_factory=lambda: [0.5, 2.0])
    crop_size: int = 512
    cat_max_ratio: float = 0.75
    flip_prob: float = 0.5
    photometric: bool = True
    resize_pos_embed: bool = True  # bicubic-resize the position embedding to the crop grid at load (ViT only)
    # inference
    test_mode: str = "slide"  # slide | whole
    test_scale: list[int] | None = None  # None: img_scale
    test_crop: int | None = None  # None: crop_size
    test_stride: int = 341
    multi_scale: bool = False  # ratios below + flip, SETR resize (short side >= test crop)
    ms_ratios: list[float] = field(default_factory=lambda: list(MS_RATIOS))
    window_batch: int = 4  # sliding windows decoded together
    val_limit: int | None = None  # evaluate the first N val images only
    n_figure: int = 4  # val images in predictions.png
    # optimisation
    iters: int = 160_000
    batch_size: int = 16  # total over processes
    lr: float | None = None
    layer_decay: float | None = None
    drop_path_rate: float | None = None
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_iters: int = 1500
    warmup_ratio: float = 1e-6
    poly_power: float = 1.0
    # running
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 (CUDA only)
    device: str = "auto"
    num_workers: int = 4
    seed: int = 0
    save_every: int = 2000
    stop_after: int | None = None  # checkpoint and stop at this step (preemption, time slices)
    progress: bool = True


def backbone_size(backbone: nn.Module) -> str:
    """Registry name of a ViT from its width and depth ('custom' when it is none of them); a Swin's own
    name (swin_tiny has a ViT-B's width and depth, but no reference values here)."""
    name = arch_name(backbone)
    return name if is_swin(name) else SIZES.get((backbone.embed_dim, backbone.depth), "custom")


def resolve_hparams(cfg: SegConfig, backbone: nn.Module) -> dict[str, float]:
    """lr, layer decay and drop path: explicit values, else the reference for (head, size)."""
    ref = REFERENCE.get((cfg.head, backbone_size(backbone)), {})
    if cfg.head == "linear":  # frozen backbone in eval mode: no layer decay, no drop path, any size
        ref = {"layer_decay": 1.0, "drop_path_rate": 0.0, **ref}
    out = {}
    for key in ("lr", "layer_decay", "drop_path_rate"):
        value = getattr(cfg, key)
        if value is None:
            if key not in ref:
                raise ConfigError(
                    f"no reference {key} for head={cfg.head} and a {backbone_size(backbone)} backbone; pass {key}=..."
                )
            value = ref[key]
        out[key] = float(value)
    if cfg.head == "linear" and out["layer_decay"] != 1.0:
        raise ConfigError("the linear head trains no backbone layers: layer_decay must be 1.0")
    return out


def read_classes(data_path: str | Path) -> dict | None:
    """`classes.json` of a demo-world style folder, or None (real ADE20K has none)."""
    path = Path(data_path) / "classes.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None


def resolve_num_classes(cfg: SegConfig, classes: dict | None) -> int:
    """Explicit `num_classes`, else from classes.json (+1 for background without reduce_zero_label), else 150."""
    if cfg.num_classes is not None:
        return cfg.num_classes
    if classes is not None and "num_classes" in classes:
        return int(classes["num_classes"]) + (0 if cfg.reduce_zero_label else 1)
    return 150


def check_config(cfg: SegConfig) -> None:
    """Reject impossible values with one message each (ConfigError)."""
    checks = [
        (cfg.head in HEADS, f"head must be one of {HEADS}, got {cfg.head!r}"),
        (cfg.test_mode in TEST_MODES, f"test_mode must be one of {TEST_MODES}, got {cfg.test_mode!r}"),
        (cfg.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {cfg.precision!r}"),
        (cfg.num_classes is None or 1 <= cfg.num_classes <= 255, "num_classes must be in 1..255"),
        (len(cfg.img_scale) == 2 and min(cfg.img_scale) > 0, "img_scale must be two positive ints"),
        (cfg.test_scale is None or len(cfg.test_scale) == 2, "test_scale must be two ints"),
        (len(cfg.ratio_range) == 2 and 0 < cfg.ratio_range[0] <= cfg.ratio_range[1], "bad ratio_range"),
        (cfg.crop_size > 0 and (cfg.test_crop or 1) > 0 and cfg.test_stride > 0, "crop/stride must be > 0"),
        (0 < cfg.cat_max_ratio <= 1, "cat_max_ratio must be in (0, 1]"),
        (cfg.iters > 0 and cfg.batch_size > 0, "iters and batch_size must be > 0"),
        (0 <= cfg.warmup_iters and 0 < cfg.warmup_ratio <= 1, "bad warmup_iters / warmup_ratio"),
        (len(cfg.betas) == 2, "betas must be two floats"),
        (cfg.stop_after is None or cfg.stop_after > 0, "stop_after must be > 0"),
        (len(cfg.ms_ratios) > 0 and min(cfg.ms_ratios) > 0, "ms_ratios must be positive"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)
