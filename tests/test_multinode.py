"""A real 3-node Ray cluster on this machine: a head that holds no CPUs (drivers, the Train
controller, the Jobs API) and two worker nodes of one CPU each, started with
``ray.cluster_utils.Cluster`` on free ports under ``RAY_TMPDIR``.

Because the head offers no CPUs, everything that computes (training workers, evaluation
actors, a submitted job's Tune trials) has to run on another node, and because each worker
node has one CPU, two 1-CPU actors must land on different nodes. The tests check where
things ran with Ray's state API (actor node ids), that results do not depend on the
placement, and that killing one node's raylet mid-training costs only the epochs since the
last checkpoint. The node-killing test runs last: it leaves the cluster with one worker node.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# slow: a cluster start-up and several Ray jobs; the timeout covers a shared, loaded machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[1]

RECIPE = """\
name: {name}
space: ofa_mbv3
phases:
  - name: teacher
    epochs: {epochs}
    lr: 0.5
    sampling: max
    restrict: {{kernels: [7], ratios: [6], depths: [4]}}
    init: scratch
"""


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
class Nodes:
    cluster: Any
    head: str  # node ids
    a: str
    b: str
    b_node: Any  # ray._private.node.Node of worker node b (its raylet is killed last)
    dashboard: str


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    import ray
    from ray.cluster_utils import Cluster

    was_up = ray.is_initialized()
    if was_up:  # the session's local Ray (conftest ray_local): this module needs its own
        ray.shutdown()
    gcs, dash, agent, metrics = _free_ports(4)
    # The cluster's processes (and so a submitted job's driver) see a home holding a token
    # of another cluster, as a user of a token cluster has: this cluster has no tokens, and
    # a driver must not turn token mode on for it.
    home = tmp_path_factory.mktemp("home")
    (home / ".ray").mkdir()
    (home / ".ray" / "auth_token").write_text("token-of-another-cluster\n")
    real_home, real_mode = os.environ.get("HOME"), os.environ.get("RAY_AUTH_MODE")
    os.environ["HOME"] = str(home)
    # A local ray.init() earlier in this process (Ray 2.60's default) left it in token mode;
    # this module's cluster and its driver (this process) run without tokens.
    _auth_mode("disabled")
    try:
        cluster = _retry_start(lambda: Cluster(initialize_head=True, head_node_args=dict(
            num_cpus=0, gcs_server_port=gcs, include_dashboard=True,
            dashboard_host="127.0.0.1", dashboard_port=dash, dashboard_agent_listen_port=agent,
            metrics_export_port=metrics, object_store_memory=200 * 1024**2)))
        # Nodes on one machine share the session directory; each worker node gets its own
        # runtime-env folder, as a node on its own machine has. Shared, a worker node's agent
        # deletes a job's working_dir that the head's job driver runs in (its cwd), and the
        # job's Tune trial actors are cancelled before they start.
        a, b = (_retry_start(lambda name=name: cluster.add_node(
                    num_cpus=1, object_store_memory=200 * 1024**2,
                    runtime_env_dir_name=f"runtime_resources_{name}"))
                for name in ("a", "b"))
        cluster.wait_for_nodes()
    finally:
        if real_home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = real_home
    cluster.connect()
    try:
        yield Nodes(cluster, cluster.head_node.node_id, a.node_id, b.node_id, b,
                    f"http://127.0.0.1:{dash}")
    finally:
        ray.shutdown()
        cluster.shutdown()
        _auth_mode(real_mode)
        if was_up:
            ray.init(address="local", num_cpus=2, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)


def _auth_mode(mode: str | None) -> None:
    """This process's Ray auth mode (None: unset, Ray's default); Ray caches it when its
    native module loads, so the cache is read again (as ofa_platform.cluster._use_token)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    if mode is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = mode
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _retry_start(start: Any) -> Any:
    """``start()`` up to 5 times: Ray gives a node 30 s to register with the GCS, which a
    busy 2-core machine can miss. A failed try's processes (children of this process that
    it started) are killed by pid, so no stray node joins the cluster later."""
    import psutil

    me = psutil.Process()
    for attempt in range(5):
        before = {p.pid for p in me.children(recursive=True)}
        try:
            return start()
        except Exception:  # noqa: BLE001 - "timed out during startup": try again
            for proc in me.children(recursive=True):
                if proc.pid not in before:
                    try:
                        proc.kill()
                    except psutil.NoSuchProcess:
                        pass
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def _actors(nodes: Nodes, class_part: str) -> dict[str, tuple[str, str]]:
    """actor id -> (node id, job id) of every actor (alive or dead) of this test's cluster
    whose class name contains ``class_part``. The cluster's dashboard is named: without an
    address Ray picks the latest cluster on the machine, another test process's one when the
    suite runs on two xdist workers."""
    from ray.util.state import list_actors

    actors = list_actors(address=nodes.dashboard, limit=10_000, detail=True)
    return {a.actor_id: (a.node_id, a.job_id) for a in actors
            if class_part in (a.class_name or "")}


