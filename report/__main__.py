"""`python -m report run_dir=DIR [output=DIR/report] key=value ...`: write report.md and report.html."""

import sys

from .build import main

sys.exit(main())
