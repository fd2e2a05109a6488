"""`python -m eval_knn key=value ...`: weighted k-NN of a frozen backbone."""

import sys

from .cli import main

sys.exit(main())
