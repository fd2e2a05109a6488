"""The linear-probe and logistic-regression configs (imports no torch: `--help` answers at once)."""

from __future__ import annotations

from dataclasses import dataclass, field

from evalkit import PAPER_LRS, EvalConfig, FrozenFeaturesConfig
from plumbing import ConfigError


def check_recipe_names(recipes: list[str]) -> None:
    """Every entry is `auto` or a feature recipe of evalkit (a ConfigError listing the valid ones otherwise)."""
    from evalkit import FEATURE_RECIPES  # after parsing: --help imports no torch

    for r in recipes:
        if r != "auto" and r not in FEATURE_RECIPES:
            raise ConfigError(f"unknown recipe {r!r} in recipes; valid: auto, {', '.join(FEATURE_RECIPES)}")


@dataclass
class LinearConfig(EvalConfig):
    """Linear-probe sweep; defaults are the paper's (45 lrs, 100 epochs, batch 128 per GPU, SGD)."""

    output_dir: str = "runs/eval_linear"  # run folder: checkpoint, best head, config.yaml, results.json, tensorboard/
    batch_size_per_gpu: int = 128  # images per process and step; lr scale = batch_size_per_gpu x processes / 256
    train_list: str | None = None  # optional file listing a train subset (the 1% / 10% splits)
    val_list: str | None = None  # optional file listing a val subset
    image_size: int = 224  # train RandomResizedCrop size; val center crop after a resize to image_size * 256 / 224
    recipes: list[str] = field(default_factory=lambda: ["auto"])  # auto (by size), cls, cls+avgpool, avgpool_prenorm
    n_last_blocks: int | None = None  # blocks whose [CLS] are pooled; None: 4 for ViT-S and smaller, 1 for ViT-B/L
    lrs: list[float] = field(default_factory=lambda: list(PAPER_LRS))  # head lrs before scaling by the batch / 256
    wds: list[float] = field(default_factory=lambda: [0.0])  # head weight decays (the grid is recipes x lrs x wds)
    epochs: int = 100  # training epochs (cosine lr decay per epoch)
    momentum: float = 0.9  # SGD momentum of every head
    resume: bool = True  # continue from output_dir/linear_checkpoint.pth when present
    cache_dir: str | None = None  # cache folder of the val features; None: no cache
    progress: bool = True  # show progress bars

    def check(self) -> None:
        """Raise ConfigError on settings that cannot work."""
        if not self.recipes or not self.lrs or not self.wds:
            raise ConfigError("recipes, lrs and wds must each hold at least one value")
        if min(self.lrs) <= 0 or min(self.wds) < 0 or self.epochs < 1 or self.batch_size_per_gpu < 1:
            raise ConfigError("lrs must be > 0, wds >= 0, epochs >= 1 and batch_size_per_gpu >= 1")
        check_recipe_names(self.recipes)


@dataclass
class LogRegConfig(FrozenFeaturesConfig):
    """Logistic regression on frozen [CLS] features; lambdas as in the authors' script ({0.01, 0.1, 1})."""

    output_dir: str = "runs/eval_linear.logreg"  # run folder: config.yaml, results.json
    lambdas: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0])  # l2 strengths (Cyanure's lambda)
    max_iter: int = 1000  # lbfgs iterations per fit
    tol: float = 1e-4  # lbfgs stopping tolerance

    def check(self) -> None:
        """Raise ConfigError on settings that cannot work."""
        super().check()
        if not self.lambdas or min(self.lambdas) <= 0:
            raise ConfigError(f"lambdas must be positive numbers, got {self.lambdas}")
        if self.max_iter < 1 or self.tol <= 0:
            raise ConfigError(f"need max_iter >= 1 and tol > 0, got {self.max_iter} and {self.tol}")
