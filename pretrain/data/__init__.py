"""Images in: image folders with clear errors (`folder`), the multi-crop augmentation and dataset
(`augment`), the fast uint8 loader (`fastaug`) and its batched colour operations (`colour`).
Public names are in `pretrain/__init__.py`."""
