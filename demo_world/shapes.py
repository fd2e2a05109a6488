"""Shape geometry, anti-aliased rasterisation, backgrounds and colours of the demo world.

Every shape is a set of polygons in unit coordinates, normalised so that its circumscribed circle
(about the origin) has radius 1; it is scaled, rotated and translated in continuous pixel
coordinates (pixel `i` spans `[i, i + 1)`) and filled (even-odd rule, so a ring's inner circle is its
hole) by an exact scanline test at the centres of a `SUPERSAMPLE` x `SUPERSAMPLE` sub-grid of every
pixel; the fraction inside is the pixel's coverage `alpha` (anti-aliasing in steps of 1/16). Colours
and backgrounds are drawn from the random stream independently of the class, so only the geometry
tells the classes apart.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

SHAPES = ("circle", "square", "triangle", "star", "hexagon", "cross", "ring", "ellipse")
SUPERSAMPLE = 4
PHOTOS = (  # photos bundled in the scikit-image wheel (skimage.data; nothing is downloaded)
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "coins",
    "moon",
    "hubble_deep_field",
    "immunohistochemistry",
    "grass",
    "gravel",
    "brick",
    "clock",
    "cell",
)
PROCEDURAL = ("plain", "gradient", "noise")
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601-2, as PIL's "L" conversion
CIRCLE_VERTICES = 128
STAR_INNER = 0.45  # inner/outer radius of the 5-pointed star
CROSS_HALF_WIDTH = 0.3  # half-width of a cross arm relative to the arm length
RING_INNER = (0.45, 0.65)  # range of the hole radius relative to the outer radius
ELLIPSE_ASPECT = (0.45, 0.65)  # range of minor/major axis ratio


@dataclass(frozen=True)
class SceneSpec:
    """How scenes are drawn: image size, object size range, backgrounds and colours."""

    size: int
    object_scale: tuple[float, float]  # circumscribed-circle diameter / image side
    photo_fraction: float
    min_contrast: float  # minimum |luma(object) - mean luma(background under it)| / 255
    grayscale: bool
    procedural: tuple[str, ...]  # the kinds of non-photo background drawn from
    silhouette: bool = False  # white objects on black: no colour, intensity or texture cues


@dataclass
class SceneObject:
    """One drawn shape: class index, colour (RGB, 0..255) and per-pixel coverage in [0, 1]."""

    label: int
    colour: np.ndarray
    alpha: np.ndarray


@dataclass
class Scene:
    """A background (float RGB, 0..255) and the objects composited over it in order."""

    background: np.ndarray
    objects: list[SceneObject] = field(default_factory=list)

    def render(self, background: np.ndarray | None = None) -> np.ndarray:
        """Composite the objects over `background` (default: the scene's own) -> uint8 HxWx3."""
        out = (self.background if background is None else background).astype(np.float32)
        for obj in self.objects:
            a = obj.alpha[..., None]
            out = out * (1.0 - a) + obj.colour[None, None, :] * a
        return to_uint8(out)

    def footprint(self) -> np.ndarray:
        """Pixels touched by any object (alpha > 0)."""
        fp = np.zeros(self.background.shape[:2], dtype=bool)
        for obj in self.objects:
            fp |= obj.alpha > 0
        return fp


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Round and clip to uint8."""
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _regular(n: int, radius: float = 1.0, phase: float = 0.0) -> np.ndarray:
    """Vertices of a regular n-gon of the given circumradius, the first at angle `phase`."""
    t = phase + 2 * math.pi * np.arange(n) / n
    return radius * np.stack([np.cos(t), np.sin(t)], axis=1)


def _cross() -> np.ndarray:
    """The 12 vertices of a plus sign, normalised to circumradius 1."""
    w = CROSS_HALF_WIDTH
    quarter = np.array([[1.0, -w], [1.0, w], [w, w]])  # one arm tip and the inner corner after it
    rot = np.array([[0.0, -1.0], [1.0, 0.0]])  # +90 degrees
    parts, q = [], quarter
    for _ in range(4):
        parts.append(q)
        q = q @ rot.T
    pts = np.concatenate(parts)
    return pts / np.hypot(1.0, w)


def unit_polygons(name: str, rng: np.random.Generator) -> list[np.ndarray]:
    """Closed polygons (Nx2 points) of shape `name`, circumradius 1, filled by the even-odd rule."""
    if name == "circle":
        return [_regular(CIRCLE_VERTICES)]
    if name == "square":
        return [_regular(4, phase=math.pi / 4)]
    if name == "triangle":
        return [_regular(3, phase=-math.pi / 2)]
    if name == "hexagon":
        return [_regular(6)]
    if name == "star":
        pts = _regular(10, phase=-math.pi / 2)
        pts[1::2] *= STAR_INNER
        return [pts]
    if name == "cross":
        return [_cross()]
    if name == "ring":  # the inner circle is the hole
        return [_regular(CIRCLE_VERTICES), _regular(CIRCLE_VERTICES, rng.uniform(*RING_INNER))]
    if name == "ellipse":
        pts = _regular(CIRCLE_VERTICES)
        pts[:, 1] *= rng.uniform(*ELLIPSE_ASPECT)
        return [pts]
    raise ValueError(f"unknown shape {name!r}; known: {', '.join(SHAPES)}")


def scanline_coverage(polygons: list[np.ndarray], x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """Even-odd fill of closed polygons (continuous pixel coordinates) sampled at the centres of a
    `SUPERSAMPLE` x `SUPERSAMPLE` sub-grid in each pixel of the window; returns coverage in [0, 1]."""
    k = SUPERSAMPLE
    p0 = np.concatenate(polygons)
    p1 = np.concatenate([np.roll(p, -1, axis=0) for p in polygons])
    ys = y0 + (np.arange(height * k) + 0.5) / k  # sub-row centres
    ya, yb = p0[None, :, 1], p1[None, :, 1]
    crosses = (ya <= ys[:, None]) != (yb <= ys[:, None])  # half-open rule: each crossing counted once
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (ys[:, None] - ya) / (yb - ya)
    xs = np.where(crosses, p0[None, :, 0] + t * (p1[None, :, 0] - p0[None, :, 0]), np.inf)
    if xs.shape[1] % 2:  # pad to pairs (a row crosses an even number of edges)
        xs = np.concatenate([xs, np.full((xs.shape[0], 1), np.inf)], axis=1)
    xs.sort(axis=1)
    starts, ends = xs[:, 0::2], xs[:, 1::2]  # inside from the 1st to the 2nd crossing, 3rd to 4th, ...
    valid = np.isfinite(starts)
    cols = width * k + 1
    # Sub-column j (centre x0 + (j + 0.5) / k) lies in [a, b) iff ceil((a - x0) k - 0.5) <= j < ceil((b - x0) k - 0.5).
    js = np.clip(np.ceil((starts[valid] - x0) * k - 0.5), 0, cols - 1).astype(np.int64)
    je = np.clip(np.ceil((ends[valid] - x0) * k - 0.5), 0, cols - 1).astype(np.int64)
    base = np.nonzero(valid)[0] * cols
    n = height * k * cols
    diff = np.bincount(base + js, minlength=n) - np.bincount(base + je, minlength=n)
    inside = diff.reshape(height * k, cols).cumsum(axis=1)[:, :-1] > 0
    return inside.reshape(height, k, width, k).mean(axis=(1, 3), dtype=np.float32)


def rasterise(
    polygons: list[np.ndarray], centre: tuple[float, float], radius: float, angle: float, size: int
) -> np.ndarray:
    """Coverage (float32 in [0, 1], size x size) of the polygons scaled, rotated and moved to `centre`."""
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    placed = [pts @ rot.T * radius + np.asarray(centre) for pts in polygons]
    allpts = np.concatenate(placed)
    x0, y0 = np.maximum(np.floor(allpts.min(0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(allpts.max(0)).astype(int) + 1, size)
    alpha = np.zeros((size, size), dtype=np.float32)
    if x1 > x0 and y1 > y0:
        alpha[y0:y1, x0:x1] = scanline_coverage(placed, int(x0), int(y0), int(x1 - x0), int(y1 - y0))
    return alpha


@functools.cache
def load_photo(name: str) -> np.ndarray:
    """A bundled scikit-image photo as uint8 HxWx3 (greyscale photos are replicated)."""
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3].astype(np.uint8))


def photo_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random square crop (20-60% of the short side) of a random photo, resized to `size`."""
    photo = load_photo(PHOTOS[rng.integers(len(PHOTOS))])
    h, w = photo.shape[:2]
    side = max(int(round(rng.uniform(0.2, 0.6) * min(h, w))), min(size, h, w))
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(photo[y : y + side, x : x + side]).resize((size, size), Image.BILINEAR)
    out = np.asarray(crop, dtype=np.float32)
    return out[:, ::-1] if rng.random() < 0.5 else out


def procedural_background(rng: np.random.Generator, size: int, kinds: tuple[str, ...]) -> np.ndarray:
    """A plain, linear-gradient or low-frequency-noise background (float RGB, 0..255), of one of `kinds`."""
    kind = kinds[rng.integers(len(kinds))]
    if kind == "plain":
        return np.broadcast_to(rng.uniform(0, 255, 3).astype(np.float32), (size, size, 3)).copy()
    if kind == "gradient":
        c0, c1 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
        theta = rng.uniform(0, 2 * math.pi)
        coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
        t = np.clip(coords[None, :] * math.cos(theta) + coords[:, None] * math.sin(theta) + 0.5, 0, 1)
        return c0 * (1 - t[..., None]) + c1 * t[..., None]
    grid = int(rng.integers(2, 7))
    small = rng.integers(0, 256, (grid, grid, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.BICUBIC), dtype=np.float32)


def make_background(rng: np.random.Generator, spec: SceneSpec) -> np.ndarray:
    """A photo crop with probability `photo_fraction`, otherwise a procedural background; black for
    silhouettes."""
    if spec.silhouette:
        return np.zeros((spec.size, spec.size, 3), dtype=np.float32)
    use_photo = rng.random() < spec.photo_fraction
    bg = photo_background(rng, spec.size) if use_photo else procedural_background(rng, spec.size, spec.procedural)
    return to_grey(bg) if spec.grayscale else bg.astype(np.float32)


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """Luma replicated over 3 channels (float32)."""
    y = rgb.astype(np.float32) @ LUMA
    return np.repeat(y[..., None], 3, axis=-1)


def pick_colour(rng: np.random.Generator, bg_luma: float, spec: SceneSpec, tries: int = 100) -> np.ndarray:
    """A uniform random colour whose luma differs from `bg_luma` by at least `min_contrast` * 255; white
    for silhouettes."""
    if spec.silhouette:
        return np.full(3, 255.0, dtype=np.float32)
    for _ in range(tries):
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        if spec.grayscale:
            colour = np.full(3, float(colour @ LUMA), dtype=np.float32)
        if abs(float(colour @ LUMA) - bg_luma) >= spec.min_contrast * 255:
            return colour
    return np.full(3, 0.0 if bg_luma > 127.5 else 255.0, dtype=np.float32)


def place_object(
    rng: np.random.Generator, spec: SceneSpec, label: int, occupied: np.ndarray, tries: int = 30
) -> np.ndarray | None:
    """Coverage of shape `label` at a random size/rotation/position inside the image.

    The footprint (alpha > 0) must not touch `occupied` and the mask (alpha >= 0.5) must be
    non-empty; None after `tries` failed draws.
    """
    size = spec.size
    for _ in range(tries):
        polygons = unit_polygons(SHAPES[label], rng)
        radius = rng.uniform(*spec.object_scale) * size / 2
        centre = (rng.uniform(radius, size - radius), rng.uniform(radius, size - radius))
        alpha = rasterise(polygons, centre, radius, rng.uniform(0, 2 * math.pi), size)
        fp = alpha > 0
        if (alpha >= 0.5).any() and not (fp & occupied).any():
            return alpha
    return None


def make_scene(rng: np.random.Generator, spec: SceneSpec, labels: list[int]) -> Scene:
    """A background with non-overlapping objects of the given classes (objects that find no room are
    dropped; the first always fits). Colours are drawn after the geometry, against the background."""
    scene = Scene(make_background(rng, spec))
    occupied = np.zeros((spec.size, spec.size), dtype=bool)
    bg_luma = scene.background @ LUMA
    for label in labels:
        alpha = place_object(rng, spec, label, occupied)
        if alpha is None:
            continue
        occupied |= alpha > 0
        under = float((bg_luma * alpha).sum() / alpha.sum())
        scene.objects.append(SceneObject(label, pick_colour(rng, under, spec), alpha))
    return scene
