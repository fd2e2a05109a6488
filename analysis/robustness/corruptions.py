"""`python -m analysis.robustness.corruptions`: top-1 error per common corruption and severity, mCE.

    python -m analysis.robustness.corruptions classifier=FILE [pretrained=FILE] key=value ...

The code is in `analysis.robustness.protocols.corruptions`;
this shell parses and checks the config before torch is imported.
"""

import sys

from evalkit import run_cli

from .config import CorruptionsConfig


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for a bad config, data or classifier)."""
    return run_cli(
        CorruptionsConfig, argv, "analysis.robustness.corruptions", "analysis.robustness.protocols.corruptions:cli"
    )


if __name__ == "__main__":
    sys.exit(main())
