"""Configuration of the demo world and helpers shared by its writers (random streams, PNG output)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from plumbing import ConfigError

from .shapes import PROCEDURAL, SHAPES, Scene, SceneSpec, make_scene

PART_IDS = {"classification": 1, "backgrounds": 2, "coco": 3, "ade": 4}
PART_IDS["retrieval"] = 6  # the retrieval sets' random streams (demo_world/retrieval.py)
PART_IDS["video"] = 5  # the videos' random streams (demo_world/video.py)
SPLITS = ("train", "val")
MIN_OBJECT_PX = 4  # smallest circumscribed diameter allowed
PNG_LEVEL = 3  # zlib level: fast, and deterministic for a given zlib


@dataclass
class WorldConfig:
    """What to generate and how hard it is. Counts of classification images are per class."""

    output_dir: str = "demo_out/world"  # the folder the world is written to
    seed: int = 0  # every image follows from (seed, part, split, index)
    num_classes: int = 8  # the first N of circle, square, triangle, star, hexagon, cross, ring, ellipse
    image_size: int = 64  # classification images (square)
    n_train: int = 150  # classification train images per class
    n_val: int = 50  # classification val images per class
    photo_fraction: float = 0.3  # share of photo-crop backgrounds; the rest plain/gradient/noise
    procedural: tuple[str, ...] = PROCEDURAL  # the non-photo background kinds, drawn with equal odds
    object_scale: tuple[float, float] = (0.3, 0.7)  # object circumscribed diameter / image side
    min_contrast: float = 0.2  # min |luma(object) - luma(background under it)| / 255, in [0, 0.5]
    grayscale: bool = False  # all images grey (written as RGB with equal channels)
    silhouette: bool = False  # white objects on black, the simplest world: only shape, size, pose differ
    scene_size: int = 128  # COCO and ADE images (square)
    scene_object_scale: tuple[float, float] = (0.15, 0.45)  # object diameter / scene side, range
    scene_max_objects: int = 4  # 1..N non-overlapping objects per COCO/ADE image
    coco_n_train: int = 200  # COCO-layout train scenes
    coco_n_val: int = 50  # COCO-layout val scenes
    ade_n_train: int = 200  # ADE20K-layout train scenes
    ade_n_val: int = 50  # ADE20K-layout val scenes
    classification: bool = True  # class folders train/ val/ with masks (ImageNet layout)
    backgrounds: bool = True  # variants of the classification val set
    coco: bool = True  # COCO 2017 instance set (coco/)
    ade: bool = True  # ADE20K semantic set (ade/)
    retrieval: bool = False  # rOxford-style retrieval set + Copydays-style copy set (off: the default world unchanged)
    video: bool = False  # DAVIS-2017-style videos of moving shapes and masks (video/); off: the default world unchanged
    video_count: int = 3  # videos (ImageSets/2017/val.txt)
    video_frames: int = 12  # frames per video
    video_max_objects: int = 3  # 1..N shapes per video (apart from scene_max_objects)
    video_size: tuple[int, int] = (72, 128)  # frame height, width (DAVIS's 480:854 aspect)
    progress: bool = True  # progress bars


def validate(cfg: WorldConfig) -> None:
    """Raise ConfigError for values the generator cannot honour."""
    checks = [
        (cfg.seed >= 0, "seed must be >= 0"),
        (1 <= cfg.num_classes <= len(SHAPES), f"num_classes must be in 1..{len(SHAPES)}"),
        (cfg.image_size >= 8 and cfg.scene_size >= 8, "image_size and scene_size must be >= 8"),
        (0.0 <= cfg.photo_fraction <= 1.0, "photo_fraction must be in [0, 1]"),
        (0.0 <= cfg.min_contrast <= 0.5, "min_contrast must be in [0, 0.5]"),
        (
            len(cfg.procedural) > 0 and set(cfg.procedural) <= set(PROCEDURAL),
            f"procedural must be a non-empty list of {list(PROCEDURAL)}",
        ),
        (cfg.scene_max_objects >= 1, "scene_max_objects must be >= 1"),
        (cfg.video_max_objects >= 1, "video_max_objects must be >= 1"),
        (
            min(cfg.n_train, cfg.n_val, cfg.coco_n_train, cfg.coco_n_val, cfg.ade_n_train, cfg.ade_n_val) >= 0,
            "counts >= 0",
        ),
    ]
    for name, size in (("object_scale", cfg.image_size), ("scene_object_scale", cfg.scene_size)):
        lo, hi = getattr(cfg, name)
        checks.append((0.0 < lo <= hi <= 1.0, f"{name} must satisfy 0 < min <= max <= 1"))
        checks.append((lo * size >= MIN_OBJECT_PX, f"{name} min x image side must be >= {MIN_OBJECT_PX} px"))
    errors = [msg for ok, msg in checks if not ok]
    if errors:
        raise ConfigError("; ".join(errors))


def _spec(cfg: WorldConfig, size: int, object_scale) -> SceneSpec:
    """Drawing spec at one image size and object-size range; the rest comes from `cfg` alike for all parts."""
    return SceneSpec(
        size, tuple(object_scale), cfg.photo_fraction, cfg.min_contrast, cfg.grayscale, tuple(cfg.procedural),
        cfg.silhouette,
    )  # fmt: skip


def class_spec(cfg: WorldConfig) -> SceneSpec:
    """Drawing spec of the classification images."""
    return _spec(cfg, cfg.image_size, cfg.object_scale)


def scene_spec(cfg: WorldConfig) -> SceneSpec:
    """Drawing spec of the COCO and ADE images."""
    return _spec(cfg, cfg.scene_size, cfg.scene_object_scale)


def rng_for(seed: int, part: str, *keys: int) -> np.random.Generator:
    """The random stream of one image: seeded by (seed, part id, keys...)."""
    return np.random.default_rng([seed, PART_IDS[part], *keys])


def classification_scene(cfg: WorldConfig, split: str, label: int, index: int) -> Scene:
    """Classification image `index` of class `label` in `split` (one object of that class)."""
    rng = rng_for(cfg.seed, "classification", SPLITS.index(split), label, index)
    return make_scene(rng, class_spec(cfg), [label])


def save_png(path: Path, array: np.ndarray) -> None:
    """Write a uint8 HxW or HxWx3 array as PNG (deterministic bytes, no metadata)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG", compress_level=PNG_LEVEL)


def image_name(index: int) -> str:
    """File name of classification image `index` within its class folder."""
    return f"{index:05d}.png"


def progress_bar(total: int, desc: str, cfg: WorldConfig) -> tqdm:
    """A tqdm bar over images (silent when `cfg.progress` is false)."""
    return tqdm(total=total, desc=desc, unit="img", disable=not cfg.progress, leave=False)
