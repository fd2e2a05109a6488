"""The command line a results.json records (plumbing.command_line): the keys that differ from their defaults,
nested groups dotted, under python -m or torchrun."""

from dataclasses import dataclass, field

from plumbing import command_line


@dataclass
class Group:
    size: int = 4
    name: str = "a"


@dataclass
class Config:
    lr: float = 0.1
    tags: list[str] = field(default_factory=list)
    group: Group = field(default_factory=Group)


def test_changed_keys_nested_groups_dotted(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert command_line("eval_knn", Config()) == "python -m eval_knn"
    cfg = Config(lr=0.5, tags=["x"], group=Group(size=8, name="two words"))
    assert command_line("eval_knn", cfg) == (
        "python -m eval_knn lr=0.5 'tags=[\"x\"]' group.size=8 'group.name=two words'"
    )


def test_under_torchrun_the_nested_keys_are_the_same(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = Config(group=Group(size=8))
    assert command_line("detection", cfg) == "torchrun --nproc_per_node=N -m detection group.size=8"
