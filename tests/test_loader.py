"""The fast multi-crop loader draws what the reference draws and makes the same crops.

Per crop kind (global 1, global 2, local): crop scale and aspect, flip, jitter rate, factors and order,
grey, blur rate and sigma, solarisation, each against the reference definitions (reference §1.1) within
sampling error; the same draws as the reference transforms from the same seed; pixels within rounding of
the PIL path; the same masks; the CPU and device strategies of the colour ops agree exactly.
"""

import math
from itertools import permutations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter, ImageOps
from scipy import stats
from torchvision.transforms import functional as TF

from plumbing import parse_config
from pretrain import MultiCropAugmentation, MultiCropDataset, TrainConfig, TrainingRun
from pretrain.data.colour import (
    COL,
    apply_colour,
    colour_indexed,
    colour_runs,
    contrast,
    gaussian_blur,
    grey,
    hue,
    run_key,
)
from pretrain.data.fastaug import FastCollate, FastMultiCropDataset, RawCrops, draft_factor, draw_params

MASKS = dict(pred_ratio=[0.0, 0.3], pred_ratio_var=[0.0, 0.2])
MEAN, STD = torch.tensor((0.485, 0.456, 0.406)), torch.tensor((0.229, 0.224, 0.225))
KINDS = {"global1": [0], "global2": [1], "local": list(range(2, 12))}  # rows of the paper's 2 + 10 crops


def photo(size=(160, 120), seed=0) -> Image.Image:
    """A crop of scikit-image's astronaut: real colours, edges and flat areas."""
    import skimage.data

    rng = np.random.default_rng(seed)
    a = skimage.data.astronaut()
    y, x = rng.integers(0, 200, 2)
    return Image.fromarray(a[y : y + 300, x : x + 300]).resize(size, Image.BICUBIC)


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    root = tmp_path_factory.mktemp("jpegs")
    for i in range(4):
        photo((160, 120) if i % 2 else (120, 160), seed=i).save(root / f"{i}.jpg", quality=95)
    return root


@pytest.fixture(scope="module")
def draws():
    """The parameter tables of 1500 images (18,000 crops) of a 500 x 375 image, the paper's recipe."""
    aug = MultiCropAugmentation()
    torch.manual_seed(0)
    boxes, tables = [], []
    for _ in range(1500):
        b, _, t = draw_params(aug, 500, 375)
        boxes.append(b)
        tables.append(t)
    return boxes, torch.stack(tables)  # (images, 12, K)


def within(rate: float, p: float, n: int, z: float = 4.0) -> bool:
    return abs(rate - p) <= z * math.sqrt(max(p * (1 - p), 1e-12) / n) + 1e-12


def reference_rrc(rng: np.random.Generator, n: int, scale, W=500, H=375, ratio=(3 / 4, 4 / 3)):
    """RandomResizedCrop's definition (10 tries of area ~ U(scale) and log-uniform aspect, else the
    clamped centre crop), written from the reference, with numpy: (area fraction, w / h) per draw."""
    out = []
    for _ in range(n):
        for _ in range(10):
            area = W * H * rng.uniform(*scale)
            ar = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
            w, h = round(math.sqrt(area * ar)), round(math.sqrt(area / ar))
            if 0 < w <= W and 0 < h <= H:
                break
        else:
            w, h = (W, round(W / ratio[1])) if W / H > ratio[1] else (W, H)
        out.append((w * h / (W * H), w / h))
    return np.array(out)


@pytest.mark.parametrize("kind, scale", [("global1", (0.25, 1.0)), ("global2", (0.25, 1.0)), ("local", (0.05, 0.25))])
def test_crop_scale_and_aspect_follow_the_definition(draws, kind, scale):
    boxes, _ = draws
    ours = np.array([(h * w / (500 * 375), w / h) for b in boxes for c in KINDS[kind] for (_, _, h, w) in [b[c]]])
    ref = reference_rrc(np.random.default_rng(1), 3000, scale)
    assert stats.ks_2samp(ours[:, 0], ref[:, 0]).pvalue > 1e-3
    assert stats.ks_2samp(np.log(ours[:, 1]), np.log(ref[:, 1])).pvalue > 1e-3
    assert scale[0] - 0.01 <= ours[:, 0].min() and ours[:, 0].max() <= scale[1] + 0.01


