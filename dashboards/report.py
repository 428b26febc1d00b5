"""The comparison report: one self-contained HTML file with every plot inline as SVG.

One file, no external scripts, fonts or images, so it can be mailed, opened offline, and logged
to MLflow as a single artifact of a comparison run. Nothing in it needs JavaScript: MLflow's
artifact viewer shows HTML in a sandboxed frame where scripts do not run, so the plots are
plain inline SVG and the tables plain HTML (the one script only annotates rendered sizes for
tests). It reads MLflow only. A plot whose data is missing (no search runs yet, say) still
appears, saying what is missing, so the report's shape never depends on which jobs have run.

Methods are compared at equal cost (accuracy read off each method's measured front at MAC and
latency budgets every method can meet, ``dashboards/fronts.py``), with each method's space and
its total cost (training + search; a shared teacher counted once) beside it.
"""

from __future__ import annotations

import html
import io
import json
import math
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dashboards.compare import (
    AxisComparison,
    ExperimentRuns,
    SharedPhase,
    artifact_frame,
    compare_axes,
    comparison_table,
    format_cost,
    headline_columns,
    load_runs,
    shared_phases,
)
from dashboards.figures import empty_figure, grid, pyplot
from ofa_platform.files import atomic_path

__all__ = ["FIGURES", "ReportResult", "build_report", "table_records", "write_report"]

# (figure id, title): the plots every report has, in order.
FIGURES = (
    ("cost", "Total cost per method (training + search)"),
    ("fronts-macs", "Accuracy against MACs: measured subnets and each method's Pareto front"),
    ("pareto", "Accuracy against latency per hardware: measured subnets and Pareto fronts"),
    ("acc-vs-cost", "Accuracy at equal MACs against total cost"),
    ("population-cdf", "Accuracy CDF of random subnets per latency bucket"),
    ("curves", "Training curves with phase boundaries"),
)
_N_BUCKETS = 4


@dataclass(frozen=True)
class ReportResult:
    """What ``write_report`` produced."""

    path: Path
    run_id: str | None
    table: pd.DataFrame



