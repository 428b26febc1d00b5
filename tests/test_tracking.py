"""MLflow as its users expect: experiments open on the runs table (MLflow 3's experiment kind),
hardware is a param as well as a tag, bookkeeping values are tags, not metrics."""

from __future__ import annotations

import pytest


def test_platform_experiments_are_model_training_and_hardware_is_a_param(mlflow_uri: str) -> None:
    from mlflow.tracking import MlflowClient

    from ofa_platform.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, tracked_run

    with tracked_run("kind-test", "r1", tags={"ofa.kind": "search", "ofa.hardware": "note10"},
                     params={"seed": 0}, tracking_uri=mlflow_uri) as run:
        rid = run.info.run_id
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("kind-test")
    assert exp.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND == "custom_model_development"
    got = client.get_run(rid)
    assert got.data.params["hardware"] == "note10" == got.data.tags["ofa.hardware"]
    assert got.data.params["seed"] == "0"
    # a kind the user chose is kept
    other = client.create_experiment("mine", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    with tracked_run("mine", "r2", tags={"ofa.kind": "train"}, tracking_uri=mlflow_uri):
        pass
    assert client.get_experiment(other).tags[EXPERIMENT_KIND_TAG] == "genai_development"


def test_split_bookkeeping() -> None:
    from ofa_platform.tracking import split_bookkeeping

    resumes: list[int] = []
    metrics, tags = split_bookkeeping({"loss": 1.0, "arch_digest": 255.0, "resumed_from": -1.0},
                                      resumes)
    assert metrics == {"loss": 1.0} and tags == {"ofa.arch_digest": "0000000000ff"}
    _, tags = split_bookkeeping({"resumed_from": 3.0}, resumes)
    _, tags = split_bookkeeping({"resumed_from": 3.0, "arch_digest": 1.0}, resumes)
    assert tags["ofa.resumed_from"] == "3"
    _, tags = split_bookkeeping({"resumed_from": 1.0}, resumes)
    assert tags["ofa.resumed_from"] == "1,3"


def test_training_callback_logs_bookkeeping_as_tags(mlflow_uri: str) -> None:
    """The Ray Train callback (driver side) on a report as the workers send it."""
    from mlflow.tracking import MlflowClient

    from ofa_platform.train.runner import MlflowReportCallback

    client = MlflowClient(mlflow_uri)
    exp = client.create_experiment("cb")
    run = client.create_run(exp, tags={"ofa.kind": "train"})
    phases = [{"name": "teacher", "phase_index": 0, "start_epoch": 0, "end_epoch": 2}]
    cb = MlflowReportCallback(mlflow_uri, run.info.run_id, exp, phases, 2, 1)
    for epoch, resumed in ((1, -1), (2, 1)):
        cb._log({"epoch": epoch, "phase_index": 0, "phase": "teacher", "loss": 1.0 / epoch,
                 "acc_largest": 0.5, "arch_digest": 4096.0 + epoch, "resumed_from": resumed,
                 "images_per_s": 10.0})
    got = client.get_run(run.info.run_id)
    assert "arch_digest" not in got.data.metrics and "resumed_from" not in got.data.metrics
    assert got.data.metrics["loss"] == pytest.approx(0.5)
    assert got.data.tags["ofa.arch_digest"] == f"{4098:012x}"
    assert got.data.tags["ofa.resumed_from"] == "1"
    phase = client.get_run(cb.phase_runs[0])
    assert phase.data.tags["ofa.arch_digest"] == f"{4098:012x}"
