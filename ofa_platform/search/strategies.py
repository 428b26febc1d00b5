"""Searching many targets at once: vanilla, top-down, bottom-up and exhaustive.

- ``vanilla``: an independent full search per target (spread over Ray workers when asked).
- ``top-down``: targets in descending order; after the first full search, a copy of the previous
  target's best arch is pruned until it fits the next target (pick kernel, depth or ratio at
  random, lower the first slot above a threshold down to it; the threshold is first the
  second-largest option, then the smallest; re-estimate after every change). The population is
  seeded from the pruned arch (and the same arch set to every resolution, then pruned) and
  evolves for sqrt(N) generations instead of N.
- ``bottom-up``: targets in ascending order; the final population of one target (feasible for
  every larger target) seeds the next, which evolves sqrt(N) generations; its best 5 members are
  first climbed (single-gene steepest ascent) within the new, larger target.
Both warm-started strategies share one archive of scored archs across their targets: nothing is
scored twice, and the seed population is topped up with the most accurate archs any earlier
search found within the new target (a short search otherwise starts from one pruned arch, or
from a population crowded at the previous target, and its result varies by a point).
- ``exhaustive``: every arch at every resolution scored once; the exact optimum per target.
Results come back in the order the targets were given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ofa_platform.errors import UserError
from ofa_platform.search.evolution import (
    Archive,
    EvolutionConfig,
    Fitness,
    SearchResult,
    evolve,
    evolve_many,
    infeasible_result,
)

__all__ = ["STRATEGIES", "run_strategy", "prune_to_target", "climb", "EXHAUSTIVE_LIMIT"]

STRATEGIES = ("vanilla", "top-down", "bottom-up", "exhaustive")
EXHAUSTIVE_LIMIT = 2_000_000
CLIMB_SEEDS = 5  # bottom-up: seed archs climbed before each short evolution


def _rng(seed: int, index: int) -> np.random.Generator:
    """One independent stream per target, so a target's result does not depend on the order
    or the worker it ran on."""
    return np.random.default_rng([seed, index])


def run_strategy(strategy: str, fitness: Fitness, targets: Sequence[float], *, seed: int,
                 config: EvolutionConfig = EvolutionConfig(),
                 workers: int = 1) -> list[SearchResult]:
    """Search every target with ``strategy``; ``workers > 1`` spreads vanilla's independent
    targets over Ray tasks (the other strategies are sequential by nature)."""
    if strategy not in STRATEGIES:
        raise UserError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if not targets:
        raise UserError("no targets given")
    if strategy == "exhaustive":
        return _exhaustive(fitness, targets)
    if strategy == "vanilla":
        if workers > 1 and len(targets) > 1 and _cheap(fitness):
            return _vanilla_ray(fitness, targets, seed, config, workers)
        return evolve_many(fitness, targets, seeds=[_rng(seed, i) for i in range(len(targets))],
                           config=config)
    short = max(1, int(round(math.sqrt(config.generations))))
    descending = strategy == "top-down"
    order = sorted(range(len(targets)), key=lambda i: targets[i], reverse=descending)
    archive = Archive(fitness)
    results: dict[int, SearchResult] = {}
    previous: SearchResult | None = None
    for i in order:
        t = targets[i]
        rng = _rng(seed, i)
        if previous is None or not previous.feasible:
            res = evolve(fitness, t, seed=rng, config=config, archive=archive)
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
                         seed_population=seeds, archive=archive)
        results[i] = res
        previous = res
    return [results[i] for i in range(len(targets))]


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

    from ofa_platform.search.predictor import single_thread

    if not ray.is_initialized():  # joins RAY_ADDRESS's cluster when set, else starts one
        ray.init(include_dashboard=False, log_to_driver=False)

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
