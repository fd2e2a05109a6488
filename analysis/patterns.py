"""`python -m analysis.patterns`: top-k patches (or images) of the iBOT head's most populated prototypes.

    python -m analysis.patterns pretrained=FILE data_path=FOLDER key=value ...

The work is `run_patterns` in `analysis/patterns_work.py`; this command parses and checks the config before
torch is imported.
"""

import sys

from evalkit import run_backbone_cli

from .config import PatternsConfig


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for a bad config, data or checkpoint)."""
    return run_backbone_cli(PatternsConfig, argv, "analysis.patterns", _run)


def _run(backbone, cfg: PatternsConfig) -> dict:
    from .patterns_work import run_patterns  # the work imports torch: only after the config parsed

    return run_patterns(backbone, cfg)


if __name__ == "__main__":
    sys.exit(main())
