"""`python -m analysis.robustness.corruptions`: top-1 error per common corruption and severity, mCE.

    python -m analysis.robustness.corruptions classifier=FILE [pretrained=FILE] key=value ...

The work is `run_corruptions` in `analysis/robustness/corruptions_work.py`; this command parses and checks the
config before torch is imported, then loads the classifier (`evalkit.load_classifier`).
"""

import sys

from evalkit import run_cli

from .config import CorruptionsConfig


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for a bad config, data or classifier)."""
    return run_cli(CorruptionsConfig, argv, "analysis.robustness.corruptions", _run)


def _run(cfg: CorruptionsConfig) -> dict:
    from .common import classifier_results  # the work imports torch: only after the config parsed
    from .corruptions_work import run_corruptions

    return classifier_results(run_corruptions, cfg)


if __name__ == "__main__":
    sys.exit(main())
