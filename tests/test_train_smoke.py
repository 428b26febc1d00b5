"""End-to-end training on Ray Train with 2 CPU workers on the CIFAR-10 Parquet.

A smoke run of each published schedule (a sliver of each phase's epochs, a few dozen images)
must finish FINISHED in MLflow with every cost metric; a job whose worker is killed from
outside resumes from its last checkpoint and finishes.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

COST = ("device_hours", "dollars", "energy_kwh", "co2_kg", "co2_lbs")


def _request(schedule: str, tmp_path: Path, uri: str, **kw: object) -> object:
    from ofa_platform.train.runner import TrainRequest

    base = dict(schedule=schedule, data="cifar10", workers=2, epoch_scale=0.006, subset=24,
                batch_size=8, storage_path=str(tmp_path / "ray"), tracking_uri=uri,
                recal_images=8, val_limit=8, experiment="smoke", max_failures=2)
    base.update(kw)
    return TrainRequest(**base)


@pytest.mark.parametrize("schedule", ["ofa", "compofa", "deps"])
def test_smoke_run_records_a_finished_run_with_cost(schedule: str, shared_data: Path,
                                                   ray_local: object, mlflow_uri: str,
                                                   tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from ofa_platform.train.runner import prepare, run_training
    from search_spaces.checkpoints import load_supernet

    prep = prepare(_request(schedule, tmp_path, mlflow_uri))
    lines: list[str] = []
    out = run_training(prep, progress=lines.append)  # speed is benchmarks/' business
    assert out.status == "FINISHED", out.error

    client = MlflowClient(mlflow_uri)
    run = client.get_run(out.run_id)
    m, tags = run.data.metrics, run.data.tags
    assert run.info.status == "FINISHED"
    assert tags["ofa.kind"] == "train" and tags["ofa.method"] == schedule
    assert tags["ofa.space"] == prep.space and tags["ofa.hardware"] == "cpu"
    for key in (*COST, "projected_full_device_hours", "images_per_s_per_device"):
        assert math.isfinite(m[key]) and m[key] > 0, key
    assert m["dollars"] == pytest.approx(m["device_hours"] * prep.hardware.price_per_hour)
    # device-hours are wall time x 2 workers
    assert m["device_hours"] == pytest.approx(m["wall_s"] * 2 / 3600, rel=1e-6)
    total = prep.schedule.total_epochs
    assert total == len(prep.schedule.phases)  # a sliver of each phase: one epoch each
    assert m["epochs_run"] == m["epochs_total"] == total
    # the projection is for the published recipe, far longer than the smoke run
    assert m["projected_full_device_hours"] > 100 * m["device_hours"]
    for key in ("loss", "lr", "beta", "acc_smallest", "acc_middle", "acc_largest",
                "images_per_s"):
        hist = client.get_metric_history(out.run_id, key)
        assert sorted({h.step for h in hist}) == list(range(1, total + 1)), key
    # phases as nested runs, all finished, with their epoch ranges
    children = client.search_runs([run.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{out.run_id}'")
    assert sorted(c.data.tags["ofa.phase"] for c in children) == sorted(
        p.name for p in prep.schedule.phases)
    assert {c.info.status for c in children} == {"FINISHED"}
    for c in children:
        p = prep.schedule.phase(c.data.tags["ofa.phase"])
        assert int(c.data.params["start_epoch"]) == p.start_epoch
        assert all(c.data.metrics[k] > 0 for k in COST), p.name  # each phase's own cost
    # each finished phase's supernet, for --init-from RUN_ID:PHASE
    arts = {a.path for a in client.list_artifacts(out.run_id, "phases")}
    assert arts == {f"phases/{p.name}" for p in prep.schedule.phases}
    # the final checkpoint is an artifact that loads as a supernet of the right space
    local = client.download_artifacts(out.run_id, "checkpoint", str(tmp_path / "dl"))
    supernet, extra = load_supernet(os.path.join(local, "supernet.pt"))
    assert supernet.space.name == prep.space and extra["epoch"] == total
    assert any("device-hours" in line for line in lines)


RESUMABLE = """\
name: resumable
space: ofa_mbv3
phases:
  - name: teacher
    epochs: 6
    lr: 0.5
    sampling: max
    restrict: {kernels: [7], ratios: [6], depths: [4]}
    init: scratch
