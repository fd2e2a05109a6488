"""Configs of the analysis tools (imports no torch: `python -m analysis.<tool> --help` answers at once).

Every tool takes the keys of the evaluation interface (`evalkit.EvalConfig`): `pretrained` is the
backbone file, `data_path` the folder (searched recursively) or the image to analyse.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from evalkit import EvalConfig
from plumbing import ConfigError, check_range

RESIZE_MODES = ("square", "short_side", "none")
CORRESPONDENCE_MODES = ("instance", "class")
SIMILARITIES = ("dot", "cosine")
PATTERN_TYPES = ("patch", "cls")


def _one_of(key: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"{key} must be one of {', '.join(valid)}, got {value!r}")


@dataclass
class AnalysisConfig(EvalConfig):
    """Keys every analysis tool has; each tool adds its own."""

    pretrained: str = ""  # the backbone file: any file load_backbone reads (exported, training checkpoint, authors')
    data_path: str = ""  # the folder (searched recursively) or the image file to analyse
    max_images: int = 0  # images analysed: the first N in sorted order (0 = all)
    progress: bool = True  # show progress bars


@dataclass
class AttentionConfig(AnalysisConfig):
    """Last-block [CLS] attention maps per head, their 60%-mass masks and Jaccard with object masks."""

    output_dir: str = "runs/analysis.attention"  # run folder: figures, config.yaml, results.json
    precision: str = "fp32"  # fp32 as the authors' script (bf16 moves which patches the threshold keeps)
    batch_size_per_gpu: int = 16  # images per forward pass with resize=square (other modes: one at a time)
    masks: str = ""  # folder of binary foreground masks (0 / 255 PNG) at the images' relative paths
    resize: str = "square"  # square: image_size x image_size (the authors' default) | short_side | none
    image_size: int = 480  # pixels (square side, or the shorter side with resize=short_side)
    threshold: float = 0.6  # attention mass kept by the masks
    max_figures: int = 8  # images drawn; every image is scored

    def check(self) -> None:
        """Keys with a fixed set of values (ConfigError: one line, exit 2 before any work)."""
        _one_of("resize", self.resize, RESIZE_MODES)
        check_range(self, "threshold", gt=0, le=1)
        check_range(self, "image_size", ge=1)
        check_range(self, "max_figures", ge=0)


@dataclass
class CorrespondenceConfig(AnalysisConfig):
    """Sparse patch correspondence between two views of an image, or two images of a class."""

    output_dir: str = "runs/analysis.correspondence"  # run folder: figures, config.yaml, results.json
    batch_size_per_gpu: int = 16  # image pairs per forward pass
    seed: int = 1  # seed of the random views (the authors' seed)
    images: list[str] = field(default_factory=list)  # overrides data_path: several folders/files (a stereo pair)
    mode: str = "instance"  # instance (two views of one image) | class (two images of one folder)
    image_size: int = 224  # views / images are image_size x image_size
    crop_scale_min: float = 0.4  # random resized crop scale range (crop_scale_min, 1)
    views_per_image: int = 1  # instance mode: view pairs drawn per image
    topk: int = 12  # pairs drawn per figure
    eval_radius: int = 0  # a match counts within this many grid cells (Chebyshev) of the true patch
    similarity: str = "dot"  # dot (the authors') | cosine
    max_figures: int = 8  # pairs drawn; every pair is scored

    def check(self) -> None:
        """Keys with a fixed set of values (ConfigError: one line, exit 2 before any work)."""
        _one_of("mode", self.mode, CORRESPONDENCE_MODES)
        _one_of("similarity", self.similarity, SIMILARITIES)
        check_range(self, ("image_size", "views_per_image", "topk"), ge=1)
        check_range(self, ("eval_radius", "max_figures"), ge=0)
        check_range(self, "crop_scale_min", gt=0, le=1)


@dataclass
class PatternsConfig(AnalysisConfig):
    """Top-k patches (or images) of the iBOT head's most populated prototypes; pretrained must hold the head."""

    output_dir: str = "runs/analysis.patterns"  # run folder: bank, figures, config.yaml, results.json
    batch_size_per_gpu: int = 16  # images per forward pass
    type: str = "patch"  # patch | cls: the tokens assigned to prototypes
    resize_size: int = 256  # shorter side, then a centre crop of image_size (the authors': 256 / 224)
    image_size: int = 224  # side of the centre crop
    num_prototypes: int = 20  # most populated prototypes drawn (the authors' show_pics)
    topk: int = 36  # patches / images per prototype
    window: int = 5  # context in patches around a drawn patch
    dark_value: float = 40.0  # skip crops whose mean HSV value (0-255) is <= this

    def check(self) -> None:
        """Keys with a fixed set of values (ConfigError: one line, exit 2 before any work)."""
        _one_of("type", self.type, PATTERN_TYPES)
        check_range(self, ("resize_size", "image_size", "num_prototypes", "topk"), ge=1)
        check_range(self, "window", ge=0)
        check_range(self, "dark_value", ge=0, le=255)


