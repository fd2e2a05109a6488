"""ADE20K semantic segmentation on the core ViT or Swin: UperNet and frozen linear head (reference §3.7).

`run(backbone, cfg) -> dict` trains and evaluates; `python -m segmentation` is the CLI (`main(argv)`);
`demo_segmentation` is the short CPU run used by the demo. Names are imported on first use, so
importing the package (and `--help`) needs no torch.
"""

from typing import TYPE_CHECKING

from plumbing import lazy_package

if TYPE_CHECKING:
    from .config import REFERENCE, SegConfig
    from .data import TrainPipeline, ade_pairs, reduce_labels
    from .demo import demo_segmentation
    from .inference import InferenceSpec, predict, slide_logits, whole_logits
    from .metrics import confusion_matrix, segmentation_metrics
    from .model import FCNAuxHead, LinearHead, Segmentor, UperNetHead, build_segmentor, seg_loss
    from .trainer import load_segmentor, main, run

__getattr__, __dir__, __all__ = lazy_package(__name__)
