"""`python -m analysis.patterns`: top-k patches (or images) of the iBOT head's most populated prototypes.

    python -m analysis.patterns key=value ...

The code is in `analysis.tools.patterns`;
this shell parses and checks the config before torch is imported.
"""

import sys

from evalkit import run_backbone_cli

from .config import PatternsConfig


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for a bad config, data or checkpoint)."""
    return run_backbone_cli(PatternsConfig, argv, "analysis.patterns", "analysis.tools.patterns:run")


if __name__ == "__main__":
    sys.exit(main())
