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
Independent targets evolve as one array (:func:`evolve_many`): a (targets, population, genes)
array, one accuracy call per generation and one efficiency call per repair round for all of
them, each target drawing from its own random stream, so each target's result is unchanged.
A search is written as steps (a generator) that ask for rows to be scored or costed and
receive the answers; :func:`evolve` is the same steps for one target.
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


Draws = tuple[np.ndarray, ...]  # one target's random numbers for one round of children


class _Ops:
    """Mutation and crossover (compound-aware), split in two so that several targets evolve
    as one array: each target draws its random numbers from its own stream (``*_draws``,
    in the same order and shapes as a search of that target alone), and the children of all
    targets are built from those numbers in one call (``*_build``)."""

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

    def mutation_draws(self, rng: np.random.Generator, n: int) -> Draws:
        """Fresh genes, then which genes take them (every gene with ``mutate_prob``)."""
        # one call for both: the same numbers, in the same order, as two calls of (n, width)
        both = rng.random((2, n, self.codec.width))
        return both[0], both[1]

    def mutation_build(self, parents: np.ndarray, draws: Sequence[Draws]) -> np.ndarray:
        fresh = (np.concatenate([d[0] for d in draws]) * self.n_choices).astype(parents.dtype)
        mask = np.concatenate([d[1] for d in draws]) < self.config.mutate_prob
        return self.codec.couple(np.where(mask, fresh, parents))

    def crossover_draws(self, rng: np.random.Generator, n: int) -> Draws:
        """Which parent each gene (or, compound, each stage) comes from."""
        width = self.codec.width if self.col_group is None else self.codec.n_stages + 1
        return (rng.random((n, width)),)

    def crossover_build(self, a: np.ndarray, b: np.ndarray,
                        draws: Sequence[Draws]) -> np.ndarray:
        take_a = np.concatenate([d[0] for d in draws]) < 0.5
        if self.col_group is not None:
            take_a = take_a[:, self.col_group]
        return self.codec.couple(np.where(take_a, a, b))


def _costs(rows: np.ndarray) -> Steps[np.ndarray]:
    """Ask for the efficiency of ``rows`` (as float64)."""
    got = yield COST, rows
    return np.asarray(got, dtype=np.float64)


