"""The work of `python -m demo_world`: write the demo "shapes" world to disk, deterministically from a seed.

Parts (each switchable): classification class folders with foreground masks, background-challenge
variants of the classification val set, a COCO instance-segmentation set and an ADE20K-style semantic
segmentation set. Every image has its own random stream, seeded by (seed, part, split, class, index),
so an image does not depend on how many others are generated. See `demo_world/README.md`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from plumbing import RunFolderError, save_config, to_plain

from .config import SPLITS, WorldConfig, classification_scene, image_name, progress_bar, rng_for, save_png, validate
from .retrieval import write_retrieval
from .scenes import write_ade, write_coco
from .shapes import SHAPES, to_uint8
from .video import validate_video, write_video

FORMAT_VERSION = 1
MARKER = ".demo_world"  # written first; a folder holding it may be cleared and rewritten
PARTS = ("classification", "backgrounds", "coco", "ade")
PARTS += ("retrieval",)  # off by default (WorldConfig.retrieval)
PARTS += ("video",)  # off by default (WorldConfig.video)
VARIANTS = ("original", "only_fg", "no_fg", "mixed_same", "mixed_rand")


def write_classification(cfg: WorldConfig, out: Path) -> dict[str, Any]:
    """`classification/{train,val}/<class>/<id>.png` and masks (0/255) under `classification/masks/`."""
    root = out / "classification"
    counts = {}
    for split in SPLITS:
        n = cfg.n_train if split == "train" else cfg.n_val
        with progress_bar(n * cfg.num_classes, f"classification {split}", cfg) as bar:
            for label in range(cfg.num_classes):
                for i in range(n):
                    scene = classification_scene(cfg, split, label, i)
                    rel = Path(split) / SHAPES[label] / image_name(i)
                    save_png(root / rel, scene.render())
                    mask = scene.objects[0].alpha >= 0.5
                    save_png(root / "masks" / rel, mask.astype(np.uint8) * 255)
                    bar.update()
        counts[split] = n * cfg.num_classes
    return {
        "train": str(root / "train"),
        "val": str(root / "val"),
        "masks": str(root / "masks"),
        "classes": list(SHAPES[: cfg.num_classes]),
        "counts": counts,
    }


def background_donors(cfg: WorldConfig, label: int, index: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(class, index) of the val images lending their backgrounds to mixed_same and mixed_rand.

    mixed_same: another image of the same class (itself only when n_val == 1); mixed_rand: an image
    of a different class (any class when there is only one).
    """
    rng = rng_for(cfg.seed, "backgrounds", label, index)
    n = cfg.n_val
    same = int(rng.integers(n - 1)) if n > 1 else 0
    same += int(n > 1 and same >= index)  # skip the image itself
    k = cfg.num_classes
    other = int(rng.integers(k - 1)) if k > 1 else 0
    other += int(k > 1 and other >= label)
    return (label, same), (other, int(rng.integers(n)))


def background_variants(cfg: WorldConfig, label: int, index: int) -> dict[str, np.ndarray]:
    """The five ImageNet-9-style variants of val image (label, index), rendered exactly."""
    scene = classification_scene(cfg, "val", label, index)
    (_, same), (other_label, other) = background_donors(cfg, label, index)
    same_bg = classification_scene(cfg, "val", label, same).background
    rand_bg = classification_scene(cfg, "val", other_label, other).background
    footprint = scene.footprint()[..., None]
    return {
        "original": scene.render(),
        "only_fg": scene.render(np.zeros_like(scene.background)),
        "no_fg": to_uint8(scene.background * ~footprint),
        "mixed_same": scene.render(same_bg),
        "mixed_rand": scene.render(rand_bg),
    }


def write_backgrounds(cfg: WorldConfig, out: Path) -> dict[str, Any]:
    """`backgrounds/<variant>/<class>/<id>.png` for every classification val image."""
    root = out / "backgrounds"
    with progress_bar(cfg.n_val * cfg.num_classes, "background variants", cfg) as bar:
        for label in range(cfg.num_classes):
            for i in range(cfg.n_val):
                for variant, image in background_variants(cfg, label, i).items():
                    save_png(root / variant / SHAPES[label] / image_name(i), image)
                bar.update()
    result: dict[str, Any] = {v: str(root / v) for v in VARIANTS}
    result["counts"] = {v: cfg.n_val * cfg.num_classes for v in VARIANTS}
    return result


def prepare_output_dir(out: Path) -> None:
    """Create `out`, or clear the parts of a world written there before; refuse foreign folders."""
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"output_dir={str(out)!r} is an existing file, not a folder: choose another output_dir")
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise RunFolderError(f"output_dir={str(out)!r} is not empty and holds no demo world ({MARKER} missing): "
                             "refusing to write there; choose another output_dir")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by demo_world; the parts in this folder are replaced on regeneration\n")
    for part in PARTS:
        if (out / part).exists():
            shutil.rmtree(out / part)
    (out / "world.json").unlink(missing_ok=True)


def run(cfg: WorldConfig) -> dict[str, Any]:
    """Write the world described by `cfg` into `cfg.output_dir`; return the paths written and counts."""
    validate(cfg)
    validate_video(cfg)
    out = Path(cfg.output_dir)
    prepare_output_dir(out)
    writers = {
        "classification": write_classification,
        "backgrounds": write_backgrounds,
        "coco": write_coco,
        "ade": write_ade,
        "retrieval": write_retrieval,
        "video": write_video,
    }
    result: dict[str, Any] = {"output_dir": str(out), "seed": cfg.seed, "classes": list(SHAPES[: cfg.num_classes])}
    for part in PARTS:
        if getattr(cfg, part):
            result[part] = writers[part](cfg, out)
    result["config"] = str(save_config(cfg, out))
    world_cfg = {k: v for k, v in to_plain(cfg).items() if k not in ("output_dir", "progress")}
    if not cfg.video:  # the video keys appear in world.json only when the part is written
        world_cfg = {k: v for k, v in world_cfg.items() if not k.startswith("video")}
    manifest = {"format_version": FORMAT_VERSION, "config": world_cfg}
    manifest.update({k: _relative(v, out) for k, v in result.items() if k not in ("output_dir", "config")})
    (out / "world.json").write_text(json.dumps(manifest, indent=2) + "\n")
    result["manifest"] = str(out / "world.json")
    return result


def _relative(value: Any, root: Path) -> Any:
    """Paths (as strings) under `root` made relative, recursively; other values unchanged."""
    if isinstance(value, dict):
        return {k: _relative(v, root) for k, v in value.items()}
    if isinstance(value, str) and Path(value).is_relative_to(root):
        return Path(value).relative_to(root).as_posix()
    return value


def write_world(output_dir: str | Path, seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """Convenience: `run(WorldConfig(output_dir=..., seed=..., **overrides))`."""
    return run(WorldConfig(output_dir=str(output_dir), seed=seed, **overrides))
