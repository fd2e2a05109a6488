"""ADE20K semantic segmentation on the core ViT or Swin: UperNet and frozen linear head (reference §3.7).

`run(backbone, cfg) -> dict` trains and evaluates; `python -m segmentation` is the CLI;
`demo_segmentation` is the short CPU run used by the demo.
"""

from .config import REFERENCE, SegConfig
from .data import TrainPipeline, ade_pairs, reduce_labels
from .demo import demo_segmentation
from .inference import InferenceSpec, predict, slide_logits, whole_logits
from .metrics import confusion_matrix, segmentation_metrics
from .model import FCNAuxHead, LinearHead, Segmentor, UperNetHead, build_segmentor, seg_loss
from .run import load_segmentor, main, run

__all__ = [
    "REFERENCE",
    "SegConfig",
    "TrainPipeline",
    "ade_pairs",
    "reduce_labels",
    "demo_segmentation",
    "InferenceSpec",
    "predict",
    "slide_logits",
    "whole_logits",
    "confusion_matrix",
    "segmentation_metrics",
    "FCNAuxHead",
    "LinearHead",
    "Segmentor",
    "UperNetHead",
    "build_segmentor",
    "seg_loss",
    "load_segmentor",
    "main",
    "run",
]
