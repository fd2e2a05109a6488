"""iBOT pre-training core (layer 1): backbones, head, loss, masks, schedules, augmentation, data, the
training loop, checkpoints and export, distributed and precision helpers, config parsing.

Everything above the core uses only the names exported here (docs: shared core-api.md). Names are
imported on first use, so importing the package is free.
"""

from .lazy import lazy_exports

_EXPORTS = {
    # backbones
    "ARCHS": "backbones", "build_backbone": "backbones", "arch_name": "backbones", "is_swin": "backbones",
    "mask_grid": "backbones", "with_drop_path": "backbones", "SWIN_SIZES": "swin", "SwinBackbone": "swin",
    "IBOTHead": "head", "to_timm": "interop",
    # loss, masks, schedules
    "IBOTLoss": "loss", "MaskedPatches": "loss", "koleo_loss": "loss", "sinkhorn_knopp": "loss",
    "MaskGenerator": "masks", "cosine_schedule": "schedules",
    # checkpoints and export
    "CheckpointError": "config", "atomic_save": "checkpoint", "export_backbone": "checkpoint",
    "load_backbone": "checkpoint", "load_head": "checkpoint", "safe_load": "checkpoint",
    "weights_fingerprint": "checkpoint", "export_hf": "hf", "export_timm": "interop", "timm_spec": "interop",
    "EXPORT_FORMATS": "saving",
    # config parsing and result files
    "ConfigError": "config", "config_help": "config", "field_help": "config", "parse_config": "config",
    "save_config": "config", "check_output_dir": "config", "to_plain": "config", "write_results": "config",
    # data
    "DatasetError": "data", "ImageFolderDataset": "data", "ImageReadError": "data", "collate_skip": "data",
    "list_images": "data", "seed_worker": "data", "IMAGENET_MEAN": "data", "IMAGENET_STD": "data",
    # multi-crop augmentation: the reference (PIL per crop) and the fast loader (uint8 crops, batched colour)
    "MultiCropAugmentation": "augment", "MultiCropDataset": "augment", "CropSpec": "augment",
    "FastMultiCropDataset": "fastaug", "FastCollate": "fastaug", "RawCrops": "fastaug", "LOADERS": "fastaug",
    "prepare_batch": "fastaug",
    "apply_colour": "colour",
    # processes, devices and precision
    "DeviceError": "distributed", "resolve_device": "distributed", "init_distributed": "distributed",
    "is_distributed": "distributed", "is_main_process": "distributed", "all_reduce_mean": "distributed",
    "all_reduce_sum": "distributed", "get_rank": "distributed:rank", "get_world_size": "distributed:world_size",
    "shutdown_distributed": "distributed:shutdown",
    "PRECISIONS": "precision", "PrecisionError": "precision", "autocast": "precision",
    "cpu_has_native_bf16": "precision", "check_precision": "precision", "resolve_precision": "precision",
    # training
    "TrainConfig": "train_config", "train": "loop", "Monitor": "loop", "TrainingRun": "loop:Run",
    "build_models": "step", "ema_pairs": "step",
    "IBOTLightningModule": "lightning", "IBOTDataModule": "lightning",
    # run folders
    "RunFolderError": "runfolder", "RunLock": "runfolder", "RunIdentity": "runfolder", "check_resume": "runfolder",
    "write_identity": "runfolder", "read_identity": "runfolder", "move_aside": "runfolder",
    "remove_stale_temps": "runfolder", "open_run_folder": "runfolder", "BOOKKEEPING": "runfolder",
    "disk_full_message": "runfolder",
    # packaging
    "lazy_exports": "lazy",
}  # fmt: skip

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
