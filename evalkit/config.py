"""The keys every evaluation and analysis command takes (imports no torch: `--help` is instant)."""

from __future__ import annotations

from dataclasses import dataclass

from plumbing import check_range

# The paper's linear-probe sweep: {1, ..., 9} x {1e-4, 1e-3, 1e-2, 1e-1, 1} before the batch scaling (45 lrs).
PAPER_LRS = [float(f"{m}e{e}") for e in range(-4, 1) for m in range(1, 10)]


@dataclass
class EvalConfig:
    """Keys every command that evaluates or analyses a backbone takes, with the same meaning everywhere.

    Each command's config subclasses this and sets its own `output_dir` default (`runs/<command>`) and,
    where the protocol fixes one, its own `batch_size_per_gpu`.
    """

    pretrained: str = ""  # the backbone: any file load_backbone reads (ours or the authors')
    checkpoint_key: str = "teacher"  # teacher or student, in files that hold both
    data_path: str = ""  # dataset root in its standard layout (ImageNet: train/ val/)
    output_dir: str = "runs/eval"  # run folder: config.yaml, results.json, figures (default runs/<command>)
    device: str = "auto"  # auto (CUDA when available), cpu, cuda, cuda:N
    precision: str = "auto"  # auto (bf16 on CUDA and CPUs with native bf16, else fp32), fp32, bf16
    batch_size_per_gpu: int = 64  # images per process and step (the total is this x processes)
    num_workers: int = 4  # data-loading worker processes per process
    seed: int = 0  # seed of every random draw
    threads: int = 0  # torch CPU threads per process (0: every core the process may use)


@dataclass
class FrozenFeaturesConfig(EvalConfig):
    """Keys of the evaluations on frozen [CLS] features of an ImageNet-style folder (k-NN, logistic regression)."""

    batch_size_per_gpu: int = 128  # images per process and step of the feature extraction
    train_list: str | None = None  # optional file listing a train subset (the 1% / 10% splits)
    val_list: str | None = None  # optional file listing a val subset
    image_size: int = 224  # center crop; the resize before it is image_size * 256 / 224
    cache_dir: str | None = None  # feature cache folder (keyed by weights, dataset and transform); None: no cache
    progress: bool = True  # show progress bars

    def check(self) -> None:
        """Raise ConfigError on settings that cannot work (subclasses call it first)."""
        check_range(self, "image_size", ge=1)


COMMON_KEYS = tuple(EvalConfig.__dataclass_fields__)
