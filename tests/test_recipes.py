"""Recipes true to the papers: CompOFA's K7 teacher, OFA's kernel phase in CompOFA-EK, OFA's
expand-2 channel sorting, the teacher's BN mode, a shared teacher (--init-from), and the
registries that define what a distillation mode or sampling rule means."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch
import yaml

from ofa_platform.errors import UserError
from ofa_platform.train.schedule import load_schedule, parse_schedule
from search_spaces.blueprint import middle_channels, network_plan
from search_spaces.flops import count_macs_params
from search_spaces.registry import create_supernet
from search_spaces.spaces import get_space

REPO = Path(__file__).resolve().parents[1]


def _macs(space_name: str, phase_space) -> int:  # noqa: ANN001
    return count_macs_params(network_plan(get_space(space_name).family),
                             phase_space.largest(224))[0]


# ----------------------------------------------------------------- CompOFA's teacher is K7
def test_compofa_teacher_is_ofas_teacher() -> None:
    ofa, comp = load_schedule("ofa"), load_schedule("compofa")
    ofa_teacher = ofa.phase_spaces(get_space("ofa_mbv3"))[0]
    comp_spaces = comp.phase_spaces(get_space("compofa_mbv3"))
    assert comp_spaces[0].name == "ofa_mbv3" and comp_spaces[0].cardinality() == 1
    assert comp_spaces[0].largest(224) == ofa_teacher.largest(224)  # K7, E6, D4
    assert _macs("compofa_mbv3", comp_spaces[0]) == _macs("ofa_mbv3", ofa_teacher)
    assert round(_macs("ofa_mbv3", ofa_teacher) / 1e6, 1) == 566.2
    assert [s.name for s in comp_spaces[1:]] == ["compofa_mbv3"] * 2
    assert round(_macs("compofa_mbv3", comp_spaces[1]) / 1e6, 1) == 446.8  # fixed K3/5


def test_restriction_that_cannot_apply_is_an_error(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from ofa_platform.cli import main

    bad = {"space": "compofa_mbv3", "phases": [
        {"name": "teacher", "epochs": 1, "lr": 1.0, "sampling": "max",
         "restrict": {"kernels": [7], "ratios": [6], "depths": [4]}}]}
    s = parse_schedule(bad, name="bad")
    with pytest.raises(UserError, match="phase teacher: restriction kernels \\[7\\] cannot "
                                        "apply to space compofa_mbv3"):
        s.phase_spaces(get_space("compofa_mbv3"))
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    for argv in (["schedules", str(path)],
                 ["train", "--schedule", str(path), "--data", "synthetic:64"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "cannot apply" in err and len(err.strip().splitlines()) == 1
    other = {**bad, "phases": [{**bad["phases"][0], "space": "ofa_proxyless"}]}
    with pytest.raises(UserError, match="cannot share weights"):
        parse_schedule(other).phase_spaces(get_space("compofa_mbv3"))


def test_schedules_cli_prints_what_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from ofa_platform.cli import main

    assert main(["schedules", "compofa"]) == 0
    out = capsys.readouterr().out
    assert "teacher      ofa_mbv3" in out and "3|5|3|3|5" in out and "566.2" in out
    assert main(["schedules", "compofa", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert runs[0]["kernels"] == [[7]] * 5 and runs[0]["macs_largest"] == runs[0]["macs_smallest"]
    assert runs[1]["kernels"] == [[3], [5], [3], [3], [5]] and runs[1]["cardinality"] == 243


def test_compound_phase_starts_from_the_teachers_kernels() -> None:
    """Weights carried from OFA's space (with trained kernel transforms) into CompOFA's fixed
    kernels: every CompOFA subnet computes what the source computes for the same arch."""
    from search_spaces.transfer import transfer_weights

    torch.manual_seed(0)
    ofa, space = (get_space(n).with_resolutions((32,)) for n in ("ofa_mbv3", "compofa_mbv3"))
    src = create_supernet(ofa, n_classes=10, small_input=True, dropout=0.0)
    with torch.no_grad():
        for name, p in src.named_parameters():
            if "matrix_" in name:
                p.add_(0.05 * torch.randn_like(p))  # as an elastic-kernel phase leaves them
    dst = transfer_weights(src, create_supernet(space, n_classes=10, small_input=True,
                                                dropout=0.0))
    x = torch.randn(2, 3, 32, 32)
    src.eval()
    dst.eval()
    for arch in (space.largest(), space.smallest()):
        src.set_active(arch)
        dst.set_active(arch)
        assert torch.allclose(src(x), dst(x), atol=1e-5)
    with pytest.raises(ValueError, match="cannot carry"):
        transfer_weights(create_supernet("ofa_proxyless", n_classes=10), dst)


# ----------------------------------------------------------------- CompOFA-EK's kernel phase
def test_compofa_ek_kernel_phase_is_ofas() -> None:
    ek, ofa = load_schedule("compofa_ek"), load_schedule("ofa")
    a, b = ek.phase("kernel").to_dict(), ofa.phase("kernel").to_dict()
    assert a == b and a["lr"] == 0.96
    assert ek.phase("teacher").to_dict() == ofa.phase("teacher").to_dict()
    assert get_space("compofa_mbv3_ek").kernel_transform
    text = (REPO / "jobs" / "schedules" / "compofa_ek.yaml").read_text()
    assert "lr: 0.96" in text and "train_ofa_net.py --task kernel" in text  # its source


# ----------------------------------------------------------------- expand-2 sorting
def test_sort_keeps_the_trained_ratio_groups_in_front() -> None:
    torch.manual_seed(1)
    net = create_supernet("ofa_mbv3", n_classes=10, small_input=True, dropout=0.0)
    block = net.dynamic_blocks()[3]
    w4 = middle_channels(block.in_ch, 4)
    before = block.project_conv.weight.clone()
    order = block.sort_channels((4, 6))
    assert sorted(order[:w4].tolist()) == list(range(w4))  # the ratio-4 group stays first
    imp = before.abs().sum(dim=(0, 2, 3))
    assert torch.all(imp[order[:w4]][:-1] >= imp[order[:w4]][1:] - 1e-2)  # sorted within
    with pytest.raises(ValueError, match="largest ratios"):
        block.sort_channels((3,))
    torch.manual_seed(1)  # the same initial weights, unsorted
    ref = create_supernet("ofa_mbv3", n_classes=10, small_input=True, dropout=0.0).eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(ref(x), net.eval()(x), atol=1e-4)  # the network's function is kept
    s = load_schedule("ofa")
    assert s.phase("expand_2").sort_keep_ratios == (4, 6)
    assert s.phase("expand_1").sort_keep_ratios is None


def _reference() -> tuple[ModuleType, object]:
    key = "_bench_reference"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, REPO / "benchmarks" / "reference.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    reference = sys.modules[key]
    target = reference.default_reference_dir(REPO)
    if not reference.is_installed(target):
        pytest.skip(f"reference not installed at {target} (benchmarks/reference.py)")
    try:
        return reference, reference.load_reference(target)
    except reference.ReferenceUnavailable as exc:
        pytest.skip(f"reference not importable: {exc}")


def test_expand_2_sort_equals_the_reference() -> None:
    """The same weights, sorted by ours and by ofa's re_organize_middle_weights(stage 1)."""
    from search_spaces.checkpoints import load_ofa_checkpoint

    reference, ref = _reference()
    torch.manual_seed(0)
    theirs = reference.build_supernet(ref, n_classes=10, dropout=0.0)
    ours = load_ofa_checkpoint(create_supernet("ofa_mbv3", n_classes=10, dropout=0.0),
                               {"state_dict": theirs.state_dict()})
    theirs.re_organize_middle_weights(expand_ratio_stage=1)
    ours.sort_channels((4, 6))
    want = load_ofa_checkpoint(create_supernet("ofa_mbv3", n_classes=10, dropout=0.0),
                               {"state_dict": theirs.state_dict()}).state_dict()
    got = ours.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k
    theirs.re_organize_middle_weights()  # stage 0: one global sort, as expand_1 starts
    ours.sort_channels()
    want = load_ofa_checkpoint(create_supernet("ofa_mbv3", n_classes=10, dropout=0.0),
                               {"state_dict": theirs.state_dict()}).state_dict()
    assert all(torch.equal(want[k], v) for k, v in ours.state_dict().items())


