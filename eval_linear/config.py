"""The linear-probe and logistic-regression configs (imports no torch: `--help` answers at once)."""

from __future__ import annotations

from dataclasses import dataclass, field

from evalkit import PAPER_LRS, EvalConfig, FrozenFeaturesConfig
from plumbing import ConfigError, check_range


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
        check_range(self, ("image_size", "epochs", "batch_size_per_gpu", "n_last_blocks"), ge=1)
        check_range(self, "lrs", gt=0)
        check_range(self, "wds", ge=0)
        check_range(self, "momentum", ge=0, le=1)
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
        if not self.lambdas:
            raise ConfigError("lambdas must hold at least one l2 strength")
        check_range(self, ("lambdas", "tol"), gt=0)
        check_range(self, "max_iter", ge=1)
