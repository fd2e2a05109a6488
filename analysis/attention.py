"""`python -m analysis.attention`: last-block [CLS] attention maps, their 60%-mass masks and Jaccard with object masks.

    python -m analysis.attention key=value ...

The code is in `analysis.tools.attention`;
this shell parses and checks the config before torch is imported.
"""

import sys

from evalkit import run_backbone_cli

from .config import AttentionConfig


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for a bad config, data or checkpoint)."""
    return run_backbone_cli(AttentionConfig, argv, "analysis.attention", "analysis.tools.attention:run")


if __name__ == "__main__":
    sys.exit(main())
