"""`python -m analysis.robustness.natural_adv`: accuracy and calibration on a class subset (ImageNet-A/R).

    python -m analysis.robustness.natural_adv classifier=FILE [pretrained=FILE] key=value ...

The work is `run_natural_adv` in `analysis/robustness/natural_adv_work.py`; this command parses and checks the
config before torch is imported, then loads the classifier (`evalkit.load_classifier`).
"""

import sys

from evalkit import run_cli

from .config import NaturalAdvConfig


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for a bad config, data or classifier)."""
    return run_cli(NaturalAdvConfig, argv, "analysis.robustness.natural_adv", _run)


def _run(cfg: NaturalAdvConfig) -> dict:
    from .common import classifier_results  # the work imports torch: only after the config parsed
    from .natural_adv_work import run_natural_adv

    return classifier_results(run_natural_adv, cfg)


if __name__ == "__main__":
    sys.exit(main())
