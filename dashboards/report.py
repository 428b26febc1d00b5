"""The comparison report: one self-contained HTML file with every plot inline as SVG.

One file, no external scripts, fonts or images, so it can be mailed, opened offline, and logged
to MLflow as a single artifact of a comparison run. It reads MLflow only. A plot whose data is
missing (no search runs yet, say) still appears, saying what is missing, so the report's shape
never depends on which jobs have run.
"""

from __future__ import annotations

import html
import io
import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dashboards.compare import ExperimentRuns, comparison_table, format_table, load_runs
from ofa_platform.files import atomic_path

__all__ = ["FIGURES", "ReportResult", "build_report", "table_records", "write_report"]

# (figure id, title): the plots every report has, in order.
FIGURES = (
    ("cost", "Training cost per method"),
    ("acc-vs-cost", "Accuracy against training cost"),
    ("pareto", "Accuracy-latency Pareto fronts per method and hardware"),
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


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Any) -> str:
    """The figure as inline SVG (text kept as paths: no fonts needed to render it)."""
    plt = _plt()
    buf = io.StringIO()
    with plt.rc_context({"svg.fonttype": "path", "svg.hashsalt": "ofa-platform"}):
        fig.savefig(buf, format="svg")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _literal_svg(make: Callable[[], Any]) -> str:
    """Build and render a figure with every text drawn literally: method names, tags and
    hardware names are user text, and matplotlib would parse ``$...$`` in them as mathtext
    (and crash on what is not valid TeX). Text objects read the setting when created, and
    tick labels when drawn, so both happen inside the context."""
    with _plt().rc_context({"text.parse_math": False}):
        return _svg(make())


def _empty(message: str) -> Any:
    fig, ax = _plt().subplots(figsize=(6, 1.6))
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11)
    ax.set_axis_off()
    return fig


def _colors(methods: list[str]) -> dict[str, Any]:
    cmap = _plt().get_cmap("tab10")
    return {m: cmap(i % 10) for i, m in enumerate(methods)}


