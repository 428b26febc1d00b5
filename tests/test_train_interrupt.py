"""Ctrl-C on a real ``ofa-platform train`` process, mid-epoch.

Ray Train V2 installs its own SIGINT handler during ``fit()`` (it aborts the run and calls
``sys.exit(0)``), so raising KeyboardInterrupt by hand inside the driver does not test the path
a user takes. Here the signal goes to a real process once its worker group trains: the run must
end FAILED, tagged ``ofa.interrupted``, with its cost, the process must exit 130 with one line,
and no Ray process of the run may be left a few seconds later.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
COST = ("device_hours", "dollars", "energy_kwh", "co2_kg", "co2_lbs")


def _session_processes(sid: int, marker: str) -> list[str]:
    """Processes still alive from the run: in the driver's session, or naming its Ray
    temp dir (raylet, GCS and dashboard carry it in their arguments)."""
    import psutil

    left = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(proc.info["cmdline"] or [])
            if os.getsid(proc.pid) == sid or marker in cmd:
                left.append(f"{proc.pid} {cmd[:120]}")
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
    return left


def _start_and_interrupt(cmd: list[str], cwd: Path, env: dict[str, str], log_out: Path,
                         log_err: Path) -> subprocess.Popen[bytes] | None:
    """Start the job, SIGINT it inside its first epoch and wait for it; None when Ray itself
    failed to start (the attempt says nothing about the interrupt path)."""
    with log_out.open("w") as out, log_err.open("w") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 400  # a timeout for a stuck start, not a speed goal
            while time.monotonic() < deadline and proc.poll() is None:
                if "Started training worker group" in log_err.read_text():
                    break
                time.sleep(0.5)
            if proc.poll() is not None and "timed out during startup" in log_err.read_text():
                return None
            assert proc.poll() is None, log_err.read_text()[-3000:]
            time.sleep(3)  # the worker is inside its first epoch now
            os.kill(proc.pid, signal.SIGINT)
            proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    return proc


def test_sigint_mid_epoch_ends_failed_tagged_with_cost_exit_130(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # Ray's socket paths must stay under 108 bytes: pytest's tmp_path is too deep for them
    ray_tmp = Path(tempfile.mkdtemp(prefix="ofasig", dir="/tmp"))
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, RAY_TMPDIR=str(ray_tmp),
               PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    log_out, log_err = tmp_path / "out.txt", tmp_path / "err.txt"
    cmd = [sys.executable, "-m", "ofa_platform", "train", "--schedule", "ofa",
           "--data", "synthetic:64", "--workers", "1", "--epoch-scale", "0.02",
           "--subset", "32", "--batch-size", "8", "--val-limit", "8",
           "--experiment", "interrupt", "--storage-path", str(tmp_path / "ray"),
           "--verbose"]  # Ray's own log says when the worker group has started
    for _attempt in range(3):  # Ray's 30 s node-start limit can pass on a loaded machine
        proc = _start_and_interrupt(cmd, tmp_path, env, log_out, log_err)
        if proc is not None:
            break
    assert proc is not None, log_err.read_text()[-3000:]
    rc = proc.returncode
    stdout, stderr = log_out.read_text(), log_err.read_text()
    assert rc == 130, (rc, stdout[-2000:], stderr[-3000:])
    assert stderr.strip().splitlines()[-1] == "ofa-platform train: interrupted"

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("interrupt")
    runs = client.search_runs([exp.experiment_id])
    top = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(top) == 1
    run = top[0]
    assert run.info.status == "FAILED"
    assert run.data.tags.get("ofa.interrupted") == "true"
    for key in COST:
        assert key in run.data.metrics, key
    assert run.data.metrics["device_hours"] > 0
    assert all(r.info.status != "RUNNING" for r in runs)

    left: list[str] = []
    for _ in range(20):  # Ray's own processes shut down asynchronously after the driver
        left = _session_processes(proc.pid, str(ray_tmp))
        if not left:
            break
        time.sleep(0.5)
    assert not left, left
    shutil.rmtree(ray_tmp, ignore_errors=True)
