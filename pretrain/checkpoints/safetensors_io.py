"""safetensors files: the exported backbone (+ head) as flat tensors with its description in the metadata.

A safetensors file holds named tensors and a str -> str metadata table, nothing executable. The
suite's backbone file is stored as tensors `backbone.<name>` (and `head.<name>`) and metadata
`format`, `format_version`, `arch`, `backbone_kwargs`, `head_kwargs`, `meta` (dicts as JSON text), so
`load_backbone`/`load_head` rebuild the architecture without flags, as from the torch file. Any other
safetensors file (timm's, a plain state dict) is read as a plain state dict.

The format is recognised from the contents: 8 bytes of little-endian header length, then a JSON
header that starts with '{' (a torch file starts with 'PK' (zip) or 0x80 (legacy pickle)).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import Tensor

from plumbing import MissingExtraError

PACKAGE_HINT = "the safetensors package is missing: pip install 'ibot-suite[hf]' (or pip install safetensors)"
_JSON_KEYS = ("backbone_kwargs", "head_kwargs", "meta")


def is_safetensors(path: str | os.PathLike) -> bool:
    """True when the file starts like a safetensors file (header length, then a JSON object)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    if len(head) < 9 or head[8:9] != b"{":
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= path.stat().st_size - 8


def _module():
    try:
        import safetensors.torch as st
    except ImportError:
        raise MissingExtraError(PACKAGE_HINT) from None
    return st


def backbone_bytes(payload: dict[str, Any]) -> bytes:
    """The suite's backbone payload (see `saving.export_backbone`) as safetensors bytes."""
    tensors = {f"backbone.{k}": v.contiguous() for k, v in payload["backbone"].items()}
    tensors.update({f"head.{k}": v.contiguous() for k, v in payload.get("head", {}).items()})
    metadata = {
        "format": payload["format"],
        "format_version": str(payload["format_version"]),
        "arch": payload["arch"],
    }
    for key in _JSON_KEYS:
        if key in payload:
            try:
                metadata[key] = json.dumps(payload[key], sort_keys=True)
            except TypeError as e:
                raise ValueError(f"{key} must hold plain JSON types for a safetensors file: {e}") from None
    return _module().save(tensors, metadata=metadata)


def state_bytes(state: dict[str, Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """A plain state dict as safetensors bytes (tensors made contiguous; shared storage is copied)."""
    return _module().save({k: v.detach().cpu().contiguous().clone() for k, v in state.items()}, metadata=metadata)


def read(path: str | os.PathLike, backbone_format: str, device: Any = "cpu") -> dict[str, Any]:
    """The suite's backbone payload when the metadata's `format` is `backbone_format`, otherwise the plain
    {name: tensor} dict."""
    _module()
    from safetensors import safe_open

    device = str(device) if isinstance(device, str) or hasattr(device, "type") else "cpu"
    with safe_open(str(path), framework="pt", device=device) as f:
        metadata = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    if metadata.get("format") != backbone_format:
        return tensors
    payload: dict[str, Any] = {
        "format": metadata["format"],
        "format_version": int(metadata.get("format_version", "1")),
        "arch": metadata["arch"],
        "backbone": {k[len("backbone.") :]: v for k, v in tensors.items() if k.startswith("backbone.")},
    }
    for key in _JSON_KEYS:
        if key in metadata:
            payload[key] = json.loads(metadata[key])
    head = {k[len("head.") :]: v for k, v in tensors.items() if k.startswith("head.")}
    if head:
        payload["head"] = head
    return payload
