"""The HTML report in a real headless Chromium: every plot renders at a non-zero size, and a
screenshot is kept (under the test's tmp_path) to look at."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_dashboard import EXPERIMENT, make_experiment

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(args: list[str], profile: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """One headless Chromium run with a fresh profile and nothing phoning home."""
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
            "--virtual-time-budget=5000"]
    env = dict(os.environ, HOME=str(profile))
    return subprocess.run([*base, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not on PATH (Debian: apt-get install "
                    "chromium); the report's browser check needs it")
def test_report_renders_every_plot_in_chromium(mlflow_uri: str, tmp_path: Path) -> None:
    from PIL import Image

    from dashboards.report import FIGURES, write_report

    make_experiment(mlflow_uri, tmp_path)
    report = tmp_path / "report.html"
    write_report(EXPERIMENT, report, mlflow_uri, log_to_mlflow=False)

    dom = _chromium(["--dump-dom", report.as_uri()], tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    status = re.search(r'id="render-status"[^>]*>([^<]*)<', html)
    assert status, "report's render status missing from the DOM"
    assert status.group(1) == f"{len(FIGURES)} of {len(FIGURES)} plots rendered", status.group(1)
    for fig_id, _ in FIGURES:
        match = re.search(rf'<figure[^>]*id="fig-{fig_id}"[^>]*>', html)
        assert match, fig_id
        size = re.search(r'data-rendered="(\d+)x(\d+)"', match.group(0))
        assert size and int(size.group(1)) > 200 and int(size.group(2)) > 80, (fig_id,
                                                                               match.group(0))

    shot = tmp_path / "report.png"
    res = _chromium([f"--screenshot={shot}", "--window-size=1280,4000", report.as_uri()],
                    tmp_path / "profile-shot")
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    with Image.open(shot) as img:
        assert img.size == (1280, 4000)
        gray = img.convert("L")
        lo, hi = gray.getextrema()
        assert hi - lo > 100          # not a blank page
        # ink (non-white pixels) all the way down: the plots, not just the table, were drawn
        bottom = gray.crop((0, 2000, 1280, 4000))
        assert bottom.point(lambda v: 255 if v < 200 else 0).getbbox() is not None
