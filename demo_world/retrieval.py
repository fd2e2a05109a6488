"""Retrieval part of the demo world: a tiny revisited-Oxford-style set and a tiny Copydays-style set.

Switched on by `retrieval=true` (off by default). Layout under `<output_dir>/retrieval/`:

    roxford5k/gnd_roxford5k.pkl  roxford5k/jpg/<name>.jpg     data_path=<out>/retrieval dataset=roxford5k
    copydays/original/  strong/  jpegqual/{10,50}/  crops/{50}/   data_path=<out>/retrieval/copydays
    distractors/<id>.jpg                                          distractors_path=<out>/retrieval/distractors

Retrieval set: each "landmark" is a fixed scene (its own background and three shapes with fixed sizes,
poses, colours and layout) on a 96 px canvas. Its views are similarity transforms of that scene (zoom,
rotation, shift), cut to 96x72 or 72x96 px: the query (barely moved; its bbx is the shapes' box), `easy`
views (mild change, the landmark's background), `hard` views (strong zoom/rotation, another background)
and `junk` views (a close-up of one shape on another background: too little of the landmark to count).
The database also holds unrelated scenes of random shapes. The set is drawn in the world's style (grey in
a grayscale world; white shapes on black in a silhouette world, where landmarks differ only by their shapes
and layout, so raw pixels cannot find a landmark's views by background or colour). The ground truth is
written as revisitop's pickle with plain types only: {"imlist", "qimlist", "gnd": [{"bbx", "easy", "hard",
"junk"}]}.

Copydays-style set, in colour in every world (its copies are photometric edits): originals are random
multi-shape scenes named `<4-digit series>00.jpg`; `strong/` holds copies cropped, recoloured, blurred and
JPEG-compressed hard, named `<series><nn>.jpg` (the first 4 characters name the original); `jpegqual/<q>/`
and `crops/<c>/` hold one copy per original under the original's name (JPEG quality q; a centred crop removing
c% of the area). Distractors are further random scenes; the copy-detection command learns its whitening on
them by default.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from .config import WorldConfig, progress_bar, rng_for
from .shapes import (
    PROCEDURAL,
    SHAPES,
    SceneSpec,
    make_background,
    make_scene,
    pick_colour,
    rasterise,
    to_uint8,
    unit_polygons,
)

CANVAS = 96  # side of the square a view is drawn on, before the cut to VIEW_SIZE
VIEW_SIZE = (96, 72)  # (W, H) of a landscape view; portrait views swap it
N_LANDMARKS = 4
VIEWS = {"easy": 3, "hard": 3, "junk": 2}  # views of each landmark in the database
N_UNRELATED = 8  # database scenes showing no landmark
N_ORIGINALS = 6
STRONG_PER_ORIGINAL = 2
JPEG_QUALITIES = (10, 50)
CROP_LEVELS = (50,)  # % of the area removed
N_DISTRACTORS = 24
JPEG_QUALITY = 92  # of every image that is not a JPEG-quality copy
KINDS = {"query": 0, "easy": 1, "hard": 2, "junk": 3}
STREAMS = {"landmark": 0, "view": 1, "unrelated": 2, "original": 3, "strong": 4, "distractor": 5, "order": 6}


@dataclass
class Landmark:
    """A fixed scene: background (CANVAS, CANVAS, 3) float and shapes (polygons, centre, radius, angle, colour)."""

    background: np.ndarray
    shapes: list[tuple[list[np.ndarray], np.ndarray, float, float, np.ndarray]]


def _spec(cfg: WorldConfig, object_scale: tuple[float, float] = (0.25, 0.4)) -> SceneSpec:
    """Half photo backgrounds and colours, in the world's style: grey in a grayscale world, white shapes on
    black in a silhouette world (the style the models were pre-trained on)."""
    return SceneSpec(CANVAS, object_scale, 0.5, 0.25, cfg.grayscale, PROCEDURAL, cfg.silhouette)


def make_landmark(rng: np.random.Generator, cfg: WorldConfig) -> Landmark:
    """Three different shapes in three slots of the canvas, coloured against the landmark's background."""
    spec = _spec(cfg)
    background = make_background(rng, spec)
    luma = float(background.mean())
    slots = np.array([[0.3, 0.33], [0.7, 0.36], [0.5, 0.7]]) * CANVAS
    shapes = []
    for label, slot in zip(rng.choice(len(SHAPES), 3, replace=False), slots, strict=True):
        polygons = unit_polygons(SHAPES[label], rng)
        centre = slot + rng.uniform(-0.04, 0.04, 2) * CANVAS
        radius, angle = rng.uniform(0.13, 0.17) * CANVAS, rng.uniform(0, 2 * math.pi)
        shapes.append((polygons, centre, radius, angle, pick_colour(rng, luma, spec)))
    return Landmark(background, shapes)


