"""Pre-training loop: learning signal, exact resume after SIGKILL, atomic checkpoints, DDP, bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from plumbing import parse_config
from pretrain import TrainConfig, TrainingRun, load_backbone, safe_load, train
from pretrain.__main__ import main as cli_main
from pretrain.training.step import ema_pairs, ema_update
from tests.helpers.worlds import write_blobs

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "arch=vit_tiny", "depth=2", "patch_size=8", "drop_path_rate=0.0", "out_dim=64", "patch_out_dim=64",
    "head_hidden_dim=32", "head_bottleneck_dim=16", "global_crop_size=32", "local_crop_size=16",
    "local_crops_number=2", "batch_size_per_gpu=8", "warmup_epochs=1", "warmup_teacher_temp_epochs=1",
    "num_workers=0", "precision=fp32", "saveckp_freq=0", "lr=0.002",
]  # fmt: skip


def cfg_for(tmp: Path, data: Path, *extra: str) -> TrainConfig:
    return parse_config(TrainConfig, [*TINY, f"data_path={data}", f"output_dir={tmp}", *extra])


def losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = write_blobs(tmp_path_factory.mktemp("world") / "train", n_per_class=16)
    (root / "class0" / "broken.png").write_bytes(b"\x89PNG truncated")
    return root


def test_training_steps_lower_the_loss(tmp_path, data):
    """On one batch, with a frozen teacher and frozen centers, the student fits the teacher's targets.

    (In a real run the loss can rise early on: the centers move the targets towards uniform.)
    """
    fixed = ["momentum_teacher=1.0", "warmup_teacher_temp=0.07", "warmup_teacher_patch_temp=0.07",
             "freeze_last_layer=0", "warmup_epochs=0", "lr=0.05", "epochs=50", "resume=false"]  # fmt: skip
    run = TrainingRun(cfg_for(tmp_path / "fit", data, *fixed))
    run.loss_fn.center_momentum = run.loss_fn.center_momentum2 = 1.0
    run.pairs = ema_pairs(run.student, run.teacher)
    batch, _ = next(iter(run.loader()))
    values = [run.train_step(run.student, batch, i)["loss"] for i in range(20)]
    assert values[-1] < 0.9 * values[0], values


def test_koleo_term_is_added_and_logged(tmp_path, data):
    """koleo_weight adds w x KoLeo of each global crop's student [CLS] features to the loss (DINOv2)."""
    from pretrain.objective.loss import koleo_loss

    run = TrainingRun(cfg_for(tmp_path / "koleo", data, "koleo_weight=0.5", "centering=sinkhorn", "lr=0.0", "epochs=1"))
    run.pairs = ema_pairs(run.student, run.teacher)
    batch, _ = next(iter(run.loader()))
    out = run.train_step(run.student, batch, 0)
    assert out["loss"] == pytest.approx(out["cls"] + out["patch"] + 0.5 * out["koleo"], rel=1e-6)
    crops, masks = batch
    with torch.no_grad():
        feats = run.student(torch.cat(crops[:2]), torch.cat(masks), torch.cat(crops[2:]), packed=True)[2]
    by_hand = torch.stack([koleo_loss(f) for f in feats.chunk(2)]).mean()
    assert out["koleo"] == pytest.approx(by_hand.item(), rel=1e-5)


def test_training_run_moves_features_and_counts_bad_images(tmp_path, data):
    res = train(cfg_for(tmp_path / "run", data, "epochs=3", "momentum_teacher=0.9"))
    assert res["completed"] and res["skipped_images"] == 3  # one unreadable image, seen once per epoch
    assert len(losses(tmp_path / "run")) == 3 * 4
    train(cfg_for(tmp_path / "init", data, "epochs=1", "max_steps_per_epoch=1", "lr=0.0"))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        for key in ("student", "teacher"):  # the same seed rebuilds the same initialisation
            trained, _ = load_backbone(tmp_path / "run" / "checkpoint.pth", key=key)
            start, _ = load_backbone(tmp_path / "init" / "checkpoint.pth", key=key)
            assert (trained(x) - start(x)).abs().mean() > 1e-3, key
    exported, info = load_backbone(res["backbone"])
    assert info["format"] == "ibot-suite-backbone" and info["epoch"] == 3 and exported.masked_embed is None
    with torch.no_grad():
        assert torch.allclose(exported(x), load_backbone(tmp_path / "run" / "checkpoint.pth")[0](x))


