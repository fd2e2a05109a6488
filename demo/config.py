"""The demo's settings (imports no torch: `python -m demo --help` answers at once).

The world, the stages, the three models compared and the time budgets of `make demo` (quick) and
`make demo-full` (`full=true`: longer dense-task and fine-tuning runs).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plumbing import ConfigError

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = "demo/reference/vit_tiny_silhouette.pth"  # the shipped reference, relative to the repository root
RECIPE = "pretrain/recipes/demo_cpu.yaml"
REMAKE_REFERENCE = (
    "git checkout demo/reference, or remake it as demo/reference/README.md says (bench/learning.py epochs=180)"
)
STAGES = ("world", "pretrain", "frozen", "finetune", "dense", "robustness", "analysis", "retrieval", "video", "report")
MODELS = ("live", "reference", "random_init")  # folder names: the report names its rows by them
# The silhouette world of bench/learning.py (white shapes on black, 64 px, 200 train / 50 val images per class),
# plus the scene parts the dense tasks read: 100 COCO train scenes (detection counts epochs), 400 ADE train scenes
# (with 100, a linear head fits every object and the val scores scattered), 100 val scenes each (25 left a
# seed-to-seed spread of 3-15 points), at most 2 objects of 26-51 px per 128 px scene (up to 4 objects of 19-58 px
# before: in such crowded scenes the pre-trained patch tokens lost most of their shape information);
# bench/README.md, "The demo's dense rows".
WORLD = dict(silhouette=True, photo_fraction=0.0, grayscale=True, image_size=64, n_train=200, n_val=50,
             backgrounds=True, coco=True, ade=True, coco_n_train=100, coco_n_val=100, ade_n_train=400,
             ade_n_val=100, scene_max_objects=2, scene_object_scale=(0.2, 0.4))  # fmt: skip
OPTIONAL_PARTS = ("retrieval", "video")  # switched on when this tree's WorldConfig has them

# Per model: the schedules of the evaluations that train (linear-probe, fine-tuning and detection epochs,
# segmentation steps), sized to fill their seconds on the 2-core VM (2026-12-06: a detection epoch of the world's
# 100 scenes ~6 s, an UperNet step ~0.2 s, a linear-head step ~0.065-0.11 s; bench/README.md), and the seconds
# (`_s`) after which `time_limit_min` stops their training on a slower machine (the evaluation then runs on what
# was trained; its time comes on top); the images of the robustness tests (a seeded random subset of the 400 val
# images; 0 = all) and of the correspondence pairs (the first N, sorted): `make demo` (quick) and `make
# demo-full` (full). k-NN, logistic regression and the other tools take all images.
BUDGETS = {
    "quick": {"linear_epochs": 3, "finetune_epochs": 1, "finetune_s": 30, "detection_epochs": 6, "detection_s": 40,
              "upernet_iters": 60, "upernet_s": 15, "seg_linear_iters": 120, "seg_linear_s": 15,
              "robustness_images": 160, "correspondence_images": 96},
    "full": {"linear_epochs": 20, "finetune_epochs": 8, "finetune_s": 180, "detection_epochs": 40, "detection_s": 300,
             "upernet_iters": 480, "upernet_s": 120, "seg_linear_iters": 700, "seg_linear_s": 90,
             "robustness_images": 0, "correspondence_images": 0},
}  # fmt: skip
COUNTS = tuple(k for k in BUDGETS["quick"] if not k.endswith("_s"))  # whole numbers


@dataclass
class DemoConfig:
    """`make demo`: world, live pre-training, then every evaluation on the live, reference and random-init models."""

    output_dir: str = "demo_out"  # run folder: world/, pretrain/, one folder per stage, summary.json, report/
    minutes: float = 7.0  # live pre-training budget (step timing and schedule included); the schedule is sized to it
    stages: str = ",".join(STAGES)  # stages to run (comma-separated, run in this order), e.g. stages=frozen,report
    models: str = ",".join(MODELS)  # models evaluated (comma-separated): live, reference, random_init
    full: bool = False  # longer fine-tuning, detection and segmentation runs (make demo-full)
    reference: str = REFERENCE  # the shipped reference checkpoint (an exported teacher with its head)
    recipe: str = RECIPE  # pre-training recipe of the live model
    pretrain: dict[str, Any] = field(default_factory=dict)  # recipe overrides, e.g. pretrain.batch_size_per_gpu=32
    world: dict[str, Any] = field(default_factory=dict)  # world overrides (WorldConfig keys), e.g. world.n_train=20
    eval_scale: float = 1.0  # multiplies the evaluation budgets (seconds, epochs, steps, images) of quick or full
    device: str = "auto"  # auto (CUDA when available), cpu, cuda, cuda:N
    threads: int = 0  # torch CPU threads of every stage (0: pre-training on the cores its workers leave, the rest all)
    seed: int = 0  # seed of the world and of the live run

    def check(self) -> None:
        """One-line ConfigError for values that cannot work, before any work."""
        bad = [s for s in self.stage_list if s not in STAGES]
        if bad or not self.stage_list:
            raise ConfigError(f"unknown stages {bad}; valid: {','.join(STAGES)}")
        bad = [m for m in self.model_list if m not in MODELS]
        if bad or not self.model_list:
            raise ConfigError(f"unknown models {bad}; valid: {','.join(MODELS)}")
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0, got {self.threads}")
        if self.minutes <= 0 or self.eval_scale <= 0:
            raise ConfigError(f"minutes and eval_scale must be > 0, got {self.minutes} and {self.eval_scale}")
        if not resolve(self.recipe).is_file():
            raise ConfigError(f"recipe={self.recipe!r} not found")
        self._check_world()
        if "reference" in self.model_list and set(self.stage_list) - {"world", "pretrain", "report"}:
            path = resolve(self.reference)
            defaults = self.models == ",".join(MODELS) and self.reference == REFERENCE
            if not path.is_file() and defaults:  # the default run goes on without it, and says so
                print(f"note: no reference checkpoint at {path} (restore it: {REMAKE_REFERENCE}); "
                      f"the demo compares the live model with random init only", file=sys.stderr)  # fmt: skip
                self.models = ",".join(m for m in MODELS if m != "reference")
            elif not path.is_file():
                raise ConfigError(f"the reference checkpoint {path} is missing ({REMAKE_REFERENCE}); "
                                  f"or give reference=FILE or models=live,random_init")  # fmt: skip

    def _check_world(self) -> None:
        """world.* keys are WorldConfig's; a stage that reads the world needs it written (now or before)."""
        import difflib
        import typing

        from demo_world import WorldConfig

        known = list(typing.get_type_hints(WorldConfig))
        for key in self.world:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean world.{close[0]}?" if close else ""
                raise ConfigError(f"world.{key} is not a key of the demo world{hint}")
        world = Path(self.output_dir) / "world"
        readers = [s for s in self.stage_list if s not in ("world", "report")]
        if readers and "world" not in self.stage_list and not (world / "classification").is_dir():
            raise ConfigError(f"stages={','.join(readers)} read the demo world, which is not in {world}: add the "
                              f"world stage (stages=world,{','.join(readers)})")  # fmt: skip
        ran = [s for s in STAGES if s != "report" and (Path(self.output_dir) / s).is_dir()]
        if self.stage_list == ["report"] and not ran:
            raise ConfigError(f"stages=report: {self.output_dir} holds no stage of a demo run to report; run the "
                              "demo there first (make demo, or python -m demo output_dir=...)")  # fmt: skip

    @property
    def stage_list(self) -> list[str]:
        """The stages asked for, in the pipeline's order."""
        asked = {s.strip() for s in str(self.stages).split(",") if s.strip()}
        return [s for s in STAGES if s in asked] + sorted(asked - set(STAGES))

    @property
    def model_list(self) -> list[str]:
        """The models asked for, in the table's order (live, reference, random_init)."""
        asked = {m.strip() for m in str(self.models).split(",") if m.strip()}
        return [m for m in MODELS if m in asked] + sorted(asked - set(MODELS))

    def budgets(self) -> dict[str, float]:
        """The evaluation budgets of this run (quick or full, times eval_scale)."""
        scaled = {k: v * self.eval_scale for k, v in BUDGETS["full" if self.full else "quick"].items()}
        return {k: (max(1, round(v)) if v and k in COUNTS else v) for k, v in scaled.items()}


def resolve(path: str) -> Path:
    """A path as given when it exists or is absolute, else relative to the repository root (the defaults)."""
    p = Path(path)
    return p if p.is_absolute() or p.exists() else ROOT / p
