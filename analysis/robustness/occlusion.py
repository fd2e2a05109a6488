"""`python -m analysis.robustness.occlusion`: top-1 under random and attention-guided patch drop.

    python -m analysis.robustness.occlusion classifier=FILE [pretrained=FILE] key=value ...

The code is in `analysis.robustness.protocols.occlusion`;
this shell parses and checks the config before torch is imported.
"""

import sys

from evalkit import run_cli

from .config import OcclusionConfig


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for a bad config, data or classifier)."""
    return run_cli(
        OcclusionConfig, argv, "analysis.robustness.occlusion", "analysis.robustness.protocols.occlusion:cli"
    )


if __name__ == "__main__":
    sys.exit(main())
