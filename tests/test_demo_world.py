"""Demo world: determinism, layout, masks, COCO/ADE formats, background variants, geometry, CLI."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import coco as coco_api
from pycocotools import mask as mask_api
from scipy import ndimage

from demo_world import SHAPES, VARIANTS, WorldConfig, run, write_world
from demo_world.__main__ import main
from demo_world.config import classification_scene
from demo_world.scenes import encode_rle, label_map, multi_scene
from demo_world.shapes import rasterise, unit_polygons
from demo_world.work import background_donors, background_variants
from plumbing import ConfigError, RunFolderError, parse_config

TINY = dict(
    image_size=32,
    n_train=2,
    n_val=3,
    scene_size=48,
    coco_n_train=3,
    coco_n_val=2,
    ade_n_train=3,
    ade_n_val=2,
    progress=False,
)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("world") / "w"
    return out, write_world(out, seed=0, **TINY)


def test_same_seed_gives_identical_files_and_another_seed_differs(world, tmp_path):
    out, _ = world
    write_world(tmp_path / "again", seed=0, **TINY)
    write_world(tmp_path / "other", seed=1, **TINY)
    a, b, c = _files(out), _files(tmp_path / "again"), _files(tmp_path / "other")
    a.pop("config.yaml"), b.pop("config.yaml"), c.pop("config.yaml")  # records output_dir
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    images = [k for k in a if k.endswith(".png") or k.endswith(".jpg")]
    assert sum(a[k] != c[k] for k in images) > 0.9 * len(images)


def test_layout_and_counts(world):
    out, result = world
    for split, n in (("train", 2), ("val", 3)):
        for name in SHAPES:
            assert len(list((out / "classification" / split / name).glob("*.png"))) == n
            assert len(list((out / "classification" / "masks" / split / name).glob("*.png"))) == n
    assert result["classification"]["counts"] == {"train": 16, "val": 24}
    for variant in VARIANTS:
        assert len(list((out / "backgrounds" / variant).rglob("*.png"))) == 24
    assert len(list((out / "coco" / "train2017").glob("*.png"))) == 3
    assert len(list((out / "ade" / "images" / "validation").glob("*.jpg"))) == 2
    assert len(list((out / "ade" / "annotations" / "validation").glob("*.png"))) == 2
    manifest = json.loads((out / "world.json").read_text())
    assert manifest["classes"] == list(SHAPES) and manifest["coco"]["val"]["annotations"].startswith("coco/")
    assert (out / "config.yaml").is_file()


def test_masks_align_with_the_object(world):
    out, _ = world
    cfg = WorldConfig(output_dir=str(out), **TINY)
    for label, name in enumerate(SHAPES):
        scene = classification_scene(cfg, "val", label, 1)
        image = _read(out / "classification" / "val" / name / "00001.png")
        mask = _read(out / "classification" / "masks" / "val" / name / "00001.png")
        alpha = scene.objects[0].alpha
        assert set(np.unique(mask)) == {0, 255} and np.array_equal(mask == 255, alpha >= 0.5)
        assert np.array_equal(image, scene.render())
        full, empty = alpha == 1, alpha == 0
        assert np.abs(image[full] - np.rint(scene.objects[0].colour)).max() <= 0.5
        assert np.array_equal(image[empty], np.rint(scene.background[empty]).astype(np.uint8))
        # The object stands out: inside the mask the image differs from the clean background.
        assert np.abs(image[mask == 255].astype(float) - scene.background[mask == 255]).mean() > 10


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' numpy-2 copy warning
def test_coco_json_boxes_and_rle_masks(world):
    out, _ = world
    data = json.loads((out / "coco" / "annotations" / "instances_train2017.json").read_text())
    assert [c["id"] for c in data["categories"]] == list(range(1, 9))
    assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"]) >= 3
    sizes = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
    for im in data["images"]:
        assert _read(out / "coco" / "train2017" / im["file_name"]).shape == (48, 48, 3)
    masks = {}
    for ann in data["annotations"]:
        mask = mask_api.decode(ann["segmentation"]).astype(bool)
        assert mask.shape == sizes[ann["image_id"]] and ann["iscrowd"] == 0 and 1 <= ann["category_id"] <= 8
        x, y, w, h = (int(v) for v in ann["bbox"])
        inside = np.zeros_like(mask)
        inside[y : y + h, x : x + w] = True
        assert mask.sum() == ann["area"] > 0 and not (mask & ~inside).any()
        assert mask[y, :].any() and mask[:, x].any() and mask[y + h - 1, :].any() and mask[:, x + w - 1].any()
        masks.setdefault(ann["image_id"], []).append(mask)
    for ms in masks.values():  # instances never share a pixel
        assert (np.sum(ms, axis=0) <= 1).all()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' numpy-2 copy warning
def test_coco_loads_with_pycocotools(world):
    out, _ = world
    cfg = WorldConfig(output_dir=str(out), **TINY)
    coco = coco_api.COCO(str(out / "coco" / "annotations" / "instances_val2017.json"))
    for image_id in coco.getImgIds():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        scene = multi_scene(cfg, "coco", "val", image_id - 1)
        assert len(anns) == len(scene.objects) > 0
        for ann, obj in zip(anns, scene.objects, strict=True):
            assert np.array_equal(coco.annToMask(ann).astype(bool), obj.alpha >= 0.5)


def _old_encode(mask: np.ndarray) -> dict:
    """The hand-written encoder that pycocotools replaced, kept only as the comparison oracle."""
    flat = mask.ravel(order="F")  # COCO scans column-major; runs alternate 0s, 1s, starting with 0s
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = [0] * bool(flat[0]) + np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    chars = []
    for i, value in enumerate(counts):
        x = value - counts[i - 2] if i > 2 else value  # from the fourth count on: the delta to two before
        more = True
        while more:  # little-endian 5-bit groups, 0x20 = continuation, 0x10 of the last group = sign
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            chars.append(chr((c | 0x20 * more) + 48))
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": "".join(chars)}


def _old_bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' numpy-2 copy warning
def test_rle_is_byte_identical_to_the_replaced_encoder():
    """The world's RLE, boxes and areas (pycocotools) equal those of the hand-written encoder it used
    before, as JSON text, on random masks of every density and on the world's shapes cut by the border."""
    m = np.zeros((7, 9), dtype=bool)
    m[1:5, 2:7] = True
    m[2:4, 3:5] = False
    m[6, 8] = m[0, 0] = True
    assert encode_rle(m) == _old_encode(m) == {"size": [7, 9], "counts": "01>3EMO010O01300<M"}
    rng = np.random.default_rng(0)
    masks = [rng.random(tuple(rng.integers(1, 40, 2))) < rng.choice([0.0, 0.02, 0.5, 0.98, 1.0, rng.random()])
             for _ in range(300)]  # fmt: skip
    for k in range(160):  # shapes of every class, some partly outside the image
        size = int(rng.integers(8, 64))
        polygons = unit_polygons(SHAPES[k % len(SHAPES)], rng)
        centre = tuple(rng.uniform(-0.2, 1.2, 2) * size)
        masks.append(rasterise(polygons, centre, rng.uniform(1, size / 2), rng.uniform(0, 2 * math.pi), size) >= 0.5)
    assert sum(m.any() and not m.all() for m in masks) > 300  # most mixed, some all-0 or all-1
    for mask in masks:
        new = encode_rle(mask)
        assert json.dumps(new) == json.dumps(_old_encode(mask))
        assert [float(v) for v in mask_api.toBbox(new)] == _old_bbox(mask)
        assert float(mask_api.area(new)) == float(mask.sum())
        assert np.array_equal(mask_api.decode(new).astype(bool), mask)


