"""The fine-tuning config: the ViT-S/16 recipe of reference §3.5 as typed defaults (imports no torch).

YAML recipes in `finetune/recipes/` hold only their differences; `key=value` overrides come last.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from evalkit import EvalConfig
from plumbing import ConfigError, check_range

START_MODES = ("backbone", "head_layer1")


@dataclass
class FinetuneConfig(EvalConfig):
    """End-to-end fine-tuning (BEiT-style layer decay); defaults are the iBOT ViT-S/16 recipe."""

    output_dir: str = "runs/finetune"  # run folder: checkpoint.pth, classifier.pth, results.json, tensorboard/
    batch_size_per_gpu: int = 128  # images per process and micro-step (total = this x processes x accum_steps)
    # backbone: classifier on [CLS] after the final norm; head_layer1: on the iBOT head's first Linear + GELU
    # applied to [CLS] (semi-supervised recipe, the authors' `--finetune_head_layer 1`)
    start_from: str = "backbone"  # backbone | head_layer1 (needs pretrained to hold the iBOT head)
    train_list: str | None = None  # optional file listing a train subset (e.g. the 1% / 10% ImageNet splits)
    val_list: str | None = None  # optional file listing a val subset
    image_size: int = 224  # training crop and val center-crop size
    epochs: int = 200  # training epochs
    warmup_epochs: int = 20  # linear lr warm-up from 0, then cosine per step
    accum_steps: int = 1  # micro-batches per optimizer step (BEiT's update_freq)
    lr: float = 4e-3  # peak lr; absolute unless lr_reference_batch is set
    lr_reference_batch: int | None = None  # None: lr absolute (BEiT); N: lr x total batch / N (DeiT: 512)
    min_lr: float = 1e-6  # lr at the end of the cosine
    weight_decay: float = 0.05  # AdamW weight decay (not on biases, 1-d tensors, pos_embed, cls_token)
    layer_decay: float = 0.75  # lr scale decay^(L + 1 - layer id); 1.0 = no layer-wise decay
    drop_path_rate: float = 0.1  # stochastic depth of the last block (linear from 0 over the blocks)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # AdamW betas [beta1, beta2]
    eps: float = 1e-8  # AdamW epsilon
    clip_grad: float | None = None  # max global grad norm; None = no clipping (the recipe)
    auto_augment: str | None = "rand-m9-mstd0.5-inc1"  # timm RandAugment string; None = off
    reprob: float = 0.25  # random erasing probability (mode pixel, count 1)
    train_interpolation: str = "bicubic"  # RandomResizedCrop interpolation
    eval_interpolation: str = "bilinear"  # val resize interpolation
    crop_pct: float = 0.875  # val: Resize(int(size / crop_pct)) + CenterCrop(size)
    mixup: float = 0.8  # mixup alpha; 0 = off
    cutmix: float = 1.0  # cutmix alpha; 0 = off
    mixup_prob: float = 1.0  # probability of mixing a batch
    mixup_switch_prob: float = 0.5  # probability of cutmix instead of mixup when both are on
    smoothing: float = 0.1  # label smoothing (folded into the mixed soft targets)
    model_ema: bool = False  # keep an EMA of the weights and evaluate it too
    model_ema_decay: float = 0.9999  # EMA decay per optimizer step
    resume: bool = False  # continue from output_dir/checkpoint.pth
    time_limit_min: float = 0.0  # stop training after this many minutes (0 = no limit), at the end of an epoch
    max_steps_per_epoch: int | None = None  # cap optimizer steps per epoch (smoke tests); None = a full epoch
    progress: bool = True  # show progress bars

    def check(self) -> None:
        """Raise ConfigError on settings that cannot work, naming the key: every number in its range (NaN
        and infinities refused), before any work."""
        if self.start_from not in START_MODES:
            raise ConfigError(f"start_from must be one of {START_MODES}, got {self.start_from!r}")
        check_range(self, ("epochs", "batch_size_per_gpu", "accum_steps", "image_size", "lr_reference_batch",
                           "max_steps_per_epoch"), ge=1)  # fmt: skip
        check_range(self, ("warmup_epochs", "min_lr", "weight_decay", "mixup", "cutmix", "time_limit_min",
                           "num_workers"), ge=0)  # fmt: skip
        check_range(self, ("lr", "eps", "clip_grad"), gt=0)
        check_range(self, ("layer_decay", "crop_pct"), gt=0, le=1)
        check_range(self, ("drop_path_rate", "smoothing", "betas"), ge=0, lt=1)
        check_range(self, ("reprob", "mixup_prob", "mixup_switch_prob", "model_ema_decay"), ge=0, le=1)
        checks = [
            (len(self.betas) == 2, f"betas must be two numbers [beta1, beta2], got {list(self.betas)}"),
            (self.warmup_epochs <= self.epochs, "need epochs >= 1 and 0 <= warmup_epochs <= epochs"),
            (not uses_mixup(self) or self.batch_size_per_gpu % 2 == 0, "mixup/cutmix need an even batch_size_per_gpu"),
        ]  # fmt: skip
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
    return cfg.lr * cfg.batch_size_per_gpu * cfg.accum_steps * world_size / cfg.lr_reference_batch
