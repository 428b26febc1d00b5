"""What a checkpoint search measured, kept for the equal-cost comparison.

A search of a trained checkpoint evaluates hundreds of sampled subnets to fit its predictor and
then measures the subnets it chose. Those measured accuracies are the data of the method's
accuracy-MACs and accuracy-latency fronts (``dashboards/fronts.py``), so they are written as the
``subnets.parquet`` artifact instead of being thrown away with the predictor's training set.
The space's own size and MAC range are logged as params of the search run, so the report can
show each method's space next to its numbers without loading a supernet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from search_spaces.arch import ArchConfig
from search_spaces.blueprint import NetworkPlan
from search_spaces.flops import count_macs_params

__all__ = ["SUBNETS_COLUMNS", "MAX_MEASURED_LATENCIES", "space_params", "subnet_rows",
           "write_subnets"]

#: The ``subnets.parquet`` schema: one row per measured subnet. ``source`` is ``sample`` (the
#: predictor's training set) or ``search`` (a chosen subnet); ``cost`` is in ``unit`` under the
#: search's estimator (NaN where it was not measured); ``macs`` and ``params`` are counts.
SUBNETS_COLUMNS = ("source", "arch_json", "macs", "params", "cost", "unit", "measured_accuracy",
                   "target")

#: A measured-latency estimator times every subnet on the device (seconds each on a CPU); the
#: samples' latencies are measured for at most this many of them (the first drawn: a uniform
#: random subset), the rest keep NaN cost. Table and MAC estimators cost nothing and cover all.
MAX_MEASURED_LATENCIES = 200


def space_params(space: Any, plan: NetworkPlan, resolutions: Sequence[int]) -> dict[str, Any]:
    """The searched space as MLflow params: cardinality (with resolutions) and the MACs of its
    smallest subnet at the lowest resolution and its largest at the highest."""
    lo = space.smallest(min(resolutions))
    hi = space.largest(max(resolutions))
    return {"space_cardinality": int(space.cardinality(False)) * len(tuple(resolutions)),
            "space_macs_min": int(count_macs_params(plan, lo)[0]),
            "space_macs_max": int(count_macs_params(plan, hi)[0]),
            "space_resolutions": ",".join(str(r) for r in sorted(resolutions))}


def subnet_rows(archs: Sequence[ArchConfig], accuracies: Sequence[float], plan: NetworkPlan,
                costs: Sequence[float], unit: str, *, source: str,
                targets: Sequence[float] | None = None) -> list[dict[str, Any]]:
    """Rows of ``SUBNETS_COLUMNS`` for measured subnets (MACs counted from the plan)."""
    rows = []
    targets = targets if targets is not None else [float("nan")] * len(archs)
    for arch, acc, cost, target in zip(archs, accuracies, costs, targets):
        macs, params = count_macs_params(plan, arch)
        rows.append({"source": source, "arch_json": arch.to_json(), "macs": int(macs),
                     "params": int(params), "cost": float(cost), "unit": unit,
                     "measured_accuracy": float(acc), "target": float(target)})
    return rows


def _sample_costs(fitness: Any, archs: Sequence[ArchConfig]) -> list[float]:
    """Each sample's cost under the search's estimator; capped when it is measured."""
    n = len(archs)
    if str(getattr(fitness.efficiency, "name", "")).startswith("measured"):
        n = min(n, MAX_MEASURED_LATENCIES)
    costs = [float("nan")] * len(archs)
    if n:
        values = np.asarray(fitness.efficiency(fitness.codec.encode(list(archs[:n]))),
                            dtype=np.float64)
        costs[:n] = [float(v) for v in values]
    return costs


def write_subnets(sampled: Sequence[tuple[ArchConfig, float]], fitness: Any, plan: NetworkPlan,
                  pareto: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write ``subnets.parquet``: the sampled subnets a checkpoint search evaluated (arch,
    measured accuracy) and the chosen ones it measured."""
    from ofa_platform.search.pareto import write_parquet

    archs = [a for a, _ in sampled]
    rows = subnet_rows(archs, [acc for _, acc in sampled], plan,
                       _sample_costs(fitness, archs), fitness.unit, source="sample")
    for row in pareto:
        if row.get("feasible") and row.get("arch_json") and row.get("measured_accuracy") == \
                row.get("measured_accuracy"):
            rows.append({"source": "search", "arch_json": row["arch_json"],
                         "macs": int(row["macs"]), "params": int(row["params"]),
                         "cost": float(row["cost"]), "unit": row["unit"],
                         "measured_accuracy": float(row["measured_accuracy"]),
                         "target": float(row["target"])})
    return write_parquet(rows, path, SUBNETS_COLUMNS)