def test_ade_label_maps(world):
    out, _ = world
    classes = json.loads((out / "ade" / "classes.json").read_text())
    assert classes["classes"] == list(SHAPES) and classes["label_values"]["0"] == "background"
    cfg = WorldConfig(output_dir=str(out), **TINY)
    for i, image_path in enumerate(sorted((out / "ade" / "images" / "training").glob("*.jpg"))):
        labels = _read(out / "ade" / "annotations" / "training" / (image_path.stem + ".png"))
        assert labels.dtype == np.uint8 and labels.shape == _read(image_path).shape[:2] == (48, 48)
        assert labels.max() <= 8 and (labels == 0).any() and (labels > 0).any()
        assert np.array_equal(labels, label_map(multi_scene(cfg, "ade", "train", i)))


def test_background_variants_are_exact(world):
    out, _ = world
    cfg = WorldConfig(output_dir=str(out), **TINY)
    for label, name in enumerate(SHAPES):
        for i in range(3):
            v = {k: _read(out / "backgrounds" / k / name / f"{i:05d}.png") for k in VARIANTS}
            mask = _read(out / "classification" / "masks" / "val" / name / f"{i:05d}.png") == 255
            assert np.array_equal(v["original"], _read(out / "classification" / "val" / name / f"{i:05d}.png"))
            assert (v["no_fg"][mask] == 0).all() and (v["only_fg"][v["no_fg"].any(-1)] == 0).all()
            scene = classification_scene(cfg, "val", label, i)
            alpha = scene.objects[0].alpha
            empty = alpha == 0
            assert (v["only_fg"][empty] == 0).all() and (v["no_fg"][~empty] == 0).all()
            assert np.array_equal(v["no_fg"][empty], v["original"][empty])
            (same_label, same), (rand_label, rand) = background_donors(cfg, label, i)
            assert same_label == label and same != i and rand_label != label
            donor = classification_scene(cfg, "val", same_label, same).background
            assert np.array_equal(v["mixed_same"][empty], np.rint(donor[empty]).astype(np.uint8))
            assert np.abs(v["mixed_rand"][alpha == 1] - v["original"][alpha == 1]).max() <= 1
    assert set(background_variants(cfg, 0, 0)) == set(VARIANTS)


