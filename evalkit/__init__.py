"""The shared evaluation layer (layer 2): what several evaluations use.

Feature extraction and feature recipes, neighbour search, the linear head grid, dense adapters, the one
classifier file format and its loader, the evaluation config base and the one CLI shell. It imports
the core's public names only; evaluations (layer 3) import it, never each other.
"""

from pretrain import lazy_exports

_EXPORTS = {
    # the evaluation interface
    "EvalConfig": "config", "FrozenFeaturesConfig": "config", "COMMON_KEYS": "config",
    "run_cli": "cli", "run_backbone_cli": "cli", "check_common": "cli",
    "user_errors": "cli",
    # features
    "FEATURE_RECIPES": "features", "eval_transform": "features", "linear_train_transform": "features",
    "image_splits": "features", "frozen": "features", "check_recipe": "features", "block_widths": "features",
    "recipe_dim": "features", "pool_tokens": "features", "feature_fn": "features", "extract_features": "features",
    "feature_cache_file": "features", "split_features": "features",
    # neighbour search
    "SEARCH_BACKENDS": "knn", "pick_backend": "knn", "search_neighbours": "knn", "knn_classify": "knn",
    "knn_classify_many": "knn", "KNNMonitor": "monitor",
    # the linear head grid
    "PAPER_LRS": "config", "HeadSpec": "sweep", "HeadGrid": "sweep", "make_grid": "sweep", "widest_recipe": "sweep",
    "make_optimizer": "sweep", "set_epoch_lr": "sweep", "train_one_epoch": "sweep", "evaluate_heads": "sweep",
    "BestTracker": "sweep",
    # dense adapters and layer decay
    "default_out_indices": "dense", "feature_maps": "dense", "MultiScaleAdaptor": "dense",
    "vit_layer_id": "dense", "backbone_layer_id": "dense", "layer_decay_param_groups": "dense",
    # classifiers
    "ScalarLog": "tblog", "open_run_folder": "runs", "run_identity": "runs", "describe_datasets": "runs",
    "FrozenClassifier": "classifier", "CLSClassifier": "classifier", "save_linear_head": "classifier",
    "save_finetuned": "classifier", "load_classifier": "classifier", "classifier_kind": "classifier",
    "LINEAR_HEAD_FORMAT": "classifier", "FINETUNED_FORMAT": "classifier",
}  # fmt: skip

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
