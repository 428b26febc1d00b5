"""Accuracy at equal cost: Pareto fronts, a common grid, accuracy read off each front.

The papers compare methods along accuracy-FLOPs and accuracy-latency curves (DεpS Figure 5,
CompOFA Figure 4), not at the ends of their spaces: the smallest OFA subnet (121 MMACs) and the
smallest DεpS subnet (151 MMACs) are different networks, so their accuracies say nothing about
which method trained better. Here each method's measured subnets give a front; the front is read
at budgets every compared method can meet, and outside a method's own range it has no value.

A front is read as a staircase: the accuracy at budget ``c`` is that of the most accurate
measured subnet costing at most ``c``. That is an accuracy a user can actually deploy at that
budget; interpolating between subnets would report networks nobody measured. Pure functions,
tested directly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Front", "common_grid", "front_area", "headline_points", "nice_step",
           "pareto_front", "read_fronts", "shared_range"]


@dataclass(frozen=True)
class Front:
    """The upper-left Pareto front of one method's measured subnets on one cost axis.

    ``points`` are (cost, accuracy), cost ascending, accuracy strictly ascending; ``lo`` and
    ``hi`` the cheapest and dearest measured subnet (the method's range on this axis, which the
    front's own points may not reach: a dear subnet that is less accurate is not on the front,
    but the method still has subnets up to that cost).
    """

    points: tuple[tuple[float, float], ...]
    lo: float
    hi: float
    n_subnets: int

    def staircase(self) -> tuple[list[float], list[float]]:
        """The front as a line to plot: flat from each point to the next cost, then up, and
        flat to the dearest measured subnet (``hi``), as :meth:`accuracy_at` reads it."""
        xs: list[float] = []
        ys: list[float] = []
        for i, (cost, acc) in enumerate(self.points):
            if i:
                xs.append(cost)
                ys.append(ys[-1])
            xs.append(cost)
            ys.append(acc)
        if ys:
            xs.append(self.hi)
            ys.append(ys[-1])
        return xs, ys

    def accuracy_at(self, budget: float) -> float:
        """The best measured accuracy at cost <= ``budget``; NaN outside [lo, hi]."""
        if not self.points or not self.lo <= budget <= self.hi:
            return math.nan
        best = math.nan
        for cost, acc in self.points:
            if cost > budget:
                break
            best = acc
        return best


def pareto_front(points: Iterable[tuple[float, float]]) -> Front:
    """The subnets no cheaper-or-equal subnet beats: cost ascending, accuracy ascending.

    NaN costs or accuracies are dropped (an unmeasured subnet is not a data point).
    """
    clean = sorted((float(c), float(a)) for c, a in points
                   if not (math.isnan(float(c)) or math.isnan(float(a))))
    front: list[tuple[float, float]] = []
    for cost, acc in sorted(clean, key=lambda p: (p[0], -p[1])):
        if not front or acc > front[-1][1]:  # equal costs: the first is the most accurate
            front.append((cost, acc))
    if not clean:
        return Front((), math.nan, math.nan, 0)
    return Front(tuple(front), clean[0][0], clean[-1][0], len(clean))


def shared_range(fronts: Iterable[Front]) -> tuple[float, float] | None:
    """The cost interval where every front has subnets, None when they do not overlap."""
    fronts = [f for f in fronts if f.points]
    if not fronts:
        return None
    lo, hi = max(f.lo for f in fronts), min(f.hi for f in fronts)
    return (lo, hi) if lo <= hi else None


def nice_step(span: float, target_points: int = 6) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) giving about ``target_points`` grid
    points over ``span``: 50 MMACs for an ImageNet MobileNetV3 space, 0.5 ms for a phone."""
    if not span > 0:
        return 1.0
    raw = span / max(1, target_points)
    base = 10 ** math.floor(math.log10(raw))
    for mult in (1.0, 2.0, 2.5, 5.0, 10.0):
        if base * mult >= raw:
            return base * mult
    return base * 10.0


def common_grid(lo: float, hi: float, step: float | None = None) -> list[float]:
    """Multiples of ``step`` inside [lo, hi] (e.g. 150, 200, ..., 400 MMACs for 121-447).

    When no multiple falls inside (a very narrow range), the midpoint alone.
    """
    if math.isnan(lo) or math.isnan(hi) or lo > hi:
        return []
    step = step or nice_step(hi - lo)
    first = math.ceil(lo / step - 1e-9) * step
    grid = []
    x = first
    while x <= hi + 1e-9 * max(1.0, abs(hi)):
        grid.append(round(x, 10))
        x += step
    return grid or [round((lo + hi) / 2, 10)]


def headline_points(grid: Sequence[float], n: int = 3) -> list[float]:
    """``n`` points of the grid spread from its low end to its high end (all when fewer)."""
    if len(grid) <= n:
        return list(grid)
    idx = sorted({round(i * (len(grid) - 1) / (n - 1)) for i in range(n)})
    return [grid[i] for i in idx]


def front_area(front: Front, lo: float, hi: float) -> float:
    """Mean accuracy of the staircase front over [lo, hi] (the area under it divided by the
    width, so it reads as an accuracy); NaN when the front does not cover the interval.

    A zero-width interval gives the accuracy at that point.
    """
    if not front.points or math.isnan(lo) or math.isnan(hi) or lo < front.lo or hi > front.hi:
        return math.nan
    if hi == lo:
        return front.accuracy_at(lo)
    area = 0.0
    edges = [lo, *[c for c, _ in front.points if lo < c < hi], hi]
    for a, b in zip(edges[:-1], edges[1:]):
        area += front.accuracy_at(a) * (b - a)
    return area / (hi - lo)


def read_fronts(fronts: Mapping[str, Front], grid: Sequence[float]) -> dict[str, list[float]]:
    """Per method, the front's accuracy at every grid point (NaN outside its range)."""
    return {m: [f.accuracy_at(x) for x in grid] for m, f in fronts.items()}

