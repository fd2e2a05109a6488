"""`python -m analysis.explore`: one self-contained HTML page to explore a backbone on your images.

    python -m analysis.explore pretrained=FILE data_path=FOLDER_OR_IMAGE [max_images=N] [image_size=480]
        [layers=[-1]] output_dir=DIR

Writes DIR/explore.html (opens from disk, no server, no network): per image the input, the [CLS]
attention of every head of the chosen layers with its 60%-mass outline, the PCA colour map (all
patches or foreground only), and for a clicked patch its cosine similarity over every image and its
nearest patches. The work is `run_explore` in `analysis/explore_work.py`; this command parses and
checks the config before torch is imported.
"""

import sys

from evalkit import run_backbone_cli

from .config import ExploreConfig


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for a bad config, data or checkpoint)."""
    return run_backbone_cli(ExploreConfig, argv, "analysis.explore", _run)


def _run(backbone, cfg: ExploreConfig) -> dict:
    from .explore_work import run_explore  # the work imports torch: only after the config parsed

    return run_explore(backbone, cfg)


if __name__ == "__main__":
    sys.exit(main())
