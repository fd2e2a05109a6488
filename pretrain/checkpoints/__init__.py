"""Files: safe, strict loading of every supported checkpoint (`loading`), writing backbone files
(`saving`, `safetensors_io`) and exports for other libraries (`hf_export`, `timm_export`).
Public names are in `pretrain/__init__.py`."""
