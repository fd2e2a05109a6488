"""The CPU thread rule (plumbing.threads): the cores the loader workers leave, unless the user says."""

import pytest
import torch

from plumbing import ConfigError, auto_threads, cpu_threads


def test_auto_threads_is_the_cores_the_workers_leave():
    assert auto_threads(0, cores=2) == 2
    assert auto_threads(1, cores=2) == 1
    assert auto_threads(8, cores=2) == 1  # never below one thread
    assert auto_threads(2, cores=16) == 14


def test_cpu_threads_applies_the_rule_and_restores(monkeypatch):
    monkeypatch.setattr("plumbing.threads.available_cores", lambda: 3)
    before = torch.get_num_threads()
    with cpu_threads(0, num_workers=1, device="cpu") as n:
        assert n == 2 and torch.get_num_threads() == 2
    assert torch.get_num_threads() == before
    with cpu_threads(1, num_workers=0, device="cpu") as n:  # given: used as is
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_on_a_gpu_only_an_explicit_count_applies(monkeypatch):
    monkeypatch.setattr("plumbing.threads.available_cores", lambda: 3)
    before = torch.get_num_threads()
    with cpu_threads(0, num_workers=2, device="cuda:0") as n:
        assert n == before == torch.get_num_threads()


def test_negative_threads_is_a_config_error():
    with pytest.raises(ConfigError, match="threads must be >= 0"):
        with cpu_threads(-1, num_workers=0):
            pass


def test_pretraining_applies_the_rule(monkeypatch):
    """`pretrain.train` runs its steps on the cores the loader workers leave (threads=0), or on `threads`."""
    import pretrain.work
    from plumbing import parse_config
    from pretrain import TrainConfig

    seen = []

    class FakeRun:  # stands for TrainingRun: what matters is the thread count while it runs
        def __init__(self, cfg, monitor=None):
            self.device = torch.device("cpu")

        def run(self):
            seen.append(torch.get_num_threads())
            return {}

    monkeypatch.setattr(pretrain.work, "TrainingRun", FakeRun)
    monkeypatch.setattr("plumbing.threads.available_cores", lambda: 4)
    before = torch.get_num_threads()
    pretrain.train(parse_config(TrainConfig, ["num_workers=1", "device=cpu"]))
    pretrain.train(parse_config(TrainConfig, ["num_workers=1", "device=cpu", "threads=2"]))
    assert seen == [3, 2] and torch.get_num_threads() == before


def test_evaluations_apply_the_rule(monkeypatch, tmp_path):
    """Every evaluation's shell (evalkit.run_cli) sets the command's `threads`; 0 is every core of the process
    (an evaluation's loader workers are light: measured faster on all cores, bench/README.md)."""
    from eval_knn import KNNConfig
    from evalkit import run_cli

    seen = []
    monkeypatch.setattr("plumbing.threads.available_cores", lambda: 4)
    body = lambda cfg: seen.append(torch.get_num_threads()) or {}  # noqa: E731
    out = tmp_path / "knn"
    assert run_cli(KNNConfig, [f"output_dir={out}", "num_workers=3", "device=cpu"], "eval_knn", body) == 0
    assert run_cli(KNNConfig, [f"output_dir={out}2", "num_workers=3", "threads=2", "device=cpu"], "eval_knn", body) == 0
    assert run_cli(KNNConfig, [f"output_dir={out}3", "threads=-1"], "eval_knn", body) == 2  # refused before work
    assert seen == [4, 2]
