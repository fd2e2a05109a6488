"""`python -m analysis.robustness.partwise`: part-wise linear probing.

    python -m analysis.robustness.partwise pretrained=FILE data_path=ROOT key=value ...

The code is in `analysis.robustness.protocols.partwise`;
this shell parses and checks the config before torch is imported.
"""

import sys

from evalkit import run_backbone_cli

from .config import PartwiseConfig


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for a bad config, data or checkpoint)."""
    return run_backbone_cli(
        PartwiseConfig, argv, "analysis.robustness.partwise", "analysis.robustness.protocols.partwise:run"
    )


if __name__ == "__main__":
    sys.exit(main())
