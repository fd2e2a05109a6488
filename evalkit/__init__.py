"""The shared evaluation layer (layer 2): what several evaluations use.

Feature extraction and feature recipes, neighbour search, the linear head grid, dense adapters, the one
classifier file format and its loader, the evaluation config base and the one CLI shell. It imports
the core's public names only; evaluations (layer 3) import it, never each other.
"""

from typing import TYPE_CHECKING

from plumbing import lazy_package

from .cli import backbone_results, check_common, evaluate, run_backbone_cli, run_cli
from .config import COMMON_KEYS, PAPER_LRS, EvalConfig, FrozenFeaturesConfig

if TYPE_CHECKING:
    from .classifier import (
        FINETUNED_FORMAT,
        LINEAR_HEAD_FORMAT,
        CLSClassifier,
        FrozenClassifier,
        classifier_kind,
        load_classifier,
        save_finetuned,
        save_linear_head,
    )
    from .dense import (
        AUTHORS_ADAPTOR_NAMES,
        MultiScaleAdaptor,
        adaptor_state_from_authors,
        authors_dense_name,
        backbone_layer_id,
        default_out_indices,
        feature_maps,
        layer_decay_param_groups,
        vit_layer_id,
    )
    from .features import (
        FEATURE_RECIPES,
        block_widths,
        check_file_list,
        check_finite_weights,
        check_recipe,
        eval_transform,
        extract_features,
        feature_cache_file,
        feature_fn,
        frozen,
        image_splits,
        linear_train_transform,
        pool_tokens,
        recipe_dim,
        split_features,
    )
    from .knn import SEARCH_BACKENDS, knn_classify, knn_classify_many, pick_backend, search_neighbours
    from .monitor import KNNMonitor
    from .runs import describe_datasets, open_evaluation_folder, run_identity
    from .sweep import (
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
    from .tblog import ScalarLog

__getattr__, __dir__, __all__ = lazy_package(__name__)