# ----------------------------------------------------------------- the teacher's BN mode
TEACHER = """\
space: compofa_mbv3
teacher_bn: {bn}
phases:
  - name: teacher
    space: ofa_mbv3
    epochs: 1
    lr: 0.1
    sampling: max
    restrict: {{kernels: [7], ratios: [6], depths: [4]}}
  - name: compound
    epochs: 1
    lr: 0.1
    subnets_per_step: 2
    sampling: compound
    distillation: teacher
    sort_channels: true
"""


def _worker(bn: str, **kw):  # noqa: ANN202
    from ofa_platform.train.engine import EngineConfig, _Worker, plain_env

    s = parse_schedule(yaml.safe_load(TEACHER.format(bn=bn)), name="tiny")
    cfg = EngineConfig(schedule=s, space="compofa_mbv3", data="synthetic:16", batch_size=4,
                       recal_images=4, val_limit=4, width_mult=0.5, **kw)
    return _Worker(cfg, plain_env())


@pytest.mark.parametrize("bn, training", [("batch", True), ("running", False)])
def test_teacher_runs_in_the_recipes_bn_mode(bn: str, training: bool) -> None:
    assert parse_schedule(yaml.safe_load(TEACHER.format(bn="batch"))).teacher_bn == "batch"
    assert parse_schedule({"space": "ofa_mbv3", "phases": [
        {"name": "a", "epochs": 1, "lr": 1}]}).teacher_bn == "batch"  # the reference's
    w = _worker(bn)
    assert w.supernet.space.name == "ofa_mbv3"  # the K7 teacher phase
    w.start_phase(0)
    w.start_phase(1)
    assert w.supernet.space.name == "compofa_mbv3"  # carried into CompOFA's space
    assert w.teacher.training is training
    assert w.teacher.space.name == "ofa_mbv3"
    assert set(k for ks in w.teacher.active_arch.ks for k in ks) == {7}
    x = torch.randn(3, 3, 32, 32)
    a, b = w._teacher_logits(x), w._teacher_logits(x)
    assert torch.equal(a, b)  # no dropout in the teacher, no gradient
    for name in ("ofa", "compofa", "compofa_ek"):  # the shipped recipes: the reference's
        assert load_schedule(name).teacher_bn == "batch"