def _request(tmp_path: Path, uri: str, epochs: int, **kw: Any) -> Any:
    from ofa_platform.train.runner import TrainRequest

    name = f"multinode{epochs}"
    recipe = tmp_path / f"{name}.yaml"
    recipe.parent.mkdir(parents=True, exist_ok=True)
    recipe.write_text(RECIPE.format(name=name, epochs=epochs))
    base = dict(schedule=str(recipe), data="cifar10", workers=2, cpus_per_worker=0.5,
                subset=32, batch_size=8, storage_path=str(tmp_path / "ray"), tracking_uri=uri,
                recal_images=8, val_limit=8, experiment="multinode", max_failures=2,
                data_loader="memory")
    base.update(kw)
    return TrainRequest(**base)


def _history(uri: str, run_id: str) -> dict[str, list[float]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    return {k: [h.value for h in sorted(client.get_metric_history(run_id, k),
                                        key=lambda h: h.step)]
            for k in ("loss", "acc_smallest", "acc_middle", "acc_largest", "arch_digest")}


def test_training_spreads_over_two_nodes_with_the_metrics_of_one(
        nodes: Nodes, shared_data: Path, mlflow_uri: str, tmp_path: Path) -> None:
    """Two workers on two nodes (STRICT_SPREAD) train exactly what two workers on one node
    (STRICT_PACK) train; the checkpoint written by a worker off the head reaches MLflow."""
    from mlflow.tracking import MlflowClient

    from ofa_platform.train.runner import prepare, run_training

    runs = {}
    for strategy in ("STRICT_SPREAD", "STRICT_PACK"):
        before = set(_actors(nodes, "RayTrainWorker"))
        out = run_training(prepare(_request(tmp_path / strategy, mlflow_uri, 1,
                                            placement_strategy=strategy)),
                           progress=lambda s: None)
        assert out.status == "FINISHED", out.error
        placed = [n for k, (n, _) in _actors(nodes, "RayTrainWorker").items() if k not in before]
        runs[strategy] = (out, placed)
    spread, packed = runs["STRICT_SPREAD"][1], runs["STRICT_PACK"][1]
    assert sorted(spread) == sorted([nodes.a, nodes.b]), (spread, nodes)
    assert len(packed) == 2 and len(set(packed)) == 1 and packed[0] != nodes.head
    h_spread = _history(mlflow_uri, runs["STRICT_SPREAD"][0].run_id)
    h_packed = _history(mlflow_uri, runs["STRICT_PACK"][0].run_id)
    assert h_spread["arch_digest"] == h_packed["arch_digest"]
    for key in ("loss", "acc_smallest", "acc_middle", "acc_largest"):
        assert h_spread[key] == pytest.approx(h_packed[key], rel=1e-5, abs=1e-6), key
    # the checkpoint (written by rank 0, on a worker node) is on the run's storage and in MLflow
    out = runs["STRICT_SPREAD"][0]
    assert out.checkpoint_dir and Path(out.checkpoint_dir, "supernet.pt").is_file()
    arts = [a.path for a in MlflowClient(mlflow_uri).list_artifacts(out.run_id, "checkpoint")]
    assert arts == ["checkpoint/supernet.pt"]
    assert MlflowClient(mlflow_uri).get_run(out.run_id).info.status == "FINISHED"


def _tiny_supernet() -> tuple[Any, Any]:
    from nets import randomize

    from search_spaces.registry import create_supernet
    from search_spaces.spaces import get_space

    space = get_space("compofa_mbv3").with_resolutions((16, 20))
    net = randomize(create_supernet(space, n_classes=10, small_input=True), seed=3)
    return space, net


def test_population_evaluates_on_both_nodes_with_one_node_accuracies(
        nodes: Nodes, tmp_path: Path) -> None:
    import random

    from ofa_platform.search.population import EvalSetup, PopulationEvaluator, ShardEvaluator

    space, net = _tiny_supernet()
    setup = EvalSetup("synthetic:200", calib_images=16, calib_batch=16, eval_batch=20,
                      val_subset=20, seed=0)
    rng = random.Random(0)
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(4)))
    before = set(_actors(nodes, "Trainable"))
    ev = PopulationEvaluator(net, setup, workers=2, seconds_per_subnet=1.0,
                             storage_dir=tmp_path / "tune")
    accs = ev.evaluate(archs)
    placed = {n for k, (n, _) in _actors(nodes, "Trainable").items() if k not in before}
    assert placed == {nodes.a, nodes.b}, placed
    spec, state = ev._spec_and_state()
    local = ShardEvaluator(spec, state, setup).evaluate([a.to_dict() for a in archs])
    assert accs == pytest.approx(local, abs=1e-9)