def _repair(draw: Callable[[np.random.Generator, int], Draws],
            build: Callable[[np.ndarray, Sequence[Draws]], np.ndarray],
            fallback: np.ndarray, targets: np.ndarray, rngs: Sequence[np.random.Generator],
            rounds: int) -> Steps[tuple[np.ndarray, np.ndarray]]:
    """Children for T targets at once (``fallback``: (T, n, width), feasible rows).

    Each round, every target with children still to make draws its random numbers
    (``draw(rng, count)``), ``build(todo, draws)`` makes the candidates of all targets
    (``todo``: flat indices into the (T * n) children), and one cost call judges them;
    infeasible ones are remade, up to ``rounds`` times, then replaced by their fallback row.
    Returns genes (T, n, width) and costs (T, n)."""
    n_t, n, width = fallback.shape
    flat = fallback.reshape(n_t * n, width)
    genes = flat.copy()
    cost = np.full(n_t * n, np.inf)
    limit = np.repeat(np.asarray(targets, dtype=np.float64), n)
    todo = np.arange(n_t * n)  # ascending, so grouped by target in target order
    for _ in range(rounds):
        if len(todo) == 0:
            break
        counts = np.bincount(todo // n, minlength=n_t).tolist()
        cand = build(todo, [draw(rngs[t], c) for t, c in enumerate(counts) if c])
        c = yield from _costs(cand)
        ok = c <= limit[todo]
        genes[todo[ok]] = cand[ok]
        cost[todo[ok]] = c[ok]
        todo = todo[~ok]
    if len(todo):
        cost[todo] = yield from _costs(flat[todo])
    return genes.reshape(n_t, n, width), cost.reshape(n_t, n)


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
        extra, _ = yield from _repair(
            ops.mutation_draws, lambda todo, draws: ops.mutation_build(base[todo], draws),
            base[None], np.array([target]), [rng], config.resample_rounds)
        pool = np.concatenate([pool, extra[0]])
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
    earlier search found within its budget. Archs are compared on their active genes.

    Searches evolved together keep apart in one archive through ``group`` numbers (one per
    target): each group scores its own archs, as a search of that target alone would, and
    ``asked[group]`` counts the archs it sent to the scorer."""

    def __init__(self, fitness: Fitness) -> None:
        self.fitness = fitness
        self._acc_of: dict[bytes, float] = {}  # group + canonical row bytes -> accuracy
        self._acc: list[float] = []  # the archs in the order first seen, for best_within
        self._genes: list[np.ndarray] = []
        self._cost: list[float] = []
        self.asked: dict[int, int] = {}

    def score(self, genes: np.ndarray, cost: np.ndarray) -> np.ndarray:
        """Accuracy of every row; only archs never seen before go to the scorer (late
        generations are converged and crossover of near-identical parents mostly rebuilds
        them)."""
        return _drive(self.scoring(genes, cost), self.fitness)

    def scoring(self, genes: np.ndarray, cost: np.ndarray,
                groups: np.ndarray | None = None) -> Steps[np.ndarray]:
        """:meth:`score` as steps: yields the rows that need the scorer (if any), receives
        their accuracies, returns every row's. ``groups`` (one per row, default all 0) keeps
        the archs of targets evolved together apart. The lookups run in C (``map`` over
        ``dict.get``): a Python loop over the rows was a fifth of a search."""
        canon = self.fitness.codec.canonical(genes)
        group = np.zeros(len(genes), canon.dtype) if groups is None else groups.astype(
            canon.dtype)
        keys = _row_keys(np.concatenate([group[:, None], canon], 1))
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
            for g, k in zip(*np.unique(group[idx], return_counts=True)):
                self.asked[int(g)] = self.asked.get(int(g), 0) + int(k)
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


def _take(a: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Per target (first axis), the rows ``index`` (T, k) of ``a`` (T, n[, width]): one flat
    take (``np.take_along_axis`` builds an index per element, ~10x slower here)."""
    n_t, n = a.shape[:2]
    flat = (index + (np.arange(n_t) * n)[:, None]).ravel()
    return a.reshape(n_t * n, *a.shape[2:])[flat].reshape(*index.shape, *a.shape[2:])


def _evolution(fitness: Fitness, targets: Sequence[float], rngs: Sequence[np.random.Generator],
               config: EvolutionConfig, n_gen: int,
               seed_populations: Sequence[np.ndarray | None], archive: Archive,
               on_generation: Sequence[Callable[[int, int], None] | None],
               ) -> Steps[list[SearchResult]]:
    """OFA's evolution for T feasible targets at once, as steps that ask for accuracies and
    costs (one ask of each kind per repair round or generation for all targets).

    The populations are one (T, population, width) array. Every random number is drawn from
    the target's own stream, in the order and shapes a search of that target alone draws
    them, and the answers are per row, so each target's result is the same whether it is
    evolved alone or with others; target ``t`` keeps its archs in ``archive`` as group ``t``.
    ``on_generation[t](done, total)`` feeds a progress display."""
    ops = _Ops(fitness.codec, config)
    n_t, width = len(targets), fitness.codec.width
    limits = np.asarray(targets, dtype=np.float64)
    starts = []
    for t in range(n_t):
        starts.append((yield from _initial(fitness.codec, rngs[t], ops, limits[t], config,
                                           seed_populations[t])))
    pop = np.stack([p for p, _ in starts])
    cost = np.stack([c for _, c in starts])
    n_pop = pop.shape[1]
    group = np.arange(n_t, dtype=pop.dtype)
    acc = (yield from archive.scoring(pop.reshape(-1, width), cost.ravel(),
                                      np.repeat(group, n_pop))).reshape(n_t, n_pop)
    n_par, n_mut, n_cross = config.n_parents, config.n_mutations, config.n_crossovers
    child_groups = np.repeat(group, n_mut + n_cross)
    for gen in range(n_gen):
        for report in on_generation:
            if report is not None:
                report(gen, n_gen)
        order = np.argsort(-acc, axis=1, kind="stable")[:, :n_par]
        parents, p_acc, p_cost = _take(pop, order), _take(acc, order), _take(cost, order)
        mi = np.stack([rng.integers(0, n_par, n_mut) for rng in rngs])
        m_par = _take(parents, mi)
        m_flat = m_par.reshape(-1, width)
        m_genes, m_cost = yield from _repair(
            ops.mutation_draws,
            lambda todo, draws, m=m_flat: ops.mutation_build(m[todo], draws),
            m_par, limits, rngs, config.resample_rounds)
        pairs = [(rng.integers(0, n_par, n_cross), rng.integers(0, n_par, n_cross))
                 for rng in rngs]
        a_par = _take(parents, np.stack([a for a, _ in pairs]))
        a_flat = a_par.reshape(-1, width)
        b_flat = _take(parents, np.stack([b for _, b in pairs])).reshape(-1, width)
        c_genes, c_cost = yield from _repair(
            ops.crossover_draws,
            lambda todo, draws, a=a_flat, b=b_flat: ops.crossover_build(a[todo], b[todo], draws),
            a_par, limits, rngs, config.resample_rounds)
        children = np.concatenate([m_genes, c_genes], axis=1)
        ch_cost = np.concatenate([m_cost, c_cost], axis=1)
        ch_acc = yield from archive.scoring(children.reshape(-1, width), ch_cost.ravel(),
                                            child_groups)
        pop = np.concatenate([parents, children], axis=1)
        cost = np.concatenate([p_cost, ch_cost], axis=1)
        acc = np.concatenate([p_acc, ch_acc.reshape(n_t, -1)], axis=1)
    results = []
    for t in range(n_t):
        best = int(np.argmax(acc[t]))
        final = np.argsort(-acc[t], kind="stable")[:config.population_size]
        results.append(SearchResult(
            target=float(targets[t]), feasible=True,
            arch=fitness.codec.decode(pop[t, best:best + 1])[0],
            accuracy=float(acc[t, best]), cost=float(cost[t, best]), unit=fitness.unit,
            generations=n_gen, evaluations=0, genes=pop[t, best].copy(),
            population=(pop[t, final], acc[t, final], cost[t, final])))
    return results


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
    [result] = _drive(_evolution(fitness, [target], [rng], config, n_gen, [seed_population],
                                 Archive(fitness) if archive is None else archive,
                                 [on_generation]),
                      fitness)
    result.evaluations = fitness.evaluations - evals0
    return result


def evolve_many(fitness: Fitness, targets: Sequence[float], *,
                seeds: Sequence[int | np.random.Generator],
                config: EvolutionConfig = EvolutionConfig(),
                generations: int | None = None,
                on_generation: Callable[[int], Callable[[int, int], None] | None] | None = None,
                ) -> list[SearchResult]:
    """Independent searches, one per target, evolved as one array: one accuracy call per
    generation and one efficiency call per repair round for all targets (10 targets one after
    another made 5,011 small predictor calls and 7,000 efficiency calls), and the numpy work
    of a generation done once for all. Each target keeps its own random stream and its own
    archs in the archive, so its result is exactly what
    ``evolve(fitness, target, seed=seeds[i])`` returns. ``on_generation(i)`` gives target
    ``i``'s progress callback (or None)."""
    if len(seeds) != len(targets):
        raise ValueError("one seed per target")
    n_gen = config.generations if generations is None else generations
    results: list[SearchResult | None] = [None] * len(targets)
    smallest = fitness.smallest_cost() if len(targets) else 0.0
    feasible = []
    for i, target in enumerate(targets):
        if smallest > target:
            results[i] = infeasible_result(target, smallest, fitness.unit)
        else:
            feasible.append(i)
    if feasible:
        archive = Archive(fitness)
        found = _drive(_evolution(
            fitness, [targets[i] for i in feasible], [_as_rng(seeds[i]) for i in feasible],
            config, n_gen, [None] * len(feasible), archive,
            [None if on_generation is None else on_generation(i) for i in feasible]),
            fitness)
        for g, (i, res) in enumerate(zip(feasible, found)):
            res.evaluations = archive.asked.get(g, 0)
            results[i] = res
    return [r for r in results if r is not None]
