"""End-to-end fine-tuning with layer-wise lr decay (reference §3.5).

`run(backbone, cfg) -> dict` fine-tunes an in-memory backbone; `python -m finetune` is the CLI;
`evalkit.load_classifier(path)` reads the `classifier.pth` a run writes (images -> logits).
"""

from pretrain import lazy_exports

_EXPORTS = {
    "FinetuneConfig": "config", "START_MODES": "config", "run": "trainer", "main": "cli", "demo_finetune": "cli",
    "build_model": "model", "param_groups": "model",
}  # fmt: skip

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
