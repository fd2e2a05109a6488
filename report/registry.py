"""Which evaluation wrote a `results.json`, and which numbers the report takes from it.

One table, `EVALUATIONS`: evaluation -> how to recognise it -> which numbers to take. To support a new
evaluation (or a changed result shape) add or edit one `Evaluation` entry; nothing else needs to change.

Recognition, first rule that decides wins:
1. `config.yaml` holds every key of `config_keys` (and the values in `when`): the most reliable, since
   every command writes its resolved config beside its results.
2. `results.json` holds every dotted path of `result_paths` (for folders without a config.yaml).
3. The folder's name holds one of `tokens` (`runs/eval_knn.unsup` -> tokens eval, knn, unsup).
Entries are tried in order, so the more specific ones (unsup before knn) come first.

A metric is read from the first of its dotted `paths` present in `results.json`. A path component is a
dict key (`knn.k=20.top1` reads results["knn"]["k=20"]["top1"]), a list index (`random_drop.5.top1`) or
a list selector `key=value[&key=value]` that picks the first element with those values
(`shuffle.grid=4x4.top1`). Values are multiplied by `scale` (fractions -> percent).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any


@dataclass(frozen=True)
class Metric:
    """One number the report takes: its id (shared with the tables and the published-numbers file)."""

    id: str
    paths: tuple[str, ...]
    scale: float = 1.0


@dataclass(frozen=True)
class Evaluation:
    """An evaluation: its name, how to recognise its results.json, the numbers to take from it."""

    name: str
    title: str
    config_keys: frozenset[str] = frozenset()
    when: tuple[tuple[str, str], ...] = ()  # config key -> value the config must hold (e.g. head=upernet)
    result_paths: tuple[str, ...] = ()
    tokens: frozenset[str] = frozenset()
    metrics: tuple[Metric, ...] = ()
    kind: str = "model"  # model: an evaluation of a backbone (a row in the tables); pretrain: a training run


def _ev(name, title, keys=(), results=(), tokens=(), metrics=(), when=(), kind="model") -> Evaluation:
    keys, tokens = frozenset(keys), frozenset(tokens)
    return Evaluation(name, title, keys, tuple(when), tuple(results), tokens, tuple(metrics), kind)


def _m(mid: str, *paths: str, scale: float = 1.0) -> Metric:
    return Metric(mid, paths, scale)


BG_VARIANTS = ("original", "only_fg", "no_fg", "only_bg_b", "only_bg_t", "mixed_same", "mixed_rand", "mixed_next")


def _bg(variant: str) -> Metric:
    return _m(f"bg_{variant}", f"top1.{variant}")


# Columns: name, title, config.yaml keys (all present), results.json paths (all present), folder-name words,
# the numbers taken (_m(metric id, dotted paths tried in order, scale)), then `when` / `kind` where needed.
EVALUATIONS: tuple[Evaluation, ...] = (
    _ev("pretrain", "Pre-training", ["teacher_temp", "global_crops_scale"], ["skipped_images", "completed"],
        ["pretrain", "pretraining"], [_m("pretrain_epochs", "epoch"), _m("pretrain_minutes", "minutes"),
                                      _m("pretrain_last_loss", "last.loss")], kind="pretrain"),
    _ev("eval_knn.unsup", "Unsupervised classification", (), ["nmi", "hungarian_acc"], ["unsup", "unsupervised"],
        [_m("unsup_acc", "hungarian_acc", "acc", scale=100), _m("unsup_ari", "ari", scale=100),
         _m("unsup_nmi", "nmi", scale=100), _m("unsup_fmi", "fowlkes_mallows", "fmi", scale=100)]),
    _ev("eval_knn", "Weighted k-NN", ["ks", "temperature", "search"], ["knn"], ["knn"],
        [_m("knn_top1", "knn.k=20.top1", "best.top1")]),
    _ev("eval_linear.logreg", "Logistic regression", ["lambdas", "max_iter", "tol"], ["best.lambda", "sweep"],
        ["logreg", "logistic"], [_m("logreg_top1", "best.top1")]),
    _ev("eval_linear", "Linear probing", ["recipes", "lrs", "wds"], ["best.top1", "heads"], ["linear", "lin"],
        [_m("linear_top1", "best.top1", "best_acc")]),
    _ev("finetune.head_layer1", "Fine-tuning from the projection head's first layer", ["start_from", "mixup"], (),
        (), [_m("finetune_proj_top1", "best_top1")], when=[("start_from", "head_layer1")]),
    _ev("finetune", "Fine-tuning", ["start_from", "mixup"], ["best_top1"], ["finetune", "finetuning", "ft", "cls"],
        [_m("finetune_top1", "best_top1")]),
    _ev("detection.eval", "COCO detection (evaluation only)", ["detector", "val_annotations"], [], (),
        [_m("coco_box_ap", "metrics.bbox_AP", "bbox_AP"), _m("coco_mask_ap", "metrics.segm_AP", "segm_AP")]),
    _ev("detection", "COCO detection and instance segmentation", ["lr_steps", "train_scales"], ["metrics.bbox_AP"],
        ["detection", "det", "coco", "cascade"],
        [_m("coco_box_ap", "metrics.bbox_AP", "summary.bbox_AP", "bbox_AP"),
         _m("coco_mask_ap", "metrics.segm_AP", "summary.segm_AP", "segm_AP"),
         *(_m(f"coco_{k}_ap{n}", f"metrics.{m}_AP{n}", f"summary.{m}_AP{n}")
           for k, m in (("box", "bbox"), ("mask", "segm")) for n in (50, 75))]),
    _ev("segmentation.linear", "ADE20K linear head", ["head", "out_indices", "test_stride"], ["mIoU", "mAcc"], (),
        [_m("ade_linear_miou", "mIoU"), _m("ade_linear_macc", "mAcc")], when=[("head", "linear")]),
    _ev("segmentation", "ADE20K UperNet", ["head", "out_indices", "test_stride"], ["mIoU", "mAcc"],
        ["segmentation", "seg", "ade", "ade20k", "upernet", "semantic"],
        [_m("ade_upernet_miou", "mIoU"), _m("ade_upernet_macc", "mAcc")]),
    _ev("retrieval.copydays", "Copy detection (Copydays strong)", ["distractors_path", "whitening"], ["mAP_strong"],
        ["copydays", "copy"], [_m("copydays_map", "mAP_strong", "mAP.strong")]),
    _ev("retrieval.rparis6k", "Image retrieval (RParis6k)", ["multiscale", "crop_queries"], ["mAP.medium"], (),
        [_m("rpar_medium", "mAP.medium"), _m("rpar_hard", "mAP.hard")], when=[("dataset", "rparis6k")]),
    _ev("retrieval", "Image retrieval (ROxford5k)", ["multiscale", "crop_queries"], ["mAP.medium"],
        ["retrieval", "roxford5k", "rparis6k", "oxford", "paris"],
        [_m("rox_medium", "mAP.medium"), _m("rox_hard", "mAP.hard")]),
    _ev("video_seg", "DAVIS-2017 video object segmentation", ["size_mask_neighborhood", "n_last_frames"],
        ["J&F-Mean"], ["video", "davis", "vos"],
        [_m("davis_jf", "J&F-Mean", "jf_mean", "J&F"), _m("davis_j", "J-Mean", "j_mean"),
         _m("davis_f", "F-Mean", "f_mean")]),
    _ev("analysis.attention", "Attention maps", ["threshold", "masks"], ["kept_patch_fraction_per_head"],
        ["attention", "attn"], [_m("attn_jaccard_best", "jaccard_best_head"),
                                _m("attn_jaccard_mean", "jaccard_mean_over_heads")]),
    _ev("analysis.correspondence", "Correspondence", ["eval_radius", "similarity"], ["mutual_nn_fraction"],
        ["correspondence", "corr"], [_m("corr_accuracy", "accuracy", scale=100),
                                     _m("corr_mutual", "mutual_nn_fraction", scale=100)]),
    _ev("analysis.patterns", "Patch patterns", ["num_prototypes", "dark_value"], ["prototypes_used"],
        ["patterns", "pattern"], [_m("patterns_used", "prototypes_used")]),
    _ev("analysis.pca", "PCA of patch features", ["joint", "fg_threshold"], ["joint", "figures"], ["pca"]),
    _ev("analysis.explore", "Interactive explorer page", ["feature_dims", "layers"],
        ["page_bytes", "similarity_precision.max_abs_error"], ["explore"]),
    _ev("analysis.robustness.occlusion", "Occlusion", ["random_drop", "salient"], ["random_drop"], ["occlusion"],
        [_m("occ_clean", "clean_top1"), _m("occ_random50", "random_drop.k=5.top1"),
         _m("occ_salient50", "salient_drop.lambda=0.5.top1"),
         _m("occ_nonsalient50", "non_salient_drop.lambda=0.5.top1")]),
    _ev("analysis.robustness.shuffle", "Patch shuffle", ["grids", "classifier"], ["shuffle"], ["shuffle"],
        [_m("shuffle_clean", "clean_top1"), _m("shuffle_4x4", "shuffle.grid=4x4.top1")]),
    _ev("analysis.robustness.corruptions", "Common corruptions", ["severities", "corruptions"], ["errors"],
        ["corruptions", "corruption"], [_m("corr_mean_error", "mean_error"), _m("corr_mce", "mce_alexnet")]),
    _ev("analysis.robustness.backgrounds", "Backgrounds challenge", ["variants", "challenge"], ["bg_gap"],
        ["backgrounds", "background", "bg"],
        [*(_bg(v) for v in BG_VARIANTS), _m("bg_gap", "bg_gap"),
         _m("bg_challenge", "challenge.challenge_top1")]),
    _ev("analysis.robustness.natural_adv.imagenet_r", "ImageNet-R", ["bin_size", "class_map"], (), (),
        [_m("imagenet_r_top1", "top1")], when=[("class_map", "imagenet_r")]),
    _ev("analysis.robustness.natural_adv", "Natural adversarial examples", ["bin_size", "class_map"], ["aurra"],
        ["natural", "adv"], [_m("nat_adv_top1", "top1"), _m("nat_adv_calib", "rms_calibration_error")]),
    _ev("analysis.robustness.partwise", "Part-wise linear probing", ["orders", "final_norm"], ["skipped_ks"],
        ["partwise"], [_m("partwise_top1_k56", "results.order=top&k=56.top1")]),
)  # fmt: skip

BY_NAME = {e.name: e for e in EVALUATIONS}
# how a metric id reads in the report (units included); metrics missing here read as their id
LABELS = {
    "knn_top1": "k-NN top-1 (k=20) %", "linear_top1": "linear top-1 %", "logreg_top1": "logistic regression top-1 %",
    "finetune_top1": "fine-tuning top-1 %", "finetune_proj_top1": "fine-tuning from the head's layer 1, top-1 %",
    "unsup_acc": "unsupervised ACC %", "unsup_ari": "unsupervised ARI %", "unsup_nmi": "unsupervised NMI %",
    "unsup_fmi": "unsupervised FMI %", "coco_box_ap": "COCO AP box", "coco_mask_ap": "COCO AP mask",
    "coco_box_ap50": "COCO AP50 box", "coco_box_ap75": "COCO AP75 box", "coco_mask_ap50": "COCO AP50 mask",
    "coco_mask_ap75": "COCO AP75 mask", "ade_upernet_miou": "ADE20K mIoU (UperNet)",
    "ade_upernet_macc": "ADE20K mAcc (UperNet)", "ade_linear_miou": "ADE20K mIoU (linear head)",
    "ade_linear_macc": "ADE20K mAcc (linear head)", "copydays_map": "Copydays strong mAP",
    "rox_medium": "ROxford mAP Medium", "rox_hard": "ROxford mAP Hard", "rpar_medium": "RParis mAP Medium",
    "rpar_hard": "RParis mAP Hard", "davis_jf": "DAVIS-2017 J&F", "davis_j": "DAVIS-2017 J", "davis_f": "DAVIS-2017 F",
    "attn_jaccard_best": "attention Jaccard, best head", "attn_jaccard_mean": "attention Jaccard, mean over heads",
    "corr_accuracy": "correspondence accuracy %", "corr_mutual": "mutual nearest neighbours %",
    "patterns_used": "prototypes used", "occ_clean": "clean top-1 % (robustness head)",
    "occ_random50": "top-1 %, 50% of patches dropped at random", "occ_salient50": "top-1 %, salient drop 0.5",
    "occ_nonsalient50": "top-1 %, non-salient drop 0.5", "shuffle_clean": "top-1 % before shuffling",
    "shuffle_4x4": "top-1 %, 4x4 patch shuffle", "corr_mean_error": "ImageNet-C mean top-1 error %",
    "corr_mce": "ImageNet-C mCE (AlexNet-normalised)", "bg_gap": "BG-gap (Mixed-Same - Mixed-Rand)",
    "bg_challenge": "backgrounds challenge top-1 %", "imagenet_r_top1": "ImageNet-R top-1 %",
    "nat_adv_top1": "ImageNet-A top-1 %", "nat_adv_calib": "ImageNet-A calibration error",
    "partwise_top1_k56": "part-wise linear top-1 (top-56 patches) %",
    **{f"bg_{v}": f"IN-9 {v.replace('_', '-')} top-1 %" for v in BG_VARIANTS},
}  # fmt: skip


LOWER_IS_BETTER = frozenset({"corr_mean_error", "corr_mce", "nat_adv_calib", "bg_gap"})


def metric_label(metric_id: str) -> str:
    """The reading label of a metric id; a label-fraction suffix becomes words ('knn_top1@1%' -> '... 1% labels')."""
    base, _, split = metric_id.partition("@")
    label = LABELS.get(base, base)
    return f"{label}, {split} labels" if split else label


def metric_order() -> list[str]:
    """Every metric id in reading order: ImageNet classification (full labels, then 1% and 10%), then the
    registry's order."""
    ids = list(dict.fromkeys(m.id for e in EVALUATIONS if e.kind == "model" for m in e.metrics))
    first = ["knn_top1", "linear_top1", "logreg_top1", "finetune_top1", "finetune_proj_top1"]
    splits = [f"{mid}@{s}" for s in ("1%", "10%") for mid in first]
    return first + splits + [mid for mid in ids if mid not in first]


