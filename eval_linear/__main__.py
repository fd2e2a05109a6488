"""`python -m eval_linear key=value ...`: linear probing with a sweep of heads."""

from .probe import main

raise SystemExit(main())