def test_search_job_submitted_through_ray_jobs_evaluates_off_the_head(
        nodes: Nodes, mlflow_uri: str, tmp_path: Path) -> None:
    import yaml
    from mlflow.tracking import MlflowClient

    from ofa_platform.cluster import connect, submit_job, wait_for_job
    from search_spaces.checkpoints import save_supernet

    _, net = _tiny_supernet()
    ckpt = save_supernet(tmp_path / "net.pt", net)
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump({
        "space": "compofa_mbv3", "targets": [1e9], "latency": "macs",
        "strategy": "exhaustive", "checkpoint": str(ckpt), "data": "synthetic:200",
        "n_arch_samples": 6, "calib_images": 16, "calib_batch": 16, "eval_batch": 20,
        "val_subset": 20, "n_population_rows": 2, "out_dir": str(tmp_path / "out"),
        "cache_dir": str(tmp_path / "cache"), "experiment": "multinode-search"}))
    client = connect(nodes.dashboard)
    job_id = submit_job(client, "search", [str(config)], mlflow_uri=mlflow_uri, root=REPO)
    status = wait_for_job(client, job_id, timeout_s=480)
    logs = client.get_job_logs(job_id)
    (tmp_path / "job.log").write_text(logs)  # the whole log, to read after a failure
    assert status == "SUCCEEDED", logs[-3000:]
    info = client.get_job_info(job_id)
    job_actors = [n for n, j in _actors(nodes, "Trainable").values() if j == info.driver_info.id]
    assert job_actors and nodes.head not in job_actors, (job_actors, info)
    assert info.driver_node_id == nodes.head  # the job's driver runs on the head
    runs = MlflowClient(mlflow_uri).search_runs(
        [MlflowClient(mlflow_uri).get_experiment_by_name("multinode-search").experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED"]
    assert runs[0].data.metrics["subnets_evaluated"] >= 2


def _raylet_pid(node: Any) -> int:
    from ray._private import ray_constants

    return node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid


def test_killed_node_resumes_on_the_other_from_the_last_checkpoint(
        nodes: Nodes, shared_data: Path, mlflow_uri: str, tmp_path: Path) -> None:
    """SIGKILL to node b's raylet while training: the worker group restarts on node a from
    the last checkpoint, the run ends FINISHED, and its cost covers the lost work too."""
    from mlflow.tracking import MlflowClient

    from ofa_platform.train.runner import prepare, run_training

    epochs = 12  # ~2 s each on a quiet machine: the kill lands mid-run, not after the end
    prep = prepare(_request(tmp_path, mlflow_uri, epochs, placement_strategy="SPREAD"))
    client = MlflowClient(mlflow_uri)
    before = set(_actors(nodes, "RayTrainWorker"))
    box: dict[str, Any] = {}
    started = time.time()
    thread = threading.Thread(target=lambda: box.update(out=run_training(prep, lambda s: None)))
    thread.start()

    def epochs_logged() -> int:
        try:
            exps = [e.experiment_id for e in client.search_experiments()]
            found = client.search_runs(exps, f"tags.`ofa.ray_run_name` = '{prep.run_name}'")
        except Exception:  # noqa: BLE001 - the store is being created
            return 0
        return len(client.get_metric_history(found[0].info.run_id, "loss")) if found else 0

    deadline = time.time() + 1500  # a wait, not a speed claim: a loaded machine is slow
    while time.time() < deadline and epochs_logged() < 1 and thread.is_alive():
        time.sleep(0.5)
    assert epochs_logged() >= 1, "no epoch was committed"
    first = {k: n for k, (n, _) in _actors(nodes, "RayTrainWorker").items() if k not in before}
    assert sorted(first.values()) == sorted([nodes.a, nodes.b]), first
    assert thread.is_alive() and epochs_logged() < epochs, "training ended before the kill"
    os.kill(_raylet_pid(nodes.b_node), signal.SIGKILL)
    killed_at = time.time()
    thread.join(timeout=1500)
    assert not thread.is_alive()
    out = box["out"]
    assert out.status == "FINISHED", out.error
    run = client.get_run(out.run_id)
    m = run.data.metrics
    assert run.info.status == "FINISHED" and m["worker_failures"] >= 1
    assert m["epochs_run"] == epochs
    resumed = [int(e) for e in run.data.tags["ofa.resumed_from"].split(",")]
    assert max(resumed) >= 1  # restarted from a checkpoint, not from epoch 0
    later = {k: n for k, (n, _) in _actors(nodes, "RayTrainWorker").items()
             if k not in before and k not in first}
    assert later and set(later.values()) == {nodes.a}, later
    # billed: the whole wall time on 2 workers, the attempt lost with node b included
    assert m["wall_s"] >= killed_at - started - 1.0
    assert m["device_hours"] == pytest.approx(m["wall_s"] * 2 / 3600, rel=1e-6)