@dataclass
class PCAConfig(AnalysisConfig):
    """The first three principal components of patch features shown as RGB."""

    output_dir: str = "runs/analysis.pca"  # run folder: pca.png, config.yaml, results.json
    batch_size_per_gpu: int = 16  # images per forward pass with resize=square (other modes: one at a time)
    images: list[str] = field(default_factory=list)  # overrides data_path: several folders and/or image files
    resize: str = "short_side"  # short_side (aspect kept) | square | none
    image_size: int = 448  # pixels (the shorter side, or the square side)
    joint: bool = True  # one PCA over all images (else one per image)
    foreground: bool = False  # separate the foreground by thresholding the first component
    fg_threshold: float = 0.5  # cut on the min-max scaled first component
    max_figures: int = 8  # images drawn (all images enter the joint PCA)

    def check(self) -> None:
        """Keys with a fixed set of values (ConfigError: one line, exit 2 before any work)."""
        _one_of("resize", self.resize, RESIZE_MODES)
        check_range(self, "image_size", ge=1)
        check_range(self, "max_figures", ge=0)
        check_range(self, "fg_threshold", ge=0, le=1)


@dataclass
class ExploreConfig(AnalysisConfig):
    """One self-contained HTML page to explore a backbone on images: [CLS] attention per head of chosen
    layers, PCA colours, click a patch for its cosine similarity over every image and its nearest patches."""

    output_dir: str = "runs/analysis.explore"  # run folder: explore.html, config.yaml, results.json
    precision: str = "fp32"  # fp32 as analysis.attention (bf16 moves which patches the 60% masks keep)
    batch_size_per_gpu: int = 16  # images per forward pass with resize=square (other modes: one at a time)
    resize: str = "square"  # square: image_size x image_size (as analysis.attention) | short_side | none
    image_size: int = 480  # pixels (square side, or the shorter side with resize=short_side)
    layers: list[int] = field(default_factory=lambda: [-1])  # blocks whose [CLS] attention is shown (-1: last)
    threshold: float = 0.6  # attention mass kept by the outlined masks (as analysis.attention)
    joint: bool = True  # one PCA over all images (else one per image), as analysis.pca
    fg_threshold: float = 0.5  # foreground cut on the min-max scaled first component, as analysis.pca
    feature_dims: int = 96  # similarity features: projected on their top N directions, float16 (0 = all dims)
    topk: int = 10  # nearest patches listed for a clicked patch
    jpeg_quality: int = 90  # the input images are embedded as JPEG (display only; every number uses the pixels)

    def check(self) -> None:
        """Keys with a fixed set of values (ConfigError: one line, exit 2 before any work)."""
        _one_of("resize", self.resize, RESIZE_MODES)
        if not self.layers:
            raise ConfigError("layers must name at least one block, e.g. layers=[-1]")
        check_range(self, "threshold", gt=0, le=1)
        check_range(self, "feature_dims", ge=0)
        check_range(self, ("topk", "image_size"), ge=1)
        check_range(self, "jpeg_quality", ge=1, le=95)
        check_range(self, "fg_threshold", ge=0, le=1)
