"""Detection configuration: defaults are the ViT-S/16 Cascade Mask R-CNN 1x recipe (reference §3.6).

`DetectorSpec` holds everything needed to rebuild the detector (it is stored in every checkpoint);
`DetectionConfig` adds data, augmentation, optimisation and bookkeeping to the keys every evaluation
takes (`evalkit.EvalConfig`); `DetectorEvalConfig` is `python -m detection.eval`'s. The head widths,
RoI counts and image sizes are configurable so that CPU tests and demos run the same code on tiny images.

This module imports no torch (`--help` answers at once). It does not use postponed annotations: the
config parser recognises the nested `model` spec (its help lines and its closest-key hints) by the
field's type object.
"""

from dataclasses import dataclass, field
from pathlib import Path

from evalkit import EvalConfig
from plumbing import ConfigError, check_range

DETECTORS = ("cascade_mask_rcnn", "mask_rcnn")
SPLITS = ("train", "val")


def coco_split(data_path: str, split: str) -> tuple[str, str]:
    """(image folder, instances json) of `split` (train | val) under a COCO 2017 root:
    `<root>/{split}2017/` and `<root>/annotations/instances_{split}2017.json`."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(data_path)
    return str(root / f"{split}2017"), str(root / "annotations" / f"instances_{split}2017.json")


def _split_paths(cfg: object, split: str) -> tuple[str, str]:
    """`cfg.<split>_images` / `cfg.<split>_annotations` where set, else the standard layout under data_path."""
    images, annotations = getattr(cfg, f"{split}_images"), getattr(cfg, f"{split}_annotations")
    if images and annotations:
        return images, annotations
    data_path = getattr(cfg, "data_path", "")
    if not data_path:
        missing = f"{split}_images" if not images else f"{split}_annotations"
        raise ConfigError(f"no COCO data: give data_path=COCO_ROOT (train2017/ val2017/ annotations/) or {missing}=")
    std_images, std_annotations = coco_split(data_path, split)
    return images or std_images, annotations or std_annotations


def _check_exists(images: str, annotations: str) -> None:
    if not Path(images).is_dir():
        raise ConfigError(f"image folder not found: {images} (data_path must be a COCO 2017 root, or set *_images=)")
    if not Path(annotations).is_file():
        raise ConfigError(f"COCO annotation file not found: {annotations} (check data_path or *_annotations=)")


@dataclass
class DetectorSpec:
    """The detector's architecture (stored in every detector file)."""

    detector: str = "cascade_mask_rcnn"  # cascade_mask_rcnn (3 stages, IoU 0.5/0.6/0.7) or mask_rcnn
    out_indices: list[int] | None = None  # ViT blocks fed to the FPN; None = (3, 5, 7, 11) scaled to depth (Swin: None)
    out_with_norm: bool = False  # final LayerNorm on the taken block outputs (ViT; a Swin has stage norms)
    resize_pos_embed: bool = True  # ViT position table resized at load to pos_embed_size's grid (authors); false: no
    pos_embed_size: list[int] = field(default_factory=lambda: [800, 1008])  # [H, W] px of that grid: ViT-S 50 x 63
    use_checkpoint: bool = False  # activation checkpointing of the backbone during training (saves memory)
    fpn_channels: int = 256  # channels of every FPN level
    conv_channels: int = 256  # channels of the 4conv1fc box heads and the FCN mask heads
    fc_dim: int = 1024  # width of the box heads' fully connected layer
    rpn_pre_nms_train: int = 2000  # RPN proposals per pyramid level before NMS, training
    rpn_post_nms_train: int = 2000  # RPN proposals kept after NMS, training
    rpn_pre_nms_test: int = 1000  # RPN proposals per pyramid level before NMS, testing
    rpn_post_nms_test: int = 1000  # RPN proposals kept after NMS, testing
    rois_per_image: int = 512  # RoIs sampled per image for the box heads (25 % positives)
    test_short: int = 800  # test scale: short side resized to this
    test_max: int = 1333  # test scale: long side at most this


