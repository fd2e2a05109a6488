"""DAVIS-2017 semi-supervised video object segmentation of a frozen ViT: `run(backbone, cfg) -> dict`.

Video by video: read the frames as the protocol does (davis.py), take the last block's patch tokens
after the final LayerNorm (CLS dropped), propagate the first frame's labels (propagation.py), write each
frame's prediction as an indexed PNG `<output_dir>/<video>/<frame>.png` (frame 0 = its annotation; the
official `davis2017-evaluation --task semi-supervised --results_path <output_dir>` reads these), and
score J and F per object on the way (metrics.py). Only per-object statistics outlive a video. Under
torchrun the videos are split over the processes.

    python -m video_seg pretrained=backbone.pth data_path=/data/DAVIS output_dir=runs/video_seg

Published (J&F)m / Jm / Fm on DAVIS-2017 val, 480p (DINO paper, Table 5): DINO ViT-S/16 61.8 / 60.2 / 63.4,
ViT-B/16 62.3 / 60.7 / 63.9, ViT-S/8 69.9 / 66.6 / 73.1, ViT-B/8 71.4 / 67.9 / 74.9; supervised ViT-S/8
66.0 / 63.9 / 68.1. DINO's README: these reproduce with PyTorch 1.7.1, not 1.8.1. iBOT's ViT-S/16 and
ViT-B/16 numbers are in its paper's appendix (not in the README; not recorded here).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from evalkit import frozen
from plumbing import (
    ConfigError,
    DatasetError,
    all_reduce_sum,
    autocast,
    get_rank,
    get_world_size,
    is_main_process,
    resolve_device,
)
from pretrain import arch_name, is_swin

from .config import VideoSegConfig
from .davis import (
    FrameDataset,
    Video,
    first_frame_labels,
    frame_shape,
    list_videos,
    object_ids,
    read_indexed_png,
    target_size,
    write_indexed_png,
)
from .metrics import frame_scores, object_statistics, summarise
from .propagation import LabelPropagator, soft_to_mask

log = logging.getLogger(__name__)
PROTOCOL_KEYS = ("short_side", "n_last_frames", "size_mask_neighborhood", "topk", "temperature", "precision")
STAT_NAMES = ("J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


def frame_features(backbone: nn.Module, loader: DataLoader, device: torch.device, precision: str):
    """Patch features (h*w, D) of each frame in order: last block, after the final norm, CLS dropped."""
    for frames in loader:  # (B, 3, H, W)
        with torch.inference_mode(), autocast(device, precision):
            tokens = backbone.forward_features(frames.to(device, non_blocking=True))  # (B, 1+N, D)
        yield from tokens[:, 1:].float()


def read_annotation(path: Path, size: tuple[int, int]) -> np.ndarray:
    """An annotation's object ids (H0, W0); DatasetError naming the file when it is not the frames' size."""
    annotation = read_indexed_png(path)
    if annotation.shape != size:
        raise DatasetError(
            f"{path} is {annotation.shape[1]}x{annotation.shape[0]} pixels but the frames are {size[1]}x{size[0]}"
        )
    return annotation


def video_geometry(video: Video, cfg: VideoSegConfig, patch: int) -> dict:
    """Sizes of one video from its first frame and annotation (headers and one PNG): checked before any work."""
    h0, w0 = frame_shape(video.frames[0])
    annotation = read_annotation(video.annotations[0], (h0, w0))  # (H0, W0) object ids
    th, tw = target_size(h0, w0, cfg.short_side)
    grid = (th // patch, tw // patch)  # the authors' stride-p patch conv drops the remainder
    if min(grid) < 1:
        raise ConfigError(f"short_side={cfg.short_side} makes {video.name}'s frames {tw}x{th}: under one patch")
    num_objects = len(object_ids(annotation, video.annotations[0]))  # K: the ids 1..K of the first frame
    return {"size": (h0, w0), "resized": (th, tw), "grid": grid, "objects": num_objects}


def segment_video(backbone: nn.Module, video: Video, geometry: dict, cfg: VideoSegConfig, device: torch.device) -> dict:
    """Propagate one video's first-frame labels, write its masks, score J/F per object (frames 1..T-2)."""
    p, (h0, w0), grid, num_objects = backbone.patch_size, geometry["size"], geometry["grid"], geometry["objects"]
    annotation = read_indexed_png(video.annotations[0])
    out_dir = Path(cfg.output_dir) / video.name
    write_indexed_png(out_dir / f"{video.frames[0].stem}.png", annotation)  # frame 0 = its annotation
    frames = FrameDataset(video.frames, geometry["resized"], (grid[0] * p, grid[1] * p))
    loader = DataLoader(
        frames, batch_size=cfg.batch_size_per_gpu, num_workers=cfg.num_workers, pin_memory=device.type == "cuda"
    )
    features = frame_features(backbone, loader, device, cfg.precision)
    propagator = LabelPropagator(
        next(features), first_frame_labels(annotation, grid).to(device), cfg.n_last_frames,
        cfg.size_mask_neighborhood, cfg.topk, cfg.temperature,
    )  # fmt: skip
    last = len(video.frames) - 1
    scores_j, scores_f = [], []  # per evaluated frame: (K,)
    bar = tqdm(total=last, desc=video.name, unit="frame", leave=False, disable=not (cfg.progress and is_main_process()))
    for t, feats in enumerate(features, start=1):
        mask = soft_to_mask(propagator.step(feats), p, (h0, w0))  # (H0, W0) uint8 object ids
        write_indexed_png(out_dir / f"{video.frames[t].stem}.png", mask)
        if cfg.evaluate and t < last:  # the DAVIS tool skips the first and the last frame
            j, f = frame_scores(mask, read_annotation(video.annotations[t], (h0, w0)), num_objects)
            scores_j.append(j)
            scores_f.append(f)
        bar.update()
    bar.close()
    stats = None
    if cfg.evaluate and num_objects:
        stats = object_statistics(np.stack(scores_j, axis=1), np.stack(scores_f, axis=1))  # (K, 6)
    return {"objects": num_objects, "frames": len(video.frames), "stats": stats}


