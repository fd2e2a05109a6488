"""`python -m analysis.attention`: last-block [CLS] attention maps, their 60%-mass masks and Jaccard with object masks.

    python -m analysis.attention pretrained=FILE data_path=FOLDER [masks=FOLDER] key=value ...

The work is `run_attention` in `analysis/attention_work.py`; this command parses and checks the config before
torch is imported.
"""

import sys

from evalkit import run_backbone_cli

from .config import AttentionConfig


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for a bad config, data or checkpoint)."""
    return run_backbone_cli(AttentionConfig, argv, "analysis.attention", _run)


def _run(backbone, cfg: AttentionConfig) -> dict:
    from .attention_work import run_attention  # the work imports torch: only after the config parsed

    return run_attention(backbone, cfg)


if __name__ == "__main__":
    sys.exit(main())
