"""`python -m analysis.robustness.backgrounds`: the backgrounds challenge (ImageNet-9): top-1 per variant, BG-gap.

    python -m analysis.robustness.backgrounds classifier=FILE [pretrained=FILE] key=value ...

The code is in `analysis.robustness.protocols.backgrounds`;
this shell parses and checks the config before torch is imported.
"""

import sys

from evalkit import run_cli

from .config import BackgroundsConfig


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for a bad config, data or classifier)."""
    return run_cli(
        BackgroundsConfig, argv, "analysis.robustness.backgrounds", "analysis.robustness.protocols.backgrounds:cli"
    )


if __name__ == "__main__":
    sys.exit(main())
