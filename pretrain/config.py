"""The core's command configs, torch-free (`--help` answers at once): `TrainConfig` (`python -m pretrain`;
defaults are the paper's ViT-S/16 recipe, reference §1.9) and `ExportConfig` (`python -m pretrain.export`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plumbing import CheckpointNotFoundError, ConfigError, check_range


@dataclass
class TrainConfig:
    """iBOT pre-training; defaults are the paper's ViT-S/16 recipe (800 epochs, 2x224 + 10x96 crops)."""

    # data and output
    data_path: str = ""  # image folder, with or without class sub-folders (labels unused)
    output_dir: str = "runs/pretrain"  # run folder: checkpoint.pth, backbone.pth (the exported teacher), logs
    resume: bool = True  # continue from output_dir/checkpoint.pth when it exists
    # backbone and head
    arch: str = "vit_small"  # backbone: vit_tiny, vit_small, vit_base, vit_large, swin_tiny, swin_small, swin_base
    patch_size: int = 16  # ViT patch side in pixels (Swin: 4)
    depth: int = 0  # 0 = the arch's depth (a smaller value builds a shallower model, e.g. for CPU demos)
    drop_path_rate: float = 0.1  # ViT student only; a Swin student keeps its size's 0.1 (tiny) / 0.2 (small, base)
    window_size: int = 7  # Swin only: attention window, 7 or 14 (patch_size must be 4)
    arch_kwargs: dict[str, Any] = field(default_factory=dict)  # extra build_backbone kwargs (e.g. a tiny Swin)
    out_dim: int = 8192  # K, prototypes of the [CLS] head
    patch_out_dim: int = 8192  # K2, prototypes of the patch head
    shared_head: bool = True  # student and teacher share the prototype layer between [CLS] and patches
    norm_last_layer: bool = False  # weight-normalise the prototype layer with a fixed norm (the paper: false for ViT-S)
    head_hidden_dim: int = 2048  # width of the head MLP
    head_bottleneck_dim: int = 256  # width before the prototype layer
    # masked image modelling
    pred_ratio: list[float] = field(default_factory=lambda: [0.0, 0.3])  # masked fraction (a list: one per image)
    pred_ratio_var: list[float] = field(default_factory=lambda: [0.0, 0.2])  # random spread around pred_ratio
    pred_shape: str = "block"  # mask shape: block (blockwise, BEiT) or rand
    pred_start_epoch: int = 0  # first epoch with masked image modelling
    lambda1: float = 1.0  # weight of the [CLS] self-distillation loss
    lambda2: float = 1.0  # weight of the masked-patch (MIM) loss
    # teacher
    momentum_teacher: float = 0.996  # EMA momentum of the teacher at the start (cosine to 1)
    warmup_teacher_temp: float = 0.04  # teacher [CLS] temperature at the start of its warm-up
    teacher_temp: float = 0.07  # teacher [CLS] temperature after the warm-up
    warmup_teacher_patch_temp: float = 0.04  # teacher patch temperature at the start of its warm-up
    teacher_patch_temp: float = 0.07  # teacher patch temperature after the warm-up
    warmup_teacher_temp_epochs: int = 30  # epochs of the linear teacher-temperature warm-up
    centering: str = "center"  # teacher targets: the paper's centred softmax, or "sinkhorn" (Sinkhorn-Knopp)
    koleo_weight: float = 0.0  # DINOv2's KoLeo term on the student's global [CLS] features (0: off, the paper)
    # optimisation
    epochs: int = 800  # training epochs (the schedules span them)
    batch_size_per_gpu: int = 64  # images per process and step (the total is this x processes)
    lr: float = 5e-4  # at a total batch of 256; scaled linearly
    min_lr: float = 1e-6  # learning rate at the end of the cosine decay
    warmup_epochs: int = 10  # epochs of linear learning-rate warm-up
    weight_decay: float = 0.04  # weight decay at the start (cosine to weight_decay_end)
    weight_decay_end: float = 0.4  # weight decay at the end
    clip_grad: float = 3.0  # per-parameter norm bound; 0 disables
    freeze_last_layer: int = 1  # epochs during which the prototype layers are not updated
    precision: str = "auto"  # auto = bf16 on CUDA and on CPUs with native bf16, fp32 elsewhere; or fp32 | bf16
    # multi-crop augmentation
    global_crops_number: int = 2  # global views per image
    global_crops_scale: list[float] = field(default_factory=lambda: [0.25, 1.0])  # area range of the global crops
    global_crop_size: int = 224  # side of the global crops in pixels
    local_crops_number: int = 10  # local views per image (0 = none)
    local_crops_scale: list[float] = field(default_factory=lambda: [0.05, 0.25])  # area range of the local crops
    local_crop_size: int = 96  # side of the local crops in pixels
    grayscale_p: float = 0.2  # probability of turning a view grey
    invert_p: float = 0.0  # extra (not in the paper): invert intensities, removes colour shortcuts
    rotate_deg: float = 0.0  # extra (not in the paper): random rotation in [-deg, deg]
    blur_radius: list[float] = field(default_factory=lambda: [0.1, 2.0])  # Gaussian blur radius range, px
    loader: str = "fast"  # fast: uint8 crops in the workers, colour ops batched on the device; reference: PIL per crop
    # bookkeeping
    seed: int = 0  # seed of every random draw (crops, masks, initialisation)
    device: str = "auto"  # auto (CUDA when available), cpu, cuda, cuda:N
    num_workers: int = 8  # data-loading worker processes per process
    threads: int = 0  # torch CPU threads per process (0: the cores the loader workers leave)
    saveckp_freq: int = 40  # keep a numbered copy of the checkpoint every N epochs
    export_every: int = 0  # export the teacher every N epochs (always at the end); 0 = only at the end
    checkpoint_every_steps: int = 0  # also checkpoint every N steps inside an epoch (0 = at epoch ends)
    time_limit_min: float = 0.0  # stop cleanly (checkpoint + export) after this many minutes; 0 = none
    max_steps_per_epoch: int = 0  # cap on iterations per epoch (0 = the whole dataset); for tests/demos
    log_every: int = 10  # steps between TensorBoard points (log.jsonl has every step)
    compile: bool = False  # torch.compile the backbones (fuses element-wise ops; slow first steps)

    def check(self) -> None:
        """Every value in range and the settings consistent (ConfigError, one line), before any work."""
        validate(self)


