"""Configs of the robustness tests (imports no torch: `python -m analysis.robustness.<test> --help` is instant).

Every test takes the keys of the evaluation interface (`evalkit.EvalConfig`). A classifier test reads
`classifier` (a linear head from `python -m eval_linear` or a fine-tuned classifier from
`python -m finetune`, through `evalkit.load_classifier`); `pretrained` is the backbone file a
linear head was trained on. Part-wise probing trains its own heads on the `pretrained` backbone.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from evalkit import EvalConfig
from plumbing import ConfigError, check_range

REFERENCE_GRIDS = ["2x2", "2x4", "4x4", "4x8", "8x8", "14x14", "16x16"]
ORDERS = ("top", "bottom")
CORRUPTIONS_EXTRA = "pip install 'ibot-suite[robustness]'"


@dataclass
class RobustConfig(EvalConfig):
    """Keys every classifier test has; each test adds its own."""

    classifier: str = ""  # the classifier file: a linear head (eval_linear) or a fine-tuned classifier (finetune)
    pretrained: str = ""  # the backbone a linear-head classifier was trained on (not needed for a fine-tuned one)
    data_path: str = ""  # the evaluation images: an ImageFolder (one sub-folder per class)
    image_size: int = 0  # input pixels: 0 = the size recorded in the classifier file, else 224
    max_images: int = 0  # 0 = all; else a seeded random subset of this many images
    progress: bool = True  # show progress bars

    def check(self) -> None:
        """Given files must exist (before anything is loaded); the command also requires `classifier`
        (`common.classifier_results`), an in-process run has its classifier in memory."""
        for key in ("classifier", "pretrained"):
            if getattr(self, key) and not Path(getattr(self, key)).exists():  # a file, or an hf export folder
                raise ConfigError(f"file not found: {key}={getattr(self, key)} (nothing was loaded)")
        self.check_numbers()

    def check_numbers(self) -> None:
        """Every number in its range, NaN and infinities refused (each test adds its own keys)."""
        check_range(self, ("image_size", "max_images"), ge=0)


@dataclass
class OcclusionConfig(RobustConfig):
    """Top-1 under random and attention-guided (salient / non-salient) patch drop."""

    output_dir: str = "runs/analysis.robustness.occlusion"  # run folder: occlusion.png, config.yaml, results.json
    batch_size_per_gpu: int = 1024  # images per process and step (the authors'; one random cell subset per batch)
    cell_size: int = 16  # pixels per cell of the random-drop grid (0: the backbone's token size, Swin 32)
    steps: int = 10  # k = 0 .. steps-1 drops floor(k * N / steps) cells
    random_drop: bool = True  # evaluate the random drop
    salient: bool = True  # evaluate the salient and non-salient drop
    lambdas: list[float] = field(default_factory=lambda: [round(0.1 * i, 1) for i in range(1, 11)])  # attention masses
    attention_head: int = -1  # -1: mean over heads; else that head's map
    attention_backbone: str = ""  # another backbone file for the attention (the evaluated one if empty)

    def check(self) -> None:
        """The common classifier checks and the occlusion settings."""
        super().check()
        self.check_settings()

    def check_settings(self) -> None:
        """The checks of the test's own keys (also run by `run_occlusion` on an in-memory config)."""
        if not (self.random_drop or self.salient):
            raise ConfigError("nothing to do: random_drop and salient are both false")
        if self.steps < 1 or any(not 0 < lam <= 1 for lam in self.lambdas):
            raise ConfigError("steps must be >= 1 and every lambda in (0, 1]")
        self.check_numbers()

    def check_numbers(self) -> None:
        """The common numbers and the occlusion's own."""
        super().check_numbers()
        check_range(self, "cell_size", ge=0)
        check_range(self, "attention_head", ge=-1)


@dataclass
class ShuffleConfig(RobustConfig):
    """Top-1 when the image's cells are permuted at random."""

    output_dir: str = "runs/analysis.robustness.shuffle"  # run folder: shuffle.png, config.yaml, results.json
    batch_size_per_gpu: int = 1024  # images per process and step (the authors'; one permutation per batch)
    grids: list[str] = field(default_factory=lambda: list(REFERENCE_GRIDS))  # rows x columns of cells, HxW


@dataclass
class CorruptionsConfig(RobustConfig):
    """Top-1 error per common corruption and severity; CE, mean error and the AlexNet-normalised mCE."""

    output_dir: str = "runs/analysis.robustness.corruptions"  # run folder: corruptions.png, config.yaml, results.json
    batch_size_per_gpu: int = 32  # images per process and step (the authors')
    imagenet_c: str = ""  # pre-corrupted root <corruption>/<severity>/<class>/...; else data_path on the fly
    corruptions: list[str] = field(default_factory=lambda: ["all"])  # names, or the groups all / common / validation
    severities: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])  # 1..5
    alexnet_errors: dict[str, float] = field(default_factory=dict)  # corruption -> AlexNet error (fraction)
    standard_alexnet: bool = False  # fill in the 15 published AlexNet errors (data/alexnet_errors.json)

    def check(self) -> None:
        """On-the-fly corruptions need the optional package (one line naming the extra when missing)."""
        super().check()
        if not self.imagenet_c:
            require_imagecorruptions()

    def check_numbers(self) -> None:
        """The common numbers, severities 1..5 and AlexNet errors as fractions."""
        super().check_numbers()
        check_range(self, "severities", ge=1, le=5)
        bad = {k: v for k, v in self.alexnet_errors.items() if not 0 <= v <= 1}  # NaN fails here too
        if bad:
            raise ConfigError(f"alexnet_errors are fractions in [0, 1]; got {bad}")


