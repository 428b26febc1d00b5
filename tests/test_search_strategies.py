"""The multi-target paper's top-down and bottom-up as it states them, and the search settings
each space defaults to (OFA's 500 generations; CompOFA's 50 and 300, its Appendix A.4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ofa_platform.errors import UserError
from ofa_platform.search import strategies
from ofa_platform.search.evolution import EvolutionConfig, Fitness
from ofa_platform.search.genes import GeneCodec
from ofa_platform.search.latency import lut_estimator
from ofa_platform.search.predictor import load_predictor
from ofa_platform.search.runner import SearchRequest, prepare
from ofa_platform.search.strategies import (
    PAPER_FOLLOWUP_GENERATIONS,
    STRATEGIES,
    default_generations,
    followup_generations,
    run_strategy,
)
from search_spaces.blueprint import network_plan
from search_spaces.spaces import get_space

RES = tuple(range(160, 225, 4))
TARGETS = [30.0, 20.0, 40.0, 25.0]  # not sorted: each strategy orders them itself


@pytest.fixture(scope="module")
def assets(shared_data: Path) -> Path:
    return shared_data / "ofa_mbv3_imagenet"


@pytest.fixture(scope="module")
def ofa(assets: Path) -> Fitness:
    codec = GeneCodec(get_space("ofa_mbv3"), RES)
    pred = load_predictor(assets / "acc_predictor.pth", codec)
    est = lut_estimator(codec, network_plan("mbv3", 1.2), assets / "latency_note10")
    return Fitness(codec, accuracy=lambda g: pred(codec, g), efficiency=est)


def _recording(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """The seed populations the strategies hand to ``evolve`` (OFA's evolution)."""
    seeds: list[np.ndarray] = []
    original = strategies.evolve

    def evolve(*args, seed_population: np.ndarray | None = None, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if seed_population is not None:
            seeds.append(seed_population.copy())
        return original(*args, seed_population=seed_population, **kwargs)

    monkeypatch.setattr(strategies, "evolve", evolve)
    return seeds


def test_strategy_names() -> None:
    assert STRATEGIES == ("vanilla", "top-down", "bottom-up", "top-down+", "bottom-up+",
                          "exhaustive")


@pytest.mark.parametrize("strategy", ["top-down", "bottom-up"])
def test_paper_strategy_order_and_generations(ofa: Fitness, strategy: str) -> None:
    """Top-down takes the targets in descending order, bottom-up in ascending; the first
    gets the full N generations, every later one the follow-up count; the first target's
    search is exactly vanilla's (same random stream, nothing added)."""
    cfg = EvolutionConfig(generations=12, population_size=20)
    found = run_strategy(strategy, ofa, TARGETS, seed=4, config=cfg, followup=3)
    assert [r.target for r in found] == TARGETS  # given order
    first = TARGETS.index(max(TARGETS) if strategy == "top-down" else min(TARGETS))
    for i, r in enumerate(found):
        assert r.feasible and r.cost <= r.target
        assert r.generations == (12 if i == first else 3), (i, r.generations)
    vanilla = run_strategy("vanilla", ofa, TARGETS, seed=4, config=cfg)
    assert found[first].arch == vanilla[first].arch
    assert found[first].accuracy == vanilla[first].accuracy


def test_bottom_up_adds_the_previous_optimum(ofa: Fitness,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The later target's population is OFA's random feasible population with the previous
    (smaller) target's optimum added; the elitist evolution then never does worse than it."""
    seeds = _recording(monkeypatch)
    cfg = EvolutionConfig(generations=6, population_size=16)
    found = run_strategy("bottom-up", ofa, [30.0, 20.0], seed=1, config=cfg, followup=2)
    [population] = seeds
    assert len(population) == cfg.population_size
    assert (population[0] == found[1].genes).all()  # the 20 ms optimum, searched first
    assert (np.asarray(ofa.efficiency(population)) <= 30.0).all()
    assert found[0].accuracy >= found[1].accuracy


def test_top_down_adds_a_pruned_previous_optimum(ofa: Fitness,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The later target's population is OFA's random one with a pruned copy of the previous
    (larger) target's optimum added: no gene above the optimum's, within the new target."""
    seeds = _recording(monkeypatch)
    cfg = EvolutionConfig(generations=6, population_size=16)
    found = run_strategy("top-down", ofa, [22.0, 40.0], seed=2, config=cfg, followup=2)
    [population] = seeds
    assert len(population) == cfg.population_size
    pruned, big = population[0], found[1].genes
    assert (pruned <= big).all() and not (pruned == big).all()
    assert float(ofa.efficiency(pruned[None, :])[0]) <= 22.0
    assert found[0].cost <= 22.0


def test_followup_defaults_to_the_papers_63_at_most_n() -> None:
    assert PAPER_FOLLOWUP_GENERATIONS == 63
    assert followup_generations(500) == 63
    assert followup_generations(50) == 50  # never more than the first target's
    assert followup_generations(500, 22) == 22
    with pytest.raises(UserError):
        followup_generations(500, 0)


def test_space_generation_defaults() -> None:
    assert default_generations("ofa_mbv3") == 500  # OFA
    assert default_generations("compofa_mbv3") == 50  # CompOFA A.4, fixed kernel
    assert default_generations("compofa_mbv3_ek") == 300  # CompOFA A.4, elastic kernel


@pytest.mark.parametrize(("space", "given", "expected"),
                         [("compofa_mbv3", None, 50), ("compofa_mbv3_ek", None, 300),
                          ("ofa_mbv3", None, 500), ("compofa_mbv3", 7, 7)])
def test_search_uses_the_space_default_unless_given(assets: Path, tmp_path: Path, space: str,
                                                    given: int | None, expected: int) -> None:
    req = SearchRequest(space=space, targets=(400.0,), latency="macs", strategy="bottom-up",
                        width_mult=1.2, predictor=str(assets / "acc_predictor.pth"),
                        resolutions="160-224:4", generations=given,
                        out_dir=str(tmp_path / "out"), log_mlflow=False)
    before = dict(vars(req))
    prepared = prepare(req)
    assert prepared.config.generations == expected
    assert vars(req) == before  # prepare does not touch the caller's request


def test_prepared_is_frozen_and_retargeted_as_a_new_value(assets: Path, tmp_path: Path) -> None:
    """What the quick start does: prepare once, then search other targets."""
    import dataclasses

    req = SearchRequest(space="ofa_mbv3", targets=(400.0,), latency="macs", width_mult=1.2,
                        predictor=str(assets / "acc_predictor.pth"), resolutions="160-224:4",
                        out_dir=str(tmp_path / "out"), log_mlflow=False)
    prepared = prepare(req)
    with pytest.raises(dataclasses.FrozenInstanceError):
        prepared.method = "x"  # type: ignore[misc]
    other = prepared.with_targets([300, 500])
    assert other.targets == (300.0, 500.0) and other.request.targets == (300.0, 500.0)
    assert prepared.targets == (400.0,) and req.targets == (400.0,)
    with pytest.raises(UserError, match="infeasible"):
        prepared.with_targets([1.0])
