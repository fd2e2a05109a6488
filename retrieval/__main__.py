"""`python -m retrieval key=value ...`: image retrieval on revisited Oxford / Paris."""

import sys

from .cli import main

sys.exit(main())
