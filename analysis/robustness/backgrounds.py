"""`python -m analysis.robustness.backgrounds`: the backgrounds challenge (ImageNet-9): top-1 per variant, BG-gap.

    python -m analysis.robustness.backgrounds classifier=FILE [pretrained=FILE] key=value ...

The work is `run_backgrounds` in `analysis/robustness/backgrounds_work.py`; this command parses and checks the
config before torch is imported, then loads the classifier (`evalkit.load_classifier`).
"""

import sys

from evalkit import run_cli

from .config import BackgroundsConfig


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for a bad config, data or classifier)."""
    return run_cli(BackgroundsConfig, argv, "analysis.robustness.backgrounds", _run)


def _run(cfg: BackgroundsConfig) -> dict:
    from .backgrounds_work import run_backgrounds
    from .common import classifier_results  # the work imports torch: only after the config parsed

    return classifier_results(run_backgrounds, cfg)


if __name__ == "__main__":
    sys.exit(main())
