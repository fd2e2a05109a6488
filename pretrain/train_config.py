"""Pre-training configuration: defaults are the paper's ViT-S/16 recipe (reference §1.9)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainConfig:
    # data and output
    data_path: str = ""  # image folder, with or without class sub-folders (labels unused)
    output_dir: str = "runs/pretrain"
    resume: bool = True  # continue from output_dir/checkpoint.pth when it exists
    # backbone and head
    arch: str = "vit_small"
    patch_size: int = 16
    depth: int = 0  # 0 = the arch's depth (a smaller value builds a shallower model, e.g. for CPU demos)
    drop_path_rate: float = 0.1  # ViT student only; a Swin student keeps its size's 0.1 (tiny) / 0.2 (small, base)
    window_size: int = 7  # Swin only: attention window, 7 or 14 (patch_size must be 4)
    arch_kwargs: dict[str, Any] = field(default_factory=dict)  # extra build_backbone kwargs (e.g. a tiny Swin)
    out_dim: int = 8192
    patch_out_dim: int = 8192
    shared_head: bool = True  # student and teacher share the prototype layer between [CLS] and patches
    norm_last_layer: bool = False
    head_hidden_dim: int = 2048
    head_bottleneck_dim: int = 256
    # masked image modelling
    pred_ratio: list[float] = field(default_factory=lambda: [0.0, 0.3])
    pred_ratio_var: list[float] = field(default_factory=lambda: [0.0, 0.2])
    pred_shape: str = "block"
    pred_start_epoch: int = 0
    lambda1: float = 1.0
    lambda2: float = 1.0
    # teacher
    momentum_teacher: float = 0.996
    warmup_teacher_temp: float = 0.04
    teacher_temp: float = 0.07
    warmup_teacher_patch_temp: float = 0.04
    teacher_patch_temp: float = 0.07
    warmup_teacher_temp_epochs: int = 30
    centering: str = "center"  # teacher targets: the paper's centred softmax, or "sinkhorn" (Sinkhorn-Knopp)
    koleo_weight: float = 0.0  # DINOv2's KoLeo term on the student's global [CLS] features (0: off, the paper)
    # optimisation
    epochs: int = 800
    batch_size_per_gpu: int = 64
    lr: float = 5e-4  # at a total batch of 256; scaled linearly
    min_lr: float = 1e-6
    warmup_epochs: int = 10
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    clip_grad: float = 3.0  # per-parameter norm bound; 0 disables
    freeze_last_layer: int = 1
    precision: str = "auto"  # auto = bf16 on CUDA and on CPUs with native bf16, fp32 elsewhere; or fp32 | bf16
    # multi-crop augmentation
    global_crops_number: int = 2
    global_crops_scale: list[float] = field(default_factory=lambda: [0.25, 1.0])
    global_crop_size: int = 224
    local_crops_number: int = 10
    local_crops_scale: list[float] = field(default_factory=lambda: [0.05, 0.25])
    local_crop_size: int = 96
    grayscale_p: float = 0.2
    invert_p: float = 0.0  # extra (not in the paper): invert intensities, removes colour shortcuts
    rotate_deg: float = 0.0  # extra (not in the paper): random rotation in [-deg, deg]
    blur_radius: list[float] = field(default_factory=lambda: [0.1, 2.0])  # Gaussian blur radius range, px
    # bookkeeping
    seed: int = 0
    device: str = "auto"  # auto (CUDA when available), cpu, cuda, cuda:N
    num_workers: int = 8
    saveckp_freq: int = 40  # keep a numbered copy of the checkpoint every N epochs
    export_every: int = 0  # export the teacher every N epochs (always at the end); 0 = only at the end
    checkpoint_every_steps: int = 0  # also checkpoint every N steps inside an epoch (0 = at epoch ends)
    time_limit_min: float = 0.0  # stop cleanly (checkpoint + export) after this many minutes; 0 = none
    max_steps_per_epoch: int = 0  # cap on iterations per epoch (0 = the whole dataset); for tests/demos
    log_every: int = 10
    compile: bool = False  # torch.compile the backbones (fuses element-wise ops; slow first steps)


def validate(cfg: TrainConfig) -> None:
    """Raise ConfigError for settings that cannot work together."""
    from .backbones import is_swin
    from .config import ConfigError

    swin = is_swin(cfg.arch)
    checks = [
        (cfg.epochs >= 1, "epochs must be >= 1"),
        (0 <= cfg.warmup_epochs <= cfg.epochs, "warmup_epochs must be between 0 and epochs"),
        (cfg.precision in ("auto", "fp32", "bf16"), "precision must be auto, fp32 or bf16"),
        (cfg.centering in ("center", "sinkhorn"), "centering must be center or sinkhorn"),
        (cfg.koleo_weight >= 0, "koleo_weight must be >= 0"),
        (len(cfg.blur_radius) == 2 and 0 < cfg.blur_radius[0] <= cfg.blur_radius[1],
         "blur_radius must be [low, high] with 0 < low <= high"),
        (cfg.global_crops_number >= 1, "global_crops_number must be >= 1"),
        (cfg.global_crop_size % cfg.patch_size == 0, "global_crop_size must be a multiple of patch_size"),
        (not swin or cfg.patch_size == 4, "Swin archs use patch_size=4"),
        (not swin or cfg.global_crop_size % 32 == 0, "Swin: global_crop_size must be a multiple of 32 (the mask grid)"),
        (not swin or not cfg.depth, "depth is a ViT setting; for a smaller Swin set arch_kwargs.depths"),
        (cfg.local_crops_number == 0 or cfg.local_crop_size % cfg.patch_size == 0,
         "local_crop_size must be a multiple of patch_size"),
        (cfg.batch_size_per_gpu >= 1, "batch_size_per_gpu must be >= 1"),
    ]  # fmt: skip
    bad = [msg for ok, msg in checks if not ok]
    if bad:
        raise ConfigError("; ".join(bad))
