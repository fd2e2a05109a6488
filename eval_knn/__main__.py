"""`python -m eval_knn key=value ...`: weighted k-NN of a frozen backbone."""

from .evaluate import main

raise SystemExit(main())
