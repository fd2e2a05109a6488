"""The robustness stage of the demo: occlusion, patch shuffle, corruptions and backgrounds on each model's
linear-probe classifier (the frozen stage's best head on its backbone).

Each test is its command's own `run_<test>(classifier, cfg, info)` called through `evalkit.evaluate`
(config.yaml and results.json with provenance in `robustness/<model>/<test>/`, as `python -m
analysis.robustness.<test> classifier=... pretrained=...` writes them), at demo sizes: a seeded subset of
the val images, 2 occlusion masses, 3 corruptions at 2 severities, 8 foregrounds on 32 backgrounds. The
demo world's background variants have the classifier's own classes, so an identity class map (written
in the in_to_in9.json format) maps outputs to variant classes; the challenge pastes the val foregrounds
(masks from `classification/masks/val`) on the `no_fg` backgrounds (the world has no only_bg_t).
On a world whose objects all sit on one uniform background the backgrounds test says so and is skipped
(`skipped`). `robustness/<model>/summary.json` holds the numbers the closing table reads.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

from analysis import (
    BackgroundsConfig,
    CorruptionsConfig,
    OcclusionConfig,
    ShuffleConfig,
    identity_map_file,
    parse_grid,
    require_imagecorruptions,
    run_backgrounds,
    run_corruptions,
    run_occlusion,
    run_shuffle,
)
from evalkit import evaluate, load_classifier
from plumbing import ConfigError, resolve_device

from .common import Context, NotRun, write_json

DEMO_CORRUPTIONS = ["gaussian_noise", "motion_blur", "contrast"]  # glass_blur compiles for ~10 s first
TESTS = {"occlusion": run_occlusion, "shuffle": run_shuffle, "corruptions": run_corruptions,
         "backgrounds": run_backgrounds}  # fmt: skip


def test_configs(world: Path, size: int, patch: int, num_classes: int, out: Path) -> dict:
    """The four tests' configs at demo sizes (without the keys every test shares)."""
    val = str(world / "classification" / "val")
    class_map = identity_map_file(out / "backgrounds" / "identity_class_map.json", num_classes)
    grids = [g for g in ("2x2", "4x4", "8x8") if size % parse_grid(g)[0] == 0]
    return {
        "occlusion": OcclusionConfig(data_path=val, cell_size=patch, lambdas=[0.3, 0.7]),
        "shuffle": ShuffleConfig(data_path=val, grids=grids),
        "corruptions": CorruptionsConfig(data_path=val, corruptions=DEMO_CORRUPTIONS, severities=[1, 3]),
        "backgrounds": BackgroundsConfig(data_path=str(world / "backgrounds"), class_map=str(class_map),
                                         challenge=True, mask_dir=str(world / "classification" / "masks" / "val"),
                                         bg_dir=str(world / "backgrounds" / "no_fg"), max_foregrounds=8,
                                         max_backgrounds=32),
    }  # fmt: skip


def robustness(ctx: Context, model: str) -> None:
    """The tests on `model`'s linear-probe classifier, into `robustness/<model>/`."""
    head = ctx.folder("frozen", model, "linear") / "linear_head_best.pth"
    if not head.is_file():
        raise NotRun(f"{head} is missing: the robustness stage uses the frozen stage's linear head (run it first)")
    device = str(resolve_device(ctx.device))  # auto: CUDA when available
    robustness_tests(head, ctx.models[model], ctx.world, ctx.folder("robustness", model),
                     ctx.budgets["robustness_images"], device, ctx.threads)  # fmt: skip


def robustness_tests(
    head: Path, backbone: Path, world: Path, out: Path, max_images: int, device: str, threads: int = 0
) -> dict:
    """Every test through `evalkit.evaluate` (the linear head `head` on `backbone`), then `out/summary.json`;
    returns the summary with the tests' results under `results`. Without the optional package
    imagecorruptions the corruption test is left out and `skipped` says why."""
    classifier, info = load_classifier(head, backbone)
    size = info.get("image_size") or classifier.backbone.arch_kwargs()["img_size"]
    num_classes = info.get("num_classes") or classifier.head.out_features
    shared = dict(classifier=str(head), pretrained=str(backbone), image_size=size, batch_size_per_gpu=32,
                  num_workers=0, max_images=max_images, device=device, threads=threads, progress=False)  # fmt: skip
    skipped = {}
    try:
        require_imagecorruptions()
    except ConfigError as e:  # an optional extra: the other tests run, the summary says why this one did not
        skipped["corruptions"] = str(e)
    res = {}
    for name, cfg in test_configs(world, size, classifier.backbone.patch_size, num_classes, out).items():
        if name not in skipped:
            cfg = dataclasses.replace(cfg, **shared, output_dir=str(out / name))
            test = functools.partial(TESTS[name], info=info)
            res[name] = evaluate(test, classifier, cfg, f"analysis.robustness.{name}", info)
    if "skipped" in res.get("backgrounds", {}):  # a world whose objects sit on one uniform background
        skipped["backgrounds"] = res["backgrounds"]["skipped"]
    flat = {**summary(res), "skipped": skipped}
    write_json(out / "summary.json", flat)
    return {**flat, "results": res}


def summary(res: dict) -> dict:
    """The flat numbers of the closing table (top-1 %, corruption error %; None for a test that did not run)."""
    occ, shuf, bg = res["occlusion"], res["shuffle"], res["backgrounds"]
    return {
        "clean_top1": occ["clean_top1"],
        "occlusion_50pct_top1": occ["random_drop"][len(occ["random_drop"]) // 2]["top1"],
        "shuffle_top1": {r["grid"]: r["top1"] for r in shuf["shuffle"]},
        "corruption_mean_error": res["corruptions"]["mean_error"] if "corruptions" in res else None,
        "background_top1": bg.get("top1"),
        "bg_gap": bg.get("bg_gap"),
        "vulnerable_percent": bg["challenge"]["vulnerable_percent"] if "challenge" in bg else None,
    }
