"""A short robustness run on the demo world (`make demo`): occlusion, shuffle, corruptions, backgrounds.

The demo world (`python -m demo_world`) holds `classification/val/<class>/` and the background
variants `backgrounds/{original,only_fg,no_fg,mixed_same,mixed_rand}/<class>/`, with class folders
that are the classifier's own classes, so an identity class map (written to `out_dir` in the
in_to_in9.json format) maps outputs to variant classes. No only_bg_t exists there: the challenge
pastes the val foregrounds (masks from `classification/masks/val`) on the `no_fg` backgrounds.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from torch import nn

from evalkit import load_classifier
from plumbing import ConfigError

from .common import identity_map_file
from .config import BackgroundsConfig, CorruptionsConfig, OcclusionConfig, ShuffleConfig, require_imagecorruptions
from .protocols import backgrounds, corruptions, occlusion, shuffle

DEMO_CORRUPTIONS = ["gaussian_noise", "motion_blur", "contrast"]  # glass_blur compiles for ~10 s first


def _classifier(classifier_or_paths, key: str) -> tuple[nn.Module, dict | None]:
    """A classifier module, a fine-tuned classifier path, or (head path, backbone path)."""
    if isinstance(classifier_or_paths, nn.Module):
        return classifier_or_paths, None
    if isinstance(classifier_or_paths, (str, os.PathLike)):
        return load_classifier(classifier_or_paths, None, key)
    head, backbone = classifier_or_paths
    return load_classifier(head, backbone, key)


def demo_robustness(
    classifier_or_paths: nn.Module | str | os.PathLike | tuple,
    world_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    max_images: int = 32,
    device: str = "cpu",
    key: str = "teacher",
) -> dict:
    """Occlusion curve, patch shuffle, 3 corruptions x 2 severities and the background variants.

    `classifier_or_paths`: a classifier (`info` inferred: its `head` must be the output Linear), a
    fine-tuned classifier file, or `(linear_head_best.pth, backbone file)`. Returns a flat summary
    (top-1 %) and the per-test results under `results`; every test writes its own folder in `out_dir`.
    Without the optional package imagecorruptions the corruption test is left out and `skipped` says why.
    """
    model, info = _classifier(classifier_or_paths, key)
    world, out = Path(world_dir), Path(out_dir)
    val = str(world / "classification" / "val")
    size = (info or {}).get("image_size") or model.backbone.arch_kwargs()["img_size"]
    common = dict(
        image_size=size, batch_size_per_gpu=32, num_workers=0, max_images=max_images, device=device, progress=False
    )
    grids = [g for g in ("2x2", "4x4", "8x8") if size % shuffle.parse_grid(g)[0] == 0]
    num_classes = (info or {}).get("num_classes") or model.head.out_features
    class_map = identity_map_file(out / "backgrounds" / "identity_class_map.json", num_classes)
    configs = {
        "occlusion": OcclusionConfig(data_path=val, cell_size=model.backbone.patch_size, lambdas=[0.3, 0.7]),
        "shuffle": ShuffleConfig(data_path=val, grids=grids),
        "corruptions": CorruptionsConfig(data_path=val, corruptions=DEMO_CORRUPTIONS, severities=[1, 3]),
        "backgrounds": BackgroundsConfig(
            data_path=str(world / "backgrounds"),
            class_map=str(class_map),
            challenge=True,
            mask_dir=str(world / "classification" / "masks" / "val"),
            bg_dir=str(world / "backgrounds" / "no_fg"),
            max_foregrounds=8,
            max_backgrounds=32,
        ),
    }
    tests = {"occlusion": occlusion, "shuffle": shuffle, "corruptions": corruptions, "backgrounds": backgrounds}
    skipped = {}
    try:
        require_imagecorruptions()
    except ConfigError as e:  # an optional extra: the other tests run, the summary says why this one did not
        skipped["corruptions"] = str(e)
    res = {}
    for name, cfg in configs.items():
        if name not in skipped:
            res[name] = tests[name].run(model, dataclasses.replace(cfg, **common, output_dir=str(out / name)), info)
    occ, shuf, bg = res["occlusion"], res["shuffle"], res["backgrounds"]
    summary = {
        "clean_top1": occ["clean_top1"],
        "occlusion_50pct_top1": occ["random_drop"][len(occ["random_drop"]) // 2]["top1"],
        "shuffle_top1": {r["grid"]: r["top1"] for r in shuf["shuffle"]},
        "corruption_mean_error": res["corruptions"]["mean_error"] if "corruptions" in res else None,
        "background_top1": bg["top1"],
        "bg_gap": bg["bg_gap"],
        "vulnerable_percent": bg["challenge"]["vulnerable_percent"],
    }
    return {**summary, "skipped": skipped, "results": res}
