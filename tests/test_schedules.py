"""Schedules: the published recipes' epoch tables, validation messages, scaling."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ofa_platform.errors import UserError
from ofa_platform.train.schedule import list_schedules, load_schedule, parse_schedule
from search_spaces.spaces import get_space


def _table(name: str) -> list[tuple]:
    s = load_schedule(name)
    return [(p.name, p.epochs, p.warmup_epochs, p.lr, p.subnets_per_step, p.sampling,
             p.distillation, p.sort_channels) for p in s.phases]


def test_published_recipes_are_listed() -> None:
    assert {"ofa", "compofa", "compofa_ek", "deps", "deps_cifar", "bignas"} <= set(
        list_schedules())


def test_ofa_epoch_table() -> None:
    s = load_schedule("ofa")
    assert s.total_epochs == 605 and s.space == "ofa_mbv3"
    assert _table("ofa") == [
        ("teacher", 180, 0, 2.6, 1, "max", "none", False),
        ("kernel", 120, 5, 0.96, 1, "uniform", "teacher", False),
        ("depth_1", 25, 0, 0.08, 2, "uniform", "teacher", False),
        ("depth_2", 120, 5, 0.24, 2, "uniform", "teacher", False),
        ("expand_1", 25, 0, 0.08, 4, "uniform", "teacher", True),
        ("expand_2", 120, 5, 0.24, 4, "uniform", "teacher", True),
    ]
    assert [(p.start_epoch, p.end_epoch) for p in s.phases] == [
        (0, 180), (180, 305), (305, 330), (330, 455), (455, 480), (480, 605)]
    restr = [(p.restrict.kernels, p.restrict.ratios, p.restrict.depths) for p in s.phases]
    assert restr[1:] == [((3, 5, 7), (6,), (4,)), ((3, 5, 7), (6,), (3, 4)),
                         ((3, 5, 7), (6,), (2, 3, 4)), ((3, 5, 7), (4, 6), (2, 3, 4)),
                         ((3, 5, 7), (3, 4, 6), (2, 3, 4))]
    assert [p.init for p in s.phases] == ["scratch"] + ["previous"] * 5
    assert s.optimizer.momentum == 0.9 and s.optimizer.nesterov
    assert s.optimizer.weight_decay == 3e-5 and s.optimizer.no_decay_bn_bias
    assert s.label_smoothing == 0.1 and s.dropout == 0.1 and s.lr_schedule == "per_phase"
    assert s.distillation_weight == 1.0
    space = get_space(s.space)
    assert s.phases[0].space(space).cardinality() == 1  # the teacher is one network


def test_compofa_epoch_tables() -> None:
    s = load_schedule("compofa")
    assert s.total_epochs == 330 and s.space == "compofa_mbv3"
    assert _table("compofa") == [
        ("teacher", 180, 0, 2.6, 1, "max", "none", False),
        ("compound_1", 25, 0, 0.08, 4, "compound", "teacher", True),
        ("compound_2", 120, 5, 0.24, 4, "compound", "teacher", True),
    ]
    space = get_space(s.space)
    assert [p.space(space).cardinality() for p in s.phases] == [1, 243, 243]
    ek = load_schedule("compofa_ek")
    assert ek.total_epochs == 455
    assert [p.total_epochs for p in ek.phases] == [180, 125, 25, 125]
    assert ek.phases[1].lr == 2.6 and ek.phases[1].subnets_per_step == 1  # CompOFA's script
    assert [p.lr for p in ek.phases[2:]] == [0.08, 0.24]


def test_deps_recipes() -> None:
    s = load_schedule("deps")
    assert (s.total_epochs, s.tw_epoch, s.space) == (270, 150, "deps_mbv3")
    assert s.lr_schedule == "global_cosine" and s.dropout_full_model_only
    fm, shrink = s.phases
    assert fm.sampling == "max" and fm.end_epoch == 145
    assert (shrink.sampling, shrink.subnets_per_step, shrink.distillation) == (
        "sandwich", 4, "inplace")
    assert shrink.sort_channels and shrink.lr == 2.6 and shrink.tw_epoch == 150
    c = load_schedule("deps_cifar")
    assert (c.total_epochs, c.tw_epoch) == (200, 100)
    b = load_schedule("bignas")
    assert len(b.phases) == 1 and b.phases[0].sampling == "sandwich"
    assert b.phases[0].distillation == "inplace" and b.tw_epoch is None


def test_scaled_keeps_the_recipe() -> None:
    s = load_schedule("ofa")
    small = s.scaled(0.01)
    assert [p.name for p in small.phases] == [p.name for p in s.phases]
    assert all(p.epochs >= 1 for p in small.phases)
    assert small.total_epochs < s.total_epochs
    assert [(p.lr, p.sampling, p.sort_channels) for p in small.phases] == [
        (p.lr, p.sampling, p.sort_channels) for p in s.phases]
    assert s.scaled(1.0) is s
    d = load_schedule("deps").scaled(0.1)
    assert d.tw_epoch == d.phases[1].start_epoch + 1  # a ramp survives scaling
    with pytest.raises(UserError, match="epoch scale"):
        s.scaled(0)


def _minimal() -> dict:
    return {"space": "ofa_mbv3",
            "phases": [{"name": "a", "epochs": 3, "lr": 1.0, "sampling": "max"}]}


def test_parse_minimal_and_defaults() -> None:
    s = parse_schedule(_minimal(), name="mini")
    assert s.name == "mini" and s.total_epochs == 3 and s.phases[0].init == "scratch"


def test_every_wrong_field_is_named() -> None:
    bad = {"space": 3, "colour": "red", "lr_schedule": "step",
           "phases": [{"name": "a", "epochs": "ten", "lr": 1.0, "sampling": "random",
                       "distillation": "dark", "bogus": 1, "restrict": {"channels": [1]}}]}
    with pytest.raises(UserError) as exc:
        parse_schedule(bad, source="schedule x")
    msg = str(exc.value)
    assert "\n" not in msg
    for part in ("colour: unknown key", "space: expected str", "lr_schedule: 'step'",
                 "phases[0].epochs: expected int", "phases[0].sampling: 'random'",
                 "phases[0].distillation: 'dark'", "phases[0].bogus: unknown key",
                 "phases[0].restrict.channels: unknown key"):
        assert part in msg, part


@pytest.mark.parametrize("phases, needle", [
    ([], "non-empty"),
    ([{"name": "a", "epochs": 1, "lr": 1, "sampling": "max", "subnets_per_step": 2}],
     "subnets_per_step must be 1"),
    ([{"name": "a", "epochs": 1, "lr": 1, "sampling": "sandwich", "subnets_per_step": 1}],
     "sandwich needs"),
    ([{"name": "a", "epochs": 1, "lr": 1, "distillation": "teacher"}], "teacher_phase"),
    ([{"name": "a", "epochs": 1, "lr": 1, "distillation": "inplace"}], "inplace"),
    ([{"name": "a", "epochs": 1, "lr": 1, "init": "previous"}], "no previous phase"),
    ([{"name": "a", "epochs": 1, "lr": 1}, {"name": "a", "epochs": 1, "lr": 1}], "duplicate"),
    ([{"name": "a", "epochs": 1, "lr": -1}], "lr: must be > 0"),
    ([{"name": "a", "epochs": 2, "lr": 1, "sampling": "sandwich", "subnets_per_step": 2,
       "beta_ramp_epochs": 3}], "exceeds"),
])
def test_cross_field_rules(phases: list, needle: str) -> None:
    with pytest.raises(UserError, match=needle):
        parse_schedule({"space": "ofa_mbv3", "phases": phases})


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown schedule 'nope'; known: .*ofa"):
        load_schedule("nope")
    (tmp_path / "broken.yaml").write_text("space: ofa_mbv3\nphases: [\n")
    with pytest.raises(UserError, match="invalid YAML at line"):
        load_schedule("broken", schedules_dir=tmp_path)
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(_minimal()))
    assert load_schedule("mine", schedules_dir=tmp_path).name == "mine"
    assert load_schedule(tmp_path / "mine.yaml").total_epochs == 3
    assert list_schedules(tmp_path) == ["broken", "mine"]
    (tmp_path / "copy.yaml").write_text(yaml.safe_dump({**_minimal(), "name": "mine"}))
    with pytest.raises(UserError, match="differs from the file name 'copy'"):
        load_schedule("copy", schedules_dir=tmp_path)


def test_restriction_outside_space_is_user_error() -> None:
    s = parse_schedule({"space": "ofa_mbv3", "phases": [
        {"name": "a", "epochs": 1, "lr": 1, "restrict": {"kernels": [9]}}]})
    with pytest.raises(UserError, match="no kernel"):
        s.phases[0].space(get_space("ofa_mbv3"))


def test_schedules_cli(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from ofa_platform.cli import main

    assert main(["schedules"]) == 0
    out = capsys.readouterr().out
    assert "ofa" in out and "605" in out and "330" in out
    assert main(["schedules", "ofa"]) == 0
    out = capsys.readouterr().out
    assert "120+5" in out and "expand_2" in out and "605 epochs" in out
    assert main(["schedules", "deps", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total_epochs"] == 270 and data["tw_epoch"] == 150
    assert [p["total_epochs"] for p in data["phases"]] == [145, 125]
    assert main(["schedules", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown schedule 'nope'" in err and len(err.strip().splitlines()) == 1
