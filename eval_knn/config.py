"""The k-NN and unsupervised-classification configs (imports no torch: `--help` answers at once)."""

from __future__ import annotations

from dataclasses import dataclass, field

from evalkit import EvalConfig, FrozenFeaturesConfig
from plumbing import ConfigError, check_range


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
        if not self.ks:
            raise ConfigError("ks must hold at least one number of neighbours")
        check_range(self, "ks", ge=1)
        check_range(self, "temperature", gt=0)
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
        check_range(self, "image_size", ge=1)
