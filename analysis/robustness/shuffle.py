"""`python -m analysis.robustness.shuffle`: top-1 when the image's cells are permuted.

    python -m analysis.robustness.shuffle classifier=FILE [pretrained=FILE] key=value ...

The code is in `analysis.robustness.protocols.shuffle`;
this shell parses and checks the config before torch is imported.
"""

import sys

from evalkit import run_cli

from .config import ShuffleConfig


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for a bad config, data or classifier)."""
    return run_cli(ShuffleConfig, argv, "analysis.robustness.shuffle", "analysis.robustness.protocols.shuffle:cli")


if __name__ == "__main__":
    sys.exit(main())
