"""Searching many targets at once: vanilla, the multi-target paper's top-down and bottom-up,
our enhanced versions of them, and exhaustive.

- ``vanilla``: an independent full search per target (spread over Ray workers when asked).
- ``top-down`` and ``bottom-up`` as Kumar & Szidon state them ("Efficient Incorporation of
  Multiple Latency Targets in the Once-For-All Network", Sec. 3.1-3.2): the targets in
  descending (top-down) or ascending (bottom-up) order; the first one is searched with the full
  N generations (N = OFA's number of evolutions, 500); every later target starts from OFA's
  random feasible population to which one arch is added -- top-down: "a randomly pruned
  version" of the previous target's optimum (pruned until it fits the new target); bottom-up:
  the previous target's optimum itself -- and evolves for sqrt(N) generations. The paper's
  experiments (Sec. 4.1) ran "sqrt(500) ~ 63" generations after the first target (the true
  root is 22.4; the paper's figure is what it measured), so 63 is the default here
  (:data:`PAPER_FOLLOWUP_GENERATIONS`), never more than N, and configurable.
- ``top-down+`` and ``bottom-up+``: our enhanced versions, better than the paper's at the same
  or lower cost (``benchmarks/bench_search.py``), under their own names:
  ``top-down+``: after the first full search, a copy of the previous target's best arch is
  pruned until it fits the next target (pick kernel, depth or ratio at random, lower the first
  slot above a threshold down to it; the threshold is first the second-largest option, then the
  smallest; re-estimate after every change). The population is seeded from the pruned arch (and
  the same arch set to every resolution, then pruned) and evolves for round(sqrt(N))
  generations. ``bottom-up+``: the final population of one target (feasible for every larger
  target) seeds the next, which evolves round(sqrt(N)) generations; its best 5 members are first
  climbed (single-gene steepest ascent) within the new, larger target. Both share one archive
  of scored archs across their targets: nothing is scored twice, and the seed population is
  topped up with the most accurate archs any earlier search found within the new target (a
  short search otherwise starts from one pruned arch, or from a population crowded at the
  previous target, and its result varies by a point).
- ``exhaustive``: every arch at every resolution scored once; the exact optimum per target.
Results come back in the order the targets were given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from ofa_platform.errors import UserError
from ofa_platform.progress import Reporter
from ofa_platform.search.evolution import (
    Archive,
    EvolutionConfig,
    Fitness,
    SearchResult,
    evolve,
    evolve_many,
    infeasible_result,
)

__all__ = ["STRATEGIES", "PAPER_STRATEGIES", "ENHANCED_STRATEGIES", "run_strategy",
           "prune_to_target", "climb", "EXHAUSTIVE_LIMIT", "PAPER_FOLLOWUP_GENERATIONS",
           "OFA_GENERATIONS", "SPACE_GENERATIONS", "default_generations",
           "followup_generations"]

PAPER_STRATEGIES = ("top-down", "bottom-up")
ENHANCED_STRATEGIES = ("top-down+", "bottom-up+")
STRATEGIES = ("vanilla", *PAPER_STRATEGIES, *ENHANCED_STRATEGIES, "exhaustive")
EXHAUSTIVE_LIMIT = 2_000_000
CLIMB_SEEDS = 5  # bottom-up+: seed archs climbed before each short evolution
#: Generations of every target after the first in the paper's top-down and bottom-up: Kumar &
#: Szidon, Sec. 4.1: "n set to 500 for the first latency target and then sqrt(500) ~ 63
#: evolutions for every subsequent target".
PAPER_FOLLOWUP_GENERATIONS = 63
#: OFA's evolutionary search: N = 500 iterations, population 100 (CompOFA, Appendix A.4).
OFA_GENERATIONS = 500
#: Spaces whose search converges sooner: CompOFA, Appendix A.4: "reducing the number of
#: iterations to N = 300 and N = 50 for CompOFA Elastic-Kernel and CompOFA Fixed-Kernel
#: respectively, without losing out on their Pareto-optimality" (measured on MobileNetV3; the
#: CompOFA ProxylessNAS space was not measured there and keeps OFA's 500).
SPACE_GENERATIONS = {"compofa_mbv3": 50, "compofa_mbv3_ek": 300}


def default_generations(space: str) -> int:
    """N for a search of ``space`` when the user gives none: CompOFA's for its spaces, else
    OFA's."""
    return SPACE_GENERATIONS.get(space, OFA_GENERATIONS)


def followup_generations(generations: int, followup: int | None = None) -> int:
    """Generations of the paper's strategies after the first target: ``followup`` when given,
    else the paper's 63; never more than the first target's ``generations``."""
    n = PAPER_FOLLOWUP_GENERATIONS if followup is None else followup
    if n < 1:
        raise UserError(f"follow-up generations must be >= 1, got {n}")
    return min(n, generations)


