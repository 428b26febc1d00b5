"""Evolutionary search and the multi-target strategies on the published OFA assets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ofa_platform.search.evolution import Archive, EvolutionConfig, Fitness, evolve
from ofa_platform.search.genes import GeneCodec
from ofa_platform.search.latency import load_lut_dir, lut_estimator, lut_latency_of_arch
from ofa_platform.search.predictor import load_predictor, single_thread
from ofa_platform.search.strategies import climb, prune_to_target, run_strategy
from search_spaces.blueprint import network_plan
from search_spaces.spaces import get_space

RES = tuple(range(160, 225, 4))
TARGETS = [15, 20, 25, 30, 35, 40, 45, 50, 55, 60]


def _fitness(shared_data: Path, space_name: str) -> Fitness:
    codec = GeneCodec(get_space(space_name), RES)
    assets = shared_data / "ofa_mbv3_imagenet"
    pred = load_predictor(assets / "acc_predictor.pth", codec)
    est = lut_estimator(codec, network_plan("mbv3", 1.2), assets / "latency_note10")
    return Fitness(codec, accuracy=lambda g: pred(codec, g), efficiency=est)


@pytest.fixture(scope="module")
def ofa(shared_data: Path) -> Fitness:
    return _fitness(shared_data, "ofa_mbv3")


def test_evolution_is_seeded_feasible_and_beats_random(ofa: Fitness) -> None:
    cfg = EvolutionConfig(generations=15)
    with single_thread():
        a = evolve(ofa, 25, seed=3, config=cfg)
        b = evolve(ofa, 25, seed=3, config=cfg)
    assert a.arch == b.arch and a.accuracy == b.accuracy
    assert a.feasible and a.cost <= 25
    # converged generations rebuild known archs: only unseen ones reach the predictor
    assert cfg.population_size <= a.evaluations <= cfg.population_size * (cfg.generations + 1)
    rand = ofa.codec.random(np.random.default_rng(0), 2000)
    ok = ofa.efficiency(rand) <= 25
    assert a.accuracy > ofa.accuracy(rand[ok]).max()


def test_infeasible_target_reports_both_numbers(ofa: Fitness) -> None:
    res = evolve(ofa, 5, seed=0, config=EvolutionConfig(generations=2))
    assert not res.feasible and res.arch is None
    assert "target 5 ms is infeasible" in res.message
    assert f"{ofa.smallest_cost():.3f} ms" in res.message


def test_tight_target_terminates(ofa: Fitness) -> None:
    """Just above the smallest subnet, almost no random arch is feasible: OFA's sampler
    would loop for a very long time; ours fills from mutations and returns."""
    t = ofa.smallest_cost() + 0.05
    res = evolve(ofa, t, seed=0, config=EvolutionConfig(generations=3))
    assert res.feasible and res.cost <= t


def test_compound_children_stay_in_space(shared_data: Path) -> None:
    fit = _fitness(shared_data, "compofa_mbv3")
    res = evolve(fit, 30, seed=1, config=EvolutionConfig(generations=5))
    space = fit.codec.space
    assert res.population is not None
    for arch in fit.codec.decode(res.population[0]):
        space.validate(arch)


def test_prune_only_lowers_and_fits(ofa: Fitness) -> None:
    rng = np.random.default_rng(0)
    big = ofa.codec.extreme(largest=True)[0]
    for target in (60, 30, 12):
        pruned = prune_to_target(ofa, big, target, rng)
        assert pruned is not None
        assert float(ofa.efficiency(pruned[None])[0]) <= target
        assert (pruned <= big).all()


@pytest.mark.parametrize("strategy", ["top-down", "bottom-up"])
def test_warm_started_strategies_score_no_arch_twice(ofa: Fitness, strategy: str) -> None:
    scored: list[bytes] = []

    def counting(genes: np.ndarray) -> np.ndarray:
        scored.extend(row.tobytes() for row in ofa.codec.canonical(genes))
        return ofa.accuracy(genes)

    fit = Fitness(ofa.codec, accuracy=counting, efficiency=ofa.efficiency)
    results = run_strategy(strategy, fit, [20, 30, 40], seed=0,
                           config=EvolutionConfig(generations=16))
    assert all(r.feasible and r.cost <= r.target for r in results)
    assert len(scored) == len(set(scored)) == fit.evaluations


def test_climb_stays_within_target_and_never_loses(ofa: Fitness) -> None:
    rng = np.random.default_rng(1)
    archive = Archive(ofa)
    for target in (18.0, 35.0):
        start = prune_to_target(ofa, ofa.codec.random(rng, 1)[0], target - 6, rng)
        assert start is not None
        acc0 = float(archive.score(start[None], ofa.efficiency(start[None]))[0])
        top = climb(ofa, archive, start, acc0, target)
        assert float(ofa.efficiency(top[None])[0]) <= target
        assert float(ofa.accuracy(top[None])[0]) > acc0  # 6 ms of budget left: it climbs


def test_strategies_within_targets_close_to_vanilla_and_faster(ofa: Fitness) -> None:
    """The issue's goal at OFA's defaults (500 generations): every target within 0.5 points of
    vanilla's predicted accuracy, with at most 35% of its accuracy queries (the work; the wall
    time of the same comparison is measured side by side in benchmarks/bench_search.py)."""
    cfg = EvolutionConfig()
    out, evals = {}, {}
    with single_thread():
        for strategy in ("vanilla", "top-down", "bottom-up"):
            before = ofa.evaluations
            out[strategy] = run_strategy(strategy, ofa, TARGETS, seed=0, config=cfg)
            evals[strategy] = ofa.evaluations - before
    print(f"\n{'target':>6} " + " ".join(f"{s:>10}" for s in out))
    for i, t in enumerate(TARGETS):
        print(f"{t:>6} " + " ".join(f"{100 * out[s][i].accuracy:>10.2f}" for s in out))
    print("evals  " + " ".join(f"{evals[s]:>10d}" for s in out))
    for strategy, results in out.items():
        assert [r.target for r in results] == TARGETS
        for r in results:
            assert r.feasible and r.cost <= r.target, (strategy, r.target, r.cost)
    van = np.array([r.accuracy for r in out["vanilla"]])
    for strategy in ("top-down", "bottom-up"):
        acc = np.array([r.accuracy for r in out[strategy]])
        assert (acc - van).min() >= -0.005, (strategy, acc - van)
        assert evals[strategy] <= 0.35 * evals["vanilla"], (strategy, evals)


def _ofa_features(arch, n_slots_per_stage: int = 4) -> np.ndarray:  # noqa: ANN001
    """OFA's published encoding written out by hand, slot by slot (independent of ours)."""
    k_ix, e_ix = {3: 0, 5: 1, 7: 2}, {3: 0, 4: 1, 6: 2}
    kf, ef = [], []
    for ks, es in zip(arch.ks, arch.e):
        for j in range(n_slots_per_stage):
            k1, e1 = [0.0] * 3, [0.0] * 3
            if j < len(ks):
                k1[k_ix[ks[j]]], e1[e_ix[es[j]]] = 1.0, 1.0
            kf += k1
            ef += e1
    r1 = [0.0] * 8
    r1[(arch.r - 112) // 16] = 1.0
    return np.array(kf + ef + r1, dtype=np.float32)


def test_exhaustive_equals_brute_force(shared_data: Path) -> None:
    fit = _fitness(shared_data, "compofa_mbv3")
    targets = [12, 18, 25, 33, 47]
    results = run_strategy("exhaustive", fit, targets, seed=0)
    # brute force: every arch, latency by walking its layers, accuracy by a plain torch MLP
    assets = shared_data / "ofa_mbv3_imagenet"
    space = fit.codec.space.with_resolutions(RES)
    archs = list(space.enumerate())
    assert len(archs) == 243 * len(RES)
    tables = load_lut_dir(assets / "latency_note10", RES)
    plan = network_plan("mbv3", 1.2)
    lat = np.array([lut_latency_of_arch(tables, plan, a) for a in archs])
    mlp = torch.nn.Sequential(torch.nn.Linear(128, 400), torch.nn.ReLU(),
                              torch.nn.Linear(400, 400), torch.nn.ReLU(),
                              torch.nn.Linear(400, 400), torch.nn.ReLU(), torch.nn.Linear(400, 1))
    mlp.load_state_dict(torch.load(assets / "acc_predictor.pth", map_location="cpu",
                                   weights_only=True))
    with torch.no_grad():
        acc = mlp(torch.from_numpy(np.stack([_ofa_features(a) for a in archs])))[:, 0].numpy()
    for t, res in zip(targets, results):
        ok = [i for i in range(len(archs)) if lat[i] <= t]
        if not ok:
            assert not res.feasible
            continue
        best = max(ok, key=lambda i: acc[i])
        assert res.arch == archs[best]
        assert res.accuracy == pytest.approx(float(acc[best]), abs=1e-5)
        assert res.cost == pytest.approx(lat[best], rel=1e-9)


def test_vanilla_over_ray_matches_local(ofa: Fitness, ray_local) -> None:  # noqa: ANN001
    cfg = EvolutionConfig(generations=5, population_size=20)
    local = run_strategy("vanilla", ofa, [20, 40], seed=5, config=cfg)
    remote = run_strategy("vanilla", ofa, [20, 40], seed=5, config=cfg, workers=2)
    assert [r.arch for r in local] == [r.arch for r in remote]


