"""OFA's evolutionary search for one efficiency target, on whole generations at once.

The algorithm and defaults are OFA's: a population of 100 feasible archs; each generation the
best 25 are parents, 50 children come from mutation (every gene resampled with probability 0.1)
and 50 from crossover (every gene from either parent), and the best 25 of parents and children
go on; 500 generations. What differs is the machinery: a population is a numpy array of genes,
efficiency and accuracy are computed for a whole generation in one call each, and the
constraint is handled by bounded resampling (a child still infeasible after a few rounds is
replaced by a copy of its parent) instead of OFA's ``while True``. A target below the smallest
subnet's cost is reported as infeasible with both numbers instead of being searched forever.
Compound spaces keep each stage's ratio tied to its depth and cross whole stages.
Independent targets evolve in lockstep (:func:`evolve_many`): one accuracy call per generation
and one efficiency call per repair round for all of them, with each target's result unchanged.
A search is written as steps (a generator) that ask for rows to be scored or costed and
receive the answers, so whoever drives it decides how the asks are batched.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import TypeVar

import numpy as np

from ofa_platform.search.genes import GeneCodec
from search_spaces.arch import ArchConfig

__all__ = ["Archive", "EvolutionConfig", "Fitness", "SearchResult", "evolve", "evolve_many",
           "infeasible_result"]

Scorer = Callable[[np.ndarray], np.ndarray]
T = TypeVar("T")
ACCURACY, COST = "accuracy", "cost"  # what a step asks for
Ask = tuple[str, np.ndarray]  # (ACCURACY or COST, gene rows)
Steps = Generator[Ask, np.ndarray, T]  # yields asks, receives one number per row asked


@dataclass(frozen=True)
class EvolutionConfig:
    """OFA's defaults. ``resample_rounds`` bounds the retries for infeasible children."""

    population_size: int = 100
    parent_ratio: float = 0.25
    mutation_ratio: float = 0.5
    mutate_prob: float = 0.1
    generations: int = 500
    resample_rounds: int = 10

    @property
    def n_parents(self) -> int:
        return max(2, int(round(self.parent_ratio * self.population_size)))

    @property
    def n_mutations(self) -> int:
        return int(round(self.mutation_ratio * self.population_size))

    @property
    def n_crossovers(self) -> int:
        return self.population_size - self.n_mutations


@dataclass
class Fitness:
    """What a search optimises: ``accuracy(genes)`` under ``efficiency(genes) <= target``.
    Both take and return whole populations. ``evaluations`` counts accuracy queries."""

    codec: GeneCodec
    accuracy: Scorer
    efficiency: Scorer
    unit: str = "ms"
    evaluations: int = 0

    def score(self, genes: np.ndarray) -> np.ndarray:
        self.evaluations += len(genes)
        return np.asarray(self.accuracy(genes), dtype=np.float64)

    def smallest_cost(self) -> float:
        return float(self.efficiency(self.codec.extreme(largest=False))[0])


@dataclass
class SearchResult:
    """The outcome for one target. ``population`` (genes, accuracy, cost) is the final one,
    which the bottom-up strategy hands to the next target."""

    target: float
    feasible: bool
    arch: ArchConfig | None
    accuracy: float
    cost: float
    unit: str
    generations: int
    evaluations: int
    message: str = ""
    genes: np.ndarray | None = None
    population: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None,
                                                                          repr=False)


def infeasible_result(target: float, smallest: float, unit: str) -> SearchResult:
    return SearchResult(
        target=target, feasible=False, arch=None, accuracy=float("nan"), cost=float("nan"),
        unit=unit, generations=0, evaluations=0,
        message=f"target {target:g} {unit} is infeasible: the smallest subnet costs "
                f"{smallest:.3f} {unit}")


