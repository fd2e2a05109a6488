"""Benchmark: images/s per core of the whole pre-training data path, and training from JPEG files.

The data path: JPEG file -> decode -> 2 x 224 + 10 x 96 crops with flip, colour jitter, grey, blur,
solarisation, normalisation -> masks -> collated batch. Pipelines, alternated batch by batch in one
process with one torch thread, timed by the process's CPU time (so "per core" holds on a shared machine):

  reference   this suite's reference loader (loader=reference): torchvision/PIL per crop
  lightly     lightly's IBOTTransform (+ the same masks), when `lightly` imports; skipped with a note otherwise
  plain       a plain torchvision pipeline written from reference §1.1, as the authors' DataAugmentationiBOT
  fast        the suite's fast loader (loader=fast) with its colour ops in the collate, on this CPU
  fast_share  the fast loader's CPU part when the colour ops run on the training device (a GPU)

Images: ImageNet-size JPEGs (500 x 375 or 375 x 500, quality 90) cut and resized from scikit-image's
bundled photos into a temporary folder. Prints which CPU, then one JSON line with images per CPU-second
and the ratios.

  python bench/loader.py                         # 96 images, batches of 16, 3 rounds
  python bench/loader.py --e2e                   # also: training from JPEG files vs the step alone
                                                 # (tiny_cpu recipe, batch 32; ViT-S/16 paper crops, batch 8)
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps
from torch.utils.data import default_collate
from torchvision import transforms as T

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pretrain import (  # noqa: E402
    IMAGENET_MEAN,
    IMAGENET_STD,
    FastCollate,
    FastMultiCropDataset,
    MaskGenerator,
    MultiCropAugmentation,
    MultiCropDataset,
    collate_skip,
    list_images,
)

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
          "colorwheel", "cat", "coins", "camera")  # fmt: skip
MASKS = dict(pred_ratio=[0.0, 0.3], pred_ratio_var=[0.0, 0.2])  # the paper's
PATCH = 16
REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def make_jpegs(folder: Path, n: int, seed: int = 0) -> Path:
    """n JPEGs of 500 x 375 (70%) or 375 x 500 from random crops of scikit-image's photos."""
    import skimage.data

    photos = []
    for name in PHOTOS:
        try:
            a = getattr(skimage.data, name)()
        except Exception:  # a photo that this scikit-image cannot give without a download
            continue
        photos.append(np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3])
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = Image.fromarray(photos[i % len(photos)])
        s = rng.uniform(0.6, 1.0)
        w, h = int(img.width * s), int(img.height * s)
        x, y = rng.integers(0, img.width - w + 1), rng.integers(0, img.height - h + 1)
        size = (500, 375) if rng.random() < 0.7 else (375, 500)
        img.crop((x, y, x + w, y + h)).resize(size, Image.BICUBIC).save(folder / f"{i:04d}.jpg", quality=90)
    return folder


class _Blur:
    """Reference §1.1's helper: PIL Gaussian blur, radius ~ U(0.1, 2.0), iff uniform(0, 1) <= p."""

    def __init__(self, p: float):
        self.p = p

    def __call__(self, img):
        if random.random() > self.p:
            return img
        return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(0.1, 2.0)))


class _Solarize:
    """Reference §1.1's helper: PIL solarize (threshold 128) iff uniform(0, 1) < p."""

    def __init__(self, p: float):
        self.p = p

    def __call__(self, img):
        return ImageOps.solarize(img) if random.random() < self.p else img