def _rng(seed: int, index: int) -> np.random.Generator:
    """One independent stream per target, so a target's result does not depend on the order
    or the worker it ran on."""
    return np.random.default_rng([seed, index])


class _Progress:
    """Targets done, the running target's generation and subnets scored, for a display."""

    def __init__(self, progress: Reporter | None, strategy: str, targets: Sequence[float],
                 fitness: Fitness) -> None:
        self.progress, self.targets, self.fitness = progress, targets, fitness
        self.done = 0
        if progress is not None:
            progress.task("search", f"search ({strategy})", total=len(targets), unit="targets")

    def generation(self, index: int) -> Callable[[int, int], None] | None:
        if self.progress is None:
            return None
        progress, target = self.progress, self.targets[index]

        def report(gen: int, total: int) -> None:
            progress.update("search", self.done, f"target {target:g}: generation {gen + 1}/"
                            f"{total}, {self.fitness.evaluations} subnets scored")
        return report

    def target_done(self, result: SearchResult) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress.update("search", self.done, f"target {result.target:g}: "
                                 f"{result.generations} generations, "
                                 f"{self.fitness.evaluations} subnets scored")

    def all_done(self, results: list[SearchResult]) -> list[SearchResult]:
        if self.progress is not None:
            if results and self.done < len(results):
                self.done = len(results) - 1
                self.target_done(results[-1])
            self.progress.done("search")
        return results


def run_strategy(strategy: str, fitness: Fitness, targets: Sequence[float], *, seed: int,
                 config: EvolutionConfig = EvolutionConfig(),
                 workers: int = 1, followup: int | None = None,
                 progress: Reporter | None = None) -> list[SearchResult]:
    """Search every target with ``strategy``; ``workers > 1`` spreads vanilla's independent
    targets over Ray tasks (the other strategies are sequential by nature). ``followup`` is
    the generations after the first target of the paper's top-down and bottom-up (default
    :data:`PAPER_FOLLOWUP_GENERATIONS`). ``progress`` shows targets done, generations and
    subnets scored."""
    if strategy not in STRATEGIES:
        raise UserError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if not targets:
        raise UserError("no targets given")
    shown = _Progress(progress, strategy, targets, fitness)
    if strategy == "exhaustive":
        return shown.all_done(_exhaustive(fitness, targets))
    if strategy == "vanilla":
        if workers > 1 and len(targets) > 1 and _cheap(fitness):
            return shown.all_done(_vanilla_ray(fitness, targets, seed, config, workers))
        return shown.all_done(evolve_many(
            fitness, targets, seeds=[_rng(seed, i) for i in range(len(targets))],
            config=config, on_generation=shown.generation))
    if strategy in PAPER_STRATEGIES:
        return shown.all_done(_paper(strategy == "top-down", fitness, targets, seed, config,
                                     followup_generations(config.generations, followup), shown))
    return shown.all_done(_enhanced(strategy == "top-down+", fitness, targets, seed, config,
                                    shown))


def _paper(descending: bool, fitness: Fitness, targets: Sequence[float], seed: int,
           config: EvolutionConfig, followup: int, shown: _Progress) -> list[SearchResult]:
    """The paper's top-down (``descending``) or bottom-up. A target whose predecessor found
    nothing (infeasible) is searched as a first target, with the full N generations. Each
    target keeps vanilla's random stream and its own archive (a memo of scores within one
    search, as vanilla's), so the only differences from vanilla are the added arch and the
    shorter evolution."""
    order = sorted(range(len(targets)), key=lambda i: targets[i], reverse=descending)
    results: dict[int, SearchResult] = {}
    previous: SearchResult | None = None
    for i in order:
        t, rng = targets[i], _rng(seed, i)
        warm = None
        if previous is not None and previous.feasible and previous.genes is not None:
            warm = (prune_to_target(fitness, previous.genes, t, rng) if descending
                    else previous.genes)
        if warm is None:
            res = evolve(fitness, t, seed=rng, config=config,
                         on_generation=shown.generation(i))
        else:
            res = _evolve_with(fitness, t, rng, config, warm, followup,
                               shown.generation(i))
        results[i] = previous = res
        shown.target_done(res)
    return [results[i] for i in range(len(targets))]


def _evolve_with(fitness: Fitness, target: float, rng: np.random.Generator,
                 config: EvolutionConfig, warm: np.ndarray, generations: int,
                 on_generation: Callable[[int, int], None] | None = None) -> SearchResult:
    """OFA's evolution from its usual random feasible population with ``warm`` added to it
    (in place of the least accurate random member, so the population keeps its size)."""
    archive = Archive(fitness)
    start = evolve(fitness, target, seed=rng, config=config, generations=0, archive=archive)
    assert start.population is not None
    population = np.concatenate([warm.astype(np.int16)[None, :],
                                 start.population[0][:config.population_size - 1]])
    res = evolve(fitness, target, seed=rng, config=config, generations=generations,
                 seed_population=population, archive=archive, on_generation=on_generation)
    return replace(res, evaluations=res.evaluations + start.evaluations)


