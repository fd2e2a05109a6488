"""`python -m analysis.robustness.partwise`: part-wise linear probing.

    python -m analysis.robustness.partwise pretrained=FILE data_path=ROOT key=value ...

The work is `run_partwise` in `analysis/robustness/partwise_work.py`; this command parses and checks
the config before torch is imported.
"""

import sys

from evalkit import run_backbone_cli

from .config import PartwiseConfig


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for a bad config, data or checkpoint)."""
    return run_backbone_cli(PartwiseConfig, argv, "analysis.robustness.partwise", _run)


def _run(backbone, cfg: PartwiseConfig) -> dict:
    from .partwise_work import run_partwise  # the work imports torch: only after the config parsed

    return run_partwise(backbone, cfg)


if __name__ == "__main__":
    sys.exit(main())
