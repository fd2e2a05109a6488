"""The fine-tuning config: the ViT-S/16 recipe of reference §3.5 as typed defaults.

YAML recipes in `finetune/recipes/` hold only their differences; `key=value` overrides come last.
"""

from __future__ import annotations

from dataclasses import dataclass

from pretrain import ConfigError

START_MODES = ("backbone", "head_layer1")


@dataclass
class FinetuneConfig:
    """End-to-end fine-tuning (BEiT-style layer decay); defaults are the iBOT ViT-S/16 recipe."""

    pretrained: str = ""  # any file `load_backbone` reads (CLI only)
    checkpoint_key: str = "teacher"  # teacher | student, for training checkpoints
    # backbone: classifier on [CLS] after the final norm; head_layer1: on the iBOT head's first
    # Linear + GELU applied to [CLS] (semi-supervised recipe, `--finetune_head_layer 1`)
    start_from: str = "backbone"
    data_path: str = ""  # ImageFolder root holding train/ and val/
    train_list: str | None = None  # optional subset files (e.g. the 1% / 10% ImageNet splits)
    val_list: str | None = None
    output_dir: str = "output/finetune"
    image_size: int = 224
    epochs: int = 200
    warmup_epochs: int = 20
    batch_size: int = 128  # per process and per micro-step
    accum_steps: int = 1  # gradient accumulation (BEiT's update_freq)
    lr: float = 4e-3  # peak lr; absolute unless lr_reference_batch is set
    lr_reference_batch: int | None = None  # None: absolute (BEiT); N: lr x total batch / N (DeiT: 512)
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    layer_decay: float = 0.75  # 1.0 = no layer-wise decay
    drop_path: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    clip_grad: float | None = None  # max global grad norm; None = no clipping (the recipe)
    auto_augment: str | None = "rand-m9-mstd0.5-inc1"  # timm RandAugment string; None = off
    reprob: float = 0.25  # random erasing probability (mode pixel, count 1)
    train_interpolation: str = "bicubic"
    eval_interpolation: str = "bilinear"
    crop_pct: float = 0.875  # eval: Resize(int(size / crop_pct)) + CenterCrop(size)
    mixup: float = 0.8  # mixup alpha; 0 = off
    cutmix: float = 1.0  # cutmix alpha; 0 = off
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    smoothing: float = 0.1  # label smoothing (folded into the mixed soft targets)
    model_ema: bool = False
    model_ema_decay: float = 0.9999
    seed: int = 0
    num_workers: int = 8
    device: str = "auto"  # auto | cpu | cuda | cuda:1 ...
    resume: bool = False  # continue from output_dir/checkpoint.pth
    time_limit_min: float = 0.0  # stop (checkpointed) after the epoch that passes it; 0 = no limit
    max_steps_per_epoch: int | None = None  # cap optimizer steps per epoch (smoke tests)
    progress: bool = True


def check_config(cfg: FinetuneConfig) -> None:
    """Raise ConfigError on settings that cannot work, naming the key."""
    checks = [
        (cfg.start_from in START_MODES, f"start_from must be one of {START_MODES}, got {cfg.start_from!r}"),
        (cfg.epochs >= 1 and 0 <= cfg.warmup_epochs <= cfg.epochs, "need epochs >= 1 and 0 <= warmup_epochs <= epochs"),
        (cfg.batch_size >= 1 and cfg.accum_steps >= 1, "batch_size and accum_steps must be >= 1"),
        (cfg.lr > 0 and cfg.min_lr >= 0 and cfg.weight_decay >= 0, "need lr > 0, min_lr >= 0, weight_decay >= 0"),
        (0 < cfg.layer_decay <= 1, f"layer_decay must be in (0, 1], got {cfg.layer_decay}"),
        (0 <= cfg.drop_path < 1 and 0 <= cfg.reprob <= 1, "drop_path must be in [0, 1) and reprob in [0, 1]"),
        (0 <= cfg.smoothing < 1 and 0 < cfg.crop_pct <= 1, "smoothing must be in [0, 1) and crop_pct in (0, 1]"),
        (cfg.mixup >= 0 and cfg.cutmix >= 0, "mixup and cutmix alphas must be >= 0"),
        (not uses_mixup(cfg) or cfg.batch_size % 2 == 0, "mixup/cutmix need an even batch_size"),
        (cfg.lr_reference_batch is None or cfg.lr_reference_batch > 0, "lr_reference_batch must be > 0"),
        (cfg.image_size >= 1 and cfg.num_workers >= 0, "image_size must be >= 1 and num_workers >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def uses_mixup(cfg: FinetuneConfig) -> bool:
    """Mixup or CutMix is active (then targets are soft and the loss is soft-target CE)."""
    return cfg.mixup_prob > 0 and (cfg.mixup > 0 or cfg.cutmix > 0)


def peak_lr(cfg: FinetuneConfig, world_size: int) -> float:
    """The schedule's peak lr: `lr` as given, or scaled by total batch / `lr_reference_batch`."""
    if cfg.lr_reference_batch is None:
        return cfg.lr
    return cfg.lr * cfg.batch_size * cfg.accum_steps * world_size / cfg.lr_reference_batch