def test_results_record_provenance(tmp_path, data):
    """results.json goes through plumbing.write_results: the command, precision and device that ran."""
    train(cfg_for(tmp_path / "prov", data, "epochs=1", "max_steps_per_epoch=1", "seed=3"))
    res = json.loads((tmp_path / "prov" / "results.json").read_text())
    prov = res["provenance"]
    assert prov["command"].startswith("python -m pretrain ") and "seed=3" in prov["command"]
    assert prov["precision"] == {"requested": "fp32", "ran": "fp32"} and prov["device"] == "cpu"
    assert res["epoch"] == 1 and "torch" in prov["versions"]


def test_non_finite_loss_is_a_loss_diverged_error():
    from plumbing import LossDivergedError, UserError
    from pretrain.training.step import check_finite

    check_finite(torch.tensor(1.5), 0)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(LossDivergedError, match="at step 7") as e:
            check_finite(bad, 7)
        assert isinstance(e.value, FloatingPointError) and isinstance(e.value, UserError)


def test_ema_update_rule():
    student, teacher = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = teacher.weight.detach().clone()
    ema_update(teacher, ema_pairs(student, teacher), 0.9)
    assert torch.allclose(teacher.weight, 0.9 * before + 0.1 * student.weight)


def _launch(args: list[str], threads: int = 2, **kw) -> subprocess.Popen:
    # Same thread count as this process (conftest): float reductions then match bit for bit.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, **kw)


