"""`python -m analysis.robustness.natural_adv`: accuracy and calibration on a class subset (ImageNet-A/R).

    python -m analysis.robustness.natural_adv classifier=FILE [pretrained=FILE] key=value ...

The code is in `analysis.robustness.protocols.natural_adv`;
this shell parses and checks the config before torch is imported.
"""

import sys

from evalkit import run_cli

from .config import NaturalAdvConfig


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for a bad config, data or classifier)."""
    return run_cli(
        NaturalAdvConfig, argv, "analysis.robustness.natural_adv", "analysis.robustness.protocols.natural_adv:cli"
    )


if __name__ == "__main__":
    sys.exit(main())