GENERIC_TOKENS = frozenset(
    "runs run out output outputs frozen dense analysis robustness eval evals evaluation evaluations results tools "
    "imagenet demo semi supervised authors".split()
)
SPLIT_RE = re.compile(r"(?<![\d.])(1|10)\s*(%|pct|percent|perc)(?![a-z])", re.IGNORECASE)


def tokens(name: str) -> list[str]:
    """Lower-case words of a folder name: `eval_knn.unsup` -> [eval, knn, unsup]."""
    return [t for t in re.split(r"[^a-z0-9&%]+", name.lower()) if t]


def known_token(token: str) -> bool:
    """A word that names an evaluation, a stage or a label split rather than a model."""
    return (
        token in GENERIC_TOKENS
        or SPLIT_RE.fullmatch(token) is not None
        or any(token in e.tokens for e in EVALUATIONS)
        or token in ("eval", "analysis", "retrieval")
    )


def get_path(data: Any, path: str) -> Any:
    """The value at a dotted `path` (see the module docstring) or None."""
    node = data
    for part in _parts(path):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.lstrip("-").isdigit():
            i = int(part)
            node = node[i] if -len(node) <= i < len(node) else None
        elif isinstance(node, list) and "=" in part:
            wanted = dict(kv.split("=", 1) for kv in part.split("&"))
            node = next((e for e in node if isinstance(e, dict) and _matches(e, wanted)), None)
        else:
            return None
        if node is None:
            return None
    return node