def _view_params(rng: np.random.Generator, kind: str, lm: Landmark) -> tuple[float, float, np.ndarray]:
    """(zoom, rotation, shift of the canvas centre in px) of one view kind."""
    if kind == "query":
        return 1.0, 0.0, rng.uniform(-2, 2, 2)
    if kind == "easy":
        return rng.uniform(0.9, 1.1), rng.uniform(-0.1, 0.1), rng.uniform(-4, 4, 2)
    if kind == "hard":
        zoom = rng.uniform(0.6, 0.75) if rng.random() < 0.5 else rng.uniform(1.2, 1.35)
        return zoom, rng.uniform(-0.5, 0.5), rng.uniform(-8, 8, 2)
    zoom, rot = rng.uniform(2.6, 3.2), rng.uniform(-0.3, 0.3)  # junk: a close-up of one shape
    centre = lm.shapes[int(rng.integers(len(lm.shapes)))][1] - CANVAS / 2
    c, s = math.cos(rot), math.sin(rot)
    return zoom, rot, -zoom * np.array([[c, -s], [s, c]]) @ centre + rng.uniform(-6, 6, 2)  # that shape to the centre


def render_view(
    lm: Landmark, rng: np.random.Generator, kind: str, portrait: bool, cfg: WorldConfig
) -> tuple[np.ndarray, list[float]]:
    """One view (H, W, 3) uint8 of the landmark and the box [x1, y1, x2, y2] of its shapes in the view."""
    zoom, rot, shift = _view_params(rng, kind, lm)
    c, s = math.cos(rot), math.sin(rot)
    a = zoom * np.array([[c, -s], [s, c]])  # canvas -> view: v = a (p - m) + m + shift, m the canvas centre
    m = np.full(2, CANVAS / 2)
    if kind in ("query", "easy"):  # the landmark's own background, moved with it
        inv = np.linalg.inv(a)  # PIL's affine maps output pixels back to input pixels
        offset = m - inv @ (m + shift)
        data = (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1])
        fill = tuple(int(v) for v in lm.background.mean((0, 1)))
        bg = Image.fromarray(to_uint8(lm.background))
        out = np.asarray(bg.transform(bg.size, Image.AFFINE, data, Image.BILINEAR, fillcolor=fill), dtype=np.float32)
    else:
        out = make_background(rng, _spec(cfg))
    coverage = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    for polygons, centre, radius, angle, colour in lm.shapes:
        alpha = rasterise(polygons, tuple(a @ (centre - m) + m + shift), radius * zoom, angle + rot, CANVAS)
        out = out * (1 - alpha[..., None]) + colour * alpha[..., None]
        coverage = np.maximum(coverage, alpha)
    w, h = (VIEW_SIZE[1], VIEW_SIZE[0]) if portrait else VIEW_SIZE
    x0, y0 = (CANVAS - w) // 2, (CANVAS - h) // 2
    image, cov = to_uint8(out[y0 : y0 + h, x0 : x0 + w]), coverage[y0 : y0 + h, x0 : x0 + w] >= 0.5
    ys, xs = np.nonzero(cov)
    box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)] if len(xs) else [0.0, 0.0, w, h]
    return image, box


def random_scene(rng: np.random.Generator, n_objects: int, cfg: WorldConfig, portrait: bool = False) -> np.ndarray:
    """A scene of random shapes cut to the view size (H, W, 3) uint8."""
    scene = make_scene(rng, _spec(cfg, (0.2, 0.4)), [int(v) for v in rng.integers(len(SHAPES), size=n_objects)])
    w, h = (VIEW_SIZE[1], VIEW_SIZE[0]) if portrait else VIEW_SIZE
    x0, y0 = (CANVAS - w) // 2, (CANVAS - h) // 2
    return scene.render()[y0 : y0 + h, x0 : x0 + w]


