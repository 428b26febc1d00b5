"""Side-by-side timing of our code and the reference's: interleaved runs, medians, ratios, JSON.

A speed claim holds only when both sides ran on the same machine, on the same inputs, at the
same time. Runs alternate (ours, reference, reference, ours, ...) so that a machine that slows
down or warms up mid-benchmark hurts both sides alike; medians resist the odd outlier; and the
result is a ratio, which is what survives a change of machine. Wall time is the headline; CPU
time of the process is kept beside it because on a shared, loaded machine it is the steadier
of the two.

The ratio is always *speed* ours / reference: above 1.0 means ours is faster (fewer seconds
per call, or more images per second).
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ofa_platform.files import atomic_path

__all__ = [
    "Side",
    "Comparison",
    "Clock",
    "median",
    "compare",
    "format_table",
    "results_payload",
    "write_results",
    "machine_info",
]

Clock = Callable[[], float]


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence (the mean of the middle two for even lengths)."""
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


@dataclass
class Side:
    """The timings of one side (ours or the reference) of one comparison."""

    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    result: Any = None

    @property
    def median_wall_s(self) -> float:
        return median(self.wall_s)

    @property
    def median_cpu_s(self) -> float:
        return median(self.cpu_s)


def _speed_ratio(ours_s: float, reference_s: float) -> float:
    """Speed ours / reference from times per call; ``inf`` if ours took no measurable time."""
    if ours_s <= 0:
        return math.inf
    return reference_s / ours_s


@dataclass
class Comparison:
    """One measured comparison: both sides' timings and what each call computed.

    ``work`` is the amount of work one call does (images for a training step, targets for a
    search) so that throughputs can be printed in their natural unit.
    """

    name: str
    ours: Side
    reference: Side
    work: float = 1.0
    unit: str = "call"
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """Speed ours / reference on median wall time."""
        return _speed_ratio(self.ours.median_wall_s, self.reference.median_wall_s)

    @property
    def cpu_ratio(self) -> float:
        """Speed ours / reference on median process CPU time."""
        return _speed_ratio(self.ours.median_cpu_s, self.reference.median_cpu_s)

    @property
    def paired_ratio(self) -> float:
        """Median over rounds of the per-round speed ratio (round i: ours' i-th run against
        the reference's i-th run, which ran right beside it). Steadier than the ratio of
        medians when the machine's load drifts during the benchmark."""
        return median([_speed_ratio(o, r) for o, r in zip(self.ours.wall_s,
                                                           self.reference.wall_s)])

    def throughput(self, side: Side) -> float:
        """``work`` per second of median wall time."""
        return self.work / side.median_wall_s if side.median_wall_s > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: raw timings, medians, throughputs, ratios, results and notes."""
        out = {
            "name": self.name,
            "work": self.work,
            "unit": self.unit,
            "ours": asdict(self.ours),
            "reference": asdict(self.reference),
            "ours_median_wall_s": self.ours.median_wall_s,
            "reference_median_wall_s": self.reference.median_wall_s,
            "ours_median_cpu_s": self.ours.median_cpu_s,
            "reference_median_cpu_s": self.reference.median_cpu_s,
            "ours_per_s": self.throughput(self.ours),
            "reference_per_s": self.throughput(self.reference),
            "ratio": self.ratio,
            "cpu_ratio": self.cpu_ratio,
            "paired_ratio": self.paired_ratio,
            "notes": self.notes,
        }
        return out


def _timed(fn: Callable[[], Any], wall: Clock, cpu: Clock) -> tuple[float, float, Any]:
    w0, c0 = wall(), cpu()
    result = fn()
    return wall() - w0, cpu() - c0, result


def compare(name: str, ours: Callable[[], Any], reference: Callable[[], Any], *,
            repeats: int = 5, warmup: int = 1, work: float = 1.0, unit: str = "call",
            notes: dict[str, Any] | None = None, wall_clock: Clock = time.perf_counter,
            cpu_clock: Clock = time.process_time) -> Comparison:
    """Time ``ours`` and ``reference`` interleaved, ``repeats`` times each after ``warmup``.

    Round i runs ours first when i is even and the reference first when i is odd, so neither
    side always inherits the other's cache or thermal state. What each call returns on its last
    timed run is kept as the side's ``result`` (e.g. the predicted accuracy a search found).
    The clocks are parameters so the logic can be tested without sleeping.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be non-negative, got {warmup}")
    for _ in range(warmup):
        ours()
        reference()
    o, r = Side(), Side()
    pair = ((ours, o), (reference, r))
    for i in range(repeats):
        for fn, side in (pair if i % 2 == 0 else pair[::-1]):
            w, c, res = _timed(fn, wall_clock, cpu_clock)
            side.wall_s.append(w)
            side.cpu_s.append(c)
            side.result = res
    return Comparison(name=name, ours=o, reference=r, work=work, unit=unit,
                      notes=dict(notes or {}))


def _fmt_num(x: float) -> str:
    if math.isinf(x):
        return "inf"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.4f}"


def format_table(comparisons: Sequence[Comparison]) -> str:
    """A plain-text table: medians of both sides, throughput, wall and CPU ratios."""
    header = ("comparison", "ours s", "ref s", "ours /s", "ref /s", "unit", "ratio",
              "paired", "cpu ratio")
    rows = [header]
    for c in comparisons:
        rows.append((
            c.name, _fmt_num(c.ours.median_wall_s), _fmt_num(c.reference.median_wall_s),
            _fmt_num(c.throughput(c.ours)), _fmt_num(c.throughput(c.reference)), c.unit,
            f"{c.ratio:.2f}x", f"{c.paired_ratio:.2f}x", f"{c.cpu_ratio:.2f}x",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("ratio = speed ours / reference on median wall time (>1: ours faster); "
                 "paired = median of per-round ratios; cpu ratio = ratio on process CPU time")
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    """Where the figures were taken: enough to tell a laptop from a loaded CI runner."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        info["load_avg_1m"] = os.getloadavg()[0]
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["cuda_device"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def results_payload(comparisons: Sequence[Comparison], *, meta: dict[str, Any] | None = None,
                    skipped: dict[str, str] | None = None) -> dict[str, Any]:
    """The JSON document for one benchmark run."""
    return {
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        "meta": dict(meta or {}),
        "comparisons": [c.to_dict() for c in comparisons],
        "skipped": dict(skipped or {}),
    }


def write_results(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as JSON atomically (temp file in the same directory, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    return path


def _json_default(obj: Any) -> Any:
    """Numbers from numpy/torch and paths become plain JSON values."""
    if isinstance(obj, Path):
        return str(obj)
    for attr in ("item", "tolist"):
        if hasattr(obj, attr):
            return getattr(obj, attr)()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
