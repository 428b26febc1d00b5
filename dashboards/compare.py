"""The comparison table: what each training method (OFA, CompOFA, DεpS, ...) cost and bought.

It reads MLflow only (the schema in docs/architecture.md), so it works the same on a laptop's
SQLite store and on the cluster's tracking server, and needs none of the training code.
Per method the latest FINISHED top-level training run is used; the search columns average the
method's FINISHED search runs (one per hardware, typically).

Accuracy is compared at equal cost (``dashboards/fronts.py``): each method's measured subnets
(the ``subnets.parquet`` of its checkpoint searches) give an accuracy-MACs front, read at MAC
budgets every method can meet. The accuracies of the smallest and largest subnet stay, labelled
with their MACs, because they are different networks in different spaces.

A shared teacher (a training run tagged ``ofa.init_from_run_id`` / ``ofa.init_from_phase``) is
counted once: its phases' cost is shown apart, with the methods that share it, and each method
has a cost "from scratch" (its own phases, search, and the teacher) and "given the teacher".
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dashboards.fronts import Front, common_grid, front_area, headline_points, pareto_front
from dashboards.fronts import shared_range as _shared_range
from ofa_platform.errors import UserError

__all__ = [
    "COST_COLUMNS",
    "TOTAL_COSTS",
    "AxisComparison",
    "acc_column",
    "open_experiment",
    "headline_columns",
    "ExperimentRuns",
    "SharedPhase",
    "artifact_frame",
    "compare_axes",
    "comparison_table",
    "format_cost",
    "format_table",
    "load_runs",
    "measured_points",
    "method_order",
    "resolve_uri",
    "shared_phases",
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
#: (table suffix, MLflow cost metric): the totals are training + search, per method.
TOTAL_COSTS = (("device_hours", "device_hours"), ("dollars", "dollars"), ("kwh", "energy_kwh"),
               ("co2_kg", "co2_kg"))
_PARENT = "mlflow.parentRunId"
_INIT_RUN, _INIT_PHASE = "ofa.init_from_run_id", "ofa.init_from_phase"
#: Headline MAC points of the table (low, middle, high end of the shared grid).
_N_HEADLINE = 3


def resolve_uri(explicit: str | None = None) -> str:
    """``explicit``, else the platform's tracking default (``MLFLOW_TRACKING_URI`` or SQLite)."""
    if explicit:
        return explicit
    from ofa_platform.tracking import resolve_tracking_uri

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


def open_experiment(experiment: str, uri: str) -> tuple[Any, Any]:
    """The MLflow client and experiment a report reads; a missing SQLite store (asking would
    create an empty one) or an unknown experiment is a ``UserError``."""
    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise UserError(f"no MLflow store at {uri} (set MLFLOW_TRACKING_URI or --tracking-uri)")
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise UserError(f"unknown MLflow experiment {experiment!r} at {uri}")
    return client, exp


def load_runs(experiment: str, tracking_uri: str | None = None) -> ExperimentRuns:
    """Fetch the FINISHED training and search runs of ``experiment`` from MLflow.

    An unknown experiment is a ``UserError`` (one line, exit 2 in the CLI).
    """
    uri = resolve_uri(tracking_uri)
    client, exp = open_experiment(experiment, uri)
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


@dataclass(frozen=True)
class SharedPhase:
    """Phases of one training run that other runs started from (a shared teacher).

    ``cost`` sums the phase runs up to and including ``phase`` (MLflow cost metric names; NaN
    when a phase run did not log its cost); ``methods`` are every method sharing them: the
    source run's own method and each method whose latest training run started from it.
    """

    run_id: str
    phase: str
    source_method: str | None
    cost: Mapping[str, float]
    methods: tuple[str, ...]


@dataclass(frozen=True)
class AxisComparison:
    """Accuracy at equal cost on one axis: MACs, or latency on one hardware.

    ``grid`` covers only the range where every method with data has subnets; a method with no
    measured subnets on this axis has no front and reads ``n/a`` everywhere.
    """

    axis: str
    unit: str
    fronts: Mapping[str, Front]
    points: Mapping[str, tuple[tuple[float, float], ...]]
    shared: tuple[float, float] | None
    grid: tuple[float, ...]
    headline: tuple[float, ...]

    def accuracy(self, method: str, budget: float) -> float:
        front = self.fronts.get(method)
        return front.accuracy_at(budget) if front is not None else math.nan

    def area(self, method: str) -> float:
        """Mean accuracy of the method's front over the shared range (area / width)."""
        front = self.fronts.get(method)
        if front is None or self.shared is None:
            return math.nan
        return front_area(front, *self.shared)


