"""Population evaluation with Ray Tune on reused actors, cached per checkpoint."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ofa_platform.search.cache import JsonMemo
from ofa_platform.search.population import (
    EvalSetup,
    PopulationEvaluator,
    ShardEvaluator,
    balanced_shards,
    plan_shards,
    shard_size_for,
)


def test_shard_size_keeps_tune_overhead_under_two_percent() -> None:
    # 0.1 s overhead per trial, 0.5 s per subnet: 10 subnets make a 5 s trial (2%)
    assert shard_size_for(1000, 2, 0.5) == 10
    assert 0.1 / (shard_size_for(1000, 2, 0.01) * 0.01) <= 0.02
    assert shard_size_for(6, 2, 0.5) == 3  # never fewer shards than workers can share


def test_balanced_shards_even_out_costs_and_hand_out_the_heaviest_first() -> None:
    rng = random.Random(0)
    costs = [rng.uniform(1.0, 3.0) for _ in range(40)]
    shards = balanced_shards(costs, 8)
    assert sorted(i for s in shards for i in s) == list(range(40))  # each item once
    totals = [sum(costs[i] for i in s) for s in shards]
    assert totals == sorted(totals, reverse=True)
    assert totals[0] - totals[-1] <= max(costs)  # longest-processing-time-first bound
    cut = [sum(costs[i:i + 5]) for i in range(0, 40, 5)]  # shards in sampling order
    assert totals[0] - totals[-1] < (max(cut) - min(cut)) / 4
    assert [len(s) for s in balanced_shards([1.0] * 7, 3)] == [3, 2, 2]
    assert balanced_shards([2.0, 1.0], 5) == [[0], [1]]  # never an empty shard


def test_plan_shards_sizes_by_overhead_and_balances_by_cost() -> None:
    from search_spaces.spaces import get_space

    space = get_space("compofa_mbv3").with_resolutions((16, 32))
    rng = random.Random(1)
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(40)))[:24]
    shards = plan_shards(archs, 2, 0.5, cost=lambda a: a.r * a.r)
    assert len(shards) == 24 // shard_size_for(24, 2, 0.5)
    assert sorted(a.key for s in shards for a in s) == sorted(a.key for a in archs)
    heavy = [sum(a.r * a.r for a in s) for s in shards]
    assert max(heavy) - min(heavy) <= 32 * 32


def test_tune_population_matches_direct_evaluation_and_is_cached(ray_local,  # noqa: ANN001
                                                                 tmp_path: Path) -> None:
    from ofa_platform.datasets import load_dataset
    from search_spaces.registry import create_supernet
    from search_spaces.spaces import get_space

    space = get_space("compofa_mbv3").with_resolutions((16,))
    data = "synthetic:40"
    n_classes = load_dataset(data, seed=0).n_classes
    net = create_supernet(space, n_classes=n_classes, small_input=True)
    setup = EvalSetup(data, calib_images=8, calib_batch=8, eval_batch=8, val_subset=8, seed=0)
    rng = random.Random(0)
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(2)))
    cache = JsonMemo(tmp_path / "acc.json")
    ev = PopulationEvaluator(net, setup, workers=2, cache=cache,
                             storage_dir=tmp_path / "tune", seconds_per_subnet=1.0)
    from ofa_platform.progress import LineReporter

    shown: list[str] = []
    ev.progress = LineReporter(shown.append, min_interval_s=0.0)
    accs = ev.evaluate(archs)
    assert len(archs) == 2 and ev.trials_run == 2  # one shard per worker
    assert shown[-1].startswith("[evaluate subnets] 2/2 subnets"), shown  # the display
    direct = ShardEvaluator(dict(net.spec), net.state_dict(), setup)
    assert accs == pytest.approx([direct.evaluate_one(a) for a in archs])
    again = PopulationEvaluator(net, setup, workers=2, cache=JsonMemo(tmp_path / "acc.json"),
                                storage_dir=tmp_path / "tune", seconds_per_subnet=1.0)
    assert again.evaluate(list(reversed(archs))) == list(reversed(accs))
    assert again.trials_run == 0


def test_checkpoint_search_logs_predictor_and_tune_trials(ray_local, mlflow_uri: str,  # noqa: ANN001
                                                           tmp_path: Path) -> None:
    """A search from a supernet checkpoint: subnets evaluated by Tune, a predictor fitted,
    and the driver records the predictor's held-out quality and every Tune trial."""
    import mlflow
    import pyarrow.parquet as pq
    from nets import randomize

    from ofa_platform.datasets import load_dataset
    from ofa_platform.search.runner import SearchRequest, run_search
    from search_spaces.checkpoints import save_supernet
    from search_spaces.registry import create_supernet
    from search_spaces.spaces import get_space

    space = get_space("compofa_mbv3").with_resolutions((16, 20))
    data = "synthetic:200"
    net = create_supernet(space, n_classes=load_dataset(data, seed=0).n_classes,
                          small_input=True)
    # distinct subnets and 20 validation images: held-out accuracies that are not all tied,
    # so Kendall tau is defined
    ckpt = save_supernet(tmp_path / "net.pt", randomize(net, seed=3))
    out = run_search(SearchRequest(
        space="compofa_mbv3", targets=(1e9,), latency="macs", strategy="exhaustive",
        checkpoint=str(ckpt), data=data, n_arch_samples=30, calib_images=16, calib_batch=16,
        eval_batch=20, val_subset=20, out_dir=str(tmp_path / "out"),
        cache_dir=str(tmp_path / "cache"), n_population_rows=4, tracking_uri=mlflow_uri))
    run = mlflow.MlflowClient(mlflow_uri).get_run(out.run_id)
    assert run.info.status == "FINISHED"
    m = run.data.metrics
    assert {"predictor_rmse", "predictor_kendall_tau"} <= set(m), m
    trials = pq.read_table(tmp_path / "out" / "tune_trials.parquet").to_pandas()
    assert m["tune_trials"] == (trials["trial_id"] != "driver-probe").sum() >= 1
    assert m["tune_failed_trials"] == 0 and set(trials["status"]) == {"OK"}
    # the predictor's samples (some may repeat), then the chosen subnet measured
    assert m["subnets_evaluated"] == trials["subnets"].sum() >= 2
    arts = {a.path for a in mlflow.MlflowClient(mlflow_uri).list_artifacts(out.run_id)}
    assert {"tune_trials.parquet", "predictor.pth", "pareto.parquet"} <= arts
    assert out.rows[0]["measured_accuracy"] == out.rows[0]["measured_accuracy"]  # not NaN


