"""The networks: the ViT (`vit`) and Swin (`swin`) backbones, their registry (`backbones`) and the iBOT
projection head (`head`). Public names are in `pretrain/__init__.py`."""
