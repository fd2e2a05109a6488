"""`python -m video_seg` keys (imports no torch: `--help` answers at once).

Defaults are the DINO/iBOT DAVIS-2017 protocol: frames at short side 480 (long side floored to a
multiple of 64), the first frame plus the 7 last predicted frames as context, a 25x25-cell window
(radius 12), the top 5 affinities at temperature 0.1, fp32 features, one frame per forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from evalkit import EvalConfig
from plumbing import ConfigError, check_range


@dataclass
class VideoSegConfig(EvalConfig):
    """DAVIS-2017 semi-supervised video object segmentation by label propagation of frozen patch features."""

    data_path: str = ""  # DAVIS root: JPEGImages/480p/<video>/*.jpg, Annotations/480p/<video>/*.png, ImageSets/2017/
    output_dir: str = "runs/video_seg"  # run folder: <video>/<frame>.png (indexed PNGs, as DAVIS's tool reads), results
    precision: str = "fp32"  # the protocol's fp32 features; auto/bf16 run faster with slightly different features
    batch_size_per_gpu: int = 1  # frames per forward pass (protocol: 1); the propagation itself goes frame by frame
    split: str = "val"  # the video list read: ImageSets/2017/<split>.txt
    resolution: str = "480p"  # frame folder under JPEGImages/ and Annotations/ (480p or Full-Resolution)
    videos: list[str] = field(default_factory=list)  # only these videos of the split, in this order (empty: all)
    short_side: int = 480  # frames resized so the short side is this; the long side floored to a multiple of 64
    n_last_frames: int = 7  # past predicted frames kept as context (a queue), besides the first frame
    size_mask_neighborhood: int = 12  # sources within this many patch cells of the target, per axis (0: everywhere)
    topk: int = 5  # affinities kept per target patch, over all context frames jointly
    temperature: float = 0.1  # affinity = exp(cosine / temperature)
    evaluate: bool = True  # J&F against every frame's annotation (false: only write the masks, e.g. for test-dev)
    progress: bool = True  # a progress bar per video

    def check(self) -> None:
        """Impossible values and a missing dataset root, before any work (ConfigError)."""
        check_range(self, ("short_side", "topk"), ge=1)
        check_range(self, ("n_last_frames", "size_mask_neighborhood"), ge=0)
        check_range(self, "temperature", gt=0)
        if not (self.split and self.resolution):
            raise ConfigError("split and resolution must not be empty")
        if not self.data_path:
            raise ConfigError("data_path=DAVIS_ROOT is required (the folder holding JPEGImages/ and ImageSets/)")
        if not Path(self.data_path).is_dir():
            raise ConfigError(f"data_path={self.data_path!r} is not a folder (give the DAVIS root)")