def test_failed_shard_is_retried_and_finished_shards_survive(ray_local,  # noqa: ANN001
                                                             tmp_path: Path) -> None:
    """A shard that keeps failing is retried by Tune, then fails the evaluation; the shards
    that finished were cached as their trials reported, so the search run again evaluates
    only what was not finished (how an interrupted search is restored)."""
    from ofa_platform.datasets import load_dataset
    from search_spaces.arch import ArchConfig
    from search_spaces.registry import create_supernet
    from search_spaces.spaces import get_space

    space = get_space("compofa_mbv3").with_resolutions((16,))
    data = "synthetic:40"
    net = create_supernet(space, n_classes=load_dataset(data, seed=0).n_classes,
                          small_input=True)
    setup = EvalSetup(data, calib_images=8, calib_batch=8, eval_batch=8, val_subset=8, seed=0)
    rng = random.Random(1)
    good = list(dict.fromkeys(space.sample(rng) for _ in range(2)))
    broken = good[0].to_dict()
    broken["ks"][0][0] = 9  # no such kernel in the supernet: its evaluation raises
    archs = good + [ArchConfig.from_dict(broken)]
    ev = PopulationEvaluator(net, setup, workers=1, cache=JsonMemo(tmp_path / "acc.json"),
                             storage_dir=tmp_path / "tune", max_failures=1,
                             seconds_per_subnet=100.0)  # one subnet per shard
    with pytest.raises(RuntimeError, match="1 population shard"):
        ev.evaluate(archs)
    status = sorted(r["status"] for r in ev.trial_rows)
    assert status == ["ERROR", "OK", "OK"]
    again = PopulationEvaluator(net, setup, workers=1, cache=JsonMemo(tmp_path / "acc.json"),
                                storage_dir=tmp_path / "tune", seconds_per_subnet=100.0)
    assert len(again.evaluate(good)) == 2 and again.trials_run == 0
