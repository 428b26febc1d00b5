"""The progress display: plain lines off a terminal, a live bar on one, progress on stderr with
``--json``, and Ray's own output (Ray Train's ``TrainingReport(...)`` lines) only with
``--verbose``."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ofa_platform.progress import ConsoleReporter, LineReporter, as_reporter, console, eta, hms

REPO = Path(__file__).resolve().parents[1]


def test_plain_lines_off_a_terminal() -> None:
    out = io.StringIO()
    with console(out) as progress:  # StringIO is not a terminal
        assert not progress.live
        progress.line("[ofa-train] MLflow run abc")
        progress.task("train", "train", total=6, unit="epochs")
        progress.update("train", 1, "phase full loss 2.1 ETA 0:00:50")
        progress.update("train", 6, "phase last loss 1.0 ETA 0:00:00")
        progress.done("train")
    assert out.getvalue().splitlines() == [
        "[ofa-train] MLflow run abc",
        "[train] 1/6 epochs phase full loss 2.1 ETA 0:00:50",
        "[train] 6/6 epochs phase last loss 1.0 ETA 0:00:00"]


def test_fast_updates_are_throttled_but_the_last_is_shown() -> None:
    lines: list[str] = []
    reporter = LineReporter(lines.append, min_interval_s=60.0)
    reporter.task("search", "search (vanilla)", total=2, unit="targets")
    for gen in range(100):  # a search's generations: one line, not a hundred
        reporter.update("search", 0, f"generation {gen}")
    reporter.update("search", 2, "done")
    assert lines == ["[search (vanilla)] 0/2 targets generation 0",
                     "[search (vanilla)] 2/2 targets done"]


def test_live_display_on_a_terminal() -> None:
    out = io.StringIO()
    with ConsoleReporter(out, live=True) as progress:
        progress.task("quickstart", "quick start", total=7, unit="steps")
        progress.update("quickstart", 3, "search ofa")
        progress.line("[quickstart] step 4/7: search ofa")
        progress.done("quickstart")
    text = out.getvalue()
    assert "quick start" in text and "7/7" in text and "step 4/7" in text


def test_a_plain_callable_still_works() -> None:
    lines: list[str] = []
    reporter = as_reporter(lines.append)
    reporter("hello")
    reporter.task("t", "t", total=None)
    reporter.update("t", 5)
    assert lines == ["hello", "[t] 5"]
    assert as_reporter(reporter) is reporter
    assert hms(3725) == "1:02:05" and hms(float("nan")) == "0:00:00"
    assert eta(0.0, 2, 6, now=10.0) == 20.0


def _train(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """The quick start's training step, as the CLI runs it: its recipe with the fewest phases
    (DεpS, 2) and its epoch scale, on 1 worker and 32 images at width 0.5 (the quick start
    trains 2 workers on 192: the same code path, a tenth of the time)."""
    from ofa_platform.quickstart import QuickstartConfig

    cfg = QuickstartConfig()
    assert "deps" in cfg.methods
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "ofa_platform", "train", "--schedule", "deps",
           "--data", "synthetic:64", "--workers", "1", "--subset", "32",
           "--epoch-scale", str(cfg.epoch_scale), "--batch-size", "16", "--val-limit", "16",
           "--width-mult", "0.5", "--experiment", "progress",
           "--storage-path", str(tmp_path / "ray"), "--json", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=1400)


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_training_shows_progress_not_ray_logs(tmp_path: Path) -> None:
    """Quiet by default: the display's epoch lines, no ``TrainingReport(`` and no Tune table;
    with ``--json`` stdout is the JSON alone (progress and, with ``--verbose``, Ray's own
    lines go to stderr); ``--verbose`` brings Ray's lines back."""
    for verbose in (False, True):
        res = _train(["--verbose"] if verbose else [], tmp_path)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
        assert json.loads(res.stdout)["status"] == "FINISHED"  # nothing but the JSON
        assert re.search(r"\[train\] 1/2 epochs phase fm_warmup", res.stderr), res.stderr
        assert re.search(r"\[train\] 2/2 epochs .* ETA", res.stderr), res.stderr
        assert "[ofa-train] data synthetic:64:" in res.stderr
        noise = ("TrainingReport(", "Reporting training result", "(RayTrainWorker pid=",
                 "View detailed results here", "Found multiple active Ray instances",
                 "Traceback", "INFO mlflow")
        seen = [n for n in noise if n in res.stderr]
        if verbose:
            assert "TrainingReport(" in res.stderr, res.stderr[-3000:]
        else:
            assert not seen, seen
