"""Multi-object scenes of the demo world: a COCO instance set and an ADE20K-style semantic set.

Both draw 1..`scene_max_objects` non-overlapping shapes per image (classes uniform, independent of
colour and background). An object's mask is its pixels with coverage >= 0.5; masks of different
objects never share a pixel, so instance masks and the semantic label map agree exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from .config import SPLITS, WorldConfig, progress_bar, rng_for, save_png, scene_spec
from .shapes import SHAPES, Scene, make_scene

ADE_SPLITS = {"train": "training", "val": "validation"}
ADE_PREFIX = {"train": "ADE_train", "val": "ADE_val"}
JPEG_QUALITY = 95
PALETTE = [  # label value -> RGB, for colour-coded figures (0 = background)
    [0, 0, 0],
    [230, 25, 75],
    [60, 180, 75],
    [255, 225, 25],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
]


def multi_scene(cfg: WorldConfig, part: str, split: str, index: int) -> Scene:
    """Scene `index` of `part` ("coco" or "ade") in `split`."""
    rng = rng_for(cfg.seed, part, SPLITS.index(split), index)
    n_objects = int(rng.integers(1, cfg.scene_max_objects + 1))
    labels = [int(x) for x in rng.integers(0, cfg.num_classes, n_objects)]
    return make_scene(rng, scene_spec(cfg), labels)


def coco_categories(cfg: WorldConfig) -> list[dict[str, Any]]:
    """COCO categories: ids 1..num_classes in SHAPES order."""
    return [{"id": k + 1, "name": SHAPES[k], "supercategory": "shape"} for k in range(cfg.num_classes)]


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """Binary HxW mask -> compressed COCO RLE `{"size": [h, w], "counts": str}`, ready for json."""
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))  # pycocotools wants Fortran-order uint8
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def coco_annotations(scene: Scene, image_id: int, first_id: int) -> list[dict[str, Any]]:
    """One annotation per object: tight box [x, y, w, h] and area of its mask, compressed-RLE segmentation."""
    anns = []
    for j, obj in enumerate(scene.objects):
        rle = encode_rle(obj.alpha >= 0.5)
        anns.append(
            {
                "id": first_id + j,
                "image_id": image_id,
                "category_id": obj.label + 1,
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "area": float(mask_utils.area(rle)),
                "iscrowd": 0,
                "segmentation": rle,
            }
        )
    return anns


def write_coco_split(cfg: WorldConfig, out: Path, split: str, n: int) -> tuple[Path, int]:
    """Images of one split (`<split>2017/`, as COCO 2017) and `annotations/instances_<split>2017.json`;
    returns the json path and #annotations."""
    root = out / "coco"
    images, annotations = [], []
    with progress_bar(n, f"coco {split}", cfg) as bar:
        for i in range(n):
            scene = multi_scene(cfg, "coco", split, i)
            image_id, file_name = i + 1, f"{i + 1:012d}.png"
            save_png(root / f"{split}2017" / file_name, scene.render())
            images.append({"id": image_id, "file_name": file_name, "width": cfg.scene_size, "height": cfg.scene_size})
            annotations += coco_annotations(scene, image_id, len(annotations) + 1)
            bar.update()
    data = {
        "info": {"description": "demo_world synthetic shapes", "version": "1", "seed": cfg.seed},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": coco_categories(cfg),
    }
    path = root / "annotations" / f"instances_{split}2017.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path, len(annotations)


def write_coco(cfg: WorldConfig, out: Path) -> dict[str, Any]:
    """COCO 2017's layout: `coco/{train2017,val2017}/*.png` + `coco/annotations/instances_{train,val}2017.json`."""
    result: dict[str, Any] = {"counts": {}}
    for split in SPLITS:
        n = cfg.coco_n_train if split == "train" else cfg.coco_n_val
        path, n_ann = write_coco_split(cfg, out, split, n)
        result[split] = {"images": str(out / "coco" / f"{split}2017"), "annotations": str(path)}
        result["counts"][split] = {"images": n, "annotations": n_ann}
    return result


def label_map(scene: Scene) -> np.ndarray:
    """uint8 HxW: 0 = background, k + 1 where object of class k covers >= half the pixel."""
    labels = np.zeros(scene.background.shape[:2], dtype=np.uint8)
    for obj in scene.objects:
        labels[obj.alpha >= 0.5] = obj.label + 1
    return labels


def ade_classes(cfg: WorldConfig) -> dict[str, Any]:
    """Content of `ade/classes.json`."""
    return {
        "classes": list(SHAPES[: cfg.num_classes]),
        "label_values": {"0": "background", **{str(k + 1): SHAPES[k] for k in range(cfg.num_classes)}},
        "num_classes": cfg.num_classes,
        "background_value": 0,
        "reduce_zero_label": True,
        "ignore_index": 255,
        "palette": PALETTE[: cfg.num_classes + 1],
        "image_suffix": ".jpg",
        "annotation_suffix": ".png",
    }


def write_ade(cfg: WorldConfig, out: Path) -> dict[str, Any]:
    """`ade/images/{training,validation}/*.jpg`, `ade/annotations/{...}/*.png`, `ade/classes.json`."""
    root = out / "ade"
    counts = {}
    for split, folder in ADE_SPLITS.items():
        n = cfg.ade_n_train if split == "train" else cfg.ade_n_val
        (root / "images" / folder).mkdir(parents=True, exist_ok=True)
        with progress_bar(n, f"ade {split}", cfg) as bar:
            for i in range(n):
                scene = multi_scene(cfg, "ade", split, i)
                stem = f"{ADE_PREFIX[split]}_{i + 1:08d}"
                image = Image.fromarray(scene.render())
                image.save(root / "images" / folder / f"{stem}.jpg", format="JPEG", quality=JPEG_QUALITY, subsampling=0)
                save_png(root / "annotations" / folder / f"{stem}.png", label_map(scene))
                bar.update()
        counts[split] = n
    (root / "classes.json").write_text(json.dumps(ade_classes(cfg), indent=2) + "\n")
    return {
        "images": str(root / "images"),
        "annotations": str(root / "annotations"),
        "classes": str(root / "classes.json"),
        "counts": counts,
    }
