"""End to end on a real local Ray cluster: ``ray start --head`` on loopback with its own ports,
temp dir and token authentication, jobs submitted through ``ofa-platform submit``, MLflow runs
checked, and only that cluster stopped (its own processes, found by its temp dir)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLI = [str(BIN / "ofa-platform")]


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@dataclass
class LocalCluster:
    address: str        # dashboard URL for the Jobs API
    temp_dir: Path
    token_file: Path
    env: dict[str, str]  # what a client needs: the token path, nothing else of ours


def _own_processes(temp_dir: Path) -> list:
    """Processes of this cluster only: their command line names its private temp dir."""
    import psutil

    mine = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if str(temp_dir) in " ".join(proc.info["cmdline"] or []):
                mine.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return mine


def _stop_cluster(head: subprocess.Popen, temp_dir: Path) -> None:
    """Stop this cluster only: the ``ray start --block`` process, its whole process tree
    (GCS, raylet, dashboard, workers, job drivers) and anything else naming its temp dir, by
    pid. Never ``ray stop``: that would kill every Ray on the machine."""
    import psutil

    procs: dict[int, psutil.Process] = {}
    try:
        root = psutil.Process(head.pid)
        procs[root.pid] = root
        procs.update((p.pid, p) for p in root.children(recursive=True))
    except psutil.NoSuchProcess:
        pass
    procs.update((p.pid, p) for p in _own_processes(temp_dir))
    procs.pop(os.getpid(), None)
    for proc in procs.values():
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(list(procs.values()), timeout=5)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    head.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    # Short path: Ray's Unix sockets live under the temp dir and have a ~107 character limit.
    temp_dir = Path(tempfile.mkdtemp(prefix="ofa-ray-", dir="/tmp"))
    token_file = temp_dir / "auth_token"
    token_file.write_text(secrets.token_hex(32))
    gcs, dash, client, nm, om, agent_http, agent_grpc, metrics, rt_env = _free_ports(9)
    # Worker ports: a block below the kernel's ephemeral range, so it cannot meet the others.
    worker_lo = 20000 + secrets.randbelow(40) * 250
    env = {k: v for k, v in os.environ.items()
           if k not in {"RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_API_SERVER_ADDRESS"}}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file),
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    log = open(temp_dir / "head.log", "w")  # noqa: SIM115 - closed at teardown
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         f"--ray-client-server-port={client}", f"--node-manager-port={nm}",
         f"--object-manager-port={om}", f"--dashboard-agent-listen-port={agent_http}",
         f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}",
         f"--runtime-env-agent-port={rt_env}", f"--min-worker-port={worker_lo}",
         f"--max-worker-port={worker_lo + 200}", "--num-cpus=4", "--num-gpus=0",
         f"--temp-dir={temp_dir}", "--include-dashboard=true", "--disable-usage-stats"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=temp_dir)
    address = f"http://127.0.0.1:{dash}"
    try:
        _wait_for_dashboard(address, token_file.read_text(), head, temp_dir / "head.log")
        yield LocalCluster(address, temp_dir, token_file,
                           {"RAY_AUTH_TOKEN_PATH": str(token_file)})
    finally:
        _stop_cluster(head, temp_dir)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _wait_for_dashboard(address: str, token: str, head: subprocess.Popen, log: Path,
                        timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(f"{address}/api/jobs/",
                                     headers={"Authorization": f"Bearer {token}"})
    while time.monotonic() < deadline:
        if head.poll() is not None:
            pytest.fail(f"ray start exited {head.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    pytest.fail(f"dashboard at {address} not up after {timeout_s} s:\n{log.read_text()[-3000:]}")


def _cli(args: list[str], cluster: LocalCluster, mlflow_uri: str | None = None,
         timeout: float = 400, with_token: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in {"RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"}}
    env["HOME"] = str(cluster.temp_dir)   # no ~/.ray/auth_token of the user's leaks in
    if with_token:
        env.update(cluster.env)
    if mlflow_uri:
        env["MLFLOW_TRACKING_URI"] = mlflow_uri
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def _job_id(stdout: str) -> str:
    line = next(x for x in stdout.splitlines() if x.startswith("submitted job "))
    return line.split()[2]


def test_without_token_is_refused_in_one_line(cluster: LocalCluster) -> None:
    res = _cli(["jobs", "list", "--address", cluster.address], cluster, with_token=False)
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "token" in res.stderr.lower() or "401" in res.stderr


def test_bad_config_fails_fast_with_the_error_in_its_logs(cluster: LocalCluster,
                                                         tmp_path: Path,
                                                         mlflow_uri: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("schedule: ofa\ndata: synthetic:64\nepochs_typo: 3\n")
    res = _cli(["submit", "train", str(bad), "--address", cluster.address], cluster, mlflow_uri)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "FAILED" in res.stderr
    assert "epochs_typo" in res.stdout        # the config error, followed from the job's logs
    job_id = _job_id(res.stdout)
    logs = _cli(["jobs", "logs", job_id, "--address", cluster.address], cluster)
    assert logs.returncode == 0 and "unknown keys epochs_typo" in logs.stdout
    listed = _cli(["jobs", "list", "--address", cluster.address], cluster)
    assert job_id in listed.stdout and "FAILED" in listed.stdout


def test_unknown_job_and_missing_config_fail_before_submitting(cluster: LocalCluster,
                                                               tmp_path: Path) -> None:
    res = _cli(["submit", "nope", "--address", cluster.address], cluster)
    assert res.returncode == 2 and "unknown job 'nope'" in res.stderr
    res = _cli(["submit", "train", str(tmp_path / "missing.yaml"), "--address",
                cluster.address], cluster)
    assert res.returncode == 2 and "config file not found" in res.stderr


def test_stop_a_job(cluster: LocalCluster, tmp_path: Path, mlflow_uri: str) -> None:
    """A stopped job ends STOPPED, and its MLflow run does not stay RUNNING."""
    from mlflow.tracking import MlflowClient

    from ofa_platform import cluster as ray_cluster

    cfg = tmp_path / "long.yaml"
    cfg.write_text("schedule: ofa\ndata: synthetic:64\nworkers: 1\nepoch_scale: 1.0\n"
                   f"experiment: stopme\nstorage_path: {tmp_path / 'ray-storage'}\n")
    res = _cli(["submit", "train", str(cfg), "--no-follow", "--address", cluster.address],
               cluster, mlflow_uri)
    assert res.returncode == 0, res.stderr
    job_id = _job_id(res.stdout)
    client = MlflowClient(tracking_uri=mlflow_uri)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:   # stop it once its MLflow run exists
        exp = client.get_experiment_by_name("stopme")
        if exp and client.search_runs([exp.experiment_id]):
            break
        time.sleep(1)
    stop = _cli(["jobs", "stop", job_id, "--address", cluster.address], cluster)
    assert stop.returncode == 0 and "stop requested" in stop.stdout
    jobs = ray_cluster.connect(cluster.address, cluster.token_file)
    assert ray_cluster.wait_for_job(jobs, job_id, timeout_s=60) == "STOPPED"
    exp = client.get_experiment_by_name("stopme")
    if exp is not None:
        time.sleep(2)
        statuses = [r.info.status for r in client.search_runs([exp.experiment_id])]
        assert "RUNNING" not in statuses, statuses


def _runs(mlflow_uri: str, experiment: str, kind: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r}"
    return [r for r in client.search_runs([exp.experiment_id])
            if r.data.tags.get("ofa.kind") == kind
            and "mlflow.parentRunId" not in r.data.tags]


def test_train_search_compare_jobs(cluster: LocalCluster, tmp_path: Path, mlflow_uri: str,
                                   shared_data: Path) -> None:
    """A smoke training job and a search job side by side, then the comparison job, each
    through ``ofa-platform submit``; their MLflow runs are checked."""
    from mlflow.tracking import MlflowClient

    assets = shared_data / "ofa_mbv3_imagenet"
    search_cfg = tmp_path / "search.yaml"
    search_cfg.write_text(
        "space: ofa_mbv3\nwidth_mult: 1.2\n"
        f"predictor: {assets / 'acc_predictor.pth'}\nlatency: lut:{assets / 'latency_note10'}\n"
        "resolutions: 160-224:4\ntargets: [20, 30, 40]\nstrategy: bottom-up\n"
        "generations: 4\npopulation_size: 16\nseed: 0\nexperiment: e2e\n"
        f"out_dir: {tmp_path / 'search-out'}\ncache_dir: {tmp_path / 'cache'}\n")
    train_cfg = tmp_path / "smoke.yaml"
    train_cfg.write_text(
        "schedule: deps\ndata: synthetic:96\nworkers: 1\nepoch_scale: 0.004\nsubset: 64\n"
        "batch_size: 16\nrecal_images: 32\nval_limit: 32\nwidth_mult: 0.5\n"
        f"experiment: e2e\nstorage_path: {tmp_path / 'ray-storage'}\n")
    res = _cli(["submit", "search", str(search_cfg), "--no-follow", "--address",
                cluster.address], cluster, mlflow_uri)
    assert res.returncode == 0, res.stdout + res.stderr
    search_job = _job_id(res.stdout)
    res = _cli(["submit", "train", str(train_cfg), "--address", cluster.address], cluster,
               mlflow_uri, timeout=500)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "SUCCEEDED" in res.stderr
    res = _cli(["jobs", "logs", search_job, "--follow", "--address", cluster.address], cluster,
               timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]

    (train,) = _runs(mlflow_uri, "e2e", "train")
    assert train.info.status == "FINISHED"
    assert train.data.tags["ofa.method"] == "deps"
    for metric in ("device_hours", "dollars", "energy_kwh", "co2_kg", "epochs_run"):
        assert metric in train.data.metrics, metric
    (search,) = _runs(mlflow_uri, "e2e", "search")
    assert search.info.status == "FINISHED"
    assert "search_time_per_target_s" in search.data.metrics
    client = MlflowClient(tracking_uri=mlflow_uri)
    assert "pareto.parquet" in {a.path for a in client.list_artifacts(search.info.run_id)}

    report = tmp_path / "report.html"   # a local cluster: the job writes where we can look
    res = _cli(["submit", "compare", "--experiment", "e2e", "--json", "--out", str(report),
                "--address", cluster.address], cluster, mlflow_uri, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "fig-pareto" in report.read_text()
    (compare,) = _runs(mlflow_uri, "e2e", "compare")
    assert compare.info.status == "FINISHED"
    assert "report.html" in {a.path for a in client.list_artifacts(compare.info.run_id)}


def test_token_lookup_follows_rays_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ofa_platform.cluster import auth_headers, load_token
    from ofa_platform.errors import UserError

    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    assert load_token() is None and auth_headers(None) == {}
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("home-token\n")
    assert load_token() == "home-token"
    path_file = tmp_path / "tok"
    path_file.write_text("path-token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(path_file))
    assert load_token() == "path-token"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "env-token")
    assert load_token() == "env-token"
    assert load_token(tmp_path / ".ray" / "auth_token") == "home-token"   # explicit file wins
    assert auth_headers("t") == {"Authorization": "Bearer t"}
    with pytest.raises(UserError, match="cannot read"):
        load_token(tmp_path / "missing")


def test_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    from ofa_platform.cluster import DEFAULT_ADDRESS, resolve_address
    from ofa_platform.errors import UserError

    for var in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    assert resolve_address(None) == DEFAULT_ADDRESS
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265/")
    assert resolve_address(None) == "http://head:8265"
    assert resolve_address("10.0.0.5:8265") == "http://10.0.0.5:8265"
    with pytest.raises(UserError, match="Ray Client"):
        resolve_address("ray://head:10001")


def test_entrypoints_ship_configs(tmp_path: Path) -> None:
    """Configs inside the project go by path, others inline; the shell command really runs
    (here with a stand-in jobs/ entrypoint that prints its arguments and config)."""
    from ofa_platform.cluster import job_entrypoint

    inside = job_entrypoint("train", [str(REPO / "jobs" / "train_cifar10_smoke.yaml")],
                            cwd=tmp_path)
    assert inside.endswith('jobs/train.py jobs/train_cifar10_smoke.yaml')

    root = tmp_path / "proj dir"
    (root / "jobs").mkdir(parents=True)
    (root / "jobs" / "echo.py").write_text(
        "import os, sys\nprint(os.getcwd())\nprint(sys.argv[1:])\n"
        "print(open(sys.argv[2]).read().strip())\nprint(os.environ['MLFLOW_TRACKING_URI'])\n")
    outside = tmp_path / "my run.yaml"
    outside.write_text("schedule: ofa\n")
    cmd = job_entrypoint("echo", ["--config", str(outside), "--x", "a b"], root=root,
                         cwd=tmp_path)
    snapshot = tmp_path / "snapshot"          # the uploaded copy a Ray Job runs in
    shutil.copytree(root, snapshot)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    res = subprocess.run(cmd, shell=True, cwd=snapshot, capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    cwd, argv, config, uri = res.stdout.split("\n")[:4]
    assert Path(cwd) == root                  # runs in the project when it exists there
    assert argv == str(["--config", f"{snapshot}/.ofa_job/0_my run.yaml", "--x", "a b"])
    assert config == "schedule: ofa"
    assert uri == f"sqlite:///{root}/mlflow.db"
    shutil.rmtree(root)                       # a remote cluster: the project path is absent
    env["MLFLOW_TRACKING_URI"] = "http://head:5000"
    res = subprocess.run(cmd, shell=True, cwd=snapshot, capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    cwd, _, _, uri = res.stdout.split("\n")[:4]
    assert Path(cwd) == snapshot and uri == "http://head:5000"
    (snapshot / "jobs" / "echo.py").write_text("import sys\nsys.exit(3)\n")
    res = subprocess.run(cmd, shell=True, cwd=snapshot, capture_output=True, text=True, env=env)
    assert res.returncode == 3                # the job's status is the entrypoint's
