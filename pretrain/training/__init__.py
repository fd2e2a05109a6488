"""Training: the iBOT step in named pieces (`step`), the plain loop with exact resume and DDP (`loop`)
and the same step under PyTorch Lightning (`lightning`). Public names are in `pretrain/__init__.py`."""
