"""End-to-end fine-tuning with layer-wise lr decay (reference §3.5).

`run(backbone, cfg) -> dict` fine-tunes an in-memory backbone (`finetune/work.py`); `python -m finetune`
is the command (`finetune/__main__.py`); `evalkit.load_classifier(path)` reads the `classifier.pth` a
run writes (images -> logits).
"""

from typing import TYPE_CHECKING

from plumbing import lazy_package

from .config import START_MODES, FinetuneConfig

if TYPE_CHECKING:
    from .model import build_model, param_groups
    from .work import run

__getattr__, __dir__, __all__ = lazy_package(__name__)