@pytest.mark.parametrize("name", SHAPES)
def test_shapes_are_exact_and_centred(name):
    rng = np.random.default_rng(3)
    polygons = unit_polygons(name, np.random.default_rng(3))
    radius, centre = 40.0, (50.3, 49.6)
    alpha = rasterise(polygons, centre, radius, rng.uniform(0, 2 * math.pi), 100)

    def shoelace(p: np.ndarray) -> float:
        return 0.5 * abs(float(np.dot(p[:, 0], np.roll(p[:, 1], 1)) - np.dot(p[:, 1], np.roll(p[:, 0], 1))))

    area = (shoelace(polygons[0]) - sum(shoelace(p) for p in polygons[1:])) * radius**2
    assert abs(alpha.sum() - area) / area < 0.005
    ys, xs = np.mgrid[:100, :100] + 0.5
    assert abs((alpha * xs).sum() / alpha.sum() - centre[0]) < 0.05
    assert abs((alpha * ys).sum() / alpha.sum() - centre[1]) < 0.05
    assert max(np.hypot(*p.T).max() for p in polygons) == pytest.approx(1.0)
    expected = {"circle": math.pi, "square": 2.0, "triangle": 3 * math.sqrt(3) / 4, "hexagon": 3 * math.sqrt(3) / 2}
    if name in expected:
        assert area / radius**2 == pytest.approx(expected[name], rel=1e-3)


def test_grayscale_and_fewer_classes(tmp_path):
    result = write_world(tmp_path / "g", grayscale=True, num_classes=3, coco=False, ade=False, **TINY)
    assert sorted(p.name for p in (tmp_path / "g" / "classification" / "train").iterdir()) == sorted(SHAPES[:3])
    assert "coco" not in result and result["backgrounds"]["counts"]["only_fg"] == 9
    for path in (tmp_path / "g" / "backgrounds").rglob("*.png"):
        img = _read(path).astype(int)
        assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()


def test_procedural_background_kinds(tmp_path):
    """`procedural=("plain",)`: every background pixel (2 px away from the object) of every image has one
    grey level; the default keeps gradients and noise; unknown kinds are refused."""

    def background_levels(root: Path) -> list[int]:
        levels = []
        for path in sorted((root / "classification" / "train").rglob("*.png")):
            mask = _read(root / "classification" / "masks" / path.relative_to(root / "classification")) > 0
            edge = ndimage.binary_dilation(mask, np.ones((5, 5), bool))  # the object and its antialiased rim
            levels.append(len(np.unique(_read(path)[..., 0][~edge])))
        return levels

    args = dict(TINY, n_train=6, photo_fraction=0.0, grayscale=True, coco=False, ade=False, backgrounds=False)
    write_world(tmp_path / "plain", procedural=("plain",), **args)
    assert set(background_levels(tmp_path / "plain")) == {1}
    write_world(tmp_path / "all", **args)
    assert max(background_levels(tmp_path / "all")) > 10
    with pytest.raises(ConfigError, match="procedural"):
        run(WorldConfig(output_dir=str(tmp_path / "y"), procedural=("stripes",)))
    cli = [sys.executable, "-m", "demo_world", f"output_dir={tmp_path / 'z'}", "procedural=[stripes]"]
    out = subprocess.run(cli, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True)
    assert (
        out.returncode == 2
        and out.stderr.startswith("demo_world: error: procedural must")
        and "Traceback" not in out.stderr
    )


