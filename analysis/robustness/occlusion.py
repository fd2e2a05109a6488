"""`python -m analysis.robustness.occlusion`: top-1 under random and attention-guided patch drop.

    python -m analysis.robustness.occlusion classifier=FILE [pretrained=FILE] key=value ...

The work is `run_occlusion` in `analysis/robustness/occlusion_work.py`; this command parses and checks the
config before torch is imported, then loads the classifier (`evalkit.load_classifier`).
"""

import sys

from evalkit import run_cli

from .config import OcclusionConfig


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for a bad config, data or classifier)."""
    return run_cli(OcclusionConfig, argv, "analysis.robustness.occlusion", _run)


def _run(cfg: OcclusionConfig) -> dict:
    from .common import classifier_results  # the work imports torch: only after the config parsed
    from .occlusion_work import run_occlusion

    return classifier_results(run_occlusion, cfg)


if __name__ == "__main__":
    sys.exit(main())
