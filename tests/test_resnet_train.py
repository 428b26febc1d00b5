"""ResNet50D end to end: a smoke run of the ``ofa_resnet50`` recipe on CIFAR-10 (32 px, a few
steps per phase, Ray Train, one worker), then a search of the trained checkpoint with measured
CPU latency (subnets evaluated through Ray Tune, a predictor fitted on them)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest


def test_recipe_runs_every_phase_in_the_plain_engine(shared_data: Path) -> None:
    """The same worker loop without Ray: every phase of the recipe (teacher, depth, expand
    with channel sorting, width; distillation from the full network) on CIFAR-10 at 32 px."""
    from ofa_platform.train.engine import EngineConfig, run_plain
    from ofa_platform.train.schedule import load_schedule

    schedule = load_schedule("ofa_resnet50").scaled(0.006)
    cfg = EngineConfig(schedule=schedule, space="ofa_resnet50", data="cifar10", batch_size=4,
                       subset=4, recal_images=4, val_limit=4, amp="off")
    epochs = run_plain(cfg)
    assert len(epochs) == schedule.total_epochs == 7
    for m in epochs:
        assert math.isfinite(m["loss"]) and m["loss"] > 0
        assert 0.0 <= m["acc_smallest"] <= 1.0 and 0.0 <= m["acc_largest"] <= 1.0


@pytest.mark.slow
def test_recipe_smoke_run_then_checkpoint_search(shared_data: Path, ray_local: object,  # noqa: ANN001
                                                 mlflow_uri: str, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from ofa_platform.search.runner import SearchRequest, run_search
    from ofa_platform.train.runner import TrainRequest, prepare, run_training
    from search_spaces.checkpoints import load_supernet
    from search_spaces.resnet import ResNetSupernet

    prep = prepare(TrainRequest(
        schedule="ofa_resnet50", data="cifar10", workers=1, epoch_scale=0.006, subset=8,
        batch_size=4, storage_path=str(tmp_path / "ray"), tracking_uri=mlflow_uri,
        recal_images=4, val_limit=4, experiment="smoke", max_failures=0))
    assert [p.name for p in prep.schedule.phases] == [
        "teacher", "depth_1", "depth_2", "expand_1", "expand_2", "width_1", "width_2"]
    out = run_training(prep)
    assert out.status == "FINISHED", getattr(out, "error", None)
    client = MlflowClient(mlflow_uri)
    run = client.get_run(out.run_id)
    m, tags = run.data.metrics, run.data.tags
    assert tags["ofa.space"] == "ofa_resnet50" and tags["ofa.method"] == "ofa_resnet50"
    assert m["epochs_run"] == m["epochs_total"] == 7
    for key in ("acc_smallest", "acc_middle", "acc_largest", "device_hours", "dollars"):
        assert math.isfinite(m[key]), key
    local = client.download_artifacts(out.run_id, "checkpoint", str(tmp_path / "dl"))
    ckpt = os.path.join(local, "supernet.pt")
    supernet, _ = load_supernet(ckpt)
    assert isinstance(supernet, ResNetSupernet) and supernet.plan.small_input
    assert supernet.space.resolutions == prep.engine.data.resolutions   # the recipe's
    assert max(supernet.space.resolutions) == 32

    found = run_search(SearchRequest(
        space="ofa_resnet50", targets=(1e6,), latency="measured:cpu", checkpoint=ckpt,
        data="cifar10", n_arch_samples=6, calib_images=4, calib_batch=4, eval_batch=4,
        val_subset=4, generations=1, population_size=4, n_population_rows=2,
        measure_warmup=0, measure_repeats=1, out_dir=str(tmp_path / "search"),
        cache_dir=str(tmp_path / "cache"), tracking_uri=mlflow_uri, experiment="smoke"))
    [row] = found.rows
    assert row["feasible"] and row["unit"] == "ms"
    arch = supernet.space.parse_arch(row["arch_json"])
    assert arch.r in supernet.space.resolutions
    assert row["measured_accuracy"] == row["measured_accuracy"]   # not NaN
    search_run = client.get_run(found.run_id)
    assert search_run.info.status == "FINISHED"
    assert search_run.data.tags["ofa.space"] == "ofa_resnet50"
    assert search_run.data.tags["ofa.train_run_id"] == out.run_id

    # the report: the ResNet run is a method of the comparison, priced, with its space
    from dashboards.report import write_report

    report = write_report("smoke", tmp_path / "report.html", mlflow_uri)
    row = report.table.loc["ofa_resnet50"]
    assert row["space"] == "ofa_resnet50" and row["device_hours"] > 0, row.to_dict()
    assert row["search_s_per_target"] > 0 and row["train_run_id"] == out.run_id
    html = (tmp_path / "report.html").read_text()
    assert "ofa_resnet50" in html and "<svg" in html
    assert client.get_run(report.run_id).info.status == "FINISHED"