# ----------------------------------------------------------------- registries
def test_a_new_mode_is_one_registry_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    from ofa_platform.train import modes
    from ofa_platform.train.losses import subnet_loss
    from ofa_platform.train.sampling import sample_step

    monkeypatch.setitem(modes.DISTILLATION_MODES, "half", modes.DistillationMode(
        "half", lambda logits, targets, **_: 0.5 * logits.float().mean()))
    monkeypatch.setitem(modes.SAMPLING_RULES, "twice_max", modes.SamplingRule(
        "twice_max", lambda space, rng, n, r: ([space.largest(r)] * 2, [True, False]),
        min_subnets=2, max_subnets=2, full_model_first=True))
    s = parse_schedule({"space": "ofa_mbv3", "phases": [
        {"name": "a", "epochs": 1, "lr": 1, "sampling": "twice_max", "subnets_per_step": 2,
         "distillation": "half"}]})
    step = sample_step(s.phases[0], get_space("ofa_mbv3"), seed=0, global_step=0)
    assert step.full_model == (True, False) and step.archs[0] == step.archs[1]
    assert subnet_loss("half", torch.ones(2, 3), torch.zeros(2, dtype=torch.long)) == 0.5
    with pytest.raises(UserError, match="needs subnets_per_step >= 2"):
        parse_schedule({"space": "ofa_mbv3", "phases": [
            {"name": "a", "epochs": 1, "lr": 1, "sampling": "twice_max"}]})
    with pytest.raises(UserError, match="'nope' is not one of none, teacher, inplace, half"):
        parse_schedule({"space": "ofa_mbv3", "phases": [
            {"name": "a", "epochs": 1, "lr": 1, "distillation": "nope"}]})
    with pytest.raises(ValueError, match="already registered"):
        modes.register_sampling(modes.SAMPLING_RULES["max"])


# ----------------------------------------------------------------- checkpoints and init-from
def test_checkpoint_holds_what_restore_reads_and_init_from_skips_the_phase(
        tmp_path: Path) -> None:
    from ofa_platform.train.engine import STATE_FILE, SUPERNET_FILE, run_plain
    from search_spaces.checkpoints import load_supernet

    seen: dict[str, object] = {}

    def report(metrics: dict, directory: str | None) -> None:
        blob = torch.load(Path(directory) / STATE_FILE, weights_only=True)
        seen.setdefault("keys", set(blob))
        _, extra = load_supernet(Path(directory) / SUPERNET_FILE)
        if extra["phase"] == "teacher":  # keep the teacher epoch's checkpoint
            shutil.copytree(directory, tmp_path / "teacher_ckpt")

    from ofa_platform.train.engine import _Worker, plain_env

    w = _worker("batch")
    metrics = run_plain(w.cfg, plain_env(report=report))
    # a restart from the teacher epoch's checkpoint repeats the uninterrupted run
    resumed = _Worker(w.cfg, plain_env(checkpoint_dir=str(tmp_path / "teacher_ckpt"))).run()
    assert [m["phase"] for m in resumed] == ["compound"]
    assert resumed[0]["loss"] == pytest.approx(metrics[1]["loss"], rel=1e-6)
    shutil.copy(tmp_path / "teacher_ckpt" / SUPERNET_FILE, tmp_path / SUPERNET_FILE)
    assert [m["phase"] for m in metrics] == ["teacher", "compound"]
    assert seen["keys"] == {"model", "optimizer", "scaler", "epoch", "step", "started_phase",
                            "snapshots"}
    teacher_file = load_supernet(tmp_path / SUPERNET_FILE)[0]
    assert teacher_file.space.name == "ofa_mbv3"
    w2 = _worker("batch", init_checkpoint=str(tmp_path / SUPERNET_FILE), init_phase="teacher")
    assert (w2.state.epoch, w2.state.started_phase) == (1, 0)
    assert set(w2.state.snapshots) == {"teacher"}
    rest = w2.run()
    assert [m["phase"] for m in rest] == ["compound"] and rest[0]["epoch"] == 2.0
    assert rest[0]["loss"] == pytest.approx(metrics[1]["loss"], rel=1e-6)  # same teacher