def require_imagecorruptions() -> None:
    """The optional package of on-the-fly corruptions; ConfigError naming the extra when it is missing."""
    try:
        importlib.import_module("imagecorruptions")
    except ImportError:
        raise ConfigError(
            f"corruptions on the fly need the optional package imagecorruptions: {CORRUPTIONS_EXTRA}"
        ) from None


@dataclass
class BackgroundsConfig(RobustConfig):
    """Backgrounds challenge (ImageNet-9): top-1 per variant, BG-gap and % vulnerable foregrounds."""

    output_dir: str = "runs/analysis.robustness.backgrounds"  # run folder: backgrounds.png, config.yaml, results.json
    batch_size_per_gpu: int = 32  # images per process and step (the authors')
    data_path: str = ""  # root of the variant folders (IN-9: <root>/<variant>/val/<class>/...)
    variants: list[str] = field(default_factory=list)  # variants evaluated; empty: every folder but fg_mask
    class_map: str = "in_to_in9"  # in_to_in9 (shipped: ImageNet-1k -> IN-9) | names | identity | a JSON map file
    challenge: bool = False  # paste every foreground on every background (the challenge)
    fg_dir: str = ""  # foregrounds of the challenge (default <data_path>/original[/val])
    mask_dir: str = ""  # their masks (default <data_path>/fg_mask[/val])
    bg_dir: str = ""  # backgrounds of the challenge (default <data_path>/only_bg_t[/val])
    max_foregrounds: int = 0  # 0 = all (the challenge costs foregrounds x backgrounds forwards)
    max_backgrounds: int = 0  # 0 = all

    def check_numbers(self) -> None:
        """The common numbers and the challenge's caps."""
        super().check_numbers()
        check_range(self, ("max_foregrounds", "max_backgrounds"), ge=0)


@dataclass
class NaturalAdvConfig(RobustConfig):
    """Accuracy and calibration on a class subset (ImageNet-A, ImageNet-R)."""

    output_dir: str = "runs/analysis.robustness.natural_adv"  # run folder: natural_adv.png, config.yaml, results.json
    batch_size_per_gpu: int = 128  # images per process and step (the authors')
    class_map: str = "names"  # names | identity | imagenet_a | imagenet_r (timm's 200-class lists) | a JSON map file
    bin_size: int = 100  # calibration bins of this many samples

    def check_numbers(self) -> None:
        """The common numbers and the bin size."""
        super().check_numbers()
        check_range(self, "bin_size", ge=1)


@dataclass
class PartwiseConfig(EvalConfig):
    """Part-wise probing: linear heads on the mean of the k most (least) attended patches."""

    pretrained: str = ""  # the backbone file: any file load_backbone reads (exported, training checkpoint, authors')
    data_path: str = ""  # ImageNet-style root with train/ and val/ class folders
    output_dir: str = "runs/analysis.robustness.partwise"  # run folder: partwise.png, tensorboard/, results.json
    batch_size_per_gpu: int = 128  # images per process and step (the linear probe's; lrs scale with it / 256)
    image_size: int = 224  # input pixels
    ks: list[int] = field(default_factory=lambda: [1, 7, 14, 56, 112, 196])  # patches averaged (k above N skipped)
    orders: list[str] = field(default_factory=lambda: list(ORDERS))  # top (most attended) and / or bottom
    final_norm: bool = False  # the authors' tokens skip the final LayerNorm
    lrs: list[float] = field(default_factory=list)  # learning rates of the heads (empty: the probe's 45 paper lrs)
    wds: list[float] = field(default_factory=lambda: [0.0])  # weight decays of the heads
    epochs: int = 100  # training epochs of every (order, k)
    momentum: float = 0.9  # SGD momentum
    progress: bool = True  # show progress bars

    def check(self) -> None:
        """Orders and k values (also run by `run_partwise` on an in-memory config)."""
        bad = [o for o in self.orders if o not in ORDERS]
        if bad:
            raise ConfigError(f"unknown order {bad[0]!r}; valid: {', '.join(ORDERS)}")
        if any(k < 1 for k in self.ks):
            raise ConfigError(f"every k must be >= 1, got {self.ks}")
        check_range(self, ("image_size", "epochs"), ge=1)
        check_range(self, "lrs", gt=0)
        check_range(self, "wds", ge=0)
        check_range(self, "momentum", ge=0, lt=1)