@pytest.mark.parametrize(
    "kind, blur_p, solarize_p", [("global1", 1.0, 0.0), ("global2", 0.1, 0.2), ("local", 0.5, 0.0)]
)
def test_rates_per_crop_kind(draws, kind, blur_p, solarize_p):
    t = draws[1][:, KINDS[kind]].flatten(0, 1)  # (n, K)
    n = len(t)
    for col, p in (("flip", 0.5), ("jitter", 0.8), ("blur", blur_p), ("solarize", solarize_p), ("invert", 0.0)):
        assert within(float(t[:, COL[col]].mean()), p, n), col
    assert within(float(t[:, COL["grey"]].mean()), 0.2, n)
    sigma = t[t[:, COL["blur"]] > 0, COL["sigma"]].numpy()
    assert stats.kstest(sigma, stats.uniform(0.1, 1.9).cdf).pvalue > 1e-3  # PIL radius ~ U(0.1, 2.0)


@pytest.mark.parametrize("kind", list(KINDS))
def test_jitter_factors_and_order(draws, kind):
    t = draws[1][:, KINDS[kind]].flatten(0, 1)
    t = t[t[:, COL["jitter"]] > 0]
    for col, lo, hi in (("brightness", 0.6, 1.4), ("contrast", 0.6, 1.4), ("saturation", 0.8, 1.2), ("hue", -0.1, 0.1)):
        assert stats.kstest(t[:, COL[col]].numpy(), stats.uniform(lo, hi - lo).cdf).pvalue > 1e-3, col
    orders = t[:, COL["order0"] : COL["order3"] + 1].long().tolist()
    counts = [orders.count(list(p)) for p in permutations(range(4))]  # all 24 orders equally likely
    assert sum(counts) == len(orders)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_same_draws_masks_and_pixels_as_the_reference(jpegs):
    """Same seed -> same torch draws (RNG state after the item), same masks, crops within rounding."""
    aug = MultiCropAugmentation(n_global=2, n_local=3, global_size=64, local_size=32)
    args = (str(jpegs), aug, 2, 8, MASKS)
    ref, fast = MultiCropDataset(*args, seed=5), FastMultiCropDataset(*args, seed=5)
    collate = FastCollate(2, colour_here=True)
    for i in range(len(ref)):
        crops, masks = ref[i]
        (fcrops, fmasks), skipped = collate([fast[i]])
        assert skipped == 0 and all(torch.equal(a, b[0]) for a, b in zip(masks, fmasks, strict=True))
        for a, b in zip(crops, fcrops, strict=True):
            d = ((a - b[0]) * STD.view(3, 1, 1) * 255).abs()  # in levels of the uint8 image
            assert d.mean() < 3.0 and d.flatten().quantile(0.99) < 24, (i, d.mean(), d.max())
        other, _ = collate([FastMultiCropDataset(*args, seed=6)[i]])  # another seed: far apart
        far = [float(((a - b[0]) * STD.view(3, 1, 1) * 255).abs().mean()) for a, b in zip(crops, other[0], strict=True)]
        assert min(far) > 3.0
    img = Image.open(jpegs / "0.jpg")
    for seed in range(3):
        torch.manual_seed(seed)
        aug(img.convert("RGB"))
        after_ref = torch.get_rng_state()
        torch.manual_seed(seed)
        draw_params(aug, *img.size)
        assert torch.equal(after_ref, torch.get_rng_state())  # the same number and kinds of draws


