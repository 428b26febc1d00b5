"""The README's quick start, cold and warm, from a fresh copy of the project, per step.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_quickstart

What a new user runs first: ``ofa-platform quickstart`` in a project directory with no
``.ofa_cache``, no ``mlflow.db`` and no ``runs/`` (cold), then the same command again (warm:
memoised latencies and accuracies, an existing MLflow store). The project's tracked and
untracked, not ignored, files are copied into a temporary directory (``git ls-files``), so
nothing a developer has cached here leaks in; the copy's own code runs (``PYTHONPATH``), with
its own Ray temp directory. Each step's time comes from the progress lines the quick start
prints (``[quickstart] step i/N: ...``) and the measured-latency lines (``[latency] ...``),
stamped as they arrive. Goals (issue 17): cold < 5 min, warm < 3 min on a 2-core machine.
Figures land in ``benchmarks/results/bench_quickstart.json`` with the load average, which
a shared machine inflates.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import harness

__all__ = ["main", "build_parser", "copy_project", "step_times"]

REPO = Path(__file__).resolve().parents[1]
STEP = re.compile(r"^\[quickstart\] step (\d+)/(\d+): (.*?)(?: \(\d+s elapsed\))?$")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default="ofa,compofa,deps", help="quickstart --methods")
    p.add_argument("--runs", default="cold,warm", help="cold, warm or both (in that order)")
    p.add_argument("--keep", action="store_true", help="keep the temporary project copy")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results"
                   / "bench_quickstart.json")
    return p


def copy_project(src: Path, dst: Path) -> Path:
    """The project's files as a fresh clone would have them plus uncommitted work: tracked and
    untracked-but-not-ignored files (so no caches, databases, runs or virtualenvs)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=src,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        source = src / rel
        if source.is_file():
            target = dst / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    shared = src.parent / "shared"
    if shared.exists() and not (dst.parent / "shared").exists():
        (dst.parent / "shared").symlink_to(shared)  # read in place, as from the real project
    return dst


def step_times(stamped: Sequence[tuple[float, str]], total_s: float) -> list[dict[str, Any]]:
    """Seconds from each ``[quickstart] step`` line to the next (the last to the end)."""
    marks = [(t, m.group(3)) for t, line in stamped if (m := STEP.match(line.strip()))]
    out = []
    for i, (t, name) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else total_s
        out.append({"step": name, "s": round(end - t, 2)})
    if marks:
        out.insert(0, {"step": "start-up (imports, Ray, MLflow)", "s": round(marks[0][0], 2)})
    return out


def run_once(project: Path, methods: str, timeout: float, ray_tmp: Path) -> dict[str, Any]:
    """One ``ofa-platform quickstart`` in ``project``; every output line stamped. Ray's temp
    directory is its own (apart from other Ray users) and short (Ray's sockets live there and
    a Unix socket path has at most 107 bytes)."""
    env = dict(os.environ, PYTHONPATH=str(project), RAY_TMPDIR=str(ray_tmp),
               PYTHONUNBUFFERED="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "ofa_platform", "quickstart", "--methods", methods]
    load = harness.machine_info().get("load_avg_1m")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    stamped: list[tuple[float, str]] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        stamped.append((time.perf_counter() - t0, line.rstrip("\n")))
        print(f"  {stamped[-1][0]:7.1f}s | {stamped[-1][1]}", flush=True)
        if stamped[-1][0] > timeout:
            proc.kill()
    rc = proc.wait()
    total = time.perf_counter() - t0
    latency = [{"at_s": round(t, 2), "line": line} for t, line in stamped
               if line.startswith("[latency]")]
    return {"exit_status": rc, "total_s": round(total, 2), "total_min": round(total / 60, 2),
            "load_avg_1m_start": load, "load_avg_1m_end": harness.machine_info().get(
                "load_avg_1m"), "steps": step_times(stamped, total), "latency_lines": latency}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    if not runs or any(r not in ("cold", "warm") for r in runs):
        raise SystemExit("--runs: cold, warm or cold,warm")
    tmp = Path(tempfile.mkdtemp(prefix="ofa-quickstart-bench-"))
    project = copy_project(REPO, tmp / "project")
    ray_tmp = Path(tempfile.mkdtemp(prefix="rq", dir="/tmp"))
    print(f"fresh copy of the project: {project}", flush=True)
    results: dict[str, Any] = {}
    try:
        for name in runs:
            print(f"--- {name} run", flush=True)
            results[name] = run_once(project, args.methods, args.timeout, ray_tmp)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(ray_tmp, ignore_errors=True)
    payload = {"benchmark": "quickstart", "methods": args.methods, "machine":
               harness.machine_info(), "goals_min": {"cold": 5, "warm": 3}, "runs": results}
    path = harness.write_results(args.out, payload)
    print()
    for name, res in results.items():
        print(f"{name}: {res['total_min']:.2f} min (exit {res['exit_status']}, load "
              f"{res['load_avg_1m_start']} -> {res['load_avg_1m_end']})")
        for step in res["steps"]:
            print(f"    {step['s']:8.1f} s  {step['step']}")
    print(f"\nresults: {path}")
    return 0 if all(r["exit_status"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
