"""Fast checks of the training driver's pieces: tracking lifecycle, helpers, job configs and
bad input (one line, exit 2, no MLflow run left RUNNING) — no Ray needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from ofa_platform.errors import UserError


# --------------------------------------------------------------------------- tracking
def _runs(uri: str) -> list:
    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        return []  # no store was ever opened: certainly no run

    client = MlflowClient(uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(exps) if exps else []


def test_tracking_uri_default_is_absolute_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    from ofa_platform.tracking import resolve_tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = resolve_tracking_uri()
    assert uri.startswith("sqlite:///") and Path(uri[len("sqlite:///"):]).is_absolute()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////x/y.db")
    assert resolve_tracking_uri() == "sqlite:////x/y.db"
    assert resolve_tracking_uri("file:///z") == "file:///z"


def test_tracked_run_never_left_running(mlflow_uri: str) -> None:
    from ofa_platform.costs import compute_cost, load_hardware
    from ofa_platform.tracking import COST_METRICS, log_cost, tracked_run

    def body(name: str, exc: type | None) -> None:
        with tracked_run("t", name, tags={"ofa.kind": "train"}, params={"a": 1}):
            log_cost(compute_cost(2.0, load_hardware("v100")))
            if exc is not None:
                raise exc("boom")

    body("ok", None)
    with pytest.raises(RuntimeError):
        body("failed", RuntimeError)
    with pytest.raises(KeyboardInterrupt):
        body("killed", KeyboardInterrupt)
    status = {r.info.run_name: r.info.status for r in _runs(mlflow_uri)}
    assert status == {"ok": "FINISHED", "failed": "FAILED", "killed": "FAILED"}
    interrupted = {r.info.run_name for r in _runs(mlflow_uri)
                   if r.data.tags.get("ofa.interrupted") == "true"}
    assert interrupted == {"killed"}
    for run in _runs(mlflow_uri):
        assert set(COST_METRICS) <= set(run.data.metrics)
        assert run.data.metrics["dollars"] == pytest.approx(2 * 2.48)


# --------------------------------------------------------------------------- helpers
def test_middle_arch_lies_between_smallest_and_largest() -> None:
    from ofa_platform.train.engine import eval_archs
    from search_spaces.spaces import get_space

    for name in ("ofa_mbv3", "compofa_mbv3", "deps_mbv3"):
        space = get_space(name).with_resolutions((24, 28, 32))
        archs = eval_archs(space)
        for a in archs.values():
            assert space.contains(a)
        s, m, lg = archs["smallest"], archs["middle"], archs["largest"]
        assert s.n_blocks <= m.n_blocks <= lg.n_blocks
        assert s.r < m.r < lg.r
        assert len({s.key, m.key, lg.key}) == 3


def test_param_groups_exempt_bn_and_biases() -> None:
    from torch import nn

    from ofa_platform.train.engine import param_groups

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    decay, no_decay = param_groups(net, 3e-5, True)
    assert decay["weight_decay"] == 3e-5 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(net[0].weight), id(net[3].weight)}
    assert len(no_decay["params"]) == 4  # conv bias, BN weight and bias, linear bias
    (only,) = param_groups(net, 3e-5, False)
    assert len(only["params"]) == 6


def test_unique_run_names() -> None:
    from ofa_platform.train.runner import unique_run_name

    names = {unique_run_name("ofa", "ofa_mbv3") for _ in range(50)}
    assert len(names) == 50


def test_projection_uses_each_phase_speed() -> None:
    from ofa_platform.train.runner import project_device_hours
    from ofa_platform.train.schedule import load_schedule

    full = load_schedule("ofa")
    slow = {p.name: 100.0 for p in full.phases}
    fast = {p.name: 200.0 for p in full.phases}
    h_slow = project_device_hours(full, 50_000, slow)
    assert h_slow == pytest.approx(full.total_epochs * 50_000 / 100 / 3600)
    assert project_device_hours(full, 50_000, fast) == pytest.approx(h_slow / 2)
    # an unmeasured phase is projected at the slowest measured speed
    partial = {full.phases[0].name: 100.0}
    assert project_device_hours(full, 50_000, partial) == pytest.approx(h_slow)


# --------------------------------------------------------------------------- job configs
def test_job_yaml_parses_into_a_typed_request(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
    try:
        from train import load_request  # jobs/train.py
    finally:
        sys.path.pop(0)
    req = load_request(Path(__file__).resolve().parents[1] / "jobs" / "train_cifar10_smoke.yaml")
    assert req.schedule == "ofa" and req.workers == 2 and isinstance(req.epoch_scale, float)
    bad = tmp_path / "bad.yaml"
    bad.write_text("schedule: ofa\ndata: synthetic\nworkers: two\n")
    with pytest.raises(UserError, match="workers"):
        load_request(bad)
    bad.write_text("schedule: ofa\ndata: synthetic\nbogus: 1\n")
    with pytest.raises(UserError, match="bogus"):
        load_request(bad)
    bad.write_text("schedule: [ofa\n")
    with pytest.raises(UserError, match="invalid YAML"):
        load_request(bad)


# --------------------------------------------------------------------------- bad input
def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from ofa_platform.cli import main

    rc = main(["train", *args])
    err = capsys.readouterr().err.strip()
    return rc, err


def _bad_cases(tmp_path: Path) -> dict[str, list[str]]:
    invalid = tmp_path / "broken.yaml"
    invalid.write_text("name: broken\nspace: ofa_mbv3\nphases:\n  - name: a\n    epochs: -3\n")
    not_yaml = tmp_path / "notyaml.yaml"
    not_yaml.write_text("phases: [\n")
    return {
        "unknown schedule": ["--schedule", "no_such_schedule", "--data", "synthetic:64"],
        "unknown space": ["--schedule", "ofa", "--space", "no_such_space",
                          "--data", "synthetic:64"],
        "invalid schedule": ["--schedule", str(invalid), "--data", "synthetic:64"],
        "not yaml": ["--schedule", str(not_yaml), "--data", "synthetic:64"],
        "missing dataset": ["--schedule", "ofa", "--data", f"parquet:{tmp_path / 'nothing'}"],
        "bad workers": ["--schedule", "ofa", "--data", "synthetic:64", "--workers", "0"],
        "bad epoch scale": ["--schedule", "ofa", "--data", "synthetic:64",
                            "--epoch-scale", "3"],
    }


def test_bad_inputs_one_line_exit_2_no_run(tmp_path: Path, mlflow_uri: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    for case, args in _bad_cases(tmp_path).items():
        rc, err = _cli(args, capsys)
        assert rc == 2, case
        assert len(err.splitlines()) == 1 and "error" in err, (case, err)
        assert "Traceback" not in err
    assert _runs(mlflow_uri) == []


def test_checkpoint_of_another_space_is_refused(tmp_path: Path, mlflow_uri: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from search_spaces.checkpoints import save_supernet
    from search_spaces.registry import create_supernet

    path = tmp_path / "proxyless.pt"
    save_supernet(str(path), create_supernet("ofa_proxyless", n_classes=10, small_input=True))
    rc, err = _cli(["--schedule", "ofa", "--space", "ofa_mbv3", "--data", "synthetic:64",
                    "--init-checkpoint", str(path)], capsys)
    assert rc == 2 and len(err.splitlines()) == 1 and "ofa_proxyless" in err
    rc, err = _cli(["--schedule", "ofa", "--data", "synthetic:64",
                    "--init-checkpoint", str(tmp_path / "absent.pt")], capsys)
    assert rc == 2 and "no such file" in err
    assert _runs(mlflow_uri) == []


def test_workers_get_the_dataset_recipe_not_just_its_path(shared_data: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A recipe's resolutions, normalisation and stem reach the workers: run from another
    directory (as a Ray worker is), the engine reads CIFAR-10 at 24..32 with CIFAR's mean,
    not the Parquet's native 32 with ImageNet's."""
    import pickle

    from ofa_platform.datasets import load_dataset
    from ofa_platform.train.runner import TrainRequest, prepare

    prep = prepare(TrainRequest(schedule="ofa", space="ofa_mbv3", data="cifar10", workers=1,
                                epoch_scale=0.001, subset=40, storage_path=str(tmp_path),
                                tracking_uri=f"sqlite:///{tmp_path / 'm.db'}"))
    shipped = pickle.loads(pickle.dumps(prep.engine))  # what Ray sends to a worker
    monkeypatch.chdir(tmp_path)
    data = load_dataset(shipped.data, subset=40)
    assert data.resolutions == (24, 28, 32)
    assert data.mean == pytest.approx((0.4914, 0.4822, 0.4465))
    assert shipped.small_input is True and data.n_classes == 10
