"""`python -m eval_linear key=value ...`: linear probing with a sweep of heads."""

import sys

from .cli import main

sys.exit(main())