def run(backbone: nn.Module, cfg: VideoSegConfig) -> dict:
    """Segment every video of `cfg.split`, write the masks under `cfg.output_dir`, return J&F (percent)."""
    cfg.check()  # the work's one check of cfg: callers may skip the shell
    if not hasattr(backbone, "patch_size") or is_swin(arch_name(backbone)):
        raise ConfigError("video_seg propagates ViT patch tokens: give a ViT backbone")
    videos = list_videos(cfg.data_path, cfg.split, cfg.resolution, cfg.videos, cfg.evaluate)
    geometry = [video_geometry(v, cfg, backbone.patch_size) for v in videos]  # every size checked up front
    if cfg.evaluate and not any(g["objects"] for g in geometry):
        raise DatasetError("no objects to evaluate: every first-frame annotation is empty")
    device = resolve_device(cfg.device)
    if is_main_process():
        for stale in Path(cfg.output_dir).glob("*_results-*.csv"):  # the DAVIS tool would reuse them silently
            log.info("removing %s (a cached DAVIS-tool result of an earlier run)", stale)
            stale.unlink()
    rank, world = get_rank(), get_world_size()
    t0 = time.perf_counter()
    done = {}
    backbone.to(device)  # outside inference mode: parameters moved inside it could not be trained again
    with frozen(backbone), torch.inference_mode():
        for i, video in enumerate(videos):
            if i % world != rank:
                continue
            log.info("[%d/%d] %s: %d frames", i + 1, len(videos), video.name, len(video.frames))
            done[video.name] = segment_video(backbone, video, geometry[i], cfg, device)
    return _results(videos, geometry, done, cfg, time.perf_counter() - t0)


def _results(videos: list[Video], geometry: list[dict], done: dict[str, dict], cfg: VideoSegConfig, seconds: float):
    """Gather every process's per-object statistics (disjoint rows, summed) and average them over objects."""
    objects = [g["objects"] for g in geometry]
    results = {
        "num_videos": len(videos),
        "num_frames": sum(len(v.frames) for v in videos),
        "num_objects": sum(objects),
        "masks": str(cfg.output_dir),
        "protocol": {k: getattr(cfg, k) for k in PROTOCOL_KEYS},
        "grids": {v.name: list(g["grid"]) for v, g in zip(videos, geometry, strict=True)},  # patch grid (h, w)
        "seconds": round(seconds, 3),
    }
    if not cfg.evaluate:
        return results
    offsets = np.cumsum([0, *objects])
    device = resolve_device(cfg.device)
    stats = torch.zeros(int(offsets[-1]), 6, dtype=torch.float64, device=device)  # (objects, 6)
    for i, video in enumerate(videos):
        if video.name in done and done[video.name]["stats"] is not None:
            stats[offsets[i] : offsets[i + 1]] = torch.from_numpy(done[video.name]["stats"])
    stats = all_reduce_sum(stats).cpu().numpy()
    results.update(summarise(stats))
    results["per_object"] = {
        f"{video.name}_{k + 1}": dict(zip(STAT_NAMES, (float(v) * 100 for v in stats[offsets[i] + k]), strict=True))
        for i, video in enumerate(videos)
        for k in range(objects[i])
    }
    log.info(
        "DAVIS %s: J&F-Mean %.1f  J-Mean %.1f  F-Mean %.1f  (%d objects, %d videos)",
        cfg.split, results["J&F-Mean"], results["J-Mean"], results["F-Mean"], len(stats), len(videos),
    )  # fmt: skip
    return results
