"""Detection configuration: defaults are the ViT-S/16 Cascade Mask R-CNN 1x recipe (reference §3.6).

`DetectorSpec` holds everything needed to rebuild the detector (it is stored in every checkpoint);
`DetectionConfig` adds data, augmentation, optimisation and bookkeeping. The head widths, RoI counts
and image sizes are configurable so that CPU tests and demos can run the same code on tiny images.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DETECTORS = ("cascade_mask_rcnn", "mask_rcnn")


@dataclass
class DetectorSpec:
    detector: str = "cascade_mask_rcnn"  # or mask_rcnn
    out_indices: list[int] | None = None  # None = blocks (3, 5, 7, 11) scaled to the depth (ViT; Swin: None)
    out_with_norm: bool = False  # final LayerNorm on the taken block outputs (ViT; a Swin has stage norms)
    use_checkpoint: bool = False  # activation checkpointing of the ViT during training
    fpn_channels: int = 256
    conv_channels: int = 256  # 4conv1fc box heads and the FCN mask heads
    fc_dim: int = 1024
    rpn_pre_nms_train: int = 2000  # per pyramid level
    rpn_post_nms_train: int = 2000
    rpn_pre_nms_test: int = 1000
    rpn_post_nms_test: int = 1000
    rois_per_image: int = 512  # RoI sampler, 25 % positives
    test_short: int = 800  # test scale (1333, 800): short side 800, long side at most 1333
    test_max: int = 1333


@dataclass
class DetectionConfig:
    # data: COCO json + image folder (real COCO 2017 or the demo world)
    train_images: str = ""
    train_annotations: str = ""
    val_images: str = ""
    val_annotations: str = ""
    # backbone
    backbone: str = ""  # any file load_backbone reads (exported backbone, training checkpoint, ...)
    backbone_key: str = "teacher"
    drop_path_rate: float = 0.1  # ViT-S 0.1, ViT-B 0.2
    model: DetectorSpec = field(default_factory=DetectorSpec)
    # DETR-style multi-scale train augmentation (flip, then (a) or (b))
    flip_prob: float = 0.5
    train_scales: list[int] = field(default_factory=lambda: list(range(480, 801, 32)))  # (a) short sides
    train_max: int = 1333  # long side cap of (a) and the final resize of (b)
    crop_scales: list[int] = field(default_factory=lambda: [400, 500, 600])  # (b) short side before the crop
    crop_range: list[int] = field(default_factory=lambda: [384, 600])  # (b) absolute crop side range
    # optimisation: AdamW + layer decay, 1x schedule
    epochs: int = 12
    lr_steps: list[int] = field(default_factory=lambda: [8, 11])  # x0.1 after these epochs
    warmup_iters: int = 500
    warmup_ratio: float = 0.001
    lr: float = 1e-4
    weight_decay: float = 0.05
    layer_decay: float = 0.8  # README: 0.8 ViT-S, 0.75 ViT-B (the config files' 0.75 / 0.65 are overridden)
    batch_size_per_gpu: int = 4  # x 8 GPUs = 32 for ViT-S; ViT-B 2 x 8 = 16 (lr is not scaled by the batch)
    precision: str = "auto"  # auto = backbone in bf16 autocast on CUDA (heads fp32), fp32 on CPU; fp32 | bf16
    # bookkeeping
    output_dir: str = "runs/detection"
    resume: bool = True  # continue from output_dir/checkpoint.pth when it exists
    num_workers: int = 4
    seed: int = 0
    device: str = "auto"
    max_train_images: int = 0  # 0 = all (a subset for quick runs)
    max_val_images: int = 0


@dataclass
class EvalConfig:
    checkpoint: str = ""  # detector.pth or checkpoint.pth written by python -m detection
    val_images: str = ""  # empty = the paths stored in the checkpoint
    val_annotations: str = ""
    output_dir: str = "runs/detection_eval"
    batch_size_per_gpu: int = 2
    num_workers: int = 4
    precision: str = "auto"
    device: str = "auto"
    max_val_images: int = 0