def artifact_frame(runs: ExperimentRuns, run: Any, name: str, tmp: Path) -> pd.DataFrame | None:
    """A Parquet artifact of ``run`` as a DataFrame, None when the run has none."""
    try:
        local = runs.client.download_artifacts(run.info.run_id, name,
                                               str(tmp / run.info.run_id))
        return pd.read_parquet(local)
    except Exception:  # noqa: BLE001 - a missing or unreadable artifact is just absent data
        return None


def measured_points(runs: ExperimentRuns, method: str, tmp: Path
                    ) -> tuple[list[tuple[str, float, float, float]], dict[str, str]]:
    """The method's measured subnets over all its search runs: (hardware, MMACs, cost,
    accuracy) per subnet and search, and the cost unit per hardware.

    From ``subnets.parquet`` where the search wrote one, else the measured rows of its
    ``pareto.parquet`` (older searches). Predicted accuracies are never used.
    """
    rows: list[tuple[str, float, float, float]] = []
    units: dict[str, str] = {}
    for run in runs.searches(method):
        hw = _tag(run, "ofa.hardware") or "?"
        frame = artifact_frame(runs, run, "subnets.parquet", tmp)
        if frame is None:
            frame = artifact_frame(runs, run, "pareto.parquet", tmp)
            if frame is not None and "feasible" in frame.columns:
                frame = frame[frame["feasible"].astype(bool)]
        if frame is None or frame.empty or "measured_accuracy" not in frame.columns:
            continue
        if "unit" in frame.columns and len(frame):
            units[hw] = str(frame["unit"].iloc[0])
        for _, r in frame.iterrows():
            acc = _num(r.get("measured_accuracy"))
            if math.isnan(acc):
                continue
            rows.append((hw, _num(r.get("macs")) / 1e6, _num(r.get("cost")), acc))
    return rows, units


def compare_axes(runs: ExperimentRuns, tmp: Path | None = None) -> list[AxisComparison]:
    """The MACs axis first, then latency per hardware (searches whose unit is not MMACs)."""
    methods = runs.methods()
    if tmp is None:
        with tempfile.TemporaryDirectory(prefix="ofa-compare-") as t:
            return compare_axes(runs, Path(t))
    data = {m: measured_points(runs, m, tmp) for m in methods}
    # one point per subnet: a subnet measured by two searches (one per hardware) counts once
    axes = [_axis("macs", "MMACs", {m: list(dict.fromkeys((mm, a) for _, mm, _, a in rows))
                                     for m, (rows, _) in data.items()})]
    hardware = sorted({hw for rows, units in data.values() for hw, *_ in rows
                       if units.get(hw, "ms") != "MMACs"})
    for hw in hardware:
        unit = next((units[hw] for _, units in data.values() if hw in units), "ms")
        axes.append(_axis(f"latency:{hw}", unit, {m: [(c, a) for h, _, c, a in rows if h == hw]
                                                  for m, (rows, _) in data.items()}))
    return axes


def _axis(name: str, unit: str, points: Mapping[str, list[tuple[float, float]]]
          ) -> AxisComparison:
    fronts = {m: pareto_front(p) for m, p in points.items()}
    fronts = {m: f for m, f in fronts.items() if f.points}
    shared = _shared_range(fronts.values())
    grid = tuple(common_grid(*shared)) if shared else ()
    clean = {m: tuple((c, a) for c, a in p if not (math.isnan(c) or math.isnan(a)))
             for m, p in points.items()}
    return AxisComparison(name, unit, fronts, clean, shared, grid,
                          tuple(headline_points(grid, _N_HEADLINE)))


def _costs(run: Any) -> dict[str, float]:
    return {metric: _num(run.data.metrics.get(metric)) for _, metric in TOTAL_COSTS}


def shared_phases(runs: ExperimentRuns) -> list[SharedPhase]:
    """Every (run, phase) that a latest training run of some method started from."""
    latest = {m: runs.latest_train(m) for m in runs.methods()}
    groups: dict[tuple[str, str], list[str]] = {}
    for method, run in latest.items():
        if run is not None and _tag(run, _INIT_RUN) and _tag(run, _INIT_PHASE):
            groups.setdefault((_tag(run, _INIT_RUN), _tag(run, _INIT_PHASE)), []).append(method)
    out = []
    for (run_id, phase), users in groups.items():
        try:
            source = runs.client.get_run(run_id)
        except Exception:  # noqa: BLE001 - the source run was deleted: cost unknown
            source = None
        source_method = _tag(source, "ofa.method") if source is not None else None
        cost = {metric: math.nan for _, metric in TOTAL_COSTS}
        if source is not None:
            phases = runs.phases(run_id) if source.info.experiment_id == runs.experiment_id \
                else _phases_elsewhere(runs, source)
            names = [_tag(p, "ofa.phase") for p in phases]
            if phase in names:
                upto = phases[:names.index(phase) + 1]
                cost = {metric: sum(_num(p.data.metrics.get(metric)) for p in upto)
                        for _, metric in TOTAL_COSTS}
        sharing = list(users)
        if source_method and latest.get(source_method) is not None and \
                latest[source_method].info.run_id == run_id:
            sharing.append(source_method)
        out.append(SharedPhase(run_id, phase, source_method, cost,
                               tuple(method_order(sharing))))
    return out


