"""Issue 12: the study machinery. A protocol is data checked before anything starts; its
units run in order; a rerun skips what MLflow says is finished and continues an interrupted
training run from its checkpoint (same MLflow run, costs added up)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ofa_platform.errors import UserError
from ofa_platform.study.protocol import PeerSpec, load_study, study_units
from ofa_platform.study.runner import binomial_se, peer_schedule

REPO = Path(__file__).resolve().parents[1]

TINY = """\
name: tiny
data: cifar10
recipes: [bignas, deps_cifar]
subset: 40
epoch_scale: 0.004          # bignas: 1 epoch; deps_cifar: 2 (one per phase)
batch_size: 8
workers: 2
curve_images: 24
test_images: 30
recal_images: 16
search: {samples: 5, population: 6, generations: 2, targets: 2, calib_images: 16}
"""


def _write(tmp_path: Path, text: str, name: str = "tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_shipped_study_and_its_paper_scale_load() -> None:
    study = load_study("cifar10")
    assert set(study.recipes) == {"ofa", "compofa", "deps_cifar", "bignas"}
    assert {p.arch for p in study.peers} == {"smallest", "largest"}
    assert study.test_images is None  # every reported accuracy: the whole test split
    paper = load_study("cifar10", "paper")
    assert paper.scale == "paper" and paper.epoch_scale == 1.0 and paper.subset is None
    assert paper.recipes == study.recipes and paper.gpus_per_worker > 0


@pytest.mark.parametrize("change, message", [
    ("recipes: [ofa, nosuch]", "unknown schedule 'nosuch'"),
    ("recipes: [ofa, ofa]", "listed twice"),
    ("subset: 0", "subset: expected a positive integer"),
    ("epoch_scale: 2", "epoch_scale: expected a number in (0, 1]"),
    ("colour: blue", "colour: unknown key"),
    ("search: {samples: 3}", "search.samples"),
    ("search: {strategy: guess}", "search.strategy"),
    ("peers: [{recipe: ofa, arch: smallest}]", "peers[0].recipe"),
    ("peers: [{recipe: bignas, arch: median}]", "peers[0].arch"),
    ("seeds: [0, 0]", "seeds"),
    ("batch_size: .nan", "batch_size: expected int"),
])
def test_a_bad_protocol_is_one_line(tmp_path: Path, change: str, message: str) -> None:
    key = change.split(":")[0]
    text = "\n".join(line for line in TINY.splitlines() if not line.startswith(f"{key}:"))
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_study(_write(tmp_path, f"{text}\n{change}\n"))


def test_an_unknown_scale_names_the_known_ones(tmp_path: Path) -> None:
    path = _write(tmp_path, TINY + "scales: {big: {subset: 400}}\n")
    assert load_study(path, "big").subset == 400
    with pytest.raises(UserError, match="no scale 'huge'; known: default, big"):
        load_study(path, "huge")
    with pytest.raises(UserError, match="colour: unknown key"):
        load_study(_write(tmp_path, TINY + "scales: {big: {colour: 1}}\n", "b.yaml"), "big")


def test_bad_protocol_on_the_command_line_is_exit_2_before_anything(tmp_path: Path) -> None:
    path = _write(tmp_path, TINY.replace("subset: 40", "subset: -1"))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "ofa_platform", "study", "run", str(path),
                           "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}",
                           "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "subset" in proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.db").exists()


def test_units_run_recipe_by_recipe_then_the_peers(tmp_path: Path) -> None:
    study = load_study(_write(tmp_path, TINY + "peers: [{recipe: bignas, arch: largest}]\n"
                              "seeds: [0, 1]\n"))
    keys = [u.key for u in study_units(study)]
    assert keys[:4] == ["train/bignas/seed0", "search/bignas/seed0", "eval/bignas/seed0",
                        "train/deps_cifar/seed0"]
    assert keys[6:8] == ["train/scratch-largest/seed0", "eval/scratch-largest/seed0"]
    assert keys[8] == "train/bignas/seed1" and len(keys) == 16


@pytest.mark.parametrize("arch", ["smallest", "largest"])
def test_a_peer_trains_exactly_its_arch_for_the_whole_recipes_epochs(arch: str) -> None:
    from ofa_platform.train.schedule import load_schedule, parse_schedule
    from search_spaces.spaces import get_space

    ofa = load_schedule("ofa")
    epochs = ofa.scaled(0.05).total_epochs
    data = peer_schedule(ofa, epochs, PeerSpec("ofa", arch))
    peer = parse_schedule(data, name=data["name"], source="peer")
    assert peer.total_epochs == epochs and len(peer.phases) == 1
    phase = peer.phases[0]
    assert phase.sampling == "max" and phase.lr == ofa.phases[0].lr
    assert peer.optimizer == ofa.optimizer and peer.label_smoothing == ofa.label_smoothing
    space = get_space("ofa_mbv3")
    trained = phase.space(space)
    end = space.smallest() if arch == "smallest" else space.largest()
    assert trained.largest(end.r) == end and trained.smallest(end.r) == end


def test_binomial_standard_error() -> None:
    assert binomial_se(0.5, 10_000) == pytest.approx(0.005)
    assert binomial_se(0.0, 100) == 0.0


def _study(path: Path, uri: str, out: Path, env: dict[str, str], log: Path
           ) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "ofa_platform", "study", "run", str(path),
           "--tracking-uri", uri, "--out", str(out)]
    with log.open("w") as f:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)


@pytest.mark.slow
@pytest.mark.timeout(2400)  # two study processes, each starting Ray: a bound, not a goal
def test_a_study_interrupted_mid_training_resumes_and_skips_what_finished(
        tmp_path: Path, shared_data: Path) -> None:
    from mlflow.tracking import MlflowClient

    path = _write(tmp_path, TINY)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "out"
    ray_tmp = Path(tempfile.mkdtemp(prefix="ofastudy", dir="/tmp"))  # short socket paths
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", RAY_TMPDIR=str(ray_tmp))
    env.pop("RAY_ADDRESS", None)
    log1 = tmp_path / "first.txt"
    proc = _study(path, uri, out, env, log1)
    try:  # interrupt deps_cifar's training once its first epoch (and checkpoint) is in
        deadline = time.monotonic() + 900  # a bound for a stuck run, not a speed goal
        while time.monotonic() < deadline and proc.poll() is None:
            text = log1.read_text()
            if "train/deps_cifar/seed0" in text and "[train] 1/2 epochs" in text:
                break
            time.sleep(0.5)
        assert proc.poll() is None, log1.read_text()[-3000:]
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, log1.read_text()[-3000:]

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("study-tiny")
    runs = client.search_runs([exp.experiment_id])
    assert all(r.info.status != "RUNNING" for r in runs)
    by_unit = {r.data.tags.get("ofa.study_unit"): r for r in runs}
    assert by_unit["train/bignas/seed0"].info.status == "FINISHED"
    assert by_unit["eval/bignas/seed0"].info.status == "FINISHED"
    cut = by_unit["train/deps_cifar/seed0"]
    assert cut.info.status == "FAILED" and cut.data.tags.get("ofa.interrupted") == "true"
    first_cost = cut.data.metrics["device_hours"]

    log2 = tmp_path / "second.txt"
    proc = _study(path, uri, out, env, log2)
    try:
        assert proc.wait(timeout=1200) == 0, log2.read_text()[-3000:]
    finally:  # a failed or timed-out test leaves no study running
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log2.read_text()
    for unit in ("train/bignas/seed0", "search/bignas/seed0", "eval/bignas/seed0"):
        assert f"[study] {unit}: done before" in text
    assert f"train/deps_cifar/seed0 (resuming run {cut.info.run_id})" in text
    resumed = client.get_run(cut.info.run_id)  # the same MLflow run, finished now
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags.get("ofa.attempts") == "2"
    assert "ofa.interrupted" not in resumed.data.tags
    assert resumed.data.tags.get("ofa.resumed_from") == "1"  # from epoch 1's checkpoint
    assert resumed.data.metrics["device_hours"] > first_cost  # both attempts' cost
    steps = [m.step for m in client.get_metric_history(cut.info.run_id, "acc_largest")]
    assert sorted(set(steps)) == [1, 2]
    runs = client.search_runs([exp.experiment_id])
    train_runs = [r for r in runs if r.data.tags.get("ofa.study_unit") == "train/bignas/seed0"]
    assert len(train_runs) == 1  # the finished training was not run again
    assert all(r.info.status != "RUNNING" for r in runs)
    # the search of a checkpoint is filed under the method and training run the checkpoint
    # itself records (train/engine.checkpoint_provenance -> search tags)
    search = next(r for r in runs if r.data.tags.get("ofa.study_unit") == "search/bignas/seed0"
                  and r.info.status == "FINISHED")
    bignas_train = train_runs[0].info.run_id
    assert (search.data.tags["ofa.method"], search.data.tags["ofa.train_run_id"]) == (
        "bignas", bignas_train)
    from search_spaces.checkpoints import load_supernet

    _, extra = load_supernet(out / "checkpoints" / bignas_train / "checkpoint" / "supernet.pt")
    assert extra["method"] == "bignas" and extra["mlflow_run_id"] == bignas_train
    evals = [r for r in runs if r.data.tags.get("ofa.kind") == "study_eval"
             and r.info.status == "FINISHED"]
    assert {r.data.tags["ofa.study_recipe"] for r in evals} == {"bignas", "deps_cifar"}
    assert all(r.data.params["split"] == "test" for r in evals)

    from dashboards.study import write_study_report

    report = write_study_report("study-tiny", tmp_path / "report", uri, log_to_mlflow=False)
    assert set(report.results["recipes"]) == {"bignas", "deps_cifar"}
    assert (tmp_path / "report" / "report.html").is_file()


def test_the_protocol_digest_follows_what_the_units_depend_on(tmp_path: Path) -> None:
    base = load_study(_write(tmp_path, TINY))
    assert load_study(_write(tmp_path, TINY + 'notes: ["a caveat"]\n', "n.yaml")).digest \
        == base.digest  # notes change no unit
    assert load_study(_write(tmp_path, TINY.replace("subset: 40", "subset: 41"),
                             "s.yaml")).digest != base.digest


@pytest.mark.parametrize("state, message", [
    ("FINISHED", "already finished"), ("nosuch", "no such run"), ("search", "not a training run"),
])
def test_resume_only_continues_an_unfinished_training_run(tmp_path: Path, state: str,
                                                          message: str) -> None:
    from mlflow.tracking import MlflowClient

    from ofa_platform.train.runner import TrainRequest, prepare

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("r")
    kind = "search" if state == "search" else "train"
    run = client.create_run(exp, tags={"ofa.kind": kind, "ofa.ray_run_name": "x"})
    client.log_param(run.info.run_id, "schedule", "bignas")
    client.set_terminated(run.info.run_id, "FINISHED" if state == "FINISHED" else "FAILED")
    rid = "0" * 32 if state == "nosuch" else run.info.run_id
    with pytest.raises(UserError, match=message):
        prepare(TrainRequest(schedule="bignas", data="synthetic:32", workers=1,
                             tracking_uri=uri, resume_run_id=rid))


def test_resume_finds_a_recipe_given_by_path_under_its_name(tmp_path: Path) -> None:
    """A study's peer trains a generated recipe file; its run records the recipe's name."""
    from mlflow.tracking import MlflowClient

    from ofa_platform.train.runner import TrainRequest, prepare
    from ofa_platform.train.schedule import default_schedules_dir

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("r"),
                            tags={"ofa.kind": "train", "ofa.ray_run_name": "bignas-x"})
    client.log_param(run.info.run_id, "schedule", "bignas")
    client.log_param(run.info.run_id, "ray_storage", str(tmp_path / "ray"))
    client.log_metric(run.info.run_id, "device_hours", 0.5)
    client.set_terminated(run.info.run_id, "FAILED")
    prep = prepare(TrainRequest(schedule=str(default_schedules_dir() / "bignas.yaml"),
                                data="synthetic:32", workers=1, tracking_uri=uri,
                                resume_run_id=run.info.run_id))
    assert prep.run_name == "bignas-x" and prep.storage_path.endswith("ray")
    assert dict(prep.prior_cost)["device_hours"] == 0.5
