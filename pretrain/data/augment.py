"""Multi-crop augmentation with per-crop masks (reference §1.1-§1.2).

Global crop 1 is always blurred; global crop 2 is blurred with p=0.1 and solarised with p=0.2; local
crops are blurred with p=0.5. Every crop: RandomResizedCrop (bicubic) -> flip / colour jitter (p=0.8) /
grayscale -> (invert, an extra off by default) -> blur -> (solarise) -> normalise. Every random draw for
an image comes from a seed derived from (run seed, epoch, image index), so a run is reproducible whatever
the number of workers and a resumed run sees exactly the crops and masks it would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image, ImageFilter
from torch.utils.data import Dataset
from torchvision import transforms as T

from ..objective.masks import MaskGenerator
from .folder import IMAGENET_MEAN, IMAGENET_STD, ImageFolderDataset, check_image_root, collate_skip

BICUBIC = T.InterpolationMode.BICUBIC


class RandomPILBlur:
    """PIL Gaussian blur with radius ~ U(0.1, 2.0), applied with probability p."""

    def __init__(self, p: float, radius: tuple[float, float] = (0.1, 2.0)):
        self.p, self.radius = p, radius

    def __call__(self, img: Image.Image) -> Image.Image:
        if torch.rand(()).item() > self.p:
            return img
        r = self.radius[0] + (self.radius[1] - self.radius[0]) * torch.rand(()).item()
        return img.filter(ImageFilter.GaussianBlur(radius=r))


@dataclass(frozen=True)
class CropSpec:
    """One crop kind of the multi-crop recipe (reference §1.1); the fast loader reads these."""

    size: int  # output side in pixels
    scale: tuple[float, float]  # RandomResizedCrop area range
    blur_p: float  # probability of the Gaussian blur
    solarize_p: float  # probability of solarisation (0: the crop has no solarisation step)


class MultiCropAugmentation:
    """PIL image -> list of G global then L local normalised crops.

    `specs` (one `CropSpec` per crop), `jitter`, `jitter_p`, `flip_p`, `ratio`, `grayscale_p`, `invert_p`,
    `rotate_deg` and `blur_radius` state the same recipe as data, for the fast loader (`fastaug.py`).
    """

    def __init__(
        self,
        global_scale=(0.25, 1.0),
        local_scale=(0.05, 0.25),
        n_global: int = 2,
        n_local: int = 10,
        global_size: int = 224,
        local_size: int = 96,
        grayscale_p: float = 0.2,
        invert_p: float = 0.0,
        rotate_deg: float = 0.0,
        blur_radius: tuple[float, float] = (0.1, 2.0),
    ):
        self.jitter = T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)
        self.jitter_p, self.flip_p, self.ratio = 0.8, 0.5, (3 / 4, 4 / 3)  # ratio: RandomResizedCrop's default
        self.grayscale_p, self.invert_p, self.rotate_deg = grayscale_p, invert_p, rotate_deg
        self.blur_radius = tuple(blur_radius)
        first = CropSpec(global_size, tuple(global_scale), blur_p=1.0, solarize_p=0.0)
        other = CropSpec(global_size, tuple(global_scale), blur_p=0.1, solarize_p=0.2)
        local = CropSpec(local_size, tuple(local_scale), blur_p=0.5, solarize_p=0.0)
        self.specs = [first] + [other] * (n_global - 1) + [local] * n_local
        colour = [
            T.RandomHorizontalFlip(p=self.flip_p),
            T.RandomApply([self.jitter], p=self.jitter_p),
            T.RandomGrayscale(p=grayscale_p),
        ]
        if invert_p > 0:  # one torch.rand draw per crop, as every other random transform here
            colour.append(T.RandomInvert(p=invert_p))
        normalize = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        pre = [T.RandomRotation(rotate_deg, interpolation=T.InterpolationMode.BILINEAR)] if rotate_deg else []

        def crop(spec: CropSpec) -> T.Compose:
            rrc = T.RandomResizedCrop(spec.size, scale=spec.scale, ratio=self.ratio, interpolation=BICUBIC)
            extra = [RandomPILBlur(spec.blur_p, self.blur_radius)]
            if spec.solarize_p > 0:
                extra.append(T.RandomSolarize(128, p=spec.solarize_p))
            return T.Compose(pre + [rrc, *colour, *extra, *normalize])

        by_kind = {spec: crop(spec) for spec in (first, other, local)}  # one transform object per kind
        self.transforms = [by_kind[spec] for spec in self.specs]

    def __call__(self, img: Image.Image) -> list[torch.Tensor]:
        return [t(img) for t in self.transforms]


class MultiCropDataset(Dataset):
    """Items `(crops, masks)`: G+L crops (C, H, W) and G bool masks (H/g, W/g) for the global crops.

    `patch_size` g is the mask cell in pixels: the backbone's output-token grid (`mask_grid`: the ViT's
    patch size, 32 px for Swin, reference §1.2). Unreadable images give `None` (dropped and counted by
    `collate_skip`). Local-crop masks are not drawn: the student sees local crops unmasked. A dataset's
    root (train/ and val/, or mask folders: `check_image_root`) is refused.
    """

    def __init__(
        self,
        root: str,
        augmentation: MultiCropAugmentation,
        n_global: int,
        patch_size: int,
        mask_args: dict,
        seed: int = 0,
        pred_start_epoch: int = 0,
    ):
        check_image_root(root)
        self.images = ImageFolderDataset(root, labelled=False, on_error="skip")
        self.aug, self.n_global, self.patch_size = augmentation, n_global, patch_size
        self.mask_args, self.seed, self.pred_start_epoch = mask_args, seed, pred_start_epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def item_seed(self, index: int) -> int:
        return ((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index) % (2**62)

    def __getitem__(self, index: int):
        item = self.images[index]
        if item is None:
            return None
        seed = self.item_seed(index)
        with torch.random.fork_rng(devices=[]):  # the caller's RNG stream is left untouched
            torch.default_generator.manual_seed(seed)  # CPU only: torch.manual_seed also queues CUDA seeding
            crops = self.aug(item[0])
        return crops, self.masks(seed, [tuple(c.shape[1:]) for c in crops[: self.n_global]])

    def masks(self, seed: int, sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
        """One bool (H/g, W/g) mask per global crop of (H, W) pixels, from the item's seed."""
        gen = MaskGenerator(**self.mask_args, seed=seed)
        no_mim = self.epoch < self.pred_start_epoch
        p = self.patch_size
        return [torch.from_numpy(gen(h // p, w // p, ratio=0.0 if no_mim else None)) for h, w in sizes]

    def collate_fn(self, device: torch.device):
        """The DataLoader collate for training on `device`: the crops are final, so the plain one."""
        return collate_skip
