"""Settings of `python -m retrieval` and `python -m retrieval.copydays` (imports no torch: `--help` is instant).

Defaults are the authors' launcher settings (iBOT's run.sh, protocol notes in the module docstrings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from evalkit import EvalConfig
from plumbing import ConfigError, check_range

DATASETS = ("roxford5k", "rparis6k")
RECIPES = ("cls", "cls+avgpool")  # evalkit.FEATURE_RECIPES (named here so that --help imports no torch)


def _check_sizes(cfg: EvalConfig) -> None:
    check_range(cfg, "image_size", ge=1)
    if not cfg.data_path:
        raise ConfigError("data_path=FOLDER is required (the dataset root in its own layout)")
    if not Path(cfg.data_path).is_dir():
        raise ConfigError(f"data_path={cfg.data_path!r} is not a folder")


@dataclass
class RetrievalConfig(EvalConfig):
    """Image retrieval on revisited Oxford / Paris: multi-scale [CLS] descriptors, mAP (Medium, Hard)."""

    data_path: str = ""  # folder holding <dataset>/gnd_<dataset>.pkl and <dataset>/jpg/ (or that <dataset> folder)
    output_dir: str = "runs/retrieval"  # run folder: config.yaml and results.json
    precision: str = "fp32"  # the protocol extracts in fp32 (auto: bf16 on CUDA and CPUs with native bf16), bf16
    batch_size_per_gpu: int = 1  # images per forward; only images of one size share a batch (protocol: 1)
    dataset: str = "roxford5k"  # roxford5k or rparis6k
    image_size: int = 512  # thumbnail: longest side shrunk to at most this (LANCZOS, never enlarged)
    multiscale: bool = True  # mean of the raw descriptors at scales 1, 1/sqrt(2), 1/2, then L2 (run.sh: on)
    recipe: str = "cls"  # cls: [CLS] of the last n_last_blocks blocks (run.sh) | cls+avgpool: plus the patch mean
    n_last_blocks: int = 1  # blocks whose [CLS] tokens are concatenated (run.sh: 1)
    crop_queries: bool = False  # crop queries to their bbx as the official revisitop protocol does (DINO/iBOT: off)
    ks: list[int] = field(default_factory=lambda: [1, 5, 10])  # k of the mean precision at k (mP@k)
    progress: bool = True  # show progress bars

    def check(self) -> None:
        """Raise ConfigError for values that cannot work (checked before any work)."""
        if self.dataset not in DATASETS:
            raise ConfigError(f"dataset={self.dataset!r}; valid: {', '.join(DATASETS)}")
        if self.recipe not in RECIPES:
            raise ConfigError(f"recipe={self.recipe!r}; valid: {', '.join(RECIPES)}")
        if not self.ks:
            raise ConfigError("ks must hold at least one k of the mean precision at k")
        check_range(self, ("n_last_blocks", "ks"), ge=1)
        _check_sizes(self)


@dataclass
class CopydaysConfig(EvalConfig):
    """Copy detection on INRIA Copydays (strong subset) with distractors and PCA-whitening, mAP."""

    data_path: str = ""  # Copydays root: original/, strong/ and optional jpegqual/<q>/, crops/<c>/ (*.jpg)
    output_dir: str = "runs/retrieval.copydays"  # run folder: config.yaml and results.json
    precision: str = "fp32"  # the protocol extracts in fp32 (auto: bf16 on CUDA and CPUs with native bf16), bf16
    batch_size_per_gpu: int = 16  # images per process and step (the authors' default)
    image_size: int = 224  # square resize, aspect not kept, bicubic (iBOT's default; DINO: 320)
    distractors_path: str = ""  # folder of distractor images added to the database ('' = none; paper: 10k YFCC100M)
    whitening: bool = True  # learn a PCA-whitening on whitening_path's images and apply it (run.sh: none)
    whitening_path: str = ""  # images the whitening is learned on ('' = distractors_path; paper: 20k other YFCC)
    whitening_centred: bool = False  # covariance of centred features; the protocol uses the uncentred one (a quirk)
    top_k: int = 20  # database items scored per query; positives ranked lower add nothing (protocol: 20)
    progress: bool = True  # show progress bars

    def check(self) -> None:
        """Raise ConfigError for values that cannot work (checked before any work)."""
        _check_sizes(self)
        check_range(self, "top_k", ge=1)
        for key in ("distractors_path", "whitening_path"):
            value = getattr(self, key)
            if value and not Path(value).is_dir():
                raise ConfigError(f"{key}={value!r} is not a folder")
        if self.whitening and not (self.whitening_path or self.distractors_path):
            raise ConfigError(
                "whitening=true needs whitening_path or distractors_path (whitening=false: the authors' run.sh setting)"
            )