def save_jpeg(path: Path, image: np.ndarray | Image.Image, quality: int = JPEG_QUALITY) -> None:
    """Write an RGB image as JPEG (fixed settings, so the bytes are reproducible)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = image if isinstance(image, Image.Image) else Image.fromarray(image)
    img.save(path, format="JPEG", quality=quality)


def write_oxford(cfg: WorldConfig, root: Path) -> dict[str, Any]:
    """`roxford5k/jpg/*.jpg` and `gnd_roxford5k.pkl` (plain types) with known easy/hard/junk lists."""
    entries: list[tuple[str, int, str]] = []  # (name, landmark or -1, kind) of every database image
    queries, boxes = [], []
    for k in range(N_LANDMARKS):
        lm = make_landmark(rng_for(cfg.seed, "retrieval", STREAMS["landmark"], k), cfg)
        views = [("query", 0)] + [(kind, j) for kind, n in VIEWS.items() for j in range(n)]
        for kind, j in views:
            rng = rng_for(cfg.seed, "retrieval", STREAMS["view"], k, KINDS[kind], j)
            image, box = render_view(lm, rng, kind, bool(rng.random() < 0.3), cfg)
            name = f"landmark{k}_{kind}{j}"
            save_jpeg(root / "jpg" / f"{name}.jpg", image)
            if kind == "query":
                queries.append(name)
                boxes.append(box)
            else:
                entries.append((name, k, kind))
    for i in range(N_UNRELATED):
        rng = rng_for(cfg.seed, "retrieval", STREAMS["unrelated"], i)
        name = f"unrelated{i}"
        save_jpeg(root / "jpg" / f"{name}.jpg", random_scene(rng, 3, cfg, portrait=bool(rng.random() < 0.3)))
        entries.append((name, -1, ""))
    order = rng_for(cfg.seed, "retrieval", STREAMS["order"]).permutation(len(entries))  # no grouping by landmark
    entries = [entries[i] for i in order]
    gnd = []
    for k, box in enumerate(boxes):
        lists = {kind: [i for i, (_, lk, kd) in enumerate(entries) if lk == k and kd == kind] for kind in VIEWS}
        gnd.append({"bbx": box, **lists})
    data = {"imlist": [e[0] for e in entries], "qimlist": queries, "gnd": gnd}
    (root / "gnd_roxford5k.pkl").write_bytes(pickle.dumps(data, protocol=4))
    gnd_file, jpg = str(root / "gnd_roxford5k.pkl"), str(root / "jpg")
    return {"gnd": gnd_file, "jpg": jpg, "database": len(entries), "queries": len(queries)}


def strong_copy(image: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Crop (60-85% of each side), resize, recolour, blur; the caller saves it at a low JPEG quality."""
    img = Image.fromarray(image)
    w, h = img.size
    f = rng.uniform(0.6, 0.85)
    cw, ch = int(w * f), int(h * f)
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    img = img.crop((x, y, x + cw, y + ch)).resize((w, h), Image.BICUBIC)
    img = ImageEnhance.Color(img).enhance(rng.uniform(0.3, 1.7))
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.7, 1.3))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.7, 1.3))
    return img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))


def write_copydays(cfg: WorldConfig, root: Path, distractors: Path) -> dict[str, Any]:
    """Copydays-style blocks under `root` and distractor images in `distractors`."""
    for i in range(N_ORIGINALS):
        original = random_scene(rng_for(cfg.seed, "retrieval", STREAMS["original"], i), 3, cfg)
        series = f"{2000 + i}"
        save_jpeg(root / "original" / f"{series}00.jpg", original)
        for j in range(STRONG_PER_ORIGINAL):
            rng = rng_for(cfg.seed, "retrieval", STREAMS["strong"], i, j)
            copy = strong_copy(original, rng)
            save_jpeg(root / "strong" / f"{series}{j + 1:02d}.jpg", copy, int(rng.integers(15, 40)))
        for q in JPEG_QUALITIES:
            save_jpeg(root / "jpegqual" / str(q) / f"{series}00.jpg", original, q)
        h, w = original.shape[:2]
        for c in CROP_LEVELS:
            f = math.sqrt(1 - c / 100)  # side factor keeping (100 - c)% of the area
            ch, cw = round(h * f), round(w * f)
            y, x = (h - ch) // 2, (w - cw) // 2
            save_jpeg(root / "crops" / str(c) / f"{series}00.jpg", original[y : y + ch, x : x + cw])
    for i in range(N_DISTRACTORS):
        rng = rng_for(cfg.seed, "retrieval", STREAMS["distractor"], i)
        save_jpeg(distractors / f"{i:05d}.jpg", random_scene(rng, 3, cfg))
    blocks = ["original", "strong", *(f"jpegqual/{q}" for q in JPEG_QUALITIES), *(f"crops/{c}" for c in CROP_LEVELS)]
    counts = {b: len(list((root / b).glob("*.jpg"))) for b in blocks}
    return {"data_path": str(root), "distractors": str(distractors), "counts": {**counts, "distractors": N_DISTRACTORS}}


def write_retrieval(cfg: WorldConfig, out: Path) -> dict[str, Any]:
    """The retrieval part under `out/retrieval`: the rOxford-style set, the Copydays-style set, distractors."""
    root = out / "retrieval"
    with progress_bar(2, "retrieval sets", cfg) as bar:
        oxford = write_oxford(cfg, root / "roxford5k")
        bar.update()
        # copies are photometric edits (recolouring, brightness, contrast): drawn in colour in every world
        colour = dataclasses.replace(cfg, grayscale=False, silhouette=False)
        copydays = write_copydays(colour, root / "copydays", root / "distractors")
        bar.update()
    return {
        "data_path": str(root),
        "roxford5k": oxford,
        "copydays": copydays,
        "counts": {"roxford5k": oxford["database"] + oxford["queries"], **copydays["counts"]},
    }
