"""Equal-cost comparison math: Pareto fronts, the common grid, reading and averaging fronts."""

from __future__ import annotations

import math

import pytest

from dashboards.fronts import (
    common_grid,
    front_area,
    headline_points,
    nice_step,
    pareto_front,
    read_fronts,
    shared_range,
)


def test_front_keeps_only_undominated_measured_subnets() -> None:
    front = pareto_front([(200, 0.70), (150, 0.60), (180, 0.55), (250, 0.69), (300, 0.75),
                          (150, 0.58), (260, math.nan), (math.nan, 0.9)])
    assert front.points == ((150, 0.60), (200, 0.70), (300, 0.75))
    assert (front.lo, front.hi, front.n_subnets) == (150, 300, 6)


def test_accuracy_at_is_the_best_subnet_within_budget_and_nan_outside_range() -> None:
    front = pareto_front([(150, 0.6), (200, 0.7), (300, 0.75), (350, 0.74)])
    assert front.accuracy_at(150) == 0.6 and front.accuracy_at(199) == 0.6
    assert front.accuracy_at(250) == 0.7 and front.accuracy_at(350) == 0.75
    assert math.isnan(front.accuracy_at(149)) and math.isnan(front.accuracy_at(351))
    assert read_fronts({"a": front}, [100, 200]) == {"a": [pytest.approx(math.nan, nan_ok=True),
                                                          0.7]}


def test_grid_covers_only_the_shared_range() -> None:
    # the numbers: OFA 121-566, CompOFA 124-447, DεpS 151-566 MMACs
    fronts = [pareto_front([(121, .5), (566, .8)]), pareto_front([(124, .5), (447, .8)]),
              pareto_front([(151, .5), (566, .8)])]
    assert shared_range(fronts) == (151, 447)
    assert nice_step(447 - 151) == 50
    grid = common_grid(151, 447)
    assert grid == [200, 250, 300, 350, 400]
    assert headline_points(grid) == [200, 300, 400]
    assert common_grid(150, 550, 50) == [150, 200, 250, 300, 350, 400, 450, 500, 550]
    assert shared_range([pareto_front([(1, .5), (2, .6)]), pareto_front([(3, .5)])]) is None


def test_front_area_is_the_mean_accuracy_of_the_staircase() -> None:
    front = pareto_front([(100, 0.5), (200, 0.7), (400, 0.8)])
    assert front_area(front, 100, 300) == pytest.approx((0.5 * 100 + 0.7 * 100) / 200)
    assert front_area(front, 200, 200) == 0.7
    assert math.isnan(front_area(front, 50, 300))   # the front does not cover the interval
