"""`python -m analysis.correspondence`: sparse patch correspondence (two views of an image, or two images of a class).

    python -m analysis.correspondence pretrained=FILE data_path=FOLDER key=value ...

The work is `run_correspondence` in `analysis/correspondence_work.py`; this command parses and checks the config before
torch is imported.
"""

import sys

from evalkit import run_backbone_cli

from .config import CorrespondenceConfig


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for a bad config, data or checkpoint)."""
    return run_backbone_cli(CorrespondenceConfig, argv, "analysis.correspondence", _run)


def _run(backbone, cfg: CorrespondenceConfig) -> dict:
    from .correspondence_work import run_correspondence  # the work imports torch: only after the config parsed

    return run_correspondence(backbone, cfg)


if __name__ == "__main__":
    sys.exit(main())
