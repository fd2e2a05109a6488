"""`python -m eval_knn.unsup key=value ...`: unsupervised classification with the iBOT head's prototypes.

    python -m eval_knn.unsup pretrained=ckpt.pth checkpoint_key=teacher data_path=/data/imagenet

`pretrained` must hold the head (a training checkpoint, or a backbone file exported with its head).
The work is `eval_knn.unsup_work.run_unsup`, imported after the config parsed (so `--help` imports no torch).
"""

from __future__ import annotations

import sys

from evalkit import run_backbone_cli

from .config import UnsupConfig


def main(argv: list[str] | None = None) -> int:
    """`python -m eval_knn.unsup key=value ...`; returns the exit status."""
    return run_backbone_cli(UnsupConfig, argv, "eval_knn.unsup", _run)


def _run(backbone, cfg: UnsupConfig) -> dict:
    from .unsup_work import run_unsup  # the work imports torch: only after the config parsed

    return run_unsup(backbone, cfg)


if __name__ == "__main__":
    sys.exit(main())
