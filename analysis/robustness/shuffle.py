"""`python -m analysis.robustness.shuffle`: top-1 when the image's cells are permuted.

    python -m analysis.robustness.shuffle classifier=FILE [pretrained=FILE] key=value ...

The work is `run_shuffle` in `analysis/robustness/shuffle_work.py`; this command parses and checks the
config before torch is imported, then loads the classifier (`evalkit.load_classifier`).
"""

import sys

from evalkit import run_cli

from .config import ShuffleConfig


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for a bad config, data or classifier)."""
    return run_cli(ShuffleConfig, argv, "analysis.robustness.shuffle", _run)


def _run(cfg: ShuffleConfig) -> dict:
    from .common import classifier_results  # the work imports torch: only after the config parsed
    from .shuffle_work import run_shuffle

    return classifier_results(run_shuffle, cfg)


if __name__ == "__main__":
    sys.exit(main())