def test_resume_after_sigkill_is_exact(tmp_path, data):
    # 16 steps per epoch (batch 2), so the kill lands inside epoch 1 even when a step takes milliseconds
    args = ["epochs=3", "checkpoint_every_steps=3", "batch_size_per_gpu=2"]
    train(cfg_for(tmp_path / "full", data, *args))
    out = tmp_path / "killed"
    cli = ["-m", "pretrain", *TINY, f"data_path={data}", f"output_dir={out}", *args]
    proc = _launch(cli, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # kill part-way through epoch 1
        if (out / "log.jsonl").exists() and len((out / "log.jsonl").read_text().splitlines()) >= 20:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    state = safe_load(out / "checkpoint.pth")
    # the last checkpoint before the kill: every 3 steps inside epoch 1 (or the end of epoch 1)
    assert (state["epoch"] == 1 and state["step"] % 3 == 0 and state["step"] >= 3) or (
        state["epoch"],
        state["step"],
    ) == (2, 0)
    assert cli_main([*TINY, f"data_path={data}", f"output_dir={out}", *args]) == 0
    assert losses(out) == losses(tmp_path / "full")
    a, b = (safe_load(p / "checkpoint.pth")["teacher"] for p in (out, tmp_path / "full"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sigterm_checkpoints_mid_epoch_and_resumes_exactly(tmp_path, data):
    # 16 steps per epoch (batch 2): the signal lands mid-epoch even when a step takes a few milliseconds
    args = ["epochs=2", "batch_size_per_gpu=2"]
    train(cfg_for(tmp_path / "full", data, *args))
    out = tmp_path / "term"
    cli = ["-m", "pretrain", *TINY, f"data_path={data}", f"output_dir={out}", *args]
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = _launch(cli, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if (out / "log.jsonl").exists() and len((out / "log.jsonl").read_text().splitlines()) >= 2:
                proc.send_signal(signal.SIGTERM)
                break
            time.sleep(0.05)
        # after its checkpoint, the run exits 128 + SIGTERM (what a shell and SLURM's requeue expect)
        assert proc.wait() == 143, "SIGTERM must end the run after a checkpoint, with exit status 143"
    state = safe_load(out / "checkpoint.pth")
    assert state["epoch"] == 0 and 2 <= state["step"] < 16  # saved inside epoch 0, after the current step
    said = f"stopped by SIGTERM at epoch 0 step {state['step']}; resume with the same command"
    assert said in (tmp_path / "stderr.txt").read_text()
    assert json.loads((out / "results.json").read_text())["completed"] is False
    assert cli_main([*TINY, f"data_path={data}", f"output_dir={out}", *args]) == 0
    assert losses(out) == losses(tmp_path / "full")


def test_kill_during_checkpoint_write_keeps_previous(tmp_path):
    path = tmp_path / "checkpoint.pth"
    script = (
        "import sys, torch; from pretrain import atomic_save\n"
        f"atomic_save({{'epoch': 1, 'w': torch.ones(3)}}, {str(path)!r})\n"
        "print('first', flush=True)\n"
        f"atomic_save({{'epoch': 2, 'w': torch.zeros(400_000_000, dtype=torch.uint8)}}, {str(path)!r})\n"
    )
    proc = _launch(["-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "first"
    deadline = time.time() + 60
    while time.time() < deadline and not any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    state = safe_load(path)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.ones(3))


@pytest.mark.parametrize("centering, port", [("center", 29533), ("sinkhorn", 29534)])
def test_two_process_ddp_matches_single_process(tmp_path, centering, port):
    """Sinkhorn-Knopp all-reduces its sums: its targets over 2 x 4 images equal those over 8."""
    data = write_blobs(tmp_path / "clean", n_per_class=8)  # no unreadable image: equal batches on both ranks
    extra = ["epochs=1", "max_steps_per_epoch=2", f"centering={centering}"]
    single = cfg_for(tmp_path / "single", data, *extra, "batch_size_per_gpu=8")
    train(single)
    ddp_out = tmp_path / "ddp"
    cmd = ["-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}", "tests/helpers/ddp_worker.py",
           *TINY, f"data_path={data}", f"output_dir={ddp_out}", *extra, "batch_size_per_gpu=4"]  # fmt: skip
    proc = _launch(cmd, threads=1, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output[-3000:]
    r0, r1 = (torch.load(ddp_out / f"student_rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(r0[k], r1[k]) for k in r0)  # ranks stay identical
    assert losses(ddp_out) == pytest.approx(losses(tmp_path / "single"), rel=1e-4)
    a = safe_load(ddp_out / "checkpoint.pth")["teacher"]
    b = safe_load(tmp_path / "single" / "checkpoint.pth")["teacher"]
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4


def test_non_finite_loss_stops_and_keeps_checkpoint(tmp_path, data, monkeypatch):
    out = tmp_path / "nan"
    train(cfg_for(out, data, "epochs=1"))
    from pretrain.objective import loss as loss_module

    real = loss_module.IBOTLoss.forward

    def poisoned(self, *a, **k):
        res = real(self, *a, **k)
        return {**res, "loss": res["loss"] * float("nan")}

    monkeypatch.setattr(loss_module.IBOTLoss, "forward", poisoned)
    with pytest.raises(FloatingPointError, match="loss is nan at step 4"):
        train(cfg_for(out, data, "epochs=2"))
    assert safe_load(out / "checkpoint.pth")["epoch"] == 1


def test_cli_reports_bad_input(tmp_path, capsys):
    assert cli_main(["not_a_key=1"]) == 2
    assert "not_a_key" in capsys.readouterr().err
    assert cli_main([*TINY, f"data_path={tmp_path / 'missing'}", f"output_dir={tmp_path}"]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "few").mkdir()
    write_blobs(tmp_path / "few", n_per_class=2)
    assert cli_main([*TINY, f"data_path={tmp_path / 'few'}", f"output_dir={tmp_path / 'o'}"]) == 2
    assert "fewer than one global batch" in capsys.readouterr().err


def test_online_knn_monitor_matches_eval_knn(tmp_path):
    from eval_knn import KNNConfig
    from eval_knn import run as knn_run
    from evalkit import KNNMonitor

    world = tmp_path / "labelled"
    write_blobs(world / "train", n_per_class=12)
    write_blobs(world / "val", n_per_class=4, seed=1)
    out = tmp_path / "mon"
    train(
        cfg_for(out, world / "train", "epochs=1", "max_steps_per_epoch=1"),
        monitor=KNNMonitor(str(world), every=1, image_size=32),
    )
    rows = [json.loads(line) for line in (out / "knn.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1]
    backbone, _ = load_backbone(out / "backbone.pth")
    cfg = KNNConfig(data_path=str(world), image_size=32, ks=[20], num_workers=0, progress=False)
    assert rows[0]["knn_top1"] == knn_run(backbone, cfg)["knn"]["k=20"]["top1"]


def test_blur_radius_reaches_every_crop_and_is_validated(tmp_path, data, capsys):
    """Small images want a smaller blur (radius 2 px blurs a 64 px image as 7 px blurs 224 px)."""
    import numpy as np
    from PIL import Image, ImageFilter

    from pretrain.data.augment import MultiCropAugmentation, RandomPILBlur

    aug = MultiCropAugmentation(n_global=2, n_local=1, global_size=32, local_size=16, blur_radius=(0.3, 0.3))
    blurs = [t for crop in aug.transforms for t in crop.transforms if isinstance(t, RandomPILBlur)]
    assert [(b.p, b.radius) for b in blurs] == [(1.0, (0.3, 0.3)), (0.1, (0.3, 0.3)), (0.5, (0.3, 0.3))]
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    expected = np.asarray(img.filter(ImageFilter.GaussianBlur(radius=0.3)))
    assert np.array_equal(np.asarray(blurs[0](img)), expected)
    assert cli_main([*TINY, f"data_path={data}", f"output_dir={tmp_path}", "blur_radius=[2.0,1.0]"]) == 2
    assert "blur_radius must be [low, high]" in capsys.readouterr().err


def test_invert_p_is_torchvisions_random_invert_with_the_old_random_stream():
    """invert_p uses torchvision's RandomInvert; crops equal those of the hand-written transform it replaced."""
    import numpy as np
    from PIL import Image, ImageOps
    from torchvision import transforms as T

    from pretrain.data.augment import MultiCropAugmentation

    inverted = []

    class OldInvert:  # the replaced transform, kept here as the oracle: one torch.rand(()) draw per crop
        def __call__(self, img):
            flip = torch.rand(()).item() < 0.5
            inverted.append(flip)
            return ImageOps.invert(img) if flip else img

    new = MultiCropAugmentation(n_global=2, n_local=2, global_size=32, local_size=16, invert_p=0.5)
    old = MultiCropAugmentation(n_global=2, n_local=2, global_size=32, local_size=16, invert_p=0.5)
    old.transforms = [T.Compose([OldInvert() if isinstance(t, T.RandomInvert) else t for t in c.transforms])
                      for c in old.transforms]  # fmt: skip
    assert sum(isinstance(t, T.RandomInvert) and t.p == 0.5 for c in new.transforms for t in c.transforms) == 4
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    for seed in range(6):
        torch.manual_seed(seed)
        a = new(img)
        torch.manual_seed(seed)
        b = old(img)
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert 0 < sum(inverted) < len(inverted) == 24  # both branches ran


def test_per_parameter_clipping_by_hand():
    """Each gradient is scaled to norm <= clip on its own (reference §1.8), None gradients are skipped."""
    from pretrain.training.step import clip_per_parameter

    big, small, none = (torch.nn.Parameter(torch.zeros(2)) for _ in range(3))
    big.grad, small.grad = torch.tensor([3.0, 4.0]), torch.tensor([0.3, 0.4])  # norms 5 and 0.5
    clip_per_parameter([big, small, none], 3.0)
    assert torch.allclose(big.grad, torch.tensor([3.0, 4.0]) * 3.0 / (5.0 + 1e-6))  # -> norm 3
    assert torch.equal(small.grad, torch.tensor([0.3, 0.4]))  # under the bound: untouched
    assert none.grad is None
    clip_per_parameter([big], 0.0)  # clip 0 disables
    assert torch.allclose(big.grad.norm(), torch.tensor(3.0))