VIT_ARCHS = ("vit_tiny", "vit_small", "vit_base", "vit_large")
SWIN_ARCHS = ("swin_tiny", "swin_small", "swin_base")
ARCHS = VIT_ARCHS + SWIN_ARCHS  # the names build_backbone knows (models.backbones.ARCHS; a test keeps them equal)
PRED_SHAPES = ("block", "rand")


def validate(cfg: TrainConfig) -> None:
    """Raise ConfigError (one line) for a value out of range or settings that cannot work together; torch-free,
    so that `python -m pretrain` refuses them before anything is imported or read."""
    if cfg.arch not in ARCHS:
        raise ConfigError(f"arch={cfg.arch!r} is unknown; valid: {', '.join(ARCHS)}")
    choices = [(cfg.precision in ("auto", "fp32", "bf16"), "precision must be auto, fp32 or bf16"),
               (cfg.centering in ("center", "sinkhorn"), "centering must be center or sinkhorn"),
               (cfg.loader in ("fast", "reference"), "loader must be fast or reference"),
               (cfg.pred_shape in PRED_SHAPES, "pred_shape must be block or rand")]  # fmt: skip
    bad = [msg for ok, msg in choices if not ok]
    if bad:
        raise ConfigError("; ".join(bad))
    _check_ranges(cfg)
    swin = cfg.arch in SWIN_ARCHS
    checks = [
        (cfg.warmup_epochs <= cfg.epochs, "warmup_epochs must be between 0 and epochs"),
        (len(cfg.blur_radius) == 2 and 0 < cfg.blur_radius[0] <= cfg.blur_radius[1],
         "blur_radius must be [low, high] with 0 < low <= high"),
        (cfg.global_crop_size % cfg.patch_size == 0, "global_crop_size must be a multiple of patch_size"),
        (not swin or cfg.patch_size == 4, "Swin archs use patch_size=4"),
        (not swin or cfg.global_crop_size % 32 == 0, "Swin: global_crop_size must be a multiple of 32 (the mask grid)"),
        (not swin or not cfg.depth, "depth is a ViT setting; for a smaller Swin set arch_kwargs.depths"),
        (cfg.local_crops_number == 0 or cfg.local_crop_size % cfg.patch_size == 0,
         "local_crop_size must be a multiple of patch_size"),
    ]  # fmt: skip
    for name in ("global_crops_scale", "local_crops_scale"):
        scale = getattr(cfg, name)
        checks.append((len(scale) == 2 and scale[0] <= scale[1], f"{name} must be [low, high] with low <= high"))
    bad = [msg for ok, msg in checks if not ok]
    if bad:
        raise ConfigError("; ".join(bad))
    _check_masks(cfg)


def _check_ranges(cfg: TrainConfig) -> None:
    """Every numeric key within its range (NaN and infinities refused)."""
    check_range(cfg, ("epochs", "batch_size_per_gpu", "patch_size", "window_size", "out_dim", "patch_out_dim",
                      "head_hidden_dim", "head_bottleneck_dim", "global_crops_number", "global_crop_size",
                      "local_crop_size"), ge=1)  # fmt: skip
    check_range(cfg, ("depth", "pred_start_epoch", "warmup_epochs", "warmup_teacher_temp_epochs", "lambda1",
                      "lambda2", "koleo_weight", "lr", "min_lr", "weight_decay", "weight_decay_end", "clip_grad",
                      "freeze_last_layer", "local_crops_number", "rotate_deg", "seed", "num_workers", "threads",
                      "saveckp_freq", "export_every", "checkpoint_every_steps", "time_limit_min",
                      "max_steps_per_epoch", "log_every", "pred_ratio_var"), ge=0)  # fmt: skip
    check_range(cfg, ("momentum_teacher", "grayscale_p", "invert_p", "pred_ratio"), ge=0, le=1)
    check_range(cfg, ("global_crops_scale", "local_crops_scale"), gt=0, le=1)
    check_range(cfg, "drop_path_rate", ge=0, lt=1)
    check_range(cfg, ("warmup_teacher_temp", "teacher_temp", "warmup_teacher_patch_temp", "teacher_patch_temp",
                      "blur_radius"), gt=0)  # fmt: skip


