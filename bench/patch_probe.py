"""How much of an object's class a backbone's frozen patch tokens hold, on the demo world.

Logistic regression (scikit-learn, L-BFGS) on the last block's patch tokens (final norm on), each token
labelled with the class under its centre pixel, foreground tokens only; prints the val accuracy per model
(chance = 1 / classes). `part=ade` reads the world's ADE-style scenes (train -> val); `part=classification`
the classification images with their masks (the first `per_class` of each class, train -> val) and adds
the [CLS] token's accuracy. bench/README.md, "The demo's dense rows", holds what it measured.

    python bench/patch_probe.py world=demo_out/world models=demo/reference/vit_tiny_silhouette.pth,X.pth
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pretrain import IMAGENET_MEAN, IMAGENET_STD, load_backbone, open_rgb  # noqa: E402
from segmentation import ade_pairs  # noqa: E402

MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def normalised(paths: list[Path]) -> torch.Tensor:
    """(N, 3, H, W) images at ImageNet normalisation, as the evaluations feed them."""
    x = torch.stack([torch.from_numpy(np.array(open_rgb(p))).permute(2, 0, 1).float() / 255 for p in paths])
    return (x - MEAN) / STD


def ade_split(world: Path, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Images and label maps (0 = background, k + 1 = class k) of one split of the ADE-style scenes."""
    pairs = ade_pairs(world / "ade", split)
    y = torch.stack([torch.from_numpy(np.array(Image.open(label))).long() for _, label in pairs])
    return normalised([image for image, _ in pairs]), y, None


def classification_split(world: Path, split: str, per_class: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images, label maps from the object masks, and image labels of the first `per_class` images per class."""
    root = world / "classification"
    paths, ys, cls = [], [], []
    for k, folder in enumerate(sorted(p for p in (root / split).iterdir() if p.is_dir())):
        for p in sorted(folder.glob("*.png"))[:per_class]:
            mask = np.array(Image.open(root / "masks" / split / folder.name / p.name)) > 0
            paths.append(p)
            ys.append(torch.from_numpy(mask.astype(np.int64) * (k + 1)))
            cls.append(k)
    return normalised(paths), torch.stack(ys), torch.tensor(cls)


def tokens(backbone, x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Foreground patch tokens with their classes, and every image's [CLS] token."""
    with torch.no_grad():
        out = torch.cat([backbone.get_intermediate_layers(b, n=1)[-1] for b in x.split(64)])
    grid = int(round((out.shape[1] - 1) ** 0.5))
    centre = ((torch.arange(grid) + 0.5) * x.shape[-1] / grid).long()
    label = y[:, centre][:, :, centre].reshape(len(x), -1)
    fg = label > 0
    return out[:, 1:][fg].numpy(), (label[fg] - 1).numpy(), out[:, 0].numpy()


def main(argv: list[str]) -> None:
    args = dict(a.split("=", 1) for a in argv)
    world, part, per_class = Path(args["world"]), args.get("part", "ade"), int(args.get("per_class", 50))
    splits = {s: ade_split(world, s) if part == "ade" else classification_split(world, s, per_class)
              for s in ("train", "val")}  # fmt: skip
    warnings.filterwarnings("ignore")  # L-BFGS convergence notes
    for path in args["models"].split(","):
        backbone, _ = load_backbone(path)
        feats = {s: tokens(backbone, x, y) for s, (x, y, _) in splits.items()}
        clf = LogisticRegression(max_iter=1000).fit(feats["train"][0], feats["train"][1])
        line = f"{Path(path).name}: patch tokens {100 * clf.score(feats['val'][0], feats['val'][1]):.1f} %"
        line += f" ({len(feats['train'][1])} train / {len(feats['val'][1])} val tokens)"
        if part == "classification":
            clf = LogisticRegression(max_iter=1000).fit(feats["train"][2], splits["train"][2].numpy())
            line += f"; [CLS] {100 * clf.score(feats['val'][2], splits['val'][2].numpy()):.1f} %"
        print(line, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
