"""ADE20K semantic segmentation on the core ViT or Swin: UperNet and frozen linear head (reference §3.7).

`run(backbone, cfg) -> dict` trains and evaluates: the work of `python -m segmentation` (`work.py`);
`time_limit_min` stops training early (checkpointed, then evaluated). The torch-free config is imported
at once, the other names on first use, so importing the package (and `--help`) needs no torch.
"""

from typing import TYPE_CHECKING

from plumbing import lazy_package

from .config import REFERENCE, SegConfig

if TYPE_CHECKING:
    from .data import TrainPipeline, ade_pairs, reduce_labels
    from .engine import load_segmentor
    from .inference import InferenceSpec, predict, slide_logits, whole_logits
    from .metrics import confusion_matrix, segmentation_metrics
    from .model import FCNAuxHead, LinearHead, Segmentor, UperNetHead, build_segmentor, seg_loss
    from .work import run

__getattr__, __dir__, __all__ = lazy_package(__name__)
