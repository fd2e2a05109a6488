"""COCO object detection and instance segmentation with a ViT or Swin backbone (reference §3.6).

Mask R-CNN and Cascade Mask R-CNN built from torchvision's detection parts on the core ViT:
blocks (3, 5, 7, 11) -> the shared multi-scale adaptor -> FPN (5 levels); or on the core Swin: its
four stage outputs, each through its own LayerNorm -> FPN. Fine-tuning with AdamW and layer-wise lr
decay, the 1x schedule, DDP, exact resume, an optional time limit (`time_limit_min`); COCOeval bbox and
segm. `run(backbone, cfg) -> dict` is the work of `python -m detection` (`work.py`), `run_eval(cfg)` that
of `python -m detection.eval` (`eval_work.py`).

    python -m detection --config detection/recipes/vit_small_cascade.yaml pretrained=PATH data_path=COCO_ROOT
    python -m detection.eval detector=runs/detection/detector.pth
"""

from typing import TYPE_CHECKING

from plumbing import lazy_package

from .config import DETECTORS, DetectionConfig, DetectorEvalConfig, DetectorSpec, coco_split

if TYPE_CHECKING:
    from .backbone import SwinFPN, ViTFPN, build_fpn, resize_pos_embed_at_load
    from .cascade import CascadeRoIHeads, CascadeSpec
    from .coco_eval import coco_evaluate, to_coco_results, write_coco_results
    from .data import CocoInstances, collate, train_transform
    from .engine import lr_factors, train
    from .eval_work import run_eval
    from .inference import evaluate, predict
    from .model import build_detector, param_groups
    from .store import build_from_config, load_detector, save_detector
    from .work import run

__getattr__, __dir__, __all__ = lazy_package(__name__)
