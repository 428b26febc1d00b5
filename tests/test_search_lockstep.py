"""Vanilla search evolves its targets in lockstep with a numpy predictor: same results.

``tests/data/vanilla_seed_outputs.json`` was recorded with the code before the change (one
search per target, the predictor in torch); the same seeds must find the same archs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ofa_platform.search.evolution import EvolutionConfig, Fitness, evolve, evolve_many
from ofa_platform.search.genes import GeneCodec
from ofa_platform.search.latency import lut_estimator, macs_estimator
from ofa_platform.search.predictor import default_encoding, load_predictor, single_thread
from ofa_platform.search.strategies import run_strategy
from search_spaces.blueprint import network_plan
from search_spaces.spaces import get_space

RECORDED = json.loads((Path(__file__).parent / "data" / "vanilla_seed_outputs.json").read_text())


def _synthetic_fitness(case: dict) -> Fitness:
    codec = GeneCodec(get_space(case["space"]), tuple(case["resolutions"]))
    enc = default_encoding(codec)
    w = np.random.default_rng(case["scorer_seed"]).normal(size=enc.dim(codec.n_slots))
    return Fitness(codec, accuracy=lambda g: enc.features(codec, g).astype(np.float64) @ w,
                   efficiency=macs_estimator(codec, network_plan("mbv3", case["width_mult"])),
                   unit="MMACs")


def _check(case: dict, fitness: Fitness) -> None:
    cfg = EvolutionConfig(population_size=case["population_size"],
                          generations=case["generations"])
    with single_thread():
        got = run_strategy("vanilla", fitness, case["targets"], seed=case["seed"], config=cfg)
    assert fitness.evaluations == case["evaluations"]
    for want, res in zip(case["results"], got, strict=True):
        assert res.feasible == want["feasible"]
        assert (res.arch.to_json() if res.arch else None) == want["arch"]
        assert res.accuracy == pytest.approx(want["accuracy"], abs=1e-6)
        assert res.cost == pytest.approx(want["cost"], rel=1e-12)
        assert res.evaluations == want["evaluations"]


def test_same_seed_same_results_as_before_lockstep_synthetic() -> None:
    case = RECORDED["synthetic"]
    _check(case, _synthetic_fitness(case))


def test_same_seed_same_results_as_before_lockstep_published(shared_data: Path) -> None:
    case = RECORDED["published"]
    data = shared_data / "ofa_mbv3_imagenet"
    codec = GeneCodec(get_space(case["space"]), tuple(case["resolutions"]))
    plan = network_plan("mbv3", case["width_mult"])
    predictor = load_predictor(data / "acc_predictor.pth", codec)
    fitness = Fitness(codec, accuracy=lambda g: predictor(codec, g),
                      efficiency=lut_estimator(codec, plan, data / "latency_note10"), unit="ms")
    _check(case, fitness)


def test_lockstep_equals_one_search_per_target_with_one_scorer_call_per_generation() -> None:
    case = RECORDED["synthetic"]
    fitness = _synthetic_fitness(case)
    calls: list[int] = []
    inner = fitness.accuracy

    def counting(genes: np.ndarray) -> np.ndarray:
        calls.append(len(genes))
        return inner(genes)

    fitness.accuracy = counting
    cfg = EvolutionConfig(population_size=20, generations=6)
    targets = [20.0, 160.0, 220.0, 300.0]  # the first is below the smallest subnet
    many = evolve_many(fitness, targets, seeds=[11, 12, 13, 14], config=cfg)
    assert len(calls) <= cfg.generations + 1  # the initial populations, then one per generation
    assert not many[0].feasible and "infeasible" in many[0].message
    calls.clear()
    for t, s, res in zip(targets, [11, 12, 13, 14], many):
        one = evolve(fitness, t, seed=s, config=cfg)
        assert (one.arch, one.evaluations, one.message) == (res.arch, res.evaluations,
                                                            res.message)
        np.testing.assert_array_equal([one.accuracy, one.cost], [res.accuracy, res.cost])
    assert len(calls) > cfg.generations + 1
