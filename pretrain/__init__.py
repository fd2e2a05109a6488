"""iBOT pre-training core. Evaluation and analysis modules use only the names exported here."""

from .backbones import ARCHS, arch_name, build_backbone, is_swin, mask_grid
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
from .dense import (
    MultiScaleAdaptor,
    backbone_layer_id,
    default_out_indices,
    feature_maps,
    layer_decay_param_groups,
    vit_layer_id,
)
from .distributed import all_reduce_mean, init_distributed, is_distributed
from .distributed import rank as get_rank
from .distributed import shutdown as shutdown_distributed
from .distributed import world_size as get_world_size
from .features import (
    FEATURE_RECIPES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    FrozenClassifier,
    block_widths,
    eval_transform,
    extract_features,
    feature_cache_file,
    feature_fn,
    frozen,
    image_splits,
    linear_train_transform,
    load_linear_classifier,
    pool_tokens,
    recipe_dim,
    resolve_device,
    run_backbone_cli,
    run_cli,
    save_linear_head,
)
from .head import IBOTHead
from .interop import to_timm
from .knn import SEARCH_BACKENDS, knn_classify, knn_classify_many, pick_backend, search_neighbours
from .loop import train
from .loss import IBOTLoss
from .masks import MaskGenerator
from .schedules import cosine_schedule
from .sweep import (
    PAPER_LRS,
    BestTracker,
    HeadGrid,
    HeadSpec,
    evaluate_heads,
    make_grid,
    make_optimizer,
    set_epoch_lr,
    train_one_epoch,
    widest_recipe,
)
from .swin import SWIN_SIZES, SwinBackbone
from .train_config import TrainConfig

__all__ = [
    "ARCHS",
    "PAPER_LRS",
    "HeadSpec",
    "HeadGrid",
    "make_grid",
    "make_optimizer",
    "set_epoch_lr",
    "train_one_epoch",
    "evaluate_heads",
    "BestTracker",
    "widest_recipe",
    "linear_train_transform",
    "SWIN_SIZES",
    "SwinBackbone",
    "arch_name",
    "is_swin",
    "mask_grid",
    "all_reduce_mean",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "shutdown_distributed",
    "SEARCH_BACKENDS",
    "knn_classify",
    "knn_classify_many",
    "pick_backend",
    "search_neighbours",
    "MultiScaleAdaptor",
    "backbone_layer_id",
    "default_out_indices",
    "feature_maps",
    "layer_decay_param_groups",
    "vit_layer_id",
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
    "train",
    "TrainConfig",
    "FEATURE_RECIPES",
    "FrozenClassifier",
    "eval_transform",
    "extract_features",
    "feature_cache_file",
    "feature_fn",
    "load_linear_classifier",
    "pool_tokens",
    "block_widths",
    "recipe_dim",
    "save_linear_head",
    "image_splits",
    "resolve_device",
    "run_backbone_cli",
    "run_cli",
    "frozen",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]
