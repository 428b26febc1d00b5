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

from ofa_platform.paths import project_root

__all__ = ["BOOKKEEPING", "COST_METRICS", "EXPERIMENT_KIND", "EXPERIMENT_KIND_TAG",
           "artifact_root", "cost_metrics", "ensure_experiment", "experiment_url", "log_cost",
           "mark_model_training", "resolve_tracking_uri", "split_bookkeeping", "tracked_run"]

#: The cost metric names of the MLflow schema (docs/architecture.md), in report order.
COST_METRICS = ("device_hours", "dollars", "energy_kwh", "co2_kg", "co2_lbs")

#: MLflow 3's experiment kind: its UI opens a ``genai_development`` experiment (the default for
#: an untagged one) on the GenAI overview and a ``custom_model_development`` one on the runs
#: table. The platform trains models, so every experiment it creates says so.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"

#: Per-epoch values that identify rather than measure (a digest of the sampled subnets, the
#: epoch a restarted job resumed from): MLflow tags ``ofa.<name>``, not metrics plotted beside
#: accuracy.
BOOKKEEPING = ("arch_digest", "resumed_from")

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
    return f"sqlite:///{project_root() / 'mlflow.db'}"


def artifact_root(tracking_uri: str) -> str | None:
    """Where artifacts of a new experiment go for a SQLite store: ``mlartifacts/`` beside the
    database file, as an absolute ``file:`` URI. None for a server (it decides).

    MLflow's own default is ``./mlruns`` relative to whatever directory the first run started
    from, which scatters a user's artifacts away from their runs.
    """
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = tracking_uri[len("sqlite:///"):].split("?", 1)[0]
    if not db or db == ":memory:":
        return None
    return (Path(db).expanduser().resolve().parent / "mlartifacts").as_uri()


def ensure_experiment(experiment: str, tracking_uri: str) -> str:
    """The id of ``experiment``, created with :func:`artifact_root` when it does not exist."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return str(found.experiment_id)
    root = artifact_root(tracking_uri)
    try:
        return str(client.create_experiment(experiment, artifact_location=root))
    except Exception:  # noqa: BLE001 - another process created it first
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise
        return str(found.experiment_id)


@contextmanager
def tracked_run(experiment: str, run_name: str, *, tags: Mapping[str, str],
                params: Mapping[str, Any] | None = None, tracking_uri: str | None = None,
                nested: bool = False, run_id: str | None = None) -> Iterator[Any]:
    """Start an MLflow run and end it FINISHED, or FAILED on an exception or an interrupt
    (an interrupted run is tagged ``ofa.interrupted=true``: it did not finish either).
    ``run_id`` continues an unfinished run instead (a resumed job: its ``ofa.interrupted``
    tag goes, ``ofa.attempts`` counts the attempts; the same params may be logged again).

    The exception always propagates; the run's status is set before it does, so no path out
    of the ``with`` block leaves the run RUNNING. A block that ends the run itself
    (``mlflow.end_run(status="FAILED")``: a job that failed and was recorded, with nothing to
    raise) keeps the status it set. Nested runs need an active parent run.
    """
    import mlflow

    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    if not nested:
        mark_model_training(ensure_experiment(experiment, uri))
        mlflow.set_experiment(experiment)
    if run_id is None:
        run = mlflow.start_run(run_name=run_name, nested=nested, tags=dict(tags))
    else:
        run = mlflow.start_run(run_id=run_id, nested=nested)
        attempts = int(run.data.tags.get("ofa.attempts", "1")) + 1
        mlflow.set_tags({**tags, "ofa.attempts": str(attempts)})
        if "ofa.interrupted" in run.data.tags:
            mlflow.delete_tag("ofa.interrupted")
    status = "FAILED"
    try:
        params = dict(params or {})
        if "ofa.hardware" in tags:  # a param too: the compare view lists params, not tags
            params.setdefault("hardware", tags["ofa.hardware"])
        if params:
            mlflow.log_params({k: _param_value(v) for k, v in params.items()})
        yield run
        status = "FINISHED"
    except KeyboardInterrupt:
        mlflow.set_tag("ofa.interrupted", "true")
        raise
    finally:
        active = mlflow.active_run()
        if active is not None and active.info.run_id == run.info.run_id:
            mlflow.end_run(status=status)


def mark_model_training(experiment_id: str, client: Any = None) -> None:
    """Tag an experiment as model training (``EXPERIMENT_KIND``) unless it already has a kind:
    a user who set one keeps it."""
    from mlflow.tracking import MlflowClient

    client = client or MlflowClient()
    exp = client.get_experiment(experiment_id)
    if EXPERIMENT_KIND_TAG not in (exp.tags or {}):
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)


def experiment_url(server: str, experiment_id: str) -> str:
    """The experiment's runs table in the MLflow UI.

    MLflow 3.17's UI keeps a global GenAI / Model training switch (GenAI by default) and opens
    every experiment on the GenAI overview until the user flips it; ``workflowType`` in the
    link flips it (and the UI remembers), so the link opens on the runs.
    """
    return f"{server.rstrip('/')}/#/experiments/{experiment_id}?workflowType=machine_learning"


def split_bookkeeping(values: Mapping[str, float], resumes: list[int]
                      ) -> tuple[dict[str, float], dict[str, str]]:
    """Split one epoch's report into metrics and ``ofa.*`` tags (``BOOKKEEPING``).

    ``ofa.arch_digest`` is the epoch's digest in hex (the last epoch's stays on the run);
    ``ofa.resumed_from`` lists every epoch the job resumed from, comma-separated, and is
    absent while it never resumed. ``resumes`` is the caller's running list (updated here).
    """
    metrics = {k: v for k, v in values.items() if k not in BOOKKEEPING}
    tags: dict[str, str] = {}
    if "arch_digest" in values:
        tags["ofa.arch_digest"] = f"{int(values['arch_digest']):012x}"
    resumed = int(values.get("resumed_from", -1))
    if resumed >= 0 and resumed not in resumes:
        resumes.append(resumed)
    if resumes:
        tags["ofa.resumed_from"] = ",".join(str(e) for e in sorted(resumes))
    return metrics, tags


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