def test_silhouette_world_is_white_objects_on_black(tmp_path):
    """`silhouette=True`: away from each object's antialiased rim every pixel is black outside the mask and
    white inside it, in every split and in the COCO scenes; the objects keep their random geometry."""
    args = dict(TINY, n_train=6, silhouette=True, ade=False, backgrounds=False)
    write_world(tmp_path / "s", **args)
    root = tmp_path / "s" / "classification"
    areas = set()
    for path in sorted((root / "train").rglob("*.png")) + sorted((root / "val").rglob("*.png")):
        img = _read(path)
        mask = _read(root / "masks" / path.relative_to(root)) > 0
        rim = ndimage.binary_dilation(mask, np.ones((5, 5), bool)) & ~ndimage.binary_erosion(
            mask, np.ones((5, 5), bool)
        )
        assert (img[~mask & ~rim] == 0).all() and (img[mask & ~rim] == 255).all(), path
        areas.add(int(mask.sum()))
    assert len(areas) > 10  # sizes (and so areas) still vary
    coco = next((tmp_path / "s" / "coco").rglob("*.png"))
    assert set(np.unique(_read(coco))) >= {0, 255}


def test_cli_and_config_errors(tmp_path, capsys):
    args = [f"{k}={v}" for k, v in TINY.items()] + ["n_train=1", "n_val=2", "backgrounds=false", "ade=false"]
    assert main([f"output_dir={tmp_path / 'cli'}", "seed=5", *args]) == 0
    result = json.loads((tmp_path / "cli" / "world.json").read_text())
    assert result["classification"]["counts"] == {"train": 8, "val": 16} and "written to" in capsys.readouterr().out
    assert main([f"output_dir={tmp_path / 'cli'}", "seed=5", *args]) == 0  # rewriting its own world is allowed
    with pytest.raises(ConfigError):
        parse_config(WorldConfig, [f"output_dir={tmp_path / 'x'}", "no_such_key=1"], "demo_world")
    capsys.readouterr()
    assert main([f"output_dir={tmp_path / 'x'}", "no_such_key=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("demo_world: error: unknown key 'no_such_key'") and "\n" not in err
    with pytest.raises(ConfigError):
        run(WorldConfig(output_dir=str(tmp_path / "y"), object_scale=(0.5, 1.5)))
    with pytest.raises(ConfigError, match="scene_object_scale"):
        run(WorldConfig(output_dir=str(tmp_path / "y"), scene_object_scale=(0.01, 0.2)))
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "keep.txt").write_text("not ours")
    with pytest.raises(RunFolderError):
        write_world(tmp_path / "foreign", **TINY)
    assert (tmp_path / "foreign" / "keep.txt").read_text() == "not ours"


def test_retrieval_part_follows_a_silhouette_world(tmp_path):
    """In a silhouette world the rOxford-style set is white shapes on black (no background or colour to match
    views by), and the Copydays-style set stays in colour (its copies are photometric edits)."""
    parts = dict(classification=False, backgrounds=False, coco=False, ade=False, retrieval=True, progress=False)
    root = Path(write_world(tmp_path / "s", seed=0, silhouette=True, grayscale=True, **parts)["retrieval"]["data_path"])
    views = {p.stem: _read(p).astype(int) for p in sorted((root / "roxford5k" / "jpg").glob("*.jpg"))}
    assert len(views) == 4 * 9 + 8  # 4 landmarks x (query + 8 views) + 8 unrelated scenes
    for name, v in views.items():
        assert np.abs(v - v[..., :1]).max() <= 24  # grey (JPEG keeps the channels within a few levels)
        assert v.min() <= 8 and v.max() >= 200  # white shapes on black
        assert "junk" in name or np.median(v) <= 8  # mostly background, except the close-ups of one shape
    originals = [_read(p).astype(int) for p in sorted((root / "copydays" / "original").glob("*.jpg"))]
    assert max(np.abs(o - o[..., :1]).max() for o in originals) > 60  # coloured
    colour = Path(write_world(tmp_path / "c", seed=0, **parts)["retrieval"]["data_path"])
    assert _files(root / "copydays") == _files(colour / "copydays")  # the same copies as in a colour world
    assert _files(root / "roxford5k") != _files(colour / "roxford5k")