def _parts(path: str) -> list[str]:
    """`salient_drop.lambda=0.5.top1` -> [salient_drop, lambda=0.5, top1]: a selector's decimal point stays."""
    parts: list[str] = []
    for part in path.split("."):
        if parts and part.isdigit() and re.search(r"=-?\d+$", parts[-1]):
            parts[-1] += "." + part
        else:
            parts.append(part)
    return parts


def _matches(element: dict, wanted: dict[str, str]) -> bool:
    for k, v in wanted.items():
        have = element.get(k)
        if have is None:
            return False
        if isinstance(have, (int, float)) and not isinstance(have, bool):
            try:
                if not math.isclose(float(have), float(v), abs_tol=1e-9):
                    return False
            except ValueError:
                return False
        elif str(have) != v:
            return False
    return True


def _config_matches(ev: Evaluation, config: dict) -> bool:
    if not ev.config_keys or not ev.config_keys <= set(config):
        return False
    return all(str(config.get(k)) == v for k, v in ev.when)


def _results_match(ev: Evaluation, results: dict, config: dict | None) -> bool:
    if not ev.result_paths or any(get_path(results, p) is None for p in ev.result_paths):
        return False
    # `when` is about the config; without one, the results may carry the same key (retrieval's dataset)
    return all(str((config or results).get(k, results.get(k))) == v for k, v in ev.when)


