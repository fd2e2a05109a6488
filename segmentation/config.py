"""The segmentation config: reference defaults (§3.7 of the iBOT reference) and their per-size values.

Defaults are the ADE20K 512x512, 160k-iteration protocol. `lr`, `layer_decay` and `drop_path_rate`
left at None take the reference value for the head and backbone size (`REFERENCE`, README overrides
included); sizes without a reference value (e.g. ViT-Tiny) must pass them explicitly.
The reference batch is 16 images in total: 2 per GPU x 8 GPUs (ViT-B UperNet) or 4 x 4 (ViT-S UperNet,
ViT-B linear); `batch_size_per_gpu` is per process, so the total is it times the processes.
This module imports no torch (`--help` answers at once); `pretrain` names are imported where used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from evalkit import EvalConfig
from plumbing import ConfigError, check_range

if TYPE_CHECKING:
    from torch import nn

HEADS = ("upernet", "linear")
TEST_MODES = ("slide", "whole")
MS_RATIOS = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
ADE_DIRS = ("images/training", "annotations/training", "images/validation", "annotations/validation")

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
class SegConfig(EvalConfig):
    """ADE20K semantic segmentation: UperNet (fine-tuned backbone) or a linear head (frozen backbone)."""

    data_path: str = ""  # ADE20K root: images/{training,validation}/ and annotations/{training,validation}/
    output_dir: str = "runs/segmentation"  # run folder: checkpoint, predictions.png, tensorboard/, results
    resume: bool = True  # continue from output_dir/seg_checkpoint.pth (false: the old run is moved aside)
    batch_size_per_gpu: int = 2  # crops per process and step; reference total 16 = 2 x 8 GPUs (or 4 x 4)
    head: str = "upernet"  # upernet (backbone fine-tuned) | linear (backbone frozen)
    num_classes: int | None = None  # None: classes.json if present, else 150 (ADE20K)
    reduce_zero_label: bool = True  # label 0 -> ignore, v -> v - 1 (ADE20K's "other")
    out_indices: list[int] | None = None  # None: blocks 3, 5, 7, 11 scaled to the depth (ViT; Swin: None)
    out_with_norm: bool = True  # final LayerNorm on each of the four block outputs (ViT; Swin: stage norms)
    channels: int | None = None  # UperNet channels; None: the embedding width D
    aux_channels: int = 256  # channels of the auxiliary FCN head (UperNet only)
    aux_weight: float = 0.4  # weight of the auxiliary head's loss
    dropout: float = 0.1  # UperNet and auxiliary heads; the linear head has none
    img_scale: list[int] = field(default_factory=lambda: [2048, 512])  # train resize target (long, short side)
    ratio_range: list[float] = field(default_factory=lambda: [0.5, 2.0])  # random scale range around img_scale
    crop_size: int = 512  # square train crop (pixels)
    cat_max_ratio: float = 0.75  # a crop may hold at most this fraction of one class (10 tries)
    flip_prob: float = 0.5  # horizontal flip probability
    photometric: bool = True  # photometric distortion (brightness, contrast, saturation, hue)
    resize_pos_embed: bool = True  # bicubic-resize the position embedding to the crop grid at load (ViT only)
    test_mode: str = "slide"  # slide | whole
    test_scale: list[int] | None = None  # test resize target (long, short side); None: img_scale
    test_crop: int | None = None  # sliding window size; None: crop_size
    test_stride: int = 341  # sliding window stride (pixels)
    multi_scale: bool = False  # test at ms_ratios + flip, SETR resize (short side >= test crop)
    ms_ratios: list[float] = field(default_factory=lambda: list(MS_RATIOS))  # multi-scale test ratios
    window_batch: int = 4  # sliding windows decoded together
    val_limit: int | None = None  # evaluate the first N val images only (None: all)
    n_figure: int = 4  # val images in predictions.png (0: no figure)
    iters: int = 160_000  # training iterations (steps)
    lr: float | None = None  # AdamW base lr (absolute); None: the reference value for head and size
    layer_decay: float | None = None  # per-block lr decay in (0, 1]; None: reference (linear head: 1.0)
    drop_path_rate: float | None = None  # stochastic depth of the backbone; None: reference (linear: 0)
    weight_decay: float = 0.05  # AdamW weight decay (not on biases and 1-D tensors)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # AdamW betas
    warmup_iters: int = 1500  # linear lr warm-up iterations
    warmup_ratio: float = 1e-6  # warm-up starts at this fraction of the lr
    poly_power: float = 1.0  # poly decay power: lr x (1 - t/T)^power
    save_every: int = 2000  # checkpoint every N steps (and at the end)
    log_every: int = 50  # TensorBoard loss and lr every N steps
    stop_after: int | None = None  # checkpoint and stop at this step (preemption, time slices)
    time_limit_min: float = 0.0  # stop training after N minutes (0: no limit); checkpointed, then evaluated as trained
    progress: bool = True  # show progress bars

    def check(self) -> None:
        """Reject impossible values with one message each (ConfigError), before any work starts."""
        if not self.data_path:
            raise ConfigError("data_path=FOLDER is required (the ADE20K root: images/ and annotations/)")
        missing = [d for d in ADE_DIRS if not (Path(self.data_path) / d).is_dir()]
        if missing:
            raise ConfigError(f"data_path={self.data_path}: {missing[0]}/ not found; expected the ADE20K layout "
                              "images/{training,validation}/ and annotations/{training,validation}/")  # fmt: skip
        for ok, msg in self._range_checks():
            if not ok:
                raise ConfigError(msg)
        self._check_numbers()

    def _check_numbers(self) -> None:
        """Every number in its range, NaN and infinities refused (after the rules above, which name the
        common mistakes in their own words)."""
        check_range(self, ("aux_channels", "crop_size", "test_stride", "window_batch", "iters", "save_every",
                           "log_every", "num_classes", "channels", "test_crop", "val_limit", "stop_after",
                           "img_scale", "test_scale"), ge=1)  # fmt: skip
        check_range(self, ("n_figure", "warmup_iters", "weight_decay", "aux_weight", "time_limit_min", "poly_power"),
                    ge=0)  # fmt: skip
        check_range(self, ("ratio_range", "ms_ratios", "lr"), gt=0)
        check_range(self, ("cat_max_ratio", "warmup_ratio", "layer_decay"), gt=0, le=1)
        check_range(self, ("dropout", "drop_path_rate", "betas"), ge=0, lt=1)
        check_range(self, "flip_prob", ge=0, le=1)

    def _range_checks(self) -> list[tuple[bool, str]]:
        """(holds, message) for every value rule."""
        ld, dp = self.layer_decay, self.drop_path_rate
        return [
            (self.head in HEADS, f"head must be one of {HEADS}, got {self.head!r}"),
            (self.test_mode in TEST_MODES, f"test_mode must be one of {TEST_MODES}, got {self.test_mode!r}"),
            (self.num_classes is None or 1 <= self.num_classes <= 255, "num_classes must be in 1..255"),
            (len(self.img_scale) == 2 and min(self.img_scale) > 0, "img_scale must be two positive ints"),
            (self.test_scale is None or len(self.test_scale) == 2, "test_scale must be two ints"),
            (len(self.ratio_range) == 2 and 0 < self.ratio_range[0] <= self.ratio_range[1], "bad ratio_range"),
            (self.crop_size > 0 and (self.test_crop or 1) > 0 and self.test_stride > 0, "crop/stride must be > 0"),
            (0 < self.cat_max_ratio <= 1, "cat_max_ratio must be in (0, 1]"),
            (0 <= self.flip_prob <= 1 and 0 <= self.dropout < 1, "flip_prob must be in [0, 1] and dropout in [0, 1)"),
            (self.iters > 0 and self.batch_size_per_gpu > 0, "iters and batch_size_per_gpu must be >= 1"),
            (0 <= self.warmup_iters and 0 < self.warmup_ratio <= 1, "bad warmup_iters / warmup_ratio"),
            (len(self.betas) == 2, "betas must be two floats"),
            (self.lr is None or self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (ld is None or 0 < ld <= 1, f"layer_decay must be in (0, 1], got {ld}"),
            (
                self.head != "linear" or ld in (None, 1.0),
                f"the linear head trains no backbone layers: layer_decay must be 1.0, got {ld}",
            ),  # fmt: skip
            (dp is None or 0 <= dp < 1, f"drop_path_rate must be in [0, 1), got {dp}"),
            (self.weight_decay >= 0 and self.aux_weight >= 0, "weight_decay and aux_weight must be >= 0"),
            (
                self.save_every > 0 and self.log_every > 0 and self.window_batch > 0,
                "save_every, log_every and window_batch must be >= 1",
            ),  # fmt: skip
            (self.n_figure >= 0 and (self.val_limit is None or self.val_limit > 0), "bad n_figure / val_limit"),
            (self.stop_after is None or self.stop_after > 0, "stop_after must be > 0"),
            (self.time_limit_min >= 0, f"time_limit_min must be >= 0 (0 = no limit), got {self.time_limit_min}"),
            (len(self.ms_ratios) > 0 and min(self.ms_ratios) > 0, "ms_ratios must be positive"),
        ]


def backbone_size(backbone: nn.Module) -> str:
    """Registry name of a ViT from its width and depth ('custom' when it is none of them); a Swin's own
    name (swin_tiny has a ViT-B's width and depth, but no reference values here)."""
    from pretrain import arch_name, is_swin

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
