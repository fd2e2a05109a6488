"""`python -m analysis.correspondence`: sparse patch correspondence (two views of an image, or two images of a class).

    python -m analysis.correspondence key=value ...

The code is in `analysis.tools.correspondence`;
this shell parses and checks the config before torch is imported.
"""

import sys

from evalkit import run_backbone_cli

from .config import CorrespondenceConfig


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for a bad config, data or checkpoint)."""
    return run_backbone_cli(CorrespondenceConfig, argv, "analysis.correspondence", "analysis.tools.correspondence:run")


if __name__ == "__main__":
    sys.exit(main())
