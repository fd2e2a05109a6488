"""iBOT pre-training core. Evaluation and analysis modules use only the names exported here."""

from .backbones import ARCHS, build_backbone
from .checkpoint import (
    CheckpointError,
    atomic_save,
    export_backbone,
    load_backbone,
    load_head,
    safe_load,
)
from .head import IBOTHead
from .interop import to_timm
from .loss import IBOTLoss
from .masks import MaskGenerator
from .schedules import cosine_schedule

__all__ = [
    "ARCHS",
    "CheckpointError",
    "IBOTHead",
    "IBOTLoss",
    "MaskGenerator",
    "atomic_save",
    "build_backbone",
    "cosine_schedule",
    "export_backbone",
    "load_backbone",
    "load_head",
    "safe_load",
    "to_timm",
]
