"""`python -m demo [out=demo_out] [minutes=7] [stages=...] [full=false]`."""

import sys

from .run import main

sys.exit(main(sys.argv[1:]))
