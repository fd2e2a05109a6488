"""COCO object detection and instance segmentation with a ViT or Swin backbone (issue 6, reference §3.6).

Mask R-CNN and Cascade Mask R-CNN built from torchvision's detection parts on the core ViT:
blocks (3, 5, 7, 11) -> the core's multi-scale adaptor -> FPN (5 levels); or on the core Swin: its
four stage outputs, each through its own LayerNorm -> FPN. Fine-tuning with AdamW and layer-wise lr
decay, the 1x schedule, DDP, exact resume; COCOeval bbox and segm.

    python -m detection --config detection/recipes/vit_small_cascade.yaml backbone=PATH ...
    python -m detection.eval checkpoint=runs/detection/detector.pth
"""

from .backbone import SwinFPN, ViTFPN, build_fpn
from .cascade import CascadeRoIHeads, CascadeSpec
from .coco_eval import coco_evaluate, to_coco_results, write_coco_results
from .config import DETECTORS, DetectionConfig, DetectorSpec, EvalConfig
from .data import CocoInstances, collate, train_transform
from .demo import demo_detection
from .engine import lr_factors, run, train
from .evaluate import evaluate, predict
from .model import build_detector, param_groups
from .store import build_from_config, load_detector, save_detector

__all__ = [
    "DETECTORS",
    "CascadeRoIHeads",
    "CascadeSpec",
    "CocoInstances",
    "DetectionConfig",
    "DetectorSpec",
    "EvalConfig",
    "SwinFPN",
    "ViTFPN",
    "build_detector",
    "build_fpn",
    "build_from_config",
    "coco_evaluate",
    "collate",
    "demo_detection",
    "evaluate",
    "load_detector",
    "lr_factors",
    "param_groups",
    "predict",
    "run",
    "save_detector",
    "to_coco_results",
    "train",
    "train_transform",
    "write_coco_results",
]
