"""What a search hands back: the Pareto table, the MLflow search run, exported subnets.

The table has one row per target with the schema dashboards read (docs/architecture.md):
``target, feasible, arch_json, cost, unit, accuracy, measured_accuracy, macs, params``;
``target`` and ``cost`` are in ``unit``: ms for latency estimators, MMACs for ``macs``.
Files are written to a temp name and renamed, so a failed search leaves no half a table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ofa_platform.files import atomic_path
from ofa_platform.search.evolution import SearchResult
from search_spaces.blueprint import NetworkPlan
from search_spaces.flops import count_macs_params

__all__ = ["PARETO_COLUMNS", "pareto_rows", "write_parquet", "format_table", "export_subnets"]

PARETO_COLUMNS = ("target", "feasible", "arch_json", "cost", "unit", "accuracy",
                  "measured_accuracy", "macs", "params")


def pareto_rows(results: Sequence[SearchResult], plan: NetworkPlan,
                measured: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """One row per target; ``measured`` maps ``arch.key`` to an evaluated accuracy."""
    rows = []
    for res in results:
        row: dict[str, Any] = {"target": float(res.target), "feasible": bool(res.feasible),
                               "arch_json": "", "cost": float("nan"), "unit": res.unit,
                               "accuracy": float("nan"), "measured_accuracy": float("nan"),
                               "macs": 0, "params": 0}
        if res.feasible and res.arch is not None:
            macs, params = count_macs_params(plan, res.arch)
            row.update(arch_json=res.arch.to_json(), cost=float(res.cost),
                       accuracy=float(res.accuracy), macs=int(macs), params=int(params))
            if measured and res.arch.key in measured:
                row["measured_accuracy"] = float(measured[res.arch.key])
        rows.append(row)
    return rows


def write_parquet(rows: Sequence[Mapping[str, Any]], path: str | Path,
                  columns: Sequence[str] | None = None) -> Path:
    """Rows as a Parquet file, written whole then renamed into place."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = list(columns or (rows[0].keys() if rows else PARETO_COLUMNS))
    data = {c: [r.get(c) for r in rows] for c in cols}
    table = _table_without_pandas(data) if rows else None
    if table is None:
        table = pa.table(data)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def _table_without_pandas(data: Mapping[str, list[Any]]) -> Any:
    """The same Arrow table as ``pa.table(data)`` for columns of None, bool, int, float and
    str, built by pyarrow's JSON reader: building arrays from Python lists makes pyarrow
    import pandas, 1.6 of the 4 CPU seconds of a whole ``search`` process (issue 17). None
    for any other value type (the caller falls back to ``pa.table``)."""
    import io
    import json

    import pyarrow as pa
    import pyarrow.json as pj

    fields = []
    for name, values in data.items():
        kinds = {type(v) for v in values if v is not None}
        if not kinds:
            fields.append(pa.field(name, pa.null()))
        elif kinds == {str}:
            fields.append(pa.field(name, pa.string()))
        elif kinds == {bool}:
            fields.append(pa.field(name, pa.bool_()))
        elif kinds == {int}:
            fields.append(pa.field(name, pa.int64()))
        elif kinds <= {int, float}:
            fields.append(pa.field(name, pa.float64()))
        else:
            return None
    lines = (json.dumps(dict(zip(data, row))) for row in zip(*data.values()))
    options = pj.ParseOptions(explicit_schema=pa.schema(fields))
    return pj.read_json(io.BytesIO("\n".join(lines).encode()), parse_options=options)


def format_table(rows: Sequence[Mapping[str, Any]], unit: str = "ms") -> str:
    """The table a person reads: target, cost, accuracy, MACs, arch."""
    lines = [f"{'target':>8} {unit:>8} {'acc %':>7} {'meas %':>7} {'MMACs':>8}  arch"]
    for r in rows:
        if not r["feasible"]:
            lines.append(f"{r['target']:>8g} {'-':>8} {'-':>7} {'-':>7} {'-':>8}  infeasible")
            continue
        meas = r["measured_accuracy"]
        meas_s = "-" if meas != meas else f"{100 * meas:.2f}"
        arch = json.loads(r["arch_json"])
        desc = f"r{arch['r']} d{''.join(map(str, arch['d']))}"
        lines.append(f"{r['target']:>8g} {r['cost']:>8.2f} {100 * r['accuracy']:>7.2f} "
                     f"{meas_s:>7} {r['macs'] / 1e6:>8.1f}  {desc}")
    return "\n".join(lines)


def export_subnets(results: Sequence[SearchResult], supernet: Any, directory: str | Path,
                   unit: str = "ms") -> list[Path]:
    """Every chosen subnet in the ``ofa-platform extract`` format (a ``torch.export`` archive
    that plain PyTorch loads without this project) plus a JSON sidecar with its arch, cost
    and accuracy."""
    import torch

    from ofa_platform.cli.extract import export_subnet
    from ofa_platform.search.cache import atomic_write_text

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for res in results:
        if not res.feasible or res.arch is None:
            continue
        stem = f"subnet_{res.target:g}{unit}"
        model = supernet.extract(res.arch).eval()
        example = torch.randn(2, 3, res.arch.r, res.arch.r)
        path = export_subnet(model, example, directory / f"{stem}.pt2", "export")
        meta = {"arch": res.arch.to_dict(), "target": res.target, "cost": res.cost,
                "unit": unit, "predicted_accuracy": res.accuracy, "model": path.name,
                "format": "torch.export", "spec": getattr(supernet, "spec", None)}
        atomic_write_text(directory / f"{stem}.json", json.dumps(meta, indent=2, default=str))
        paths.append(path)
    return paths