def test_phase_cost_and_archive_then_init_from_run(tmp_path: Path, mlflow_uri: str) -> None:
    """The callback's contract with the report: per-phase cost on nested runs and the phase's
    supernet as an artifact; --init-from RUN_ID:PHASE fetches it and tags the new run."""
    from mlflow.tracking import MlflowClient

    from ofa_platform.costs import load_hardware
    from ofa_platform.train.engine import SUPERNET_FILE
    from ofa_platform.train.runner import MlflowReportCallback, TrainRequest, _tags, prepare
    from search_spaces.checkpoints import save_supernet

    client = MlflowClient(mlflow_uri)
    exp = client.create_experiment("t")
    parent = client.create_run(exp, tags={"ofa.kind": "train"}).info.run_id
    phases = [{"name": "teacher", "phase_index": 0, "start_epoch": 0, "end_epoch": 1},
              {"name": "compound_1", "phase_index": 1, "start_epoch": 1, "end_epoch": 3}]
    cb = MlflowReportCallback(mlflow_uri, parent, exp, phases, 3, 2,
                              hardware=load_hardware("a10g"))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    save_supernet(ckpt / SUPERNET_FILE, create_supernet("ofa_mbv3", n_classes=10))
    checkpoint = SimpleNamespace(as_directory=lambda: _Dir(ckpt))
    for epoch, index in ((1, 0), (2, 1)):
        cb.after_report(None, [{"epoch": epoch, "phase_index": index, "loss": 1.0,
                                "epoch_time_s": 36.0, "phase": phases[index]["name"]}],
                        checkpoint)
    children = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent}'")
    by_phase = {c.data.tags["ofa.phase"]: c.data.metrics for c in children}
    for m in by_phase.values():
        assert {"device_hours", "dollars", "energy_kwh", "co2_kg"} <= set(m)
        assert m["dollars"] == pytest.approx(m["device_hours"] * 1.006)
    assert by_phase["teacher"]["device_hours"] == pytest.approx(36.0 / 3600 * 2, rel=0.05)
    arts = {a.path for a in client.list_artifacts(parent, "phases/teacher")}
    assert arts == {f"phases/teacher/{SUPERNET_FILE}"}
    prep = prepare(TrainRequest(schedule="compofa", data="synthetic:64", workers=1,
                                init_from=f"{parent}:teacher", tracking_uri=mlflow_uri))
    assert prep.engine.init_phase == "teacher" and Path(prep.engine.init_checkpoint).is_file()
    tags = _tags(prep)
    assert tags["ofa.init_from_run_id"] == parent and tags["ofa.init_from_phase"] == "teacher"
    empty = client.create_run(exp, tags={"ofa.kind": "train"}).info.run_id
    search = client.create_run(exp, tags={"ofa.kind": "search"}).info.run_id
    for bad, needle in ((f"{parent}:kernel", "no phase 'kernel'"),
                        (f"{parent}:compound_2", "last phase"),
                        (f"{parent}:compound_1", "compound_2 distils from 'teacher'"),
                        (f"{empty}:teacher", "no finished phase 'teacher'"),
                        (f"{search}:teacher", "not a training run"),
                        ("nosuchrun:teacher", "no MLflow run"), ("teacher", "expected")):
        with pytest.raises(UserError, match=needle):
            prepare(TrainRequest(schedule="compofa", data="synthetic:64", workers=1,
                                 init_from=bad, tracking_uri=mlflow_uri))


class _Dir:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> str:
        return str(self.path)

    def __exit__(self, *exc: object) -> None:
        return None
