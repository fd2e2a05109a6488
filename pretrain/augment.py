"""Multi-crop augmentation with per-crop masks (reference §1.1-§1.2).

Global crop 1 is always blurred; global crop 2 is blurred with p=0.1 and solarised with p=0.2; local
crops are blurred with p=0.5. Every crop: RandomResizedCrop (bicubic) -> flip / colour jitter (p=0.8) /
grayscale -> (invert, an extra off by default) -> blur -> (solarise) -> normalise. Every random draw for
an image comes from a seed derived from (run seed, epoch, image index), so a run is reproducible whatever
the number of workers and a resumed run sees exactly the crops and masks it would have seen.
"""

from __future__ import annotations

import torch
from PIL import Image, ImageFilter
from torch.utils.data import Dataset
from torchvision import transforms as T

from .data import IMAGENET_MEAN, IMAGENET_STD, ImageFolderDataset
from .masks import MaskGenerator

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


class MultiCropAugmentation:
    """PIL image -> list of G global then L local normalised crops."""

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
        colour = [
            T.RandomHorizontalFlip(p=0.5),
            T.RandomApply([T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)], p=0.8),
            T.RandomGrayscale(p=grayscale_p),
        ]
        if invert_p > 0:  # one torch.rand draw per crop, as every other random transform here
            colour.append(T.RandomInvert(p=invert_p))
        normalize = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        pre = [T.RandomRotation(rotate_deg, interpolation=T.InterpolationMode.BILINEAR)] if rotate_deg else []

        def crop(size, scale, extra):
            rrc = T.RandomResizedCrop(size, scale=tuple(scale), interpolation=BICUBIC)
            return T.Compose(pre + [rrc, *colour, *extra, *normalize])

        r = tuple(blur_radius)
        first = crop(global_size, global_scale, [RandomPILBlur(1.0, r)])
        other = crop(global_size, global_scale, [RandomPILBlur(0.1, r), T.RandomSolarize(128, p=0.2)])
        local = crop(local_size, local_scale, [RandomPILBlur(0.5, r)])
        self.transforms = [first] + [other] * (n_global - 1) + [local] * n_local

    def __call__(self, img: Image.Image) -> list[torch.Tensor]:
        return [t(img) for t in self.transforms]


class MultiCropDataset(Dataset):
    """Items `(crops, masks)`: G+L crops (C, H, W) and G bool masks (H/g, W/g) for the global crops.

    `patch_size` g is the mask cell in pixels: the backbone's output-token grid (`mask_grid`: the ViT's
    patch size, 32 px for Swin, reference §1.2). Unreadable images give `None` (dropped and counted by
    `collate_skip`). Local-crop masks are not drawn: the student sees local crops unmasked.
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
        gen = MaskGenerator(**self.mask_args, seed=seed)
        no_mim = self.epoch < self.pred_start_epoch
        p = self.patch_size
        masks = [
            torch.from_numpy(gen(c.shape[1] // p, c.shape[2] // p, ratio=0.0 if no_mim else None))
            for c in crops[: self.n_global]
        ]
        return crops, masks