def _phases_elsewhere(runs: ExperimentRuns, source: Any) -> list[Any]:
    found = runs.client.search_runs([source.info.experiment_id],
                                    filter_string=f"tags.{_PARENT} = '{source.info.run_id}'",
                                    max_results=1000)
    phases = [r for r in found if _tag(r, "ofa.phase")]
    return sorted(phases, key=lambda r: _num(r.data.params.get("phase_index"), 0.0))


def _space_of(runs: ExperimentRuns, method: str) -> dict[str, float]:
    """The searched space's size and MAC range (params of the method's newest search)."""
    for run in sorted(runs.searches(method), key=lambda r: -(r.info.start_time or 0)):
        p = run.data.params
        if "space_cardinality" in p:
            return {"space_cardinality": _num(p.get("space_cardinality")),
                    "space_mmacs_min": _num(p.get("space_macs_min")) / 1e6,
                    "space_mmacs_max": _num(p.get("space_macs_max")) / 1e6}
    return {"space_cardinality": math.nan, "space_mmacs_min": math.nan,
            "space_mmacs_max": math.nan}


def acc_column(budget: float, unit: str = "MMACs") -> str:
    """The table column of the accuracy at one budget, e.g. ``acc@200MMACs``."""
    return f"acc@{budget:g}{unit}"


def comparison_table(experiment: str | ExperimentRuns, tracking_uri: str | None = None,
                     axes: list[AxisComparison] | None = None,
                     shared: list[SharedPhase] | None = None) -> pd.DataFrame:
    """One row per method: cost, accuracy at equal MACs, space, search time, ratios to OFA.

    Columns: ``space`` and its ``space_cardinality``, ``space_mmacs_min/max``; training cost
    (epochs, device_hours, dollars, kwh, co2_kg: the training run's own, i.e. given a shared
    teacher); ``search_<cost>`` (sum of its search runs); ``total_<cost>`` (training + search,
    given the teacher) and ``scratch_<cost>`` (plus the shared teacher's phases: what the
    method costs alone; equal to the total when it shares nothing); ``acc@<x>MMACs`` at the
    headline MAC points, ``auc_macs`` (mean accuracy of the front over the shared MAC range);
    the extremes ``acc_smallest``/``acc_largest`` with ``mmacs_smallest``/``mmacs_largest``;
    search_s_per_target, train_run_id, ``teacher`` (``run_id:phase`` when it started from a
    shared phase), and ``<cost>_vs_ofa`` for every cost column (NaN without an OFA run).
    Missing metrics are NaN, never invented.
    """
    runs = experiment if isinstance(experiment, ExperimentRuns) else load_runs(
        experiment, tracking_uri)
    axes = compare_axes(runs) if axes is None else axes
    shared = shared_phases(runs) if shared is None else shared
    macs = next((a for a in axes if a.axis == "macs"), None)
    rows = []
    for method in runs.methods():
        train = runs.latest_train(method)
        row: dict[str, Any] = {"method": method}
        metrics = train.data.metrics if train is not None else {}
        row["space"] = _tag(train, "ofa.space") if train is not None else next(
            (_tag(r, "ofa.space") for r in runs.searches(method)), None)
        row.update(_space_of(runs, method))
        for column, metric in _TRAIN_METRICS:
            row[column] = _num(metrics.get(metric))
        row["mmacs_smallest"], row["mmacs_largest"] = (row["space_mmacs_min"],
                                                       row["space_mmacs_max"])
        searches = runs.searches(method)
        teacher = next((sp for sp in shared if train is not None and method != sp.source_method
                        and _tag(train, _INIT_RUN) == sp.run_id), None)
        own_teacher = next((sp for sp in shared if train is not None
                            and sp.run_id == train.info.run_id), None)
        for column, metric in TOTAL_COSTS:
            search = sum(_num(r.data.metrics.get(metric), 0.0) for r in searches)
            row[f"search_{column}"] = search if searches else math.nan
            base = _num(metrics.get(metric))
            total = base + (search if searches else 0.0)
            if own_teacher is not None:  # the source method: its teacher is shared
                row[f"scratch_{column}"] = total
                row[f"total_{column}"] = total - own_teacher.cost[metric]
            else:
                row[f"total_{column}"] = total
                row[f"scratch_{column}"] = total + (teacher.cost[metric] if teacher else 0.0)
        per_target = [_num(s.data.metrics.get("search_time_per_target_s")) for s in searches]
        per_target = [v for v in per_target if not math.isnan(v)]
        row["search_s_per_target"] = (sum(per_target) / len(per_target)) if per_target else math.nan
        if macs is not None:
            for x in macs.headline:
                row[acc_column(x)] = macs.accuracy(method, x)
            row["auc_macs"] = macs.area(method)
        row["teacher"] = (f"{teacher.run_id}:{teacher.phase}" if teacher is not None else None)
        row["train_run_id"] = train.info.run_id if train is not None else None
        rows.append(row)
    table = pd.DataFrame(rows).set_index("method") if rows else pd.DataFrame(
        columns=["method", *[c for c, _ in _TRAIN_METRICS], "search_s_per_target",
                 "train_run_id"]).set_index("method")
    base = next((m for m in table.index if m.lower() == "ofa"), None)
    for column in COST_COLUMNS:
        ref = table.at[base, column] if base is not None else math.nan
        table[f"{column}_vs_ofa"] = table[column] / ref if ref and not math.isnan(ref) \
            else math.nan
    table.attrs["macs_shared"] = macs.shared if macs is not None else None
    return table