class PlainPipeline:
    """Reference §1.1 literally: a torchvision Compose per crop, PIL images, masks drawn per item."""

    def __init__(self, files: list[Path], n_local: int = 10):
        flip_jitter = T.Compose([
            T.RandomHorizontalFlip(p=0.5),
            T.RandomApply([T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
        ])  # fmt: skip
        norm = T.Compose([T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
        bicubic = T.InterpolationMode.BICUBIC
        rrc_g = T.RandomResizedCrop(224, scale=(0.25, 1.0), interpolation=bicubic)
        rrc_l = T.RandomResizedCrop(96, scale=(0.05, 0.25), interpolation=bicubic)
        g1 = T.Compose([rrc_g, flip_jitter, _Blur(1.0), norm])
        g2 = T.Compose([rrc_g, flip_jitter, _Blur(0.1), _Solarize(0.2), norm])
        loc = T.Compose([rrc_l, flip_jitter, _Blur(0.5), norm])
        self.transforms = [g1, g2] + [loc] * n_local
        self.files, self.masks = files, MaskGenerator(**MASKS)

    def item(self, i: int):
        img = Image.open(self.files[i]).convert("RGB")
        crops = [t(img) for t in self.transforms]
        return crops, [torch.from_numpy(self.masks(224 // PATCH, 224 // PATCH)) for _ in range(2)]

    def batch(self, idx: list[int]):
        return default_collate([self.item(i) for i in idx])


class LightlyPipeline(PlainPipeline):
    """lightly's IBOTTransform (its defaults are the paper's ViT-S/16 crops) and the suite's masks."""

    def __init__(self, files: list[Path]):
        from lightly.transforms import IBOTTransform

        super().__init__(files)
        self.transform = IBOTTransform()

    def item(self, i: int):
        crops = self.transform(Image.open(self.files[i]).convert("RGB"))
        return crops, [torch.from_numpy(self.masks(224 // PATCH, 224 // PATCH)) for _ in range(2)]


class SuitePipeline:
    """One of the suite's loaders: its dataset's items, then its collate, as a DataLoader worker runs them."""

    def __init__(self, root: Path, fast: bool, colour_here: bool = True):
        kind = FastMultiCropDataset if fast else MultiCropDataset
        self.ds = kind(str(root), MultiCropAugmentation(), 2, PATCH, MASKS, seed=0)
        self.collate = FastCollate(2, colour_here) if fast else collate_skip

    def batch(self, idx: list[int]):
        return self.collate([self.ds[i] for i in idx])


def pipelines(root: Path) -> dict:
    files = list_images(root)
    found = {
        "reference": SuitePipeline(root, fast=False),
        "plain": PlainPipeline(files),
        "fast": SuitePipeline(root, fast=True),
        "fast_share": SuitePipeline(root, fast=True, colour_here=False),
    }
    try:
        found["lightly"] = LightlyPipeline(files)
    except ImportError as e:
        print(f"note: lightly is not importable ({e}); its pipeline is skipped", file=sys.stderr)
    return found


def measure(root: Path, batch: int, rounds: int) -> dict:
    """Images per CPU-second (process time, one thread) of each pipeline, alternated batch by batch."""
    pipes = pipelines(root)
    n = len(list_images(root))
    cpu = {k: 0.0 for k in pipes}
    wall = {k: 0.0 for k in pipes}
    count = {k: 0 for k in pipes}
    for p in pipes.values():  # warm-up: imports, first allocations
        p.batch(list(range(2)))
    for r in range(rounds):
        for start in range(0, n - batch + 1, batch):
            idx = list(range(start, start + batch))
            names = list(pipes) if (start // batch + r) % 2 == 0 else list(reversed(pipes))
            for name in names:
                c, w = time.process_time(), time.perf_counter()
                pipes[name].batch(idx)
                cpu[name] += time.process_time() - c
                wall[name] += time.perf_counter() - w
                count[name] += batch
    rate = {k: round(count[k] / cpu[k], 2) for k in pipes}
    ratios = {f"{a}_vs_{b}": round(rate[a] / rate[b], 2) for a in ("fast", "fast_share") for b in rate if b != a}
    ratios.update({f"{a}_vs_plain": round(rate[a] / rate["plain"], 2) for a in ("reference", "lightly") if a in rate})
    return {
        "img_per_cpu_s": rate,
        "img_per_wall_s": {k: round(count[k] / wall[k], 2) for k in pipes},
        "ratios": ratios,
        "images": n,
        "batch": batch,
        "rounds": rounds,
    }


RECIPES = {  # name -> (--config file or None, extra keys); both train on the benchmark's JPEG files
    "vit_small": (None, ["arch=vit_small"]),  # the paper's crops: 2 x 224 + 10 x 96
    "tiny_cpu": ("pretrain/recipes/tiny_cpu.yaml", []),  # ViT-Tiny, 4 blocks, 64 + 4 x 32 px crops
}


def _time_steps(run, steps: int, batch_source) -> float:
    """Median seconds of steps 2..steps+1 (the first is warm-up); batch_source() gives each step's batch."""
    times = []
    for s in range(steps + 1):
        t = time.perf_counter()
        run.train_step(run.student, batch_source(), s)
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])


def e2e(root: Path, recipe: str, batch: int, steps: int, precision: str, threads: int) -> dict:
    """Training from the JPEG files (loader + step, num_workers=0: one after the other) with each loader,
    next to the step alone on one batch already in memory; images/s."""
    from plumbing import parse_config
    from pretrain import TrainConfig, TrainingRun, ema_pairs

    torch.set_num_threads(threads)
    config, extra = RECIPES[recipe]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for loader in ("fast", "reference"):
            keys = [*extra, f"data_path={root}", f"output_dir={tmp}/{loader}", f"batch_size_per_gpu={batch}",
                    f"precision={precision}", "epochs=1", "warmup_epochs=0", "warmup_teacher_temp_epochs=1",
                    "num_workers=0", f"loader={loader}", f"max_steps_per_epoch={steps + 1}",
                    "resume=false"]  # fmt: skip
            run = TrainingRun(parse_config(TrainConfig, (["--config", str(REPO / config)] if config else []) + keys))
            run.pairs = ema_pairs(run.student, run.teacher)
            it = iter(run.loader())
            first = []

            def from_files(it=it, first=first):
                b, _ = next(it)
                first.append(b)
                return b

            rows[f"train_from_jpeg_{loader}"] = round(batch / _time_steps(run, steps, from_files), 3)
            if loader == "fast":  # the step alone, on the first batch (already in memory)
                rows["step_alone"] = round(batch / _time_steps(run, steps, lambda first=first: first[0]), 3)
    return {"recipe": recipe, "batch": batch, "steps": steps, "precision": precision, "threads": threads,
            "img_per_s": rows}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=96)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--e2e", action="store_true", help="also time training from the JPEG files (both recipes)")
    p.add_argument("--e2e-steps", type=int, default=4)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the e2e training step")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print(f"CPU: {cpu_model()}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        root = make_jpegs(Path(tmp) / "jpegs", args.images)
        result = {"cpu": cpu_model(), "threads": 1, **measure(root, args.batch, args.rounds)}
        if args.e2e:  # the tiny CPU recipe (batch 32); ViT-S/16 with the paper's crops (batch 8)
            files = make_jpegs(Path(tmp) / "e2e", 32 * (args.e2e_steps + 1), seed=1)  # enough for every step
            result["e2e"] = [e2e(files, name, b, args.e2e_steps, args.precision, args.threads)
                             for name, b in (("tiny_cpu", 32), ("vit_small", 8))]  # fmt: skip
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
