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
from .config import ConfigError, config_help, parse_config, save_config, to_plain, write_results
from .data import DatasetError, ImageFolderDataset, ImageReadError, collate_skip, list_images, seed_worker
from .head import IBOTHead
from .interop import to_timm
from .loss import IBOTLoss
from .masks import MaskGenerator
from .schedules import cosine_schedule

__all__ = [
    "ARCHS",
    "ConfigError",
    "DatasetError",
    "ImageFolderDataset",
    "ImageReadError",
    "collate_skip",
    "config_help",
    "list_images",
    "parse_config",
    "save_config",
    "seed_worker",
    "to_plain",
    "write_results",
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
