"""`python -m analysis.pca`: PCA feature maps: the first three principal components of patch features as RGB.

    python -m analysis.pca pretrained=FILE data_path=FOLDER key=value ...

The work is `run_pca` in `analysis/pca_work.py`; this command parses and checks the config before
torch is imported.
"""

import sys

from evalkit import run_backbone_cli

from .config import PCAConfig


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for a bad config, data or checkpoint)."""
    return run_backbone_cli(PCAConfig, argv, "analysis.pca", _run)


def _run(backbone, cfg: PCAConfig) -> dict:
    from .pca_work import run_pca  # the work imports torch: only after the config parsed

    return run_pca(backbone, cfg)


if __name__ == "__main__":
    sys.exit(main())