def _enhanced(descending: bool, fitness: Fitness, targets: Sequence[float], seed: int,
              config: EvolutionConfig, shown: _Progress) -> list[SearchResult]:
    """``top-down+`` (``descending``) and ``bottom-up+``: see the module docstring."""
    short = max(1, int(round(math.sqrt(config.generations))))
    order = sorted(range(len(targets)), key=lambda i: targets[i], reverse=descending)
    archive = Archive(fitness)
    results: dict[int, SearchResult] = {}
    previous: SearchResult | None = None
    for i in order:
        t = targets[i]
        rng = _rng(seed, i)
        if previous is None or not previous.feasible:
            res = evolve(fitness, t, seed=rng, config=config, archive=archive,
                         on_generation=shown.generation(i))
        else:
            if descending:
                assert previous.genes is not None
                pruned = prune_to_target(fitness, previous.genes, t, rng)
                if pruned is None:
                    results[i] = previous = infeasible_result(t, fitness.smallest_cost(),
                                                              fitness.unit)
                    continue
                lead = np.concatenate([pruned[None, :],
                                       _pruned_at_each_resolution(fitness, previous.genes, t, rng)])
            else:
                assert previous.population is not None
                lead = previous.population[0]
            seeds = _unique_rows(fitness.codec, np.concatenate(
                [lead, archive.best_within(t, config.population_size)]))
            if not descending:
                seeds = _unique_rows(fitness.codec, np.concatenate(
                    [_climb_best(fitness, archive, seeds, t, CLIMB_SEEDS), seeds]))
            res = evolve(fitness, t, seed=rng, config=config, generations=short,
                         seed_population=seeds, archive=archive,
                         on_generation=shown.generation(i))
        results[i] = res
        previous = res
        shown.target_done(res)
    return shown.all_done([results[i] for i in range(len(targets))])


def _pruned_at_each_resolution(fitness: Fitness, genes: np.ndarray, target: float,
                               rng: np.random.Generator) -> np.ndarray:
    """Copies of ``genes`` set to every resolution, each pruned to fit ``target``. Pruning
    alone keeps the resolution until every block is at its smallest, so a top-down lineage
    otherwise stays at its first resolution while vanilla moves to a higher resolution with a
    smaller network: seen as the worst per-target gaps in ``benchmarks/bench_search.py``."""
    rows = np.repeat(genes.astype(np.int16)[None, :], fitness.codec.n_choices[fitness.codec.r_col],
                     axis=0)
    rows[:, fitness.codec.r_col] = np.arange(len(rows))
    found = [prune_to_target(fitness, row, target, rng) for row in rows]
    kept = [row for row in found if row is not None]
    return np.stack(kept) if kept else np.zeros((0, fitness.codec.width), dtype=np.int16)


def _climb_best(fitness: Fitness, archive: Archive, rows: np.ndarray, target: float,
                k: int) -> np.ndarray:
    """The ``k`` most accurate feasible rows, each climbed within ``target``."""
    cost = np.asarray(fitness.efficiency(rows), dtype=np.float64)
    rows, cost = rows[cost <= target], cost[cost <= target]
    acc = archive.score(rows, cost)
    top = np.argsort(-acc, kind="stable")[:k]
    return np.stack([climb(fitness, archive, rows[j], float(acc[j]), target) for j in top])


def climb(fitness: Fitness, archive: Archive, genes: np.ndarray, accuracy: float,
          target: float, max_steps: int = 50) -> np.ndarray:
    """Steepest ascent over single-gene changes that stay within ``target``: every neighbour
    of the current arch is scored at once (through ``archive``) and the best one taken, until
    none is better. Bottom-up's seed population sits at the previous, smaller target; climbing
    its best members spends the new budget before the short evolution starts, which removes
    most of bottom-up's shortfall against vanilla (``benchmarks/bench_search.py``)."""
    codec = fitness.codec
    row = genes.astype(np.int16).copy()
    cols = np.repeat(np.arange(codec.width), codec.n_choices)
    vals = np.concatenate([np.arange(n) for n in codec.n_choices]).astype(np.int16)
    for _ in range(max_steps):
        keep = row[cols] != vals
        nb = np.repeat(row[None, :], int(keep.sum()), axis=0)
        nb[np.arange(len(nb)), cols[keep]] = vals[keep]
        codec.couple(nb)
        cost = np.asarray(fitness.efficiency(nb), dtype=np.float64)
        ok = cost <= target
        if not ok.any():
            break
        acc = archive.score(nb[ok], cost[ok])
        best = int(np.argmax(acc))
        if acc[best] <= accuracy:
            break
        row, accuracy = nb[ok][best], float(acc[best])
    return row


