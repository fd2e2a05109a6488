"""`python -m retrieval.copydays key=value ...`: copy detection on Copydays (code: `retrieval.copy_detection`)."""

import sys

from .cli import main_copydays as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
