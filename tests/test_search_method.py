"""A search is filed under the method that trained its checkpoint, with the training run's id;
``--method`` and ``--train-run-id`` override; and the search run lasts as long as its work."""

from __future__ import annotations

from pathlib import Path

import pytest

from ofa_platform.search.runner import SearchRequest, prepare, run_search
from ofa_platform.train.engine import EngineConfig, checkpoint_provenance
from ofa_platform.train.schedule import list_schedules, load_schedule
from search_spaces.checkpoints import save_ofa_checkpoint, save_supernet
from search_spaces.registry import create_supernet
from search_spaces.spaces import get_space

RES = (16, 20)
DATA = "synthetic:200"


def _trained_checkpoint(schedule: str, path: Path, run_id: str) -> Path:
    """A checkpoint of ``schedule``'s space carrying exactly the ``extra`` training writes
    (the engine's ``checkpoint_provenance`` of its config, with the driver's run id)."""
    sched = load_schedule(schedule)
    cfg = EngineConfig(schedule=sched, space=sched.space, data=DATA, mlflow_run_id=run_id)
    net = create_supernet(get_space(sched.space).with_resolutions(RES), n_classes=10,
                          small_input=True)
    extra = {"schedule": sched.name, "epoch": 1, "phase_index": 0,
             **checkpoint_provenance(cfg)}
    return save_supernet(path, net, extra=extra)


def _request(ckpt: Path, space: str, tmp_path: Path, **kw: object) -> SearchRequest:
    base: dict[str, object] = dict(
        space=space, targets=(1e9,), latency="macs", strategy="vanilla", checkpoint=str(ckpt),
        data=DATA, generations=1, population_size=4, n_arch_samples=8, calib_images=16,
        calib_batch=16, eval_batch=20, val_subset=20, n_population_rows=2,
        out_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"))
    base.update(kw)
    return SearchRequest(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("schedule", list_schedules())
def test_every_recipe_is_searched_under_its_own_method(schedule: str, tmp_path: Path) -> None:
    ckpt = _trained_checkpoint(schedule, tmp_path / "net.pt", f"run-{schedule}")
    space = load_schedule(schedule).space
    prepared = prepare(_request(ckpt, space, tmp_path, log_mlflow=False))
    assert prepared.method == schedule
    assert prepared.train_run_id == f"run-{schedule}"


def test_overrides_and_fallbacks(tmp_path: Path) -> None:
    ckpt = _trained_checkpoint("bignas", tmp_path / "net.pt", "run-bignas")
    over = prepare(_request(ckpt, "deps_mbv3", tmp_path, method="mine", train_run_id="r2",
                            log_mlflow=False))
    assert (over.method, over.train_run_id) == ("mine", "r2")
    # a published OFA/CompOFA file records neither: the space's prefix, no training run
    ofa = save_ofa_checkpoint(tmp_path / "ofa.pth", create_supernet("compofa_mbv3_ek",
                                                                    n_classes=10))
    published = prepare(_request(ofa, "compofa_mbv3_ek", tmp_path, log_mlflow=False,
                                 resolutions="128"))
    assert (published.method, published.train_run_id) == ("compofa", None)


def test_search_run_is_tagged_with_method_and_training_run(ray_local: object, mlflow_uri: str,
                                                           tmp_path: Path) -> None:
    """A compofa_ek checkpoint (space compofa_mbv3_ek, whose prefix names another method; a
    bignas one, space deps_mbv3, goes through the real chain in tests/test_study.py). The run
    lasts at least its search time: it is opened when the work starts, not after it."""
    import mlflow

    schedule, space = "compofa_ek", "compofa_mbv3_ek"
    ckpt = _trained_checkpoint(schedule, tmp_path / "net.pt", f"train-{schedule}")
    out = run_search(_request(ckpt, space, tmp_path, tracking_uri=mlflow_uri))
    run = mlflow.MlflowClient(mlflow_uri).get_run(out.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["ofa.method"] == schedule
    assert run.data.tags["ofa.train_run_id"] == f"train-{schedule}"
    duration_s = (run.info.end_time - run.info.start_time) / 1000
    assert duration_s >= out.search_time_s
    # the subnet evaluation that fits the predictor is part of the run's work
    assert duration_s >= run.data.metrics["subnet_eval_s"]


# The real chain (a training run, then a search of its checkpoint filed under the method and
# run the checkpoint records) is in tests/test_study.py (the interrupted study).
