"""Explicit attention products against torch's fused kernel on this machine's CPU.

  python bench/attention.py        # prints one JSON line per (precision, tokens)

The ViT blocks of this project multiply explicitly on CPU (softmax(q k^T / sqrt(d)) v) and call
`scaled_dot_product_attention` elsewhere; this times both, forward and forward + backward, at the
shapes of the benchmark step (ViT-S/16: 6 heads of 64; 2 x 4 global crops of 197 tokens, 4 x 4 local
crops of 37). Env: REPEAT (20).
"""

import json
import os
import time

import torch
import torch.nn.functional as F

REPEAT = int(os.environ.get("REPEAT", 20))


def explicit(q, k, v):
    return ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1) @ v


def seconds(fn) -> float:
    for _ in range(3):
        fn()
    t = time.perf_counter()
    for _ in range(REPEAT):
        fn()
    return (time.perf_counter() - t) / REPEAT


def main() -> None:
    for dtype in (torch.float32, torch.bfloat16):
        for batch, tokens in ((8, 197), (16, 37)):
            q, k, v = (torch.randn(batch, 6, tokens, 64, dtype=dtype, requires_grad=True) for _ in range(3))
            grad = torch.randn(batch, 6, tokens, 64, dtype=dtype)
            row = dict(precision=str(dtype).split(".")[1], batch=batch, tokens=tokens)
            for name, fn in (("fused", F.scaled_dot_product_attention), ("explicit", explicit)):
                args = (q, k, v)
                row[f"{name}_fwd_ms"] = round(1000 * seconds(lambda fn=fn, a=args: fn(*a)), 2)
                backward = lambda fn=fn, a=args, g=grad: fn(*a).backward(g)  # noqa: E731
                row[f"{name}_fwd_bwd_ms"] = round(1000 * seconds(backward), 2)
            row["speedup_fwd_bwd"] = round(row["fused_fwd_bwd_ms"] / row["explicit_fwd_bwd_ms"], 2)
            print(json.dumps(row))


if __name__ == "__main__":
    main()
