"""The comparison table: what each training method (OFA, CompOFA, DεpS, ...) cost and bought.

It reads MLflow only (the schema in docs/architecture.md), so it works the same on a laptop's
SQLite store and on the cluster's tracking server, and needs none of the training code.
Per method the latest FINISHED top-level training run is used; the search columns average the
method's FINISHED search runs (one per hardware, typically).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ofa_platform.errors import UserError

__all__ = [
    "COST_COLUMNS",
    "ExperimentRuns",
    "comparison_table",
    "format_table",
    "load_runs",
    "method_order",
    "resolve_uri",
]

# (column in the table, MLflow metric of the training run)
_TRAIN_METRICS = (
    ("epochs", "epochs_run"),
    ("device_hours", "device_hours"),
    ("dollars", "dollars"),
    ("kwh", "energy_kwh"),
    ("co2_kg", "co2_kg"),
    ("acc_smallest", "acc_smallest"),
    ("acc_largest", "acc_largest"),
)
COST_COLUMNS = ("epochs", "device_hours", "dollars", "kwh", "co2_kg", "search_s_per_target")
_PARENT = "mlflow.parentRunId"


def resolve_uri(explicit: str | None = None) -> str:
    """``explicit``, else the platform's tracking default (``MLFLOW_TRACKING_URI`` or SQLite)."""
    if explicit:
        return explicit
    try:
        from ofa_platform.tracking import resolve_tracking_uri
    except ImportError:
        root = Path(__file__).resolve().parents[1]
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlflow.db'}"
    return resolve_tracking_uri(None)


@dataclass
class ExperimentRuns:
    """The runs of one experiment, split by kind, plus the client that fetched them."""

    experiment_id: str
    client: Any
    train: list[Any] = field(default_factory=list)
    search: list[Any] = field(default_factory=list)

    def methods(self) -> list[str]:
        """Every method with a training or search run, OFA first."""
        names = {_tag(r, "ofa.method") for r in self.train + self.search}
        return method_order(n for n in names if n)

    def latest_train(self, method: str) -> Any | None:
        """The newest FINISHED top-level training run of ``method``."""
        runs = [r for r in self.train if _tag(r, "ofa.method") == method]
        return max(runs, key=lambda r: r.info.start_time or 0) if runs else None

    def searches(self, method: str) -> list[Any]:
        """The FINISHED search runs of ``method``."""
        return [r for r in self.search if _tag(r, "ofa.method") == method]

    def phases(self, train_run_id: str) -> list[Any]:
        """The nested phase runs of one training run, in phase order."""
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.{_PARENT} = '{train_run_id}'",
            max_results=1000)
        phases = [r for r in runs if _tag(r, "ofa.phase")]
        return sorted(phases, key=lambda r: _num(r.data.params.get("phase_index"), 0.0))


def method_order(names: Any) -> list[str]:
    """OFA first (every ratio is against it), the rest alphabetically."""
    names = sorted(set(names), key=str.lower)
    return sorted(names, key=lambda n: n.lower() != "ofa")


def _tag(run: Any, key: str) -> str | None:
    return run.data.tags.get(key)


def _num(value: Any, default: float = math.nan) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def load_runs(experiment: str, tracking_uri: str | None = None) -> ExperimentRuns:
    """Fetch the FINISHED training and search runs of ``experiment`` from MLflow.

    An unknown experiment is a ``UserError`` (one line, exit 2 in the CLI).
    """
    from mlflow.tracking import MlflowClient

    uri = resolve_uri(tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise UserError(f"no MLflow store at {uri} (set MLFLOW_TRACKING_URI or --tracking-uri)")
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise UserError(f"unknown MLflow experiment {experiment!r} at {client.tracking_uri}")
    runs = client.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED'",
                              max_results=50000)
    out = ExperimentRuns(exp.experiment_id, client)
    for run in runs:
        kind = _tag(run, "ofa.kind")
        if kind == "train" and not _tag(run, _PARENT) and not _tag(run, "ofa.phase"):
            out.train.append(run)
        elif kind == "search" and not _tag(run, _PARENT):
            out.search.append(run)
    return out


def comparison_table(experiment: str | ExperimentRuns,
                     tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per method: training cost, subnet accuracies, search time, ratios to OFA.

    Columns: epochs, device_hours, dollars, kwh, co2_kg, acc_smallest, acc_largest,
    search_s_per_target, train_run_id, and ``<cost>_vs_ofa`` for every cost column (NaN when the
    experiment has no OFA run). Missing metrics are NaN, never invented.
    """
    runs = experiment if isinstance(experiment, ExperimentRuns) else load_runs(
        experiment, tracking_uri)
    rows = []
    for method in runs.methods():
        train = runs.latest_train(method)
        row: dict[str, Any] = {"method": method}
        metrics = train.data.metrics if train is not None else {}
        for column, metric in _TRAIN_METRICS:
            row[column] = _num(metrics.get(metric))
        per_target = [_num(s.data.metrics.get("search_time_per_target_s"))
                      for s in runs.searches(method)]
        per_target = [v for v in per_target if not math.isnan(v)]
        row["search_s_per_target"] = (sum(per_target) / len(per_target)) if per_target else math.nan
        row["train_run_id"] = train.info.run_id if train is not None else None
        rows.append(row)
    columns = ["method", *[c for c, _ in _TRAIN_METRICS], "search_s_per_target", "train_run_id"]
    table = pd.DataFrame(rows, columns=columns).set_index("method")
    base = next((m for m in table.index if m.lower() == "ofa"), None)
    for column in COST_COLUMNS:
        ref = table.at[base, column] if base is not None else math.nan
        table[f"{column}_vs_ofa"] = table[column] / ref if ref and not math.isnan(ref) \
            else math.nan
    return table


def _fmt(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def format_table(table: pd.DataFrame) -> str:
    """The table as aligned terminal text, ratios to OFA as ``x0.50``."""
    headers = ["method", "epochs", "dev-hours", "dollars", "kWh", "CO2 kg", "acc small",
               "acc large", "search s/target", "dev-h vs OFA"]
    lines = []
    for method, r in table.iterrows():
        ratio = r.get("device_hours_vs_ofa", math.nan)
        lines.append([
            str(method), _fmt(r["epochs"], 0), _fmt(r["device_hours"], 3), _fmt(r["dollars"], 2),
            _fmt(r["kwh"], 3), _fmt(r["co2_kg"], 3), _fmt(r["acc_smallest"], 4),
            _fmt(r["acc_largest"], 4), _fmt(r["search_s_per_target"], 2),
            "-" if math.isnan(ratio) else f"x{ratio:.2f}",
        ])
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
              for i, h in enumerate(headers)]
    def join(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))
    out = [join(headers), join(["-" * w for w in widths])]
    out.extend(join(line) for line in lines)
    if not lines:
        out.append("(no finished training or search runs)")
    return "\n".join(out)
