"""COCO object detection and instance segmentation with a ViT or Swin backbone (reference §3.6).

Mask R-CNN and Cascade Mask R-CNN built from torchvision's detection parts on the core ViT:
blocks (3, 5, 7, 11) -> the shared multi-scale adaptor -> FPN (5 levels); or on the core Swin: its
four stage outputs, each through its own LayerNorm -> FPN. Fine-tuning with AdamW and layer-wise lr
decay, the 1x schedule, DDP, exact resume; COCOeval bbox and segm. `run(backbone, cfg) -> dict`.

    python -m detection --config detection/recipes/vit_small_cascade.yaml pretrained=PATH data_path=COCO_ROOT
    python -m detection.eval detector=runs/detection/detector.pth
"""

from pretrain import lazy_exports

_EXPORTS = {
    "DETECTORS": "config", "DetectionConfig": "config", "DetectorEvalConfig": "config", "DetectorSpec": "config",
    "coco_split": "config",
    "main": "cli", "main_eval": "cli",
    "SwinFPN": "backbone", "ViTFPN": "backbone", "build_fpn": "backbone",
    "CascadeRoIHeads": "cascade", "CascadeSpec": "cascade",
    "coco_evaluate": "coco_eval", "to_coco_results": "coco_eval", "write_coco_results": "coco_eval",
    "CocoInstances": "data", "collate": "data", "train_transform": "data",
    "demo_config": "demo", "demo_detection": "demo",
    "lr_factors": "engine", "run": "engine", "train": "engine",
    "evaluate": "inference", "predict": "inference", "run_eval": "inference",
    "build_detector": "model", "param_groups": "model",
    "build_from_config": "store", "load_detector": "store", "save_detector": "store",
}  # fmt: skip

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
