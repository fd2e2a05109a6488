"""DAVIS-2017 semi-supervised video object segmentation by label propagation of frozen ViT patch features.

`run(backbone, cfg) -> dict` segments the videos and scores J&F; `python -m video_seg` is the CLI
(`main(argv)`). The pieces are public: the propagation (`label_propagation`, `LabelPropagator`,
`propagate`, `soft_to_mask`), the official J and F (`region_iou`, `boundary_f`, `boundary_map`,
`frame_scores`, `statistics`), and DAVIS's files (`read_frame`, `target_size`, `first_frame_labels`,
`read_indexed_png`, `write_indexed_png`, `DAVIS_PALETTE`).
"""

from pretrain import lazy_exports

_EXPORTS = {
    "VideoSegConfig": "config", "run": "evaluate", "main": "evaluate", "segment_video": "evaluate",
    # propagation
    "label_propagation": "propagation", "LabelPropagator": "propagation", "propagate": "propagation",
    "neighbourhood_window": "propagation", "soft_to_mask": "propagation",
    # the DAVIS metric
    "region_iou": "metrics", "boundary_f": "metrics", "boundary_map": "metrics", "boundary_tolerance": "metrics",
    "frame_scores": "metrics", "statistics": "metrics", "summarise": "metrics",
    # DAVIS files
    "DAVIS_PALETTE": "davis", "list_videos": "davis", "read_frame": "davis", "target_size": "davis",
    "first_frame_labels": "davis", "read_indexed_png": "davis", "write_indexed_png": "davis",
}  # fmt: skip

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