class _Ops:
    """Mutation and crossover on gene arrays (compound-aware)."""

    def __init__(self, codec: GeneCodec, config: EvolutionConfig) -> None:
        self.codec = codec
        self.config = config
        self.n_choices = codec.n_choices.astype(np.float64)
        # compound: crossover takes a whole stage (its kernels and depth) from one parent
        if codec.compound:
            col_group = np.zeros(codec.width, dtype=np.int64)
            col_group[codec.k_cols] = codec.slot_stage
            col_group[codec.e_cols] = codec.slot_stage
            col_group[codec.d_cols] = np.arange(codec.n_stages)
            col_group[codec.r_col] = codec.n_stages
            self.col_group: np.ndarray | None = col_group
        else:
            self.col_group = None

    def mutate(self, rng: np.random.Generator, parents: np.ndarray) -> np.ndarray:
        shape = parents.shape
        fresh = (rng.random(shape) * self.n_choices).astype(parents.dtype)
        mask = rng.random(shape) < self.config.mutate_prob
        return self.codec.couple(np.where(mask, fresh, parents))

    def crossover(self, rng: np.random.Generator, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if self.col_group is None:
            take_a = rng.random(a.shape) < 0.5
        else:
            per_group = rng.random((len(a), self.codec.n_stages + 1)) < 0.5
            take_a = per_group[:, self.col_group]
        return self.codec.couple(np.where(take_a, a, b))


def _costs(rows: np.ndarray) -> Steps[np.ndarray]:
    """Ask for the efficiency of ``rows`` (as float64)."""
    got = yield COST, rows
    return np.asarray(got, dtype=np.float64)


def _repair(make: Callable[[np.ndarray], np.ndarray], fallback: np.ndarray, target: float,
            rounds: int) -> Steps[tuple[np.ndarray, np.ndarray]]:
    """Children from ``make(index rows)``; infeasible ones are remade up to ``rounds`` times,
    then replaced by ``fallback`` (feasible) rows. Returns genes and their costs."""
    n = len(fallback)
    todo = np.arange(n)
    genes = fallback.copy()
    cost = np.full(n, np.inf)
    for _ in range(rounds):
        if len(todo) == 0:
            break
        cand = make(todo)
        c = yield from _costs(cand)
        ok = c <= target
        genes[todo[ok]] = cand[ok]
        cost[todo[ok]] = c[ok]
        todo = todo[~ok]
    if len(todo):
        cost[todo] = yield from _costs(fallback[todo])
    return genes, cost


def _initial(codec: GeneCodec, rng: np.random.Generator, ops: _Ops, target: float,
             config: EvolutionConfig,
             seed: np.ndarray | None) -> Steps[tuple[np.ndarray, np.ndarray]]:
    """A feasible population: the seed rows (feasible ones) and random samples; what random
    sampling cannot find within the bounded rounds is filled by mutating feasible rows."""
    n = config.population_size
    have = [codec.extreme(largest=False)]
    if seed is not None and len(seed):
        c = yield from _costs(seed)
        have = [seed[c <= target][:n]] + ([] if (c <= target).any() else have)
    pool = np.concatenate(have)
    if seed is None:
        pool = pool[:0]
        for _ in range(config.resample_rounds):
            cand = codec.random(rng, n)
            c = yield from _costs(cand)
            pool = np.concatenate([pool, cand[c <= target]])
            if len(pool) >= n:
                break
        if len(pool) == 0:
            pool = codec.extreme(largest=False)
    pool = pool[:n]
    missing = n - len(pool)
    if missing:
        base = pool[rng.integers(0, len(pool), missing)]
        extra, _ = yield from _repair(lambda idx: ops.mutate(rng, base[idx]), base, target,
                                      config.resample_rounds)
        pool = np.concatenate([pool, extra])
    return pool, (yield from _costs(pool))


_UNSEEN = -np.inf  # no accuracy yet (a scorer never returns it; if one did, it is re-asked)


def _row_keys(rows: np.ndarray) -> list[bytes]:
    """Each row's bytes, as dictionary keys (one numpy call instead of one per row)."""
    rows = np.ascontiguousarray(rows)
    return rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel().tolist()


class Archive:
    """Every arch scored so far, with its accuracy and cost, shared by the searches of one
    strategy run. An arch's accuracy and cost do not depend on the target, so nothing is
    scored twice across targets, and a later target can start from the best archs that any
    earlier search found within its budget. Archs are compared on their active genes."""

    def __init__(self, fitness: Fitness) -> None:
        self.fitness = fitness
        self._acc_of: dict[bytes, float] = {}  # canonical row bytes -> accuracy
        self._acc: list[float] = []  # the archs in the order first seen, for best_within
        self._genes: list[np.ndarray] = []
        self._cost: list[float] = []

    def score(self, genes: np.ndarray, cost: np.ndarray) -> np.ndarray:
        """Accuracy of every row; only archs never seen before go to the scorer (late
        generations are converged and crossover of near-identical parents mostly rebuilds
        them)."""
        return _drive(self.scoring(genes, cost), self.fitness)

    def scoring(self, genes: np.ndarray, cost: np.ndarray) -> Steps[np.ndarray]:
        """:meth:`score` as steps: yields the rows that need the scorer (if any), receives
        their accuracies, returns every row's. Lets several searches share one scorer call.
        The lookups run in C (``map`` over ``dict.get``): this is called for every target
        and generation, and a Python loop over the rows was a fifth of a search."""
        keys = _row_keys(self.fitness.codec.canonical(genes))
        acc = np.fromiter(map(self._acc_of.get, keys, repeat(_UNSEEN)), dtype=np.float64,
                          count=len(keys))
        missing = np.flatnonzero(acc == _UNSEEN)
        if len(missing):
            first: dict[bytes, int] = {}
            for i in missing.tolist():
                first.setdefault(keys[i], i)
            idx = np.fromiter(first.values(), dtype=np.int64, count=len(first))
            scores = np.asarray((yield ACCURACY, genes[idx]), dtype=np.float64).tolist()
            self._acc_of.update(zip(first, scores))
            self._acc.extend(scores)
            self._genes.extend(genes[idx].copy())
            self._cost.extend(cost[idx].astype(np.float64).tolist())
            acc[missing] = [self._acc_of[keys[i]] for i in missing.tolist()]
        return acc

    def best_within(self, target: float, n: int) -> np.ndarray:
        """Gene rows of the ``n`` most accurate archs seen whose cost is within ``target``."""
        acc, cost = np.asarray(self._acc), np.asarray(self._cost)
        ok = np.nonzero(cost <= target)[0]
        top = ok[np.argsort(-acc[ok], kind="stable")[:n]]
        return np.array([self._genes[i] for i in top], dtype=np.int16).reshape(
            len(top), self.fitness.codec.width)


def _answer(fitness: Fitness, kind: str, rows: np.ndarray) -> np.ndarray:
    return fitness.score(rows) if kind == ACCURACY else fitness.efficiency(rows)


def _drive(steps: Steps[T], fitness: Fitness) -> T:
    """Run ``steps`` to the end, answering each ask at once."""
    try:
        kind, rows = next(steps)
        while True:
            kind, rows = steps.send(_answer(fitness, kind, rows))
    except StopIteration as stop:
        return stop.value


def _as_rng(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _evolution(fitness: Fitness, target: float, rng: np.random.Generator,
               config: EvolutionConfig, n_gen: int, seed_population: np.ndarray | None,
               archive: Archive,
               on_generation: Callable[[int, int], None] | None = None) -> Steps[SearchResult]:
    """OFA's evolution for one feasible target, as steps that ask for accuracies and costs:
    :func:`evolve` answers each ask at once, :func:`evolve_many` answers every target's asks
    of one kind together. The random draws happen here in the same order either way, and
    both answers are per row, so a target's result does not depend on which of the two drove
    it. ``on_generation(done, total)`` feeds a progress display."""
    ops = _Ops(fitness.codec, config)
    pop, cost = yield from _initial(fitness.codec, rng, ops, target, config, seed_population)
    acc = yield from archive.scoring(pop, cost)
    n_par, n_mut, n_cross = config.n_parents, config.n_mutations, config.n_crossovers
    for gen in range(n_gen):
        if on_generation is not None:
            on_generation(gen, n_gen)
        order = np.argsort(-acc, kind="stable")[:n_par]
        parents, p_acc, p_cost = pop[order], acc[order], cost[order]
        mi = rng.integers(0, n_par, n_mut)
        m_genes, m_cost = yield from _repair(
            lambda idx, p=parents, m=mi: ops.mutate(rng, p[m[idx]]),
            parents[mi], target, config.resample_rounds)
        ca, cb = rng.integers(0, n_par, n_cross), rng.integers(0, n_par, n_cross)
        c_genes, c_cost = yield from _repair(
            lambda idx, p=parents, a=ca, b=cb: ops.crossover(rng, p[a[idx]], p[b[idx]]),
            parents[ca], target, config.resample_rounds)
        children = np.concatenate([m_genes, c_genes])
        ch_cost = np.concatenate([m_cost, c_cost])
        pop = np.concatenate([parents, children])
        cost = np.concatenate([p_cost, ch_cost])
        acc = np.concatenate([p_acc, (yield from archive.scoring(children, ch_cost))])
    best = int(np.argmax(acc))
    final = np.argsort(-acc, kind="stable")[:config.population_size]
    return SearchResult(
        target=target, feasible=True, arch=fitness.codec.decode(pop[best:best + 1])[0],
        accuracy=float(acc[best]), cost=float(cost[best]), unit=fitness.unit,
        generations=n_gen, evaluations=0, genes=pop[best].copy(),
        population=(pop[final], acc[final], cost[final]))


def evolve(fitness: Fitness, target: float, *, seed: int | np.random.Generator,
           config: EvolutionConfig = EvolutionConfig(), generations: int | None = None,
           seed_population: np.ndarray | None = None,
           archive: Archive | None = None,
           on_generation: Callable[[int, int], None] | None = None) -> SearchResult:
    """The most accurate arch whose cost is at most ``target`` (OFA's evolution). ``archive``
    carries scored archs between the searches of a multi-target strategy;
    ``on_generation(done, total)`` feeds a progress display."""
    rng = _as_rng(seed)
    smallest = fitness.smallest_cost()
    if smallest > target:
        return infeasible_result(target, smallest, fitness.unit)
    n_gen = config.generations if generations is None else generations
    evals0 = fitness.evaluations
    result = _drive(_evolution(fitness, target, rng, config, n_gen, seed_population,
                               Archive(fitness) if archive is None else archive,
                               on_generation),
                    fitness)
    result.evaluations = fitness.evaluations - evals0
    return result


def evolve_many(fitness: Fitness, targets: Sequence[float], *,
                seeds: Sequence[int | np.random.Generator],
                config: EvolutionConfig = EvolutionConfig(),
                generations: int | None = None,
                on_generation: Callable[[int], Callable[[int, int], None] | None] | None = None,
                ) -> list[SearchResult]:
    """Independent searches, one per target, evolved in lockstep: every target's asks of one
    kind go to one call (one accuracy call per generation instead of one per target and
    generation, one efficiency call per repair round; 10 targets made 5,011 small predictor
    calls and 7,000 efficiency calls). Costs are answered first; accuracies once every running
    target waits for one, which keeps the targets a generation apart at most. Each target
    keeps its own random stream and archive, so its result is exactly what
    ``evolve(fitness, target, seed=seeds[i])`` returns. ``on_generation(i)`` gives target
    ``i``'s progress callback (or None)."""
    if len(seeds) != len(targets):
        raise ValueError("one seed per target")
    n_gen = config.generations if generations is None else generations
    results: list[SearchResult | None] = [None] * len(targets)
    smallest = fitness.smallest_cost() if len(targets) else 0.0
    running: dict[int, Steps[SearchResult]] = {}
    for i, target in enumerate(targets):
        if smallest > target:
            results[i] = infeasible_result(target, smallest, fitness.unit)
        else:
            running[i] = _evolution(fitness, target, _as_rng(seeds[i]), config, n_gen, None,
                                    Archive(fitness),
                                    None if on_generation is None else on_generation(i))
    asks: dict[int, Ask] = {}
    counts = dict.fromkeys(running, 0)

    def advance(i: int, answer: np.ndarray | None) -> None:
        try:
            ask = next(running[i]) if answer is None else running[i].send(answer)
        except StopIteration as stop:
            results[i] = stop.value
            results[i].evaluations = counts[i]
            del running[i]
            return
        asks[i] = ask
        if ask[0] == ACCURACY:
            counts[i] += len(ask[1])

    for i in list(running):
        advance(i, None)
    while asks:
        kind = COST if any(k == COST for k, _ in asks.values()) else ACCURACY
        order = [i for i, (k, _) in asks.items() if k == kind]
        batch = [asks.pop(i)[1] for i in order]
        answers = _answer(fitness, kind, np.concatenate(batch))
        start = 0
        for i, rows in zip(order, batch):
            advance(i, answers[start:start + len(rows)])
            start += len(rows)
    return [r for r in results if r is not None]
