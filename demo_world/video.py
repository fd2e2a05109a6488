"""Short "videos" of moving shapes in DAVIS-2017's layout, for the video object segmentation evaluation.

Each video has a still background (drawn as every other part's) and 1..`video_max_objects` (3) shapes
that move in straight lines, bounce off the frame's edges and spin; they start apart and may overlap
later (the later object is in front). Annotations are the DAVIS convention: palette PNGs (the PASCAL-VOC
colours DAVIS uses) whose values are object ids, 0 = background, 1..K in drawing order; a pixel belongs to
the front-most object covering at least half of it. Every video has its own random stream.

    video/JPEGImages/480p/<video>/00000.jpg ...   RGB frames, video_size (H, W); "480p" is DAVIS's folder name
    video/Annotations/480p/<video>/00000.png ...  object ids, one PNG per frame
    video/ImageSets/2017/val.txt                  the video names, one per line
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from plumbing import ConfigError

from .config import PNG_LEVEL, WorldConfig, _spec, progress_bar, rng_for
from .shapes import LUMA, SHAPES, Scene, SceneObject, make_background, pick_colour, rasterise, unit_polygons

RESOLUTION = "480p"
JPEG_QUALITY = 95
OBJECT_SCALE = (0.35, 0.6)  # circumscribed diameter / frame height
SPEED = (0.02, 0.06)  # pixels per frame / frame height
SPIN = 0.08  # radians per frame, at most


def davis_palette() -> list[int]:
    """The PASCAL-VOC colour map (768 values) DAVIS annotations carry: index i's bits spread over R, G, B."""
    out = []
    for i in range(256):
        rgb = [0, 0, 0]
        for j in range(8):
            for ch in range(3):
                rgb[ch] |= ((i >> (3 * j + ch)) & 1) << (7 - j)
        out += rgb
    return out


@dataclass
class Track:
    """One moving shape: polygons (unit size), radius, start centre (x, y), velocity, angle, spin, colour."""

    label: int
    polygons: list[np.ndarray]
    radius: float
    start: tuple[float, float]
    velocity: tuple[float, float]
    angle: float
    spin: float
    colour: np.ndarray


def validate_video(cfg: WorldConfig) -> None:
    """Raise ConfigError for video settings the generator cannot honour (only when the part is on)."""
    if not cfg.video:
        return
    h, w = cfg.video_size
    if cfg.video_count < 1 or cfg.video_frames < 3:
        raise ConfigError("video_count must be >= 1 and video_frames >= 3 (DAVIS scores frames 1..T-2)")
    if not 16 <= h <= w:
        raise ConfigError(f"video_size must be (height, width) with 16 <= height <= width, got {cfg.video_size}")


def bounce(start: float, velocity: float, t: int, lo: float, hi: float) -> float:
    """Position at frame t of a point moving at `velocity` between walls at lo and hi (reflected)."""
    span = hi - lo
    if span <= 0:
        return (lo + hi) / 2
    x = (start - lo + velocity * t) % (2 * span)
    return lo + (x if x <= span else 2 * span - x)


def centre_at(track: Track, t: int, h: int, w: int) -> tuple[float, float]:
    """(x, y) of the track's centre at frame t: the circumscribed circle stays inside the frame."""
    (x, y), (vx, vy), r = track.start, track.velocity, track.radius
    return bounce(x, vx, t, r, w - r), bounce(y, vy, t, r, h - r)


def alpha_at(track: Track, t: int, h: int, w: int) -> np.ndarray:
    """Coverage (h, w) of the track at frame t (rasterised on a w x w canvas, top h rows kept)."""
    angle = track.angle + track.spin * t
    return rasterise(track.polygons, centre_at(track, t, h, w), track.radius, angle, w)[:h]


def video_tracks(cfg: WorldConfig, index: int) -> tuple[np.ndarray, list[Track]]:
    """Background (h, w, 3) float and the tracks of video `index`; objects start without touching."""
    h, w = cfg.video_size
    rng = rng_for(cfg.seed, "video", index)
    spec = _spec(cfg, w, OBJECT_SCALE)  # background and colours as every part draws them (object_scale unused)
    background = make_background(rng, spec)[:h]  # (w, w, 3) -> (h, w, 3)
    luma = background @ LUMA
    n = int(rng.integers(1, cfg.video_max_objects + 1))
    occupied = np.zeros((h, w), dtype=bool)
    tracks = []
    for label in rng.integers(0, cfg.num_classes, n):
        for _ in range(30):
            radius = rng.uniform(*OBJECT_SCALE) * h / 2
            speed, heading = rng.uniform(*SPEED) * h, rng.uniform(0, 2 * math.pi)
            track = Track(
                int(label), unit_polygons(SHAPES[label], rng), radius,
                (rng.uniform(radius, w - radius), rng.uniform(radius, h - radius)),
                (speed * math.cos(heading), speed * math.sin(heading)), rng.uniform(0, 2 * math.pi),
                rng.uniform(-SPIN, SPIN), np.zeros(3, np.float32),
            )  # fmt: skip
            alpha = alpha_at(track, 0, h, w)
            if (alpha >= 0.5).any() and not (occupied & (alpha > 0)).any():
                occupied |= alpha > 0
                track.colour = pick_colour(rng, float((luma * alpha).sum() / alpha.sum()), spec)
                tracks.append(track)
                break
    return background, tracks


def video_frame(background: np.ndarray, tracks: list[Track], t: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame t: RGB uint8 (h, w, 3) and object ids uint8 (h, w) (front-most object with coverage >= 0.5)."""
    h, w = background.shape[:2]
    scene = Scene(background)
    ids = np.zeros((h, w), dtype=np.uint8)
    for k, track in enumerate(tracks, start=1):
        alpha = alpha_at(track, t, h, w)
        scene.objects.append(SceneObject(track.label, track.colour, alpha))
        ids[alpha >= 0.5] = k
    return scene.render(), ids


def video_name(index: int) -> str:
    """Folder name of video `index`."""
    return f"shapes{index:03d}"


def write_video(cfg: WorldConfig, out: Path) -> dict[str, Any]:
    """`video/` in DAVIS-2017's layout: frames, palette annotations and ImageSets/2017/val.txt."""
    root = out / "video"
    names = [video_name(i) for i in range(cfg.video_count)]
    palette = davis_palette()
    with progress_bar(cfg.video_count * cfg.video_frames, "video frames", cfg) as bar:
        for i, name in enumerate(names):
            background, tracks = video_tracks(cfg, i)
            frames, annotations = root / "JPEGImages" / RESOLUTION / name, root / "Annotations" / RESOLUTION / name
            frames.mkdir(parents=True, exist_ok=True)
            annotations.mkdir(parents=True, exist_ok=True)
            for t in range(cfg.video_frames):
                image, ids = video_frame(background, tracks, t)
                Image.fromarray(image).save(frames / f"{t:05d}.jpg", quality=JPEG_QUALITY, subsampling=0)
                png = Image.fromarray(ids)
                png.putpalette(palette)
                png.save(annotations / f"{t:05d}.png", format="PNG", compress_level=PNG_LEVEL)
                bar.update()
    listing = root / "ImageSets" / "2017" / "val.txt"
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text("".join(f"{n}\n" for n in names))
    return {
        "root": str(root),
        "val_list": str(listing),
        "videos": names,
        "counts": {"videos": cfg.video_count, "frames": cfg.video_count * cfg.video_frames},
    }
