"""`python -m analysis.pca`: pCA feature maps: the first three principal components of patch features as RGB.

    python -m analysis.pca key=value ...

The code is in `analysis.tools.pca`;
this shell parses and checks the config before torch is imported.
"""

import sys

from evalkit import run_backbone_cli

from .config import PCAConfig


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for a bad config, data or checkpoint)."""
    return run_backbone_cli(PCAConfig, argv, "analysis.pca", "analysis.tools.pca:run")


if __name__ == "__main__":
    sys.exit(main())
