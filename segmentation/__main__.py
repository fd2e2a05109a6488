"""`python -m segmentation [--config FILE.yaml] key=value ...` (also under `torchrun -m segmentation`)."""

from .run import main

raise SystemExit(main())
