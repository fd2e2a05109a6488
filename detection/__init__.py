"""COCO object detection and instance segmentation with a ViT or Swin backbone (reference §3.6).

Mask R-CNN and Cascade Mask R-CNN built from torchvision's detection parts on the core ViT:
blocks (3, 5, 7, 11) -> the shared multi-scale adaptor -> FPN (5 levels); or on the core Swin: its
four stage outputs, each through its own LayerNorm -> FPN. Fine-tuning with AdamW and layer-wise lr
decay, the 1x schedule, DDP, exact resume; COCOeval bbox and segm. `run(backbone, cfg) -> dict`.

    python -m detection --config detection/recipes/vit_small_cascade.yaml pretrained=PATH data_path=COCO_ROOT
    python -m detection.eval detector=runs/detection/detector.pth
"""

from typing import TYPE_CHECKING

from plumbing import lazy_package

if TYPE_CHECKING:
    from .backbone import SwinFPN, ViTFPN, build_fpn
    from .cascade import CascadeRoIHeads, CascadeSpec
    from .cli import main, main_eval
    from .coco_eval import coco_evaluate, to_coco_results, write_coco_results
    from .config import DETECTORS, DetectionConfig, DetectorEvalConfig, DetectorSpec, coco_split
    from .data import CocoInstances, collate, train_transform
    from .demo import demo_config, demo_detection
    from .engine import lr_factors, run, train
    from .inference import evaluate, predict, run_eval
    from .model import build_detector, param_groups
    from .store import build_from_config, load_detector, save_detector

__getattr__, __dir__, __all__ = lazy_package(__name__)
