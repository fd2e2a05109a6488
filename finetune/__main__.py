"""`python -m finetune [--config FILE.yaml] key=value ...`: end-to-end fine-tuning with layer decay."""

import sys

from .cli import main

sys.exit(main())