def format_cost(value: Any, digits: int = 3) -> str:
    """A cost with ``digits`` significant digits (0.000412 $, not 0.00), thousands separated.

    Quick-start costs are fractions of a cent and paper-scale ones thousands of dollars: fixed
    decimals would print one of them as 0.00 or as noise.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    v = float(value)
    if v == 0:
        return "0"
    if abs(v) >= 10 ** digits:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}" if abs(v) >= 1e-4 else f"{v:.{digits - 1}e}"


def _fmt(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _acc(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4f}"


def _mmacs(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "?"
    return f"{value:.0f}M" if value >= 10 else f"{value:.3g}M"


def headline_columns(table: pd.DataFrame) -> list[str]:
    """The ``acc@<x>MMACs`` columns of a table, in grid order."""
    return [c for c in table.columns if c.startswith("acc@")]


def format_table(table: pd.DataFrame) -> str:
    """The table as aligned terminal text: total cost (training + search) with significant
    digits, accuracy at equal MACs, the space, the extremes labelled with their MACs."""
    shares = "scratch_device_hours" in table.columns and any(
        (table["scratch_device_hours"] != table["total_device_hours"]).fillna(False))
    accs = headline_columns(table)
    headers = ["method", "space (subnets, MMACs)", "dev-hours", "dollars", "kWh", "CO2 kg"]
    if shares:
        headers += ["dev-h scratch", "$ scratch"]
    headers += [c.replace("acc@", "acc@") for c in accs]
    headers += ["mean acc (front)", "smallest", "largest", "search s/tgt", "dev-h vs OFA"]
    lines = []
    for method, r in table.iterrows():
        ratio = r.get("device_hours_vs_ofa", math.nan)
        card = r.get("space_cardinality", math.nan)
        space = (f"{r.get('space') or '?'} ({_big(card)}, "
                 f"{_mmacs(r.get('space_mmacs_min'))}-{_mmacs(r.get('space_mmacs_max'))})")
        line = [str(method), space,
                format_cost(r.get("total_device_hours", r["device_hours"])),
                format_cost(r.get("total_dollars", r["dollars"])),
                format_cost(r.get("total_kwh", r["kwh"])),
                format_cost(r.get("total_co2_kg", r["co2_kg"]))]
        if shares:
            line += [format_cost(r["scratch_device_hours"]), format_cost(r["scratch_dollars"])]
        line += [_acc(r[c]) for c in accs]
        line += [_acc(r.get("auc_macs")),
                 f"{_fmt(r['acc_smallest'], 4)} @{_mmacs(r.get('mmacs_smallest'))}",
                 f"{_fmt(r['acc_largest'], 4)} @{_mmacs(r.get('mmacs_largest'))}",
                 _fmt(r["search_s_per_target"], 2),
                 "-" if ratio is None or math.isnan(ratio) else f"x{ratio:.2f}"]
        lines.append(line)
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
              for i, h in enumerate(headers)]

    def join(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))
    out = [join(headers), join(["-" * w for w in widths])]
    out.extend(join(line) for line in lines)
    if not lines:
        out.append("(no finished training or search runs)")
    else:
        shared = table.attrs.get("macs_shared")
        out.append("costs: training + search" + (" (given the shared teacher; 'scratch' adds "
                                                  "it)" if shares else ""))
        out.append("acc@X: most accurate measured subnet at <= X MMACs; mean acc (front): "
                   + (f"over {shared[0]:.0f}-{shared[1]:.0f} MMACs, the range every method "
                      "covers" if shared else "n/a (no MAC range every method covers)"))
    return "\n".join(out)


def _big(n: Any) -> str:
    """A cardinality as 2.0e19 or 243."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "?"
    return f"{n:.1e}" if n >= 1e6 else f"{n:,.0f}"
