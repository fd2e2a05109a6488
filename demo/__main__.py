"""`python -m demo [out=demo_out] [minutes=8] [stages=...]`."""

import sys

from .run import main

sys.exit(main(sys.argv[1:]))