def _check_masks(cfg: TrainConfig) -> None:
    """pred_ratio +- pred_ratio_var within [0, 1], one var per ratio (or one for all)."""
    ratios, spreads = list(cfg.pred_ratio), list(cfg.pred_ratio_var)
    if not ratios or len(spreads) not in (1, len(ratios)):
        raise ConfigError(f"pred_ratio_var needs one value per pred_ratio (or one for all): {ratios} vs {spreads}")
    spreads = spreads * len(ratios) if len(spreads) == 1 else spreads
    bad = [(r, v) for r, v in zip(ratios, spreads, strict=True) if r - v < 0 or r + v > 1]
    if bad:
        raise ConfigError(f"pred_ratio +- pred_ratio_var must stay within [0, 1]; got {bad[0][0]} +- {bad[0][1]}")


EXPORT_FORMATS = ("suite", "safetensors", "hf", "timm")
FORMAT_BACKBONE = "ibot-suite/backbone"  # the format tag of an exported backbone file
EXPORT_FILES = {"suite": "backbone.pth", "safetensors": "backbone.safetensors", "timm": "backbone_timm.pth"}
CHECKPOINT_KEYS = ("teacher", "student")
EXPORT_DTYPES = ("fp32", "fp16", "bf16")  # storage precision of the written weights


@dataclass
class ExportConfig:
    """Extract a backbone (and head) from a checkpoint and write it in another format."""

    pretrained: str = ""  # what to read: any file load_backbone reads (training checkpoints too) or a format=hf folder
    checkpoint_key: str = "teacher"  # teacher | student: which network of a full training checkpoint
    format: str = "suite"  # suite | safetensors | hf (transformers ViTModel folder, ViT only) | timm
    output_dir: str = ""  # folder to write into (created when missing); format=hf makes it the ViTModel folder
    name: str = ""  # file in output_dir; default backbone.pth, backbone.safetensors, backbone_timm.pth (+ .json spec)
    with_head: bool = False  # also write the iBOT projection head (format=suite or safetensors only)
    dtype: str = "fp32"  # fp32 | fp16 | bf16: weights as stored (fp16 halves the file; loading casts back to fp32)
    overwrite: bool = False  # replace an existing output (otherwise an existing output is an error)

    def target(self) -> Path:
        """What is written: `output_dir/name` (or the format's file name); the folder itself for format=hf."""
        if self.format == "hf":
            return Path(self.output_dir)
        return Path(self.output_dir) / (self.name or EXPORT_FILES[self.format])

    def check(self) -> None:
        """Refuse bad values before anything is read."""
        if not self.pretrained:
            raise ConfigError("pretrained=FILE is required (the checkpoint or backbone file to convert)")
        if not Path(self.pretrained).exists():  # a file, or a Hugging Face folder the suite exported
            raise CheckpointNotFoundError(f"checkpoint not found: pretrained={self.pretrained} (check the path)")
        choices = {"checkpoint_key": CHECKPOINT_KEYS, "format": EXPORT_FORMATS, "dtype": EXPORT_DTYPES}
        for key, valid in choices.items():
            value = getattr(self, key)
            if value not in valid:
                raise ConfigError(f"{key}={value!r}; valid: {', '.join(valid)}")
        if not self.output_dir:
            raise ConfigError("output_dir=FOLDER is required (the folder to write into; for format=hf the folder)")
        single = self.format in ("suite", "safetensors")
        if self.with_head and not single:
            raise ConfigError(
                f"with_head=true needs format=suite or safetensors; format={self.format} holds a backbone only"
            )
        if self.dtype != "fp32" and not single:
            raise ConfigError(f"dtype={self.dtype} needs format=suite or safetensors; format={self.format} stores fp32")
        self._check_output()

    def _check_output(self) -> None:
        if Path(self.output_dir).exists() and not Path(self.output_dir).is_dir():
            raise ConfigError(f"output_dir={self.output_dir} is a file: give a folder")
        if self.name and (self.format == "hf" or Path(self.name).name != self.name):
            raise ConfigError(
                f"name={self.name!r}: a file name inside output_dir (format=hf writes fixed names: no name)"
            )
        target = self.target()
        written = [target / "config.json", target / "model.safetensors"] if self.format == "hf" else [target]
        if any(p.exists() for p in written) and not self.overwrite:
            raise ConfigError(f"{target} exists: choose another output or pass overwrite=true")
        if self.format != "hf" and target.is_dir():
            raise ConfigError(f"{target} is a folder; format={self.format} writes a file: give another name")
        if self.format == "timm" and target.suffix == ".json":
            raise ConfigError("name for format=timm needs a .pth or .safetensors suffix (the spec gets .json)")
