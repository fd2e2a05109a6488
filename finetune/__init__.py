"""End-to-end fine-tuning with layer-wise lr decay (reference §3.5).

`run(backbone, cfg) -> dict` fine-tunes an in-memory backbone; `python -m finetune` is the CLI;
`evalkit.load_classifier(path)` reads the `classifier.pth` a run writes (images -> logits).
"""

from .cli import demo_finetune, finetune_from_config, main
from .config import START_MODES, FinetuneConfig, check_config
from .model import build_model, param_groups
from .run import run

__all__ = [
    "START_MODES",
    "FinetuneConfig",
    "build_model",
    "check_config",
    "demo_finetune",
    "finetune_from_config",
    "main",
    "param_groups",
    "run",
]