def _svg(fig: Any) -> str:
    """The figure as inline SVG (text kept as paths: no fonts needed to render it); cropped to
    what was drawn, so a long title or legend is never cut at the figure's edge."""
    plt = pyplot()
    buf = io.StringIO()
    with plt.rc_context({"svg.fonttype": "path", "svg.hashsalt": "ofa-platform"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _literal_svg(make: Callable[[], Any]) -> str:
    """Build and render a figure with every text drawn literally: method names, tags and
    hardware names are user text, and matplotlib would parse ``$...$`` in them as mathtext
    (and crash on what is not valid TeX). Text objects read the setting when created, and
    tick labels when drawn, so both happen inside the context."""
    with pyplot().rc_context({"text.parse_math": False}):
        return _svg(make())



def _colors(methods: list[str]) -> dict[str, Any]:
    cmap = pyplot().get_cmap("tab10")
    return {m: cmap(i % 10) for i, m in enumerate(methods)}


def _title(text: str, width: int = 48) -> str:
    """A plot title wrapped to the panel (hardware names can be 60 characters long)."""
    return "\n".join(textwrap.wrap(text, width)) or text


def _cost_column(table: pd.DataFrame, column: str) -> pd.Series:
    total = f"total_{column}"
    return table[total] if total in table.columns else table[column]


def _fig_cost(table: pd.DataFrame, colors: dict[str, Any],
              shared: list[SharedPhase]) -> Any:
    if table.empty or table[["device_hours", "dollars", "co2_kg"]].isna().all().all():
        return empty_figure("no finished training runs with cost metrics")
    fig, axes = pyplot().subplots(1, 3, figsize=(11, 3.4))
    methods = list(table.index)
    teacher = {m: sp for sp in shared for m in sp.methods}
    for ax, (column, metric, label) in zip(axes, [
            ("device_hours", "device_hours", "device-hours"), ("dollars", "dollars", "dollars"),
            ("co2_kg", "co2_kg", "CO2 (kg)")]):
        values = _cost_column(table, column).fillna(0.0)
        ax.bar(methods, values, color=[colors[m] for m in methods], label="own + search")
        if shared:
            tops = [teacher[m].cost[metric] if m in teacher else 0.0 for m in methods]
            ax.bar(methods, [0.0 if math.isnan(t) else t for t in tops], bottom=values,
                   color="none", edgecolor="grey", hatch="//", label="shared teacher")
        ax.set_title(label)
        ax.tick_params(axis="x", rotation=30)
    if shared:
        axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _fig_fronts(axis: AxisComparison | None, colors: dict[str, Any], ax: Any) -> None:
    """One panel: every measured subnet (faint), each method's staircase front (bold), the
    shared range shaded and the headline budgets marked."""
    if axis is None:
        return
    for method, points in axis.points.items():
        if points:
            ax.scatter([c for c, _ in points], [a for _, a in points], s=10, alpha=0.3,
                       color=colors.get(method, "grey"))
    for method, front in axis.fronts.items():
        ax.plot(*front.staircase(), "-", color=colors.get(method, "grey"), lw=2,
                label=f"{method} ({front.n_subnets} subnets)")
    if axis.shared:
        ax.axvspan(*axis.shared, color="grey", alpha=0.08, label="every method has subnets")
    for x in axis.headline:
        ax.axvline(x, color="grey", lw=0.6, ls=":")
    ax.set_xlabel(axis.unit)
    ax.set_ylabel("measured top-1 accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _fig_macs(axes: list[AxisComparison], colors: dict[str, Any]) -> Any:
    axis = next((a for a in axes if a.axis == "macs"), None)
    if axis is None or not axis.fronts:
        return empty_figure("no search runs with measured subnets (search a trained --checkpoint)")
    fig, ax = pyplot().subplots(figsize=(7, 4.2))
    _fig_fronts(axis, colors, ax)
    ax.set_title("accuracy against MACs")
    fig.tight_layout()
    return fig


def _fig_latency(axes: list[AxisComparison], colors: dict[str, Any]) -> Any:
    latency = [a for a in axes if a.axis.startswith("latency:") and a.fronts]
    if not latency:
        return empty_figure("no search runs with measured subnets on a latency estimator")
    fig, panels = grid(len(latency), 4.8, 3.8)
    for ax, axis in zip(panels, latency):
        _fig_fronts(axis, colors, ax)
        ax.set_title(_title(f"hardware: {axis.axis.removeprefix('latency:')}"), fontsize=9)
    fig.tight_layout()
    return fig


def _fig_acc_vs_cost(table: pd.DataFrame, colors: dict[str, Any]) -> Any:
    cols = headline_columns(table)
    data = table.dropna(subset=["device_hours"])
    if data.empty or not cols or data[cols].isna().all().all():
        return empty_figure("no methods with both cost and accuracy at a shared MAC budget")
    fig, ax = pyplot().subplots(figsize=(6.5, 4))
    markers = "v^so"
    for method, r in data.iterrows():
        x = _cost_column(data, "device_hours")[method]
        for i, col in enumerate(cols):
            ax.scatter([x], [r[col]], marker=markers[i % len(markers)], color=colors[method],
                       label=f"{method}" if i == 0 else None)
        ax.plot([x] * len(cols), [r[c] for c in cols], "-", color=colors[method], alpha=0.4)
    ax.set_xlabel("total device-hours (training + search)")
    ax.set_ylabel(_title("accuracy at " + ", ".join(c.removeprefix("acc@") for c in cols), 40))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _search_frames(runs: ExperimentRuns, name: str,
                   tmp: Path) -> list[tuple[str, str, pd.DataFrame]]:
    out = []
    for method in runs.methods():
        for run in runs.searches(method):
            frame = artifact_frame(runs, run, name, tmp)
            if frame is not None and not frame.empty:
                out.append((method, run.data.tags.get("ofa.hardware", "?"), frame))
    return out



def _unit(frames: list[tuple[str, str, pd.DataFrame]], hardware: str) -> str:
    """The cost unit of one estimator's tables (ms, or MMACs for MAC-count searches)."""
    for _, h, f in frames:
        if h == hardware and "unit" in f.columns and len(f):
            return str(f["unit"].iloc[0])
    return "ms"


def _fig_population(frames: list[tuple[str, str, pd.DataFrame]], colors: dict[str, Any]) -> Any:
    """CompOFA's population study: per latency bucket, the CDF of random subnets' accuracy."""
    frames = [(m, h, f.dropna(subset=["cost", "accuracy"])) for m, h, f in frames
              if {"cost", "accuracy"} <= set(f.columns)]
    frames = [(m, h, f) for m, h, f in frames if not f.empty]
    if not frames:
        return empty_figure("no search runs with a population.parquet artifact")
    panels = []
    for hw in sorted({h for _, h, _ in frames}):
        lat = pd.concat([f["cost"] for _, h, f in frames if h == hw])
        edges = sorted(set(lat.quantile([i / _N_BUCKETS for i in range(_N_BUCKETS + 1)])))
        if len(edges) < 2:
            edges = [float(lat.min()), float(lat.max()) + 1e-9]
        for lo, hi in zip(edges[:-1], edges[1:]):
            panels.append((hw, lo, hi, hi == edges[-1]))
    fig, axes = grid(len(panels), 3.8, 3.0)
    for ax, (hw, lo, hi, last) in zip(axes, panels):
        for method, h, f in frames:
            if h != hw:
                continue
            inside = (f["cost"] >= lo) & ((f["cost"] <= hi) if last else (f["cost"] < hi))
            acc = f.loc[inside, "accuracy"].sort_values().to_numpy()
            if len(acc):
                ys = [(i + 1) / len(acc) for i in range(len(acc))]
                ax.step(acc, ys, where="post", color=colors[method],
                        label=f"{method} (n={len(acc)})")
        ax.set_title(_title(f"{hw}: {lo:.1f}-{hi:.1f} {_unit(frames, hw)}", 40), fontsize=9)
        ax.set_xlabel("accuracy")
        ax.set_ylabel("fraction of subnets")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _fig_curves(runs: ExperimentRuns, colors: dict[str, Any]) -> Any:
    methods = [m for m in runs.methods() if runs.latest_train(m) is not None]
    if not methods:
        return empty_figure("no finished training runs")
    fig, axes = grid(len(methods), 4.6, 3.4)
    for ax, method in zip(axes, methods):
        run = runs.latest_train(method)
        for key, style in (("acc_largest", "-"), ("acc_middle", "--"), ("acc_smallest", ":")):
            hist = sorted(runs.client.get_metric_history(run.info.run_id, key),
                          key=lambda m: m.step)
            if hist:
                ax.plot([m.step for m in hist], [m.value for m in hist], style,
                        color=colors[method], label=key.replace("acc_", ""))
        for phase in runs.phases(run.info.run_id)[1:]:
            start = phase.data.params.get("start_epoch")
            if start is not None:
                ax.axvline(float(start), color="grey", ls="--", lw=0.8)
                ax.text(float(start), 1.0, f" {phase.data.tags.get('ofa.phase', '')}",
                        transform=ax.get_xaxis_transform(), fontsize=7, va="top",
                        rotation=90, color="grey")
        ax.set_title(method)
        ax.set_xlabel("epoch")
        ax.set_ylabel("top-1 accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _acc_cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "<td class='na'>n/a</td>"
    return f"<td>{value:.4f}</td>"


def _num_cell(value: Any, text: str | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "<td class='na'>-</td>"
    return f"<td>{_esc(text if text is not None else format_cost(value))}</td>"


def _mm(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "?"
    return f"{value:.0f}" if value >= 10 else f"{value:.3g}"


def _card(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "?"
    return f"{value:.2e}" if value >= 1e6 else f"{value:,.0f}"


def _table_html(table: pd.DataFrame, shared: list[SharedPhase]) -> str:
    """The summary: one plain HTML table, two header rows, the method column sticky so a
    wide table scrolls under it instead of running off the page."""
    if table.empty:
        return "<p>No finished training or search runs in this experiment.</p>"
    accs = headline_columns(table)
    shares = bool(shared)
    rng = table.attrs.get("macs_shared")
    groups = [("method", 1), ("space", 3), ("total cost: training + search" + (
        ", given the shared teacher" if shares else ""), 4)]
    if shares:
        groups.append(("cost from scratch (with the teacher)", 4))
    if accs:
        groups.append(("accuracy at equal MACs", len(accs) + 1))
    groups += [("ends of each space (different networks)", 2), ("search", 1),
               ("vs OFA", 1)]
    sub = ["", "name", "subnets", "MMACs", "device-h", "$", "kWh", "CO2 kg"]
    if shares:
        sub += ["device-h", "$", "kWh", "CO2 kg"]
    if accs:
        sub += [c.removeprefix("acc@") for c in accs]
        sub.append(f"mean over {rng[0]:.0f}-{rng[1]:.0f} MMACs" if rng else "mean (no shared "
                   "range)")
    sub += ["smallest", "largest", "s/target", "device-h"]
    head1 = "".join(f"<th colspan='{n}'{' class=sticky' if i == 0 else ''}>{_esc(g)}</th>"
                    if n > 1 else f"<th{' class=sticky' if i == 0 else ''}>{_esc(g)}</th>"
                    for i, (g, n) in enumerate(groups))
    head2 = "".join(f"<th{' class=sticky' if i == 0 else ''}>{_esc(h)}</th>"
                    for i, h in enumerate(sub))
    body = []
    for method, r in table.iterrows():
        space = r.get("space") or "?"
        cells = [f"<th class='sticky'>{_esc(method)}</th>", f"<td class='l'>{_esc(space)}</td>",
                 f"<td>{_card(r.get('space_cardinality'))}</td>",
                 f"<td>{_mm(r.get('space_mmacs_min'))}-{_mm(r.get('space_mmacs_max'))}</td>"]
        for c in ("device_hours", "dollars", "kwh", "co2_kg"):
            cells.append(_num_cell(r.get(f"total_{c}", r.get(c))))
        if shares:
            cells += [_num_cell(r.get(f"scratch_{c}"))
                      for c in ("device_hours", "dollars", "kwh", "co2_kg")]
        if accs:
            cells += [_acc_cell(r[c]) for c in accs]
            cells.append(_acc_cell(r.get("auc_macs")))
        for end in ("smallest", "largest"):
            acc = r.get(f"acc_{end}")
            text = "-" if acc is None or math.isnan(acc) else f"{acc:.4f}"
            cells.append(f"<td>{text} @ {_mm(r.get(f'mmacs_{end}'))} MMACs</td>")
        cells.append(_num_cell(r.get("search_s_per_target"),
                               None if math.isnan(r.get("search_s_per_target", math.nan))
                               else f"{r['search_s_per_target']:.2f}"))
        ratio = r.get("device_hours_vs_ofa", math.nan)
        cells.append(_num_cell(ratio, None if math.isnan(ratio) else f"x{ratio:.2f}"))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return ("<div class='scroll'><table class='comparison'><thead><tr>" + head1 +
            "</tr><tr>" + head2 + "</tr></thead><tbody>" + "".join(body) +
            "</tbody></table></div>")


def _axes_html(axes: list[AxisComparison], methods: list[str]) -> str:
    """Per axis, accuracy at every grid budget of the shared range; n/a outside a method's
    range (or for a method with no measured subnets on that axis)."""
    parts = []
    for axis in axes:
        name = "MACs" if axis.axis == "macs" else axis.axis.removeprefix("latency:")
        ranges = "; ".join(f"{m}: {_mm(f.lo)}-{_mm(f.hi)}" for m, f in axis.fronts.items())
        if not axis.grid:
            why = ("no method has measured subnets" if not axis.fronts else
                   "the methods' ranges do not overlap")
            parts.append(f"<h3>{_esc(name)}</h3><p>No common budget: {_esc(why)} "
                         f"({_esc(ranges)} {_esc(axis.unit)}).</p>")
            continue
        head = "".join(f"<th>{x:g}</th>" for x in axis.grid)
        rows = []
        for m in methods:
            cells = "".join(_acc_cell(axis.accuracy(m, x)) for x in axis.grid)
            rows.append(f"<tr><th class='sticky'>{_esc(m)}</th>{cells}"
                        f"{_acc_cell(axis.area(m))}</tr>")
        parts.append(
            f"<h3>{_esc(name)} ({_esc(axis.unit)})</h3><p>Measured ranges: {_esc(ranges)} "
            f"{_esc(axis.unit)}; shared: {axis.shared[0]:.4g}-{axis.shared[1]:.4g}.</p>"
            f"<div class='scroll'><table class='comparison'><thead><tr><th class='sticky'>"
            f"method</th>{head}<th>mean over shared range</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></div>")
    return "".join(parts)


def _shared_html(shared: list[SharedPhase]) -> str:
    if not shared:
        return ("<p>No method started from another run's phase: every cost above is the "
                "method's own.</p>")
    rows = []
    for sp in shared:
        cost = sp.cost
        rows.append(
            f"<tr><th class='sticky'>{_esc(sp.phase)}</th><td class='l'>"
            f"{_esc(sp.source_method or '?')} <code>{_esc(sp.run_id[:12])}</code></td>"
            f"<td class='l'>{_esc(', '.join(sp.methods))}</td>"
            + "".join(_num_cell(cost[k]) for k in ("device_hours", "dollars", "energy_kwh",
                                                   "co2_kg")) + "</tr>")
    return ("<p>These phases were trained once and started from by the methods listed; their "
            "cost is counted once here, not in each method's total above (the 'from scratch' "
            "columns add it back).</p><div class='scroll'><table class='comparison'><thead>"
            "<tr><th class='sticky'>phase (up to)</th><th>trained by run</th><th>shared by</th>"
            "<th>device-h</th><th>$</th><th>kWh</th><th>CO2 kg</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></div>")


_STYLE = """
body{font-family:sans-serif;margin:1.5em;max-width:1400px;color:#222}
figure{margin:1.5em 0;padding:0.5em;border:1px solid #ddd}
figure svg{max-width:100%;height:auto;display:block}
div.scroll{overflow-x:auto;max-width:100%}
table.comparison{border-collapse:separate;border-spacing:0;font-size:0.85em}
table.comparison td,table.comparison th{padding:3px 7px;border-bottom:1px solid #eee;
text-align:right;white-space:nowrap;background:#fff}
table.comparison thead th{white-space:normal;text-align:center;background:#f3f3f3;
border-bottom:1px solid #ccc;max-width:11em}
table.comparison .sticky{position:sticky;left:0;z-index:1;text-align:left;
border-right:1px solid #ccc}
table.comparison td.l{text-align:left}
table.comparison td.na{color:#999}
"""

# Marks each figure with its rendered size, so a browser (or a test) can tell that it drew.
# The report does not need it: without scripts (MLflow's sandboxed viewer) everything shows.
_SCRIPT = """
window.addEventListener('load', function () {
  var figs = document.querySelectorAll('figure.plot'), ok = 0;
  figs.forEach(function (f) {
    var s = f.querySelector('svg'), r = s ? s.getBoundingClientRect() : null;
    var w = r ? Math.round(r.width) : 0, h = r ? Math.round(r.height) : 0;
    f.setAttribute('data-rendered', w + 'x' + h);
    if (w > 0 && h > 0) { ok += 1; }
  });
  var st = document.getElementById('render-status');
  st.textContent = ok + ' of ' + figs.length + ' plots rendered';
  st.setAttribute('data-ok', String(ok));
});
"""


def build_report(experiment: str, tracking_uri: str | None = None) -> tuple[str, pd.DataFrame]:
    """The report's HTML and the comparison table it shows."""
    runs = load_runs(experiment, tracking_uri)
    colors = _colors(runs.methods())
    with tempfile.TemporaryDirectory(prefix="ofa-report-") as tmp:
        axes = compare_axes(runs, Path(tmp))
        population = _search_frames(runs, "population.parquet", Path(tmp))
    shared = shared_phases(runs)
    table = comparison_table(runs, axes=axes, shared=shared)
    makers: dict[str, Callable[[], Any]] = {
        "cost": lambda: _fig_cost(table, colors, shared),
        "fronts-macs": lambda: _fig_macs(axes, colors),
        "pareto": lambda: _fig_latency(axes, colors),
        "acc-vs-cost": lambda: _fig_acc_vs_cost(table, colors),
        "population-cdf": lambda: _fig_population(population, colors),
        "curves": lambda: _fig_curves(runs, colors),
    }
    parts = [
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>ofa-platform comparison: {html.escape(experiment)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Comparison of training methods: {html.escape(experiment)}</h1>",
        f"<p>Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from MLflow. "
        "<span id='render-status'></span></p>",
        "<h2>Summary</h2>", _table_html(table, shared),
        "<p>Accuracy at X: the most accurate measured subnet (BN recalibrated, evaluated on the "
        "validation split) costing at most X, read off each method's Pareto front; only budgets "
        "where every method has subnets are compared. The smallest and largest subnets are "
        "different networks in different spaces: their MACs are shown with them.</p>",
        "<h2>Accuracy at equal cost</h2>", _axes_html(axes, runs.methods()),
        "<h2>Shared teacher</h2>", _shared_html(shared),
    ]
    for fig_id, title in FIGURES:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(f"<figure class='plot' id='fig-{fig_id}'>{_literal_svg(makers[fig_id])}"
                     f"<figcaption>{html.escape(title)}</figcaption></figure>")
    parts.append(f"<script>{_SCRIPT}</script></body></html>")
    return "\n".join(parts), table


def write_report(experiment: str, out: str | Path, tracking_uri: str | None = None,
                 log_to_mlflow: bool = True) -> ReportResult:
    """Write the report to ``out`` (atomically) and log it to a comparison run in MLflow.

    The comparison run (tag ``ofa.kind=compare``) lives in the same experiment and is opened
    before the work starts, so its duration is the comparison's; it holds the report and the
    table as JSON and ends FINISHED, or FAILED if building or logging breaks, never RUNNING.
    An unknown experiment is a ``UserError`` before any run or file is made.
    """
    from mlflow.tracking import MlflowClient

    from dashboards.compare import resolve_uri

    out = Path(out)
    uri = resolve_uri(tracking_uri)
    if not log_to_mlflow:
        text, table = build_report(experiment, uri)
        with atomic_path(out) as tmp:
            tmp.write_text(text, encoding="utf-8")
        return ReportResult(out, None, table)
    load_runs(experiment, uri)  # the store and the experiment exist (else UserError)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    run = client.create_run(exp.experiment_id, run_name=f"compare-{time.strftime('%Y%m%d-%H%M%S')}",
                            tags={"ofa.kind": "compare"})
    status = "FAILED"
    try:
        text, table = build_report(experiment, uri)
        with atomic_path(out) as tmp:
            tmp.write_text(text, encoding="utf-8")
        with tempfile.TemporaryDirectory(prefix="ofa-report-") as tmp:
            report = Path(tmp) / "report.html"
            report.write_text(text, encoding="utf-8")
            client.log_artifact(run.info.run_id, str(report))
            data = Path(tmp) / "comparison.json"
            data.write_text(json.dumps(table_records(table), indent=2), encoding="utf-8")
            client.log_artifact(run.info.run_id, str(data))
        status = "FINISHED"
    finally:
        client.set_terminated(run.info.run_id, status)
    return ReportResult(out, run.info.run_id, table)


def table_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows (NaN as null)."""
    records = []
    for method, row in table.iterrows():
        rec: dict[str, Any] = {"method": method}
        for key, value in row.items():
            rec[key] = None if isinstance(value, float) and math.isnan(value) else value
        records.append(rec)
    return records