"""


def _train_workers() -> list[int]:
    """PIDs of this test's Ray Train workers: descendants of this process, which started the
    local Ray they run in (another Ray on the machine, a study or a second test run, has
    RayTrainWorker processes too)."""
    import psutil

    pids = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "RayTrainWorker" in " ".join(p.cmdline()):
                pids.append(p.pid)
        except psutil.Error:
            continue
    return sorted(pids)


def test_killed_worker_resumes_from_last_checkpoint(shared_data: Path, ray_local: object,
                                                    mlflow_uri: str, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from ofa_platform.train.runner import prepare, run_training

    recipe = tmp_path / "resumable.yaml"
    recipe.write_text(RESUMABLE)
    prep = prepare(_request(str(recipe), tmp_path, mlflow_uri, epoch_scale=1.0, subset=24))
    run_dir = Path(prep.storage_path) / prep.run_name
    box: dict[str, object] = {}
    thread = threading.Thread(target=lambda: box.update(out=run_training(prep, lambda s: None)))
    thread.start()
    def checkpoints() -> list[Path]:  # directories only: Ray's snapshot json also matches
        return [p for p in run_dir.glob("checkpoint_*") if p.is_dir()]

    def epochs_logged() -> int:
        """Epochs the controller has registered (it logs them after the checkpoint is
        committed; a checkpoint directory alone may still be discarded)."""
        from mlflow.tracking import MlflowClient

        client = MlflowClient(mlflow_uri)
        try:
            exps = [e.experiment_id for e in client.search_experiments()]
            runs = client.search_runs(exps, f"tags.`ofa.ray_run_name` = '{prep.run_name}'")
        except Exception:  # noqa: BLE001 - the store is being created
            return 0
        return len(client.get_metric_history(runs[0].info.run_id, "loss")) if runs else 0

    deadline = time.time() + 240
    while time.time() < deadline and not (checkpoints() and epochs_logged() >= 1):
        time.sleep(0.5)
    assert checkpoints() and epochs_logged() >= 1, "no checkpoint was committed"
    workers = _train_workers()
    assert len(workers) == 2, workers
    os.kill(workers[-1], signal.SIGKILL)
    killed_at = time.time()
    thread.join(timeout=400)
    assert not thread.is_alive()
    out = box["out"]
    assert out.status == "FINISHED", out.error
    client = MlflowClient(mlflow_uri)
    run = client.get_run(out.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["worker_failures"] >= 1
    # bookkeeping is a tag (ofa.tracking.BOOKKEEPING), not a metric beside accuracy
    assert "resumed_from" not in run.data.metrics and "arch_digest" not in run.data.metrics
    resumed = [int(e) for e in run.data.tags.get("ofa.resumed_from", "").split(",") if e]
    assert run.data.metrics["epochs_run"] == 6
    # after the restart the workers continued from a checkpoint, not from epoch 0
    assert max(resumed, default=-1) >= 1, (resumed, time.time() - killed_at,
                                           [str(p) for p in checkpoints()])
    assert all(k in run.data.metrics for k in COST)


def test_failed_job_records_cost_and_ends_failed(shared_data: Path, ray_local: object,
                                                 mlflow_uri: str, tmp_path: Path) -> None:
    """A job that breaks inside the workers (here: its init checkpoint vanished after
    validation) ends FAILED with what it spent, and leaves no run RUNNING."""
    from mlflow.tracking import MlflowClient

    from ofa_platform.train.runner import prepare, run_training
    from search_spaces.checkpoints import save_supernet
    from search_spaces.registry import create_supernet

    ckpt = tmp_path / "init.pt"
    save_supernet(str(ckpt), create_supernet("compofa_mbv3", n_classes=10, small_input=True))
    recipe = tmp_path / "resumable.yaml"
    recipe.write_text(RESUMABLE.replace("ofa_mbv3", "compofa_mbv3").replace("kernels: [7], ", ""))
    prep = prepare(_request(str(recipe), tmp_path, mlflow_uri, subset=24, max_failures=0,
                            init_checkpoint=str(ckpt)))
    ckpt.unlink()
    out = run_training(prep, progress=lambda s: None)
    assert out.status == "FAILED" and out.error
    client = MlflowClient(mlflow_uri)
    run = client.get_run(out.run_id)
    assert run.info.status == "FAILED"
    assert all(k in run.data.metrics and run.data.metrics[k] > 0 for k in COST)
    everything = client.search_runs([run.info.experiment_id])
    assert "RUNNING" not in {r.info.status for r in everything}
