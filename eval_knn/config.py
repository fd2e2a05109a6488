"""The k-NN and unsupervised-classification configs (imports no torch: `--help` answers at once)."""

from __future__ import annotations

from dataclasses import dataclass, field

from evalkit import EvalConfig, FrozenFeaturesConfig
from plumbing import ConfigError


@dataclass
class KNNConfig(FrozenFeaturesConfig):
    """Weighted k-NN of frozen [CLS] features; defaults are the paper's (k in {10, 20, 100, 200}, T = 0.07)."""

    output_dir: str = "runs/eval_knn"  # run folder: config.yaml, results.json
    ks: list[int] = field(default_factory=lambda: [10, 20, 100, 200])  # numbers of neighbours, all from one search
    temperature: float = 0.07  # T of the exp(similarity / T) vote weights
    search: str = "auto"  # auto (CPU: torch with >= 2 threads, faiss with 1; CUDA: faiss-gpu if any), faiss, torch

    def check(self) -> None:
        """Raise ConfigError on settings that cannot work."""
        super().check()
        if not self.ks or min(self.ks) < 1:
            raise ConfigError(f"ks must be a non-empty list of positive integers, got {self.ks}")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        from evalkit import SEARCH_BACKENDS  # after parsing: --help imports no torch

        if self.search not in SEARCH_BACKENDS:
            raise ConfigError(f"search={self.search!r}; valid: {', '.join(SEARCH_BACKENDS)}")


@dataclass
class UnsupConfig(EvalConfig):
    """Unsupervised classification with the iBOT head's prototypes (val split only)."""

    output_dir: str = "runs/eval_knn.unsup"  # run folder: config.yaml, results.json
    batch_size_per_gpu: int = 128  # images per process and step
    val_list: str | None = None  # optional file listing a val subset
    image_size: int = 224  # center crop; the resize before it is image_size * 256 / 224
    progress: bool = True  # show progress bars

    def check(self) -> None:
        """Raise ConfigError on settings that cannot work."""
        if self.image_size < 1:
            raise ConfigError(f"image_size must be >= 1, got {self.image_size}")
