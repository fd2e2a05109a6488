"""iBOT pre-training core (layer 1): backbones, head, loss, masks, schedules, augmentation, data, the
training loop, checkpoints and export.

Everything above the core uses only the names listed here (docs: shared core-api.md); the plumbing
every layer needs (configs, errors, run folders, devices, precision) is the `plumbing` package below.
The names are imported on first use (`plumbing.lazy_package`), so importing the package costs no torch.
"""

from typing import TYPE_CHECKING

from plumbing import lazy_package

from .train_config import TrainConfig

if TYPE_CHECKING:
    # backbones and head
    from .augment import CropSpec, MultiCropAugmentation, MultiCropDataset
    from .backbones import ARCHS, arch_name, build_backbone, is_swin, mask_grid, with_drop_path
    from .checkpoint import load_backbone, load_head, safe_load, weights_fingerprint
    from .colour import apply_colour
    from .data import IMAGENET_MEAN, IMAGENET_STD, ImageFolderDataset, collate_skip, list_images, seed_worker
    from .fastaug import LOADERS, FastCollate, FastMultiCropDataset, RawCrops, prepare_batch
    from .head import IBOTHead
    from .hf import export_hf
    from .interop import export_timm, timm_spec, to_timm
    from .lightning import IBOTDataModule, IBOTLightningModule
    from .loop import Monitor, TrainingRun, train
    from .loss import IBOTLoss, MaskedPatches, koleo_loss, sinkhorn_knopp
    from .masks import MaskGenerator
    from .saving import EXPORT_FORMATS, atomic_save, export_backbone
    from .schedules import cosine_schedule
    from .step import build_models, ema_pairs
    from .swin import SWIN_SIZES, SwinBackbone

__getattr__, __dir__, __all__ = lazy_package(__name__)
