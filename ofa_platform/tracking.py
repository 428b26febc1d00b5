"""MLflow helpers: where runs go, and a run lifecycle that never leaves a run RUNNING.

The driver (never a worker) writes to MLflow, so a dead worker loses nothing. A run that is
interrupted or fails must still say so in the store: dashboards count a RUNNING run as live
work, and a crashed job that stays RUNNING forever hides what it cost.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

__all__ = ["COST_METRICS", "resolve_tracking_uri", "tracked_run", "log_cost", "cost_metrics"]

#: The cost metric names of the MLflow schema (docs/architecture.md), in report order.
COST_METRICS = ("device_hours", "dollars", "energy_kwh", "co2_kg", "co2_lbs")

_PROJECT_DIR = Path(__file__).resolve().parents[1]


class _CostLike(Protocol):
    device_hours: float
    dollars: float
    energy_kwh: float
    co2_kg: float
    co2_lbs: float


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """``explicit``, else ``MLFLOW_TRACKING_URI``, else a SQLite file in the project.

    The default path is absolute because Ray workers and job drivers run in other directories;
    a relative URI would silently create a second store there.
    """
    if explicit:
        return explicit
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{_PROJECT_DIR / 'mlflow.db'}"


@contextmanager
def tracked_run(experiment: str, run_name: str, *, tags: Mapping[str, str],
                params: Mapping[str, Any] | None = None, tracking_uri: str | None = None,
                nested: bool = False) -> Iterator[Any]:
    """Start an MLflow run and end it FINISHED, or FAILED on an exception or an interrupt
    (an interrupted run is tagged ``ofa.interrupted=true``: it did not finish either).

    The exception always propagates; the run's status is set before it does, so no path out
    of the ``with`` block leaves the run RUNNING. Nested runs need an active parent run.
    """
    import mlflow

    mlflow.set_tracking_uri(resolve_tracking_uri(tracking_uri))
    if not nested:
        mlflow.set_experiment(experiment)
    run = mlflow.start_run(run_name=run_name, nested=nested, tags=dict(tags))
    status = "FAILED"
    try:
        if params:
            mlflow.log_params({k: _param_value(v) for k, v in params.items()})
        yield run
        status = "FINISHED"
    except KeyboardInterrupt:
        mlflow.set_tag("ofa.interrupted", "true")
        raise
    finally:
        mlflow.end_run(status=status)


def _param_value(value: Any) -> Any:
    # MLflow caps a param at 6000 characters; a long list would make the whole run fail.
    text = value if isinstance(value, (int, float, bool)) else str(value)
    return text[:6000] if isinstance(text, str) else text


def cost_metrics(report: _CostLike) -> dict[str, float]:
    """The cost metrics of a ``CostReport`` under the schema's names."""
    return {name: float(getattr(report, name)) for name in COST_METRICS}


def log_cost(report: _CostLike) -> None:
    """Log the cost metrics (device-hours, dollars, kWh, CO2 kg and lbs) on the active run."""
    import mlflow

    mlflow.log_metrics(cost_metrics(report))
