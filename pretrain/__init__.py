"""iBOT pre-training core (layer 1): the networks (`models/`), what iBOT optimises (`objective/`), images
in (`data/`), the training loop (`training/`), checkpoint files and exports (`checkpoints/`), and the
commands `python -m pretrain` (work: `work.train`) and `python -m pretrain.export` (`export_work.run_export`).

Everything above the core uses only the names listed here (docs: shared core-api.md); the plumbing
every layer needs (configs, errors, run folders, devices, precision) is the `plumbing` package below.
The names are imported on first use (`plumbing.lazy_package`), so importing the package costs no torch.
"""

from typing import TYPE_CHECKING

from plumbing import lazy_package

from .config import ExportConfig, TrainConfig

if TYPE_CHECKING:
    from .checkpoints.loading import load_backbone, load_head, safe_load, weights_fingerprint
    from .checkpoints.saving import atomic_save, export_backbone
    from .checkpoints.timm_export import to_timm
    from .data.augment import MultiCropAugmentation, MultiCropDataset
    from .data.fastaug import FastCollate, FastMultiCropDataset
    from .data.folder import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        UNREADABLE,
        ImageFolderDataset,
        collate_skip,
        list_images,
        open_rgb,
        seed_worker,
        to_rgb,
    )
    from .export_work import run_export
    from .models.backbones import arch_name, build_backbone, is_swin, mask_grid, with_drop_path
    from .models.head import IBOTHead
    from .models.swin import SwinBackbone
    from .objective.loss import IBOTLoss
    from .objective.masks import MaskGenerator
    from .objective.schedules import cosine_schedule
    from .training.lightning import IBOTDataModule, IBOTLightningModule
    from .training.loop import TrainingRun
    from .training.step import build_models, ema_pairs
    from .work import train

__getattr__, __dir__, __all__ = lazy_package(__name__)
