"""DAVIS-2017 semi-supervised video object segmentation by label propagation of frozen ViT patch features.

`run(backbone, cfg) -> dict` segments the videos and scores J&F; `python -m video_seg` is the CLI
(`video_seg.__main__.main(argv)`). The pieces are public: the propagation (`label_propagation`, `LabelPropagator`,
`propagate`, `soft_to_mask`), the official J and F (`region_iou`, `boundary_f`, `boundary_map`,
`frame_scores`, `statistics`), and DAVIS's files (`read_frame`, `target_size`, `first_frame_labels`,
`read_indexed_png`, `write_indexed_png`, `DAVIS_PALETTE`).
"""

from typing import TYPE_CHECKING

from plumbing import lazy_package

from .config import VideoSegConfig

if TYPE_CHECKING:
    from .davis import (
        DAVIS_PALETTE,
        first_frame_labels,
        list_videos,
        object_ids,
        read_frame,
        read_indexed_png,
        target_size,
        write_indexed_png,
    )
    from .metrics import boundary_f, boundary_map, boundary_tolerance, frame_scores, region_iou, statistics, summarise
    from .propagation import LabelPropagator, label_propagation, neighbourhood_window, propagate, soft_to_mask
    from .work import run, segment_video

__getattr__, __dir__, __all__ = lazy_package(__name__)