@pytest.mark.parametrize("name", ["brightness", "contrast", "saturation", "hue", "grey", "blur", "solarize"])
def test_each_colour_op_matches_pil(name):
    img = photo((96, 96), seed=3)
    x = TF.pil_to_tensor(img)[None].float() / 255
    one = lambda v: torch.tensor([v])  # noqa: E731
    cases = {
        "brightness": [(TF.adjust_brightness(img, 1.3), (x * 1.3).clamp(0, 1))],
        "contrast": [(TF.adjust_contrast(img, f), contrast(x.clone(), one(f))) for f in (0.6, 1.4)],
        "saturation": [(TF.adjust_saturation(img, 0.8), None)],
        "hue": [(TF.adjust_hue(img, h), hue(x.clone(), one(h))) for h in (-0.1, 0.04, 0.099)],
        "grey": [(TF.rgb_to_grayscale(img, 3), grey(x).expand(-1, 3, -1, -1))],
        "blur": [(img.filter(ImageFilter.GaussianBlur(r)), gaussian_blur(x, one(r))) for r in (0.1, 0.7, 2.0)],
        "solarize": [(ImageOps.solarize(img, 128), None)],
    }[name]
    for pil, ours in cases:
        if name == "saturation":
            ours = (0.8 * x + 0.2 * grey(x)).clamp(0, 1)
        if name == "solarize":
            ours = torch.where(x * 255 >= 128, 1 - x, x)
        d = (TF.pil_to_tensor(pil)[None].float() - ours * 255).abs()
        assert d.mean() < 1.0 and d[..., 4:-4, 4:-4].max() < 8, (name, d.mean(), d.max())


def test_jitter_runs_in_each_crops_own_order():
    """Two crops with the same factors in opposite orders match PIL applied in those orders."""
    img = photo((64, 64), seed=4)
    x = TF.pil_to_tensor(img)[None].float().repeat(2, 1, 1, 1) / 255
    table = torch.zeros(2, len(COL), dtype=torch.float64)
    table[:, COL["jitter"]] = 1
    table[0, COL["order0"] : COL["order3"] + 1] = torch.tensor([0.0, 1, 2, 3])
    table[1, COL["order0"] : COL["order3"] + 1] = torch.tensor([3.0, 2, 1, 0])
    table[:, COL["brightness"] : COL["hue"] + 1] = torch.tensor([1.4, 0.6, 1.2, 0.1])
    ours = colour_indexed(x.clone(), table) * 255
    ops = [lambda i: TF.adjust_brightness(i, 1.4), lambda i: TF.adjust_contrast(i, 0.6),
           lambda i: TF.adjust_saturation(i, 1.2), lambda i: TF.adjust_hue(i, 0.1)]  # fmt: skip
    pil = {}
    for order in ((0, 1, 2, 3), (3, 2, 1, 0)):
        out = img
        for op in order:
            out = ops[op](out)
        pil[order] = TF.pil_to_tensor(out).float()
    for row, own, other in ((0, (0, 1, 2, 3), (3, 2, 1, 0)), (1, (3, 2, 1, 0), (0, 1, 2, 3))):
        d_own, d_other = ((pil[o] - ours[row]).abs().mean() for o in (own, other))
        assert d_own < 2.0 and d_own < d_other / 2, (row, d_own, d_other)


def test_cpu_and_device_strategies_agree_exactly():
    aug = MultiCropAugmentation(n_global=2, n_local=4, global_size=32, local_size=16, invert_p=0.3)
    torch.manual_seed(0)
    table = torch.cat([draw_params(aug, 80, 60)[2] for _ in range(12)])  # (72, K)
    crops = torch.randint(0, 256, (len(table), 3, 16, 16), dtype=torch.uint8)
    whole = apply_colour(crops, table, MEAN, STD, chunk=0)  # colour_indexed, all rows at once
    for chunk in (5, 50):  # colour_runs in run_key order
        assert torch.equal(apply_colour(crops, table, MEAN, STD, chunk=chunk), whole)
    order = torch.argsort(run_key(table), stable=True)
    x = crops[order].float() / 255
    assert torch.equal(colour_runs(x.clone(), table[order]), colour_indexed(x.clone(), table[order]))


def test_collate_is_crop_major_and_device_finish_equals_worker_finish(jpegs):
    aug = MultiCropAugmentation(n_global=2, n_local=2, global_size=32, local_size=16)
    ds = FastMultiCropDataset(str(jpegs), aug, 2, 8, MASKS, seed=1)
    items = [ds[i] for i in range(3)] + [None]
    raw, skipped = FastCollate(2, colour_here=False)(items)
    (crops, masks), skipped2 = FastCollate(2, colour_here=True)(items)
    assert isinstance(raw, RawCrops) and skipped == skipped2 == 1
    g, loc, m = raw.finish(torch.device("cpu"))
    assert torch.equal(torch.cat(crops[:2]), g) and torch.equal(torch.cat(crops[2:]), loc)
    assert all(torch.equal(a, b) for a, b in zip(masks, m, strict=True))
    assert torch.equal(raw.globals_[1 * 3 + 2], items[2][0][1])  # crop 1 of image 2 at row 1*B + 2
    assert torch.equal(raw.locals_[1 * 3 + 0], items[0][1][1])


