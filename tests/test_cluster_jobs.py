"""End to end on a real local Ray cluster: ``ray start --head`` on loopback with its own ports,
temp dir and token authentication, jobs submitted through ``ofa-platform submit``, MLflow runs
checked, and only that cluster stopped (its own processes, found by its temp dir)."""

from __future__ import annotations

import json
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
    gcs_address: str = ""  # HEAD:PORT, for driver commands (RAY_ADDRESS)


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
                           {"RAY_AUTH_TOKEN_PATH": str(token_file)}, f"127.0.0.1:{gcs}")
    finally:
        _stop_cluster(head, temp_dir)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _wait_for_dashboard(address: str, token: str, head: subprocess.Popen, log: Path,
                        timeout_s: float = 300) -> None:
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
    assert f"{bad}: epochs_typo: unknown key" in res.stdout   # naming the user's file
    job_id = _job_id(res.stdout)
    logs = _cli(["jobs", "logs", job_id, "--address", cluster.address], cluster)
    assert logs.returncode == 0 and "epochs_typo: unknown key" in logs.stdout
    listed = _cli(["jobs", "list", "--address", cluster.address], cluster)
    assert job_id in listed.stdout and "FAILED" in listed.stdout
    row = next(line for line in listed.stdout.splitlines() if job_id in line)
    assert row.endswith(f"train {bad}"), row  # the user's command, not a wrapper


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
    # STOPPED once the driver ended (it has up to RAY_JOB_STOP_WAIT_TIME_S, 60 s, to do so)
    assert ray_cluster.wait_for_job(jobs, job_id, timeout_s=180) == "STOPPED"
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
    train_cfg.write_text(   # no storage_path: a local cluster's default must be the project's
        "schedule: deps\ndata: synthetic:96\nworkers: 1\nepoch_scale: 0.004\nsubset: 64\n"
        "batch_size: 16\nrecal_images: 32\nval_limit: 32\nwidth_mult: 0.5\n"
        "experiment: e2e\n")
    res = _cli(["submit", "search", str(search_cfg), "--no-follow", "--address",
                cluster.address], cluster, mlflow_uri)
    assert res.returncode == 0, res.stdout + res.stderr
    search_job = _job_id(res.stdout)
    res = _cli(["submit", "train", str(train_cfg), "--address", cluster.address], cluster,
               mlflow_uri, timeout=500)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "SUCCEEDED" in res.stderr
    checkpoint = Path(next(line for line in res.stdout.splitlines()
                           if line.startswith("FINISHED run")).split(" checkpoint ")[1])
    run_dir = REPO / "runs" / "ray" / checkpoint.relative_to(REPO / "runs" / "ray").parts[0]
    assert checkpoint.is_dir() and "_ray_pkg_" not in str(checkpoint)  # in the project
    shutil.rmtree(run_dir)
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


_ECHO_JOB = """
import json, os, sys
def main(argv, names=None):
    config = next(a for a in argv if a.endswith(".yaml"))
    print(json.dumps({"cwd": os.getcwd(), "argv": argv, "names": names,
                      "config": open(config).read()}))
    return int(os.environ.get("ECHO_STATUS", "0"))
"""


def test_driver_command_finds_the_clusters_token(cluster: LocalCluster, tmp_path: Path,
                                                 shared_data: Path) -> None:
    """``RAY_ADDRESS=HEAD:PORT ofa-platform search`` (targets spread over Ray tasks) against the
    token cluster, with only ``RAY_AUTH_TOKEN_PATH`` set as for ``submit``: it joins and
    finishes; without any token it fails in one line."""
    assets = shared_data / "ofa_mbv3_imagenet"
    args = ["search", "--space", "ofa_mbv3", "--width-mult", "1.2",
            "--predictor", str(assets / "acc_predictor.pth"),
            "--latency", f"lut:{assets / 'latency_note10'}", "--targets", "25,35",
            "--resolutions", "160-224:4", "--generations", "2", "--population-size", "8",
            "--workers", "2", "--no-mlflow", "--json", "--out", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache")]
    env = {k: v for k, v in os.environ.items()
           if k not in {"RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"}}
    env.update(HOME=str(tmp_path), RAY_ADDRESS=cluster.gcs_address)
    res = subprocess.run([*CLI, *args], env={**env, **cluster.env}, capture_output=True,
                         text=True, timeout=400, cwd=REPO)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert len(json.loads(res.stdout)["results"]) == 2
    res = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=400,
                         cwd=REPO)
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-3000:]
    assert len(res.stderr.strip().splitlines()) <= 2 and "token" in res.stderr.lower()


