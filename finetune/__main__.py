"""`python -m finetune [--config FILE.yaml] key=value ...`: end-to-end fine-tuning with layer-wise lr decay.

The command is the one evaluation shell (`evalkit.run_backbone_cli`): bad input prints one line
`finetune: error: ...` and exits 2; under `torchrun` every process trains and rank 0 writes
config.yaml, checkpoints, classifier.pth and results.json. The work, `finetune.work.run`, is imported
after the config parsed (so `--help` imports no torch).
"""

import sys

from evalkit import run_backbone_cli

from .config import FinetuneConfig


def main(argv: list[str] | None = None) -> int:
    """`python -m finetune key=value ...`; returns the exit status (0, or 2 on bad input)."""
    return run_backbone_cli(FinetuneConfig, argv, "finetune", _run)


def _run(backbone, cfg: FinetuneConfig) -> dict:
    from .work import run  # the work imports torch: only after the config parsed

    return run(backbone, cfg)


if __name__ == "__main__":
    sys.exit(main())
