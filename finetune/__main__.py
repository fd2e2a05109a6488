"""`python -m finetune [--config FILE.yaml] key=value ...`: end-to-end fine-tuning with layer decay."""

from .cli import main

raise SystemExit(main())