def test_draft_decoding_of_large_jpegs(tmp_path):
    """A big JPEG decodes reduced in the DCT domain when every crop box stays >= its output side."""
    assert draft_factor([(0, 0, 900, 700), (0, 0, 300, 250)], [224, 96]) == 2
    assert draft_factor([(0, 0, 2000, 1900), (0, 0, 800, 800)], [224, 96]) == 4  # 1/8 is too coarse
    assert draft_factor([(0, 0, 400, 400), (0, 0, 100, 100)], [224, 96]) == 1
    photo((1200, 900), seed=2).save(tmp_path / "big.jpg", quality=95)
    aug = MultiCropAugmentation(n_global=2, n_local=2, global_size=48, local_size=24, global_scale=(0.5, 1.0),
                                local_scale=(0.3, 0.5))  # fmt: skip
    args = (str(tmp_path), aug, 2, 8, MASKS)
    ref, fast = MultiCropDataset(*args, seed=0), FastMultiCropDataset(*args, seed=0)
    with Image.open(tmp_path / "big.jpg") as im:
        torch.manual_seed(ref.item_seed(0))
        boxes, _, _ = draw_params(aug, *im.size)
    assert draft_factor(boxes, [48, 48, 24, 24]) == 4  # the path under test is taken
    (fcrops, _), _ = FastCollate(2, colour_here=True)([fast[0]])
    for a, b in zip(ref[0][0], fcrops, strict=True):
        assert ((a - b[0]) * STD.view(3, 1, 1) * 255).abs().mean() < 3.0


def test_unreadable_images_are_skipped_and_loader_key_checked(tmp_path):
    photo().save(tmp_path / "ok.jpg")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG truncated")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "ok.jpg").read_bytes()[:600])
    aug = MultiCropAugmentation(n_global=2, n_local=0, global_size=32)
    ds = FastMultiCropDataset(str(tmp_path), aug, 2, 8, MASKS)
    ref = MultiCropDataset(str(tmp_path), aug, 2, 8, MASKS)
    assert [ds[i] is None for i in range(3)] == [ref[i] is None for i in range(3)] == [True, True, False]
    batch, skipped = FastCollate(2, colour_here=True)([ds[i] for i in range(3)])
    assert skipped == 2 and batch[0][0].shape == (1, 3, 32, 32)
    with pytest.raises(Exception, match="loader must be fast or reference"):
        TrainingRun(parse_config(TrainConfig, [f"data_path={tmp_path}", "loader=pil"]))


def test_rotation_extra_matches_the_reference(jpegs):
    aug = MultiCropAugmentation(n_global=2, n_local=1, global_size=48, local_size=24, rotate_deg=90, invert_p=0.5)
    args = (str(jpegs), aug, 2, 8, MASKS)
    ref, fast = MultiCropDataset(*args, seed=2), FastMultiCropDataset(*args, seed=2)
    (fcrops, _), _ = FastCollate(2, colour_here=True)([fast[1]])
    for a, b in zip(ref[1][0], fcrops, strict=True):
        assert ((a - b[0]) * STD.view(3, 1, 1) * 255).abs().mean() < 3.0


def test_rotated_box_equals_rotating_the_whole_image_then_cropping():
    from pretrain.data.fastaug import as_tensor, rotated_box

    img = photo((150, 110), seed=5)
    for angle, (t, l, h, w) in ((33.3, (10, 20, 60, 45)), (-170.2, (0, 0, 110, 150)), (91.7, (40, 90, 20, 50))):
        full = as_tensor(TF.rotate(img, angle, TF.InterpolationMode.BILINEAR, False, None, 0))
        assert torch.equal(rotated_box(img, angle, (t, l, h, w)), full[:, t : t + h, l : l + w])
