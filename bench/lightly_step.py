"""lightly 1.6's iBOT recipe timed on the device this machine has (CUDA when there is a GPU, else CPU).

  python bench/lightly_step.py        # prints one JSON line, same keys as bench/pretrain_step.py

../shared/tools/bench_lightly.py builds the same recipe (timm ViT wrapped by lightly's masked ViT, DINO
projection heads, DINOLoss + IBOTPatchLoss, AdamW, momentum update) but keeps the models on the CPU,
so on a GPU machine it does not measure the GPU. This script moves models and inputs to the device,
uses fused AdamW there (as bench/pretrain_step.py does) and synchronises before reading the clock.
Same env: ARCH, BATCH, LOCAL, STEPS, GSIZE, LSIZE, OUT_DIM, PRECISION, PEAK_TFLOPS, STEP_TFLOP.
"""

import copy
import json
import os
import resource
import statistics
import time

import torch
from flops import device_columns

ARCH = os.environ.get("ARCH", "vit_small")
B, L = int(os.environ.get("BATCH", 4)), int(os.environ.get("LOCAL", 4))
STEPS, G, LS = int(os.environ.get("STEPS", 5)), int(os.environ.get("GSIZE", 224)), int(os.environ.get("LSIZE", 96))
OUT_DIM = int(os.environ.get("OUT_DIM", 8192))
PRECISION = os.environ.get("PRECISION", "fp32")
WIDTH = {"vit_tiny": (192, 3), "vit_small": (384, 6), "vit_base": (768, 12)}
DEV = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build():
    from lightly.loss import DINOLoss, IBOTPatchLoss
    from lightly.models.modules import DINOProjectionHead, MaskedVisionTransformerTIMM
    from lightly.models.utils import update_momentum
    from timm.models.vision_transformer import VisionTransformer

    dim, heads = WIDTH[ARCH]
    vit = VisionTransformer(img_size=G, patch_size=16, embed_dim=dim, depth=12, num_heads=heads, num_classes=0,
                            dynamic_img_size=True)  # fmt: skip
    student = MaskedVisionTransformerTIMM(vit=vit).to(DEV)
    teacher = copy.deepcopy(student)
    s_head = DINOProjectionHead(dim, 2048, 256, OUT_DIM, norm_last_layer=False).to(DEV)
    t_head = DINOProjectionHead(dim, 2048, 256, OUT_DIM).to(DEV)
    t_head.load_state_dict(s_head.state_dict())
    for p in [*teacher.parameters(), *t_head.parameters()]:
        p.requires_grad_(False)
    cls_loss, patch_loss = DINOLoss(output_dim=OUT_DIM).to(DEV), IBOTPatchLoss(output_dim=OUT_DIM).to(DEV)
    params = [*student.parameters(), *s_head.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=DEV.type == "cuda")

    gen = torch.Generator().manual_seed(0)
    grid = G // 16
    views = torch.cat([torch.randn(B, 3, G, G, generator=gen) for _ in range(2)]).to(DEV)
    local = torch.cat([torch.randn(B, 3, LS, LS, generator=gen) for _ in range(L)]).to(DEV)
    block_mask = torch.cat([torch.rand(B, grid, grid, generator=gen) < 0.3 for _ in range(2)]).to(DEV)
    token_mask = torch.cat([torch.zeros(2 * B, 1, dtype=torch.bool, device=DEV), block_mask.flatten(1)], 1)

    def step():
        with torch.autocast(DEV.type, dtype=torch.bfloat16, enabled=PRECISION == "bf16"):
            with torch.no_grad():
                t_tokens = teacher.encode(views)
                t_cls, t_masked = t_head(t_tokens[:, 0]), t_head(t_tokens[token_mask])
            s_tokens = student.encode(views, mask=token_mask)
            s_cls, s_masked = s_head(s_tokens[:, 0]), s_head(s_tokens[token_mask])
            s_local = s_head(student.encode(local)[:, 0])
            loss = cls_loss(teacher_out=t_cls.chunk(2), student_out=torch.cat([s_cls, s_local]).chunk(2 + L))
            loss = loss + patch_loss(teacher_out=t_masked, student_out=s_masked, mask=block_mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        update_momentum(student, teacher, 0.996)
        update_momentum(s_head, t_head, 0.996)
        return loss.item()  # synchronises the device

    return step


def main() -> None:
    torch.manual_seed(0)
    step = build()
    times = []
    for _ in range(STEPS + 1):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    dt = statistics.median(times[1:])
    row = dict(impl="lightly", precision=PRECISION, arch=ARCH, batch=B, local=L, img_per_s=round(B / dt, 3),
               step_s_median=round(dt, 3), peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
               threads=torch.get_num_threads())  # fmt: skip
    row.update(device_columns(step, dt, PRECISION, DEV.type == "cuda"))
    print(json.dumps(row))


if __name__ == "__main__":
    main()