def identify(config: dict | None, results: dict, folder: str) -> Evaluation | None:
    """The evaluation that wrote `results` (with `config` from its config.yaml, if any), or None.

    `folder`: the result folder's path relative to the run folder; its names are tried deepest first.
    """
    if config:
        for ev in EVALUATIONS:
            if _config_matches(ev, config):
                return ev
    for ev in EVALUATIONS:
        if _results_match(ev, results, config):
            return ev
    for name in reversed(PurePath(folder).parts):
        words = set(tokens(name))
        found = next((ev for ev in EVALUATIONS if ev.tokens & words and not ev.when), None)
        if found:
            return found
    return None


def take_metrics(ev: Evaluation, results: dict) -> dict[str, float]:
    """{metric id: number} for the metrics of `ev` found in `results` (missing or non-numeric ones left out)."""
    out = {}
    for m in ev.metrics:
        for p in m.paths:
            value = get_path(results, p)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[m.id] = float(value) * m.scale
                break
    return out


@dataclass
class SplitRule:
    """Semi-supervised label fractions: where a run's train subset is named (config keys, then the folder)."""

    keys: tuple[str, ...] = ("train_list", "train_split", "subset")
    metrics: tuple[str, ...] = field(
        default=("knn_top1", "linear_top1", "logreg_top1", "finetune_top1", "finetune_proj_top1")
    )

    def split_of(self, config: dict | None, folder: str) -> str | None:
        """'1%' or '10%' when the train subset (or the folder) names one of the SimCLRv2 splits, else None."""
        texts = [str((config or {}).get(k) or "") for k in self.keys] + [folder]
        for text in texts:
            m = SPLIT_RE.search(text.replace("/", " "))
            if m:
                return f"{m.group(1)}%"
        return None


SPLITS = SplitRule()