def _fig_cost(table: pd.DataFrame, colors: dict[str, Any]) -> Any:
    if table.empty or table[["device_hours", "dollars", "co2_kg"]].isna().all().all():
        return _empty("no finished training runs with cost metrics")
    fig, axes = _plt().subplots(1, 3, figsize=(11, 3.4))
    methods = list(table.index)
    for ax, (column, label) in zip(axes, [("device_hours", "device-hours"),
                                          ("dollars", "dollars"), ("co2_kg", "CO2 (kg)")]):
        values = table[column].fillna(0.0)
        ax.bar(methods, values, color=[colors[m] for m in methods])
        ax.set_title(label)
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def _fig_acc_vs_cost(table: pd.DataFrame, colors: dict[str, Any]) -> Any:
    data = table.dropna(subset=["device_hours"])
    if data.empty or data[["acc_smallest", "acc_largest"]].isna().all().all():
        return _empty("no training runs with both cost and accuracy")
    fig, ax = _plt().subplots(figsize=(6.5, 4))
    for method, r in data.iterrows():
        xs = [r["device_hours"], r["device_hours"]]
        ys = [r["acc_smallest"], r["acc_largest"]]
        ax.plot(xs, ys, "-", color=colors[method], alpha=0.5)
        ax.scatter([xs[0]], [ys[0]], marker="v", color=colors[method])
        ax.scatter([xs[1]], [ys[1]], marker="^", color=colors[method], label=method)
    ax.set_xlabel("training device-hours")
    ax.set_ylabel("top-1 accuracy (v smallest, ^ largest subnet)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _artifact_frame(runs: ExperimentRuns, run: Any, name: str, tmp: Path) -> pd.DataFrame | None:
    """A Parquet artifact of ``run`` as a DataFrame, None when the run has none."""
    try:
        local = runs.client.download_artifacts(run.info.run_id, name,
                                               str(tmp / run.info.run_id))
        return pd.read_parquet(local)
    except Exception:  # noqa: BLE001 - a missing or unreadable artifact is just absent data
        return None


def _search_frames(runs: ExperimentRuns, name: str,
                   tmp: Path) -> list[tuple[str, str, pd.DataFrame]]:
    out = []
    for method in runs.methods():
        for run in runs.searches(method):
            frame = _artifact_frame(runs, run, name, tmp)
            if frame is not None and not frame.empty:
                out.append((method, run.data.tags.get("ofa.hardware", "?"), frame))
    return out


def _grid(n: int, width: float, height: float) -> tuple[Any, list[Any]]:
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = _plt().subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_axis_off()
    return fig, flat[:n]


def _unit(frames: list[tuple[str, str, pd.DataFrame]], hardware: str) -> str:
    """The cost unit of one estimator's tables (ms, or MMACs for MAC-count searches)."""
    for _, h, f in frames:
        if h == hardware and "unit" in f.columns and len(f):
            return str(f["unit"].iloc[0])
    return "ms"


def _fig_pareto(frames: list[tuple[str, str, pd.DataFrame]], colors: dict[str, Any]) -> Any:
    frames = [(m, h, f) for m, h, f in frames if {"cost", "accuracy"} <= set(f.columns)]
    if not frames:
        return _empty("no search runs with a pareto.parquet artifact")
    hardware = sorted({h for _, h, _ in frames})
    fig, axes = _grid(len(hardware), 4.6, 3.6)
    for ax, hw in zip(axes, hardware):
        for method, h, frame in frames:
            if h != hw:
                continue
            f = frame
            if "feasible" in f.columns:
                f = f[f["feasible"].astype(bool)]
            f = f.dropna(subset=["cost", "accuracy"]).sort_values("cost")
            ax.plot(f["cost"], f["accuracy"], "o-", color=colors[method], label=method)
            if "target" in frame.columns:
                for t in frame["target"].dropna().unique():
                    ax.axvline(float(t), color="grey", lw=0.5, ls=":")
        ax.set_title(f"hardware: {hw}")
        ax.set_xlabel(f"cost ({_unit(frames, hw)})")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _fig_population(frames: list[tuple[str, str, pd.DataFrame]], colors: dict[str, Any]) -> Any:
    """CompOFA's population study: per latency bucket, the CDF of random subnets' accuracy."""
    frames = [(m, h, f.dropna(subset=["cost", "accuracy"])) for m, h, f in frames
              if {"cost", "accuracy"} <= set(f.columns)]
    frames = [(m, h, f) for m, h, f in frames if not f.empty]
    if not frames:
        return _empty("no search runs with a population.parquet artifact")
    panels = []
    for hw in sorted({h for _, h, _ in frames}):
        lat = pd.concat([f["cost"] for _, h, f in frames if h == hw])
        edges = sorted(set(lat.quantile([i / _N_BUCKETS for i in range(_N_BUCKETS + 1)])))
        if len(edges) < 2:
            edges = [float(lat.min()), float(lat.max()) + 1e-9]
        for lo, hi in zip(edges[:-1], edges[1:]):
            panels.append((hw, lo, hi, hi == edges[-1]))
    fig, axes = _grid(len(panels), 3.8, 3.0)
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
        ax.set_title(f"{hw}: {lo:.1f}-{hi:.1f} {_unit(frames, hw)}", fontsize=9)
        ax.set_xlabel("accuracy")
        ax.set_ylabel("fraction of subnets")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _fig_curves(runs: ExperimentRuns, colors: dict[str, Any]) -> Any:
    methods = [m for m in runs.methods() if runs.latest_train(m) is not None]
    if not methods:
        return _empty("no finished training runs")
    fig, axes = _grid(len(methods), 4.6, 3.4)
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


def _table_html(table: pd.DataFrame) -> str:
    shown = table.drop(columns=["train_run_id"], errors="ignore")
    return shown.to_html(float_format=lambda v: f"{v:,.4g}", na_rep="-", border=0,
                         classes="comparison")


_STYLE = """
body{font-family:sans-serif;margin:2em;max-width:1200px;color:#222}
figure{margin:1.5em 0;padding:0.5em;border:1px solid #ddd}
figure svg{max-width:100%;height:auto}
table.comparison{border-collapse:collapse;font-size:0.9em}
table.comparison td,table.comparison th{padding:3px 8px;border-bottom:1px solid #eee;
text-align:right}
pre{background:#f6f6f6;padding:0.8em;overflow-x:auto}
div.scroll{overflow-x:auto}
"""

# Marks each figure with its rendered size, so a browser (or a test) can tell that it drew.
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
    table = comparison_table(runs)
    colors = _colors(runs.methods())
    with tempfile.TemporaryDirectory(prefix="ofa-report-") as tmp:
        pareto = _search_frames(runs, "pareto.parquet", Path(tmp))
        population = _search_frames(runs, "population.parquet", Path(tmp))
    makers: dict[str, Callable[[], Any]] = {
        "cost": lambda: _fig_cost(table, colors),
        "acc-vs-cost": lambda: _fig_acc_vs_cost(table, colors),
        "pareto": lambda: _fig_pareto(pareto, colors),
        "population-cdf": lambda: _fig_population(population, colors),
        "curves": lambda: _fig_curves(runs, colors),
    }
    parts = [
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>ofa-platform comparison: {html.escape(experiment)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Comparison of training methods: {html.escape(experiment)}</h1>",
        f"<p>Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from MLflow. "
        "<span id='render-status'>plots not rendered (JavaScript off)</span></p>",
        "<h2>Summary</h2>", f"<div class='scroll'>{_table_html(table)}</div>",
        f"<pre>{html.escape(format_table(table))}</pre>",
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

    The comparison run (tag ``ofa.kind=compare``) lives in the same experiment; it holds the
    report and the table as JSON and ends FINISHED, or FAILED if logging breaks, never RUNNING.
    """
    from mlflow.tracking import MlflowClient

    from dashboards.compare import resolve_uri

    out = Path(out)
    uri = resolve_uri(tracking_uri)
    text, table = build_report(experiment, uri)
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    if not log_to_mlflow:
        return ReportResult(out, None, table)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    run = client.create_run(exp.experiment_id, run_name=f"compare-{time.strftime('%Y%m%d-%H%M%S')}",
                            tags={"ofa.kind": "compare"})
    status = "FAILED"
    try:
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