@dataclass
class DetectionConfig(EvalConfig):
    """Fine-tune Mask R-CNN / Cascade Mask R-CNN on COCO with a pre-trained backbone, then evaluate (bbox, segm AP)."""

    pretrained: str = ""  # the backbone: any file load_backbone reads (exported backbone, training checkpoint, ...)
    data_path: str = ""  # COCO 2017 root: train2017/ val2017/ annotations/instances_{train,val}2017.json
    output_dir: str = "runs/detection"  # run folder: config.yaml, checkpoint.pth, detector.pth, results.json
    batch_size_per_gpu: int = 4  # images per process and step: ViT-S 4 x 8 GPUs, ViT-B 2 x 8 (lr not scaled)
    train_images: str = ""  # override: train image folder (empty = data_path/train2017)
    train_annotations: str = ""  # override: train instances json (empty = data_path/annotations/...train2017.json)
    val_images: str = ""  # override: val image folder (empty = data_path/val2017)
    val_annotations: str = ""  # override: val instances json (empty = data_path/annotations/...val2017.json)
    drop_path_rate: float = 0.1  # stochastic depth of the backbone while fine-tuning: ViT-S 0.1, ViT-B 0.2
    model: DetectorSpec = field(default_factory=DetectorSpec)  # the detector's architecture (model.* keys)
    flip_prob: float = 0.5  # train augmentation: horizontal flip probability
    train_scales: list[int] = field(default_factory=lambda: list(range(480, 801, 32)))  # (a) short sides drawn
    train_max: int = 1333  # long side cap of (a) and of the final resize of (b)
    crop_scales: list[int] = field(default_factory=lambda: [400, 500, 600])  # (b) short side before the crop
    crop_range: list[int] = field(default_factory=lambda: [384, 600])  # (b) crop side range [lo, hi] in pixels
    epochs: int = 12  # training epochs (1x schedule)
    lr_steps: list[int] = field(default_factory=lambda: [8, 11])  # lr x0.1 after each of these epochs
    warmup_iters: int = 500  # linear lr warm-up iterations
    warmup_ratio: float = 0.001  # warm-up starts at lr x this
    lr: float = 1e-4  # AdamW peak learning rate
    weight_decay: float = 0.05  # AdamW weight decay (not on biases and norms)
    layer_decay: float = 0.8  # layer-wise lr decay: 0.8 ViT-S, 0.75 ViT-B (the README's values)
    resume: bool = True  # continue from output_dir/checkpoint.pth when it exists
    time_limit_min: float = 0.0  # stop training after N minutes (0: no limit); checkpointed, then evaluated as trained
    progress: bool = True  # show progress bars
    max_train_images: int = 0  # use the first N train images (0 = all)
    max_val_images: int = 0  # evaluate on the first N val images (0 = all)

    def train_split(self) -> tuple[str, str]:
        """(image folder, instances json) of the train split."""
        return _split_paths(self, "train")

    def val_split(self) -> tuple[str, str]:
        """(image folder, instances json) of the val split."""
        return _split_paths(self, "val")

    def check(self) -> None:
        """Value ranges and the data files, before any work (raises ConfigError)."""
        if self.model.detector not in DETECTORS:
            raise ConfigError(f"model.detector={self.model.detector!r} is unknown; valid: {', '.join(DETECTORS)}")
        if not 0 < self.layer_decay <= 1:
            raise ConfigError(f"layer_decay must be in (0, 1], got {self.layer_decay}")
        if not 0 <= self.drop_path_rate < 1:
            raise ConfigError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        if self.lr <= 0 or self.warmup_iters < 0 or self.max_train_images < 0 or self.max_val_images < 0:
            raise ConfigError("lr must be > 0; warmup_iters, max_train_images and max_val_images >= 0")
        if not self.time_limit_min >= 0:
            raise ConfigError(f"time_limit_min must be >= 0 (0 = no limit), got {self.time_limit_min}")
        if not self.train_scales or not self.crop_scales or len(self.crop_range) != 2:
            raise ConfigError("train_scales and crop_scales need at least one size, crop_range two ([lo, hi])")
        self._check_numbers()
        for split in SPLITS:
            _check_exists(*_split_paths(self, split))

    def _check_numbers(self) -> None:
        """Every number in its range (NaN and infinities refused), the detector spec's included."""
        check_range(self, ("train_scales", "train_max", "crop_scales", "crop_range"), ge=1)
        check_range(self, ("lr_steps", "warmup_iters", "weight_decay", "max_train_images", "max_val_images"), ge=0)
        check_range(self, ("flip_prob",), ge=0, le=1)
        check_range(self, ("warmup_ratio",), gt=0, le=1)
        check_range(self, ("lr",), gt=0)
        if self.crop_range[0] > self.crop_range[1]:
            raise ConfigError(f"crop_range must be [lo, hi] with lo <= hi, got {self.crop_range}")
        check_range(self.model, ("fpn_channels", "conv_channels", "fc_dim", "rpn_pre_nms_train", "rpn_post_nms_train",
                                 "rpn_pre_nms_test", "rpn_post_nms_test", "rois_per_image", "test_short", "test_max"),
                    ge=1)  # fmt: skip
        check_range(self.model, ("out_indices",), ge=0)


@dataclass
class DetectorEvalConfig(EvalConfig):
    """Evaluate a detector written by `python -m detection` (bbox and segm AP with COCOeval)."""

    pretrained: str = ""  # not read here: the backbone is inside the detector file (give detector=PATH)
    checkpoint_key: str = "teacher"  # not read here: the detector file holds one backbone
    data_path: str = ""  # COCO 2017 root (val2017/, annotations/instances_val2017.json); empty = the detector's own
    output_dir: str = "runs/detection.eval"  # run folder: config.yaml, {bbox,segm}_results.json, results.json
    batch_size_per_gpu: int = 2  # images per process and step
    detector: str = ""  # detector.pth (or checkpoint.pth) written by python -m detection
    val_images: str = ""  # override: val image folder (empty = from data_path, else the detector's val split)
    val_annotations: str = ""  # override: val instances json (empty = from data_path, else the detector's)
    progress: bool = True  # show progress bars
    max_val_images: int = 0  # evaluate on the first N val images (0 = all)

    def val_split(self, stored: dict) -> tuple[str, str]:
        """(image folder, instances json): explicit keys, else data_path, else the detector's stored config."""
        if self.data_path or (self.val_images and self.val_annotations):
            return _split_paths(self, "val")
        images, annotations = _split_paths(_Stored(stored), "val")
        return self.val_images or images, self.val_annotations or annotations

    def check(self) -> None:
        """The detector file and the val data, before any work (raises ConfigError)."""
        if self.pretrained:
            raise ConfigError("detection.eval reads the backbone from the detector file: give detector=PATH")
        if not self.detector:
            raise ConfigError("detector=PATH is required (detector.pth written by python -m detection)")
        if not Path(self.detector).is_file():
            raise ConfigError(f"detector file not found: detector={self.detector}")
        if self.max_val_images < 0:
            raise ConfigError(f"max_val_images must be >= 0, got {self.max_val_images}")
        if self.data_path or self.val_images or self.val_annotations:
            _check_exists(*_split_paths(self, "val"))


class _Stored:
    """Attribute view of the config dict stored in a detector file (older files lack data_path)."""

    def __init__(self, stored: dict):
        self.data_path = stored.get("data_path", "")
        self.val_images = stored.get("val_images", "")
        self.val_annotations = stored.get("val_annotations", "")
