"""ADE20K semantic segmentation on the core ViT or Swin: UperNet and frozen linear head (reference §3.7).

`run(backbone, cfg) -> dict` trains and evaluates; `python -m segmentation` is the CLI (`main(argv)`);
`demo_segmentation` is the short CPU run used by the demo. Names are imported on first use, so
importing the package (and `--help`) needs no torch.
"""

from pretrain import lazy_exports

_EXPORTS = {
    "REFERENCE": "config", "SegConfig": "config",
    "TrainPipeline": "data", "ade_pairs": "data", "reduce_labels": "data",
    "demo_segmentation": "demo",
    "InferenceSpec": "inference", "predict": "inference", "slide_logits": "inference", "whole_logits": "inference",
    "confusion_matrix": "metrics", "segmentation_metrics": "metrics",
    "FCNAuxHead": "model", "LinearHead": "model", "Segmentor": "model", "UperNetHead": "model",
    "build_segmentor": "model", "seg_loss": "model",
    "load_segmentor": "trainer", "main": "trainer", "run": "trainer",
}  # fmt: skip

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