def _unique_rows(codec, rows: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """``rows`` without repeated archs (compared on active genes), first occurrence kept."""
    _, first = np.unique(codec.canonical(rows), axis=0, return_index=True)
    return rows[np.sort(first)]


def prune_to_target(fitness: Fitness, genes: np.ndarray, target: float,
                    rng: np.random.Generator) -> np.ndarray | None:
    """Shrink a copy of one arch until its cost fits ``target`` (the top-down rule); the
    resolution is lowered last, when every block is already at its smallest. None when even
    that does not fit."""
    codec = fitness.codec
    row = genes.astype(np.int16).copy()[None, :]
    cost = float(fitness.efficiency(row)[0])
    dims = ["kernel", "depth"] + ([] if codec.compound else ["ratio"])
    for phase in ("second", "smallest"):
        while cost > target:
            candidates = []
            for dim in dims:
                cols = _dim_columns(codec, row, dim)
                thr = _thresholds(codec, cols, phase)
                above = np.nonzero(row[0, cols] > thr)[0]
                if len(above):
                    candidates.append((cols[above[0]], thr[above[0]]))
            if not candidates:
                break
            col, thr = candidates[int(rng.integers(len(candidates)))]
            row[0, col] = thr
            codec.couple(row)
            cost = float(fitness.efficiency(row)[0])
    while cost > target and row[0, codec.r_col] > 0:
        row[0, codec.r_col] -= 1
        cost = float(fitness.efficiency(row)[0])
    return row[0] if cost <= target else None


def _dim_columns(codec, row: np.ndarray, dim: str) -> np.ndarray:  # noqa: ANN001
    """Gene columns of one dimension in slot order; kernels and ratios of active slots only."""
    if dim == "depth":
        return np.arange(codec.d_cols.start, codec.d_cols.stop)
    active = codec.active(row)[0]
    base = codec.k_cols.start if dim == "kernel" else codec.e_cols.start
    return base + np.nonzero(active)[0]


def _thresholds(codec, cols: np.ndarray, phase: str) -> np.ndarray:  # noqa: ANN001
    n = codec.n_choices[cols].astype(np.int64)
    return np.maximum(n - 2, 0) if phase == "second" else np.zeros_like(n)


def _exhaustive(fitness: Fitness, targets: Sequence[float]) -> list[SearchResult]:
    codec = fitness.codec
    n = codec.space.cardinality() * len(codec.resolutions)
    if n > EXHAUSTIVE_LIMIT:
        raise UserError(f"exhaustive search of {codec.space.name} needs {n:,} evaluations "
                        f"(limit {EXHAUSTIVE_LIMIT:,}); use vanilla, top-down or bottom-up")
    space = codec.space.with_resolutions(codec.resolutions)
    genes = codec.encode(list(space.enumerate(with_resolution=True)))
    cost = np.asarray(fitness.efficiency(genes), dtype=np.float64)
    acc = fitness.score(genes)
    out = []
    for t in targets:
        ok = np.nonzero(cost <= t)[0]
        if len(ok) == 0:
            out.append(infeasible_result(t, float(cost.min()), fitness.unit))
            continue
        best = ok[np.argmax(acc[ok])]
        out.append(SearchResult(target=t, feasible=True, arch=codec.decode(genes[best:best + 1])[0],
                                accuracy=float(acc[best]), cost=float(cost[best]),
                                unit=fitness.unit, generations=0, evaluations=len(genes),
                                genes=genes[best].copy()))
    return out


def _cheap(fitness: Fitness) -> bool:
    """Spread targets over workers only when fitness is a table lookup: measured latency
    would contend for the device it measures and race on its memo."""
    from ofa_platform.search.latency import AdditiveEstimator

    return isinstance(fitness.efficiency, AdditiveEstimator)


def _vanilla_ray(fitness: Fitness, targets: Sequence[float], seed: int, config: EvolutionConfig,
                 workers: int) -> list[SearchResult]:
    """Independent targets as Ray tasks, the fitness shipped once through the object store."""
    import ray

    from ofa_platform.cluster import init_ray
    from ofa_platform.search.predictor import single_thread

    init_ray()  # joins RAY_ADDRESS's cluster when set, else starts its own, quietly

    @ray.remote(num_cpus=1)
    def one(fit: Fitness, target: float, index: int) -> SearchResult:
        with single_thread():
            res = evolve(fit, target, seed=_rng(seed, index), config=config)
        res.population = None  # the population stays on the worker
        return res

    ref = ray.put(fitness)
    results = ray.get([one.remote(ref, t, i) for i, t in enumerate(targets)])
    fitness.evaluations += sum(r.evaluations for r in results)
    return results
