"""The HTML report in a real headless Chromium: every plot renders at a non-zero size, and a
screenshot is kept (under the test's tmp_path) to look at."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from _cdp import shoot_until
from test_dashboard import EXPERIMENT, make_experiment

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(args: list[str], profile: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """One headless Chromium run with a fresh profile and nothing phoning home."""
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--disable-dev-shm-usage", "--no-zygote",
            f"--user-data-dir={profile}", "--virtual-time-budget=5000"]
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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ink_rows(img: object, box: tuple[int, int, int, int], band: int = 200) -> list[bool]:
    """Per horizontal band of ``box``: does it hold non-white pixels (text, lines, plots)?"""
    gray = img.convert("L").crop(box)
    w, h = gray.size
    return [gray.crop((0, y, w, min(h, y + band))).point(lambda v: 255 if v < 200 else 0)
            .getbbox() is not None for y in range(0, h, band)]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not on PATH (Debian: apt-get install "
                    "chromium); the report's browser check needs it")
def test_report_renders_without_javascript(mlflow_uri: str, tmp_path: Path) -> None:
    """A viewer may run no script: with the report's one script cut out, the table and every
    plot still show (inline SVG, plain HTML). (Chromium's headless screenshot itself needs
    JavaScript, so the script is removed from the page instead of switched off.)"""
    import re

    from PIL import Image

    from dashboards.report import FIGURES, write_report

    make_experiment(mlflow_uri, tmp_path)
    report = tmp_path / "report.html"
    write_report(EXPERIMENT, report, mlflow_uri, log_to_mlflow=False)
    text = report.read_text()
    bare = tmp_path / "nojs.html"
    bare.write_text(re.sub(r"<script>.*?</script>", "", text, flags=re.S))
    assert "<script" not in bare.read_text()
    shot = tmp_path / "nojs.png"
    res = _chromium([f"--screenshot={shot}", "--window-size=1280,7000", bare.as_uri()],
                    tmp_path / "profile-nojs")
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    assert text.count("<figure class='plot'") == len(FIGURES) == text.count("<svg")
    with Image.open(shot) as img:
        bands = _ink_rows(img, (0, 0, 1280, 7000), band=500)
    # ink in every band down to the last plot: the table, then the plots, none left blank
    last = max(i for i, ink in enumerate(bands) if ink)
    assert last >= 8 and all(bands[:last]), bands


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not on PATH (Debian: apt-get install "
                    "chromium); the report's browser check needs it")
@pytest.mark.timeout(1200)  # an mlflow server start: seconds idle, minutes on a loaded box
def test_report_in_mlflow_artifact_view(mlflow_uri: str, tmp_path: Path) -> None:
    """``mlflow server`` on 127.0.0.1 serves the logged report whole, and its UI's artifact view
    draws it (a tall screenshot, kept under tmp_path to look at)."""
    import sys
    import time
    import urllib.request

    from dashboards.report import write_report

    make_experiment(mlflow_uri, tmp_path)
    result = write_report(EXPERIMENT, tmp_path / "report.html", mlflow_uri)
    port = _free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen([str(mlflow_bin), "server", "--backend-store-uri", mlflow_uri,
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None and time.time() < deadline, "mlflow server did not start"
            time.sleep(1)
        # the endpoint the artifact view fetches: the whole report
        url = f"{base}/get-artifact?path=report.html&run_uuid={result.run_id}"
        with urllib.request.urlopen(url, timeout=60) as r:
            assert r.read() == (tmp_path / "report.html").read_bytes()
        from mlflow.tracking import MlflowClient

        exp = MlflowClient(mlflow_uri).get_experiment_by_name(EXPERIMENT).experiment_id
        shot = tmp_path / "mlflow-artifact.png"
        page = f"{base}/#/experiments/{exp}/runs/{result.run_id}/artifacts/report.html"

        def drawn(img: object) -> bool:
            # the viewer pane (right of the file tree): the report's heading, table and text
            return sum(_ink_rows(img, (450, 250, 1000, 1200), band=100)) >= 7

        # real time, not --screenshot's virtual time: the viewer fetches the file, then
        # paints it in an iframe made from a blob, after a one-shot screenshot is taken
        assert shoot_until(CHROMIUM, page, shot, drawn, profile=tmp_path / "profile-mlflow",
                           timeout_s=240), f"report not drawn in MLflow's viewer: see {shot}"
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)