def test_job_command_round_trips_awkward_arguments(tmp_path: Path) -> None:
    """The job command is one argument list quoted once: arguments and paths with spaces,
    quotes, ``$`` and backticks arrive unchanged; a config from outside the project travels
    in the job's environment and its errors name the user's file; the job runs in the
    project where it exists on the cluster machine, else in Ray's copy; its status is the
    job's."""
    from ofa_platform.cluster import job_command

    inside = job_command("train", [str(REPO / "jobs" / "train_cifar10_smoke.yaml")],
                         cwd=tmp_path)
    assert inside.argv == ("python", "jobs/_launch.py", "train", "jobs/train_cifar10_smoke.yaml")
    assert inside.shown == "train jobs/train_cifar10_smoke.yaml" and not inside.files

    root = tmp_path / "proj dir 'q' $HOME"
    (root / "jobs").mkdir(parents=True)
    (root / "jobs" / "echo.py").write_text(_ECHO_JOB)
    shutil.copy(REPO / "jobs" / "_launch.py", root / "jobs" / "_launch.py")
    outside = tmp_path / 'my "run" $1.yaml'
    outside.write_text("schedule: ofa\n")
    args = ["--config", str(outside), "--x", "a b", "it's", "$HOME", "back\\slash", '"dq"',
            "`id`", "; rm -rf /"]
    cmd = job_command("echo", args, root=root, cwd=tmp_path)
    assert "base64" not in cmd.entrypoint and "OFA_JOB_DIR" not in cmd.entrypoint
    snapshot = tmp_path / "_ray_pkg_0123abcd"          # the uploaded copy a Ray Job runs in
    shutil.copytree(root, snapshot)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "OFA_PROJECT_DIR": str(root), "OFA_JOB_FILES": json.dumps(list(cmd.files))}

    def run(**extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(cmd.entrypoint, shell=True, cwd=snapshot, capture_output=True,
                              text=True, env={**env, **extra})

    res = run()
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    copy = f"{snapshot}/.ofa_job/0_{outside.name}"
    assert out["argv"] == ["--config", copy, *args[2:]]
    assert out["config"] == "schedule: ofa\n" and out["names"] == {copy: str(outside)}
    assert Path(out["cwd"]) == root                   # the project exists on this machine
    shutil.rmtree(root)                               # a remote cluster: it does not
    res = run()
    assert res.returncode == 0 and Path(json.loads(res.stdout)["cwd"]) == snapshot
    assert run(ECHO_STATUS="3").returncode == 3       # the job's status is the entrypoint's


def test_entrypoint_refuses_a_store_inside_rays_copy(tmp_path: Path) -> None:
    """``ray job submit --working-dir . -- python jobs/train.py x.yaml`` on a machine without
    the project: the default MLflow store would be inside Ray's copy of the working
    directory, so the entrypoint refuses in one line (exit 2) and writes nothing there."""
    copy = tmp_path / "runtime_resources" / "_ray_pkg_feedbeef"
    for name in ("ofa_platform", "search_spaces", "jobs"):
        shutil.copytree(REPO / name, copy / name,
                        ignore=shutil.ignore_patterns("__pycache__", "schedules"))
    (copy / "cfg.yaml").write_text("schedule: ofa\ndata: synthetic:64\n")
    env = {k: v for k, v in os.environ.items() if k not in {"MLFLOW_TRACKING_URI",
                                                             "OFA_STORAGE_PATH"}}
    env.update(PYTHONPATH=str(copy), OFA_PROJECT_DIR=str(tmp_path / "no-project-here"))
    for extra in ({}, {"MLFLOW_TRACKING_URI": f"sqlite:///{copy}/runs.db"}):
        res = subprocess.run([sys.executable, "jobs/train.py", "cfg.yaml"], cwd=copy,
                             capture_output=True, text=True, env={**env, **extra}, timeout=300)
        assert res.returncode == 2, res.stdout + res.stderr
        assert res.stderr.count("\n") == 1 and "set MLFLOW_TRACKING_URI" in res.stderr
        assert "cfg.yaml" not in res.stderr or "_ray_pkg_" not in res.stderr
    assert not list(copy.glob("*.db"))


def test_a_cluster_fault_exits_1_in_one_line(tmp_path: Path) -> None:
    """No dashboard behind the address (the cluster's fault, not the input's): exit 1 with the
    cause; a runtime-environment agent that is down reads the same; a bad request is exit 2."""
    from ofa_platform.cluster import _submission_error
    from ofa_platform.errors import ClusterError, UserError

    (port,) = _free_ports(1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(tmp_path)
    res = subprocess.run([*CLI, "jobs", "--address", f"http://127.0.0.1:{port}"], env=env,
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert res.returncode == 1, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "cannot reach" in res.stderr
    agent = _submission_error(RuntimeError("Failed to start job: runtime env agent not running"))
    assert isinstance(agent, ClusterError)
    assert isinstance(_submission_error(RuntimeError("unsupported field 'x'")), UserError)


@pytest.mark.slow
def test_a_local_ray_starts_without_lines_on_stderr(tmp_path: Path) -> None:
    """A command's own local Ray says nothing on stderr, Ray 2.60's note that it turned token
    auth on included (a new home: Ray makes its token there, as on a first run)."""
    env = dict(os.environ, HOME=str(tmp_path), PYTHONPATH=str(REPO))
    for key in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(key, None)
    code = ("from ofa_platform.cluster import init_ray\n"
            "init_ray(num_cpus=1)\n"
            "import ray\n"
            "print(ray.get(ray.put(7)))\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "7", res.stderr
    assert res.stderr == ""
    assert (tmp_path / ".ray" / "auth_token").is_file()  # token mode, as Ray's default
