"""The training driver: validate a request, run one Ray Train job, record it in MLflow.

Only this driver (and its Ray Train callback, which runs in the Train controller, never in a
worker) writes to MLflow, so a worker that dies loses nothing and a job that fails or is
interrupted still records what it spent and ends FAILED, never RUNNING.

Every check that can fail on user input (schedule, space, data, checkpoint, hardware, sizes)
runs in :func:`prepare` before Ray or MLflow start.
"""

from __future__ import annotations

import os
import signal
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ofa_platform.errors import UserError
from ofa_platform.paths import project_root
from ofa_platform.progress import Reporter
from ofa_platform.train.request import (
    AMP_MODES,
    EVAL_SPLITS,
    PLACEMENT_STRATEGIES,
    TrainRequest,
)

if TYPE_CHECKING:  # the values are built inside prepare(); importing them here costs torch
    from ofa_platform.costs import HardwareSpec
    from ofa_platform.datasets import DatasetSplits, DataSpec
    from ofa_platform.train.engine import EngineConfig
    from ofa_platform.train.schedule import Schedule

__all__ = ["TrainRequest", "PreparedRun", "TrainOutcome", "prepare", "run_training",
           "MlflowReportCallback", "unique_run_name", "default_storage_path",
           "project_device_hours"]

def default_storage_path() -> str:
    """Ray Train's storage for checkpoints: ``OFA_STORAGE_PATH`` when set (shared storage on a
    cluster, e.g. S3, as ``ray_cluster.yaml`` exports it), else ``runs/ray`` in the project
    (absolute; ignored by git)."""
    return os.environ.get("OFA_STORAGE_PATH") or str(project_root() / "runs" / "ray")


def unique_run_name(schedule: str, space: str) -> str:
    """A fresh name per job: in Ray 2.60 a reused run name silently resumes the old run."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{schedule}-{space}-{stamp}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class PreparedRun:
    """A validated request: the values the job runs with."""

    request: TrainRequest
    full_schedule: Schedule  # as published (for projections)
    schedule: Schedule  # scaled by epoch_scale (what runs)
    space: str
    engine: EngineConfig
    hardware: HardwareSpec
    n_devices: int
    n_train: int
    n_train_full: int
    run_name: str
    storage_path: str
    tracking_uri: str
    init_from_run_id: str | None = None
    init_phase: str | None = None
    eval_images: int = 0  # images each per-epoch accuracy is measured on
    #: the cost metrics an interrupted attempt already logged (``resume_run_id``)
    prior_cost: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class TrainOutcome:
    """What a finished (or failed) job leaves: MLflow run, checkpoint, metrics, cost."""

    run_id: str
    run_name: str
    status: str
    checkpoint_dir: str | None
    final_metrics: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)
    error: str | None = None


# --------------------------------------------------------------------------- validation
def _positive(value: float, what: str, *, integer: bool = True, zero_ok: bool = False) -> None:
    bad = (isinstance(value, bool) or not isinstance(value, (int, float))
           or (integer and int(value) != value) or value < 0 or (value == 0 and not zero_ok))
    if bad:
        raise UserError(f"{what}: expected a {'non-negative' if zero_ok else 'positive'} "
                        f"{'integer' if integer else 'number'}, got {value!r}")


def prepare(request: TrainRequest) -> PreparedRun:
    """Validate everything a user can get wrong, without starting Ray or MLflow."""
    from ofa_platform.costs import load_hardware
    from ofa_platform.datasets import parse_data_spec
    from ofa_platform.tracking import resolve_tracking_uri
    from ofa_platform.train.schedule import load_schedule
    from search_spaces.spaces import UnknownSpaceError, get_space

    _check_request(request)
    full = load_schedule(request.schedule)
    schedule = full.scaled(request.epoch_scale)
    space_name = request.space or full.space
    try:
        space = get_space(space_name)
    except UnknownSpaceError as exc:
        raise UserError(str(exc)) from None
    full.phase_spaces(space)  # a restriction that cannot apply is a UserError naming the phase
    spec = parse_data_spec(request.data)
    data = _choose_data(spec, request)
    tracking_uri = resolve_tracking_uri(request.tracking_uri)
    resumed = _resolve_resume(request, full.name, tracking_uri)
    if resumed is not None:
        request = replace(request, run_name=resumed.run_name,
                          storage_path=resumed.storage_path)
    eval_images = _eval_images(spec, data.dataset, request)
    init = _resolve_init_from(request, schedule, space, tracking_uri)
    if request.init_checkpoint:
        if init is not None:
            raise UserError("--init-checkpoint and --init-from: give one of them")
        _check_checkpoint(request.init_checkpoint, full.phases[0].base_space(space))
    gpus = request.gpus_per_worker > 0
    hardware = load_hardware(request.hardware or ("cpu" if not gpus else _gpu_kind()))
    n_devices = int(round(request.workers * request.gpus_per_worker)) if gpus else request.workers
    return PreparedRun(
        request=request, full_schedule=full, schedule=schedule, space=space_name,
        engine=_engine_config(request, schedule, space_name, spec, data, init),
        hardware=hardware, n_devices=max(1, n_devices),
        n_train=data.n_train, n_train_full=data.n_train_full,
        run_name=request.run_name or unique_run_name(full.name, space_name),
        storage_path=_storage(request.storage_path or default_storage_path()),
        tracking_uri=tracking_uri,
        init_from_run_id=init.run_id if init is not None else None,
        init_phase=init.phase if init is not None else None, eval_images=eval_images,
        prior_cost=resumed.prior_cost if resumed is not None else ())


def _check_request(request: TrainRequest) -> None:
    """The request's own fields, each bad one a ``UserError`` naming its option."""
    _positive(request.workers, "--workers")
    _positive(request.batch_size, "--batch-size")
    _positive(request.gpus_per_worker, "--gpus-per-worker", integer=False, zero_ok=True)
    _positive(request.cpus_per_worker, "cpus per worker", integer=False)
    _positive(request.max_failures, "max failures", zero_ok=True)
    _positive(request.loader_workers, "loader workers", zero_ok=True)
    _positive(request.data_cpus, "data cpus", integer=False)
    if request.subset is not None:
        _positive(request.subset, "--subset")
    if request.placement_strategy not in PLACEMENT_STRATEGIES:
        raise UserError(f"placement strategy {request.placement_strategy!r}: expected PACK, "
                        "SPREAD, STRICT_PACK or STRICT_SPREAD")
    if request.amp not in AMP_MODES:
        raise UserError(f"amp {request.amp!r}: expected auto, bf16, fp16 or off")
    if request.eval_split not in EVAL_SPLITS:
        raise UserError(f"eval split {request.eval_split!r}: expected one of "
                        f"{', '.join(EVAL_SPLITS)}")


@dataclass(frozen=True)
class _DataChoice:
    """The dataset a run trains on and how it is read: in memory (``loader="memory"``) or
    streamed by Ray Data; ``n_train_full`` is the whole dataset's training size."""

    dataset: DatasetSplits
    n_train: int
    n_train_full: int
    loader: str


def _choose_data(spec: DataSpec, request: TrainRequest) -> _DataChoice:
    """Load (in memory) or describe (Ray Data) the training data; enough images to feed
    every worker."""
    from ofa_platform.data.raydata import resolve_loader
    from ofa_platform.datasets import load_dataset, train_size

    choice = resolve_loader(request.data_loader, spec, workers=request.workers,
                            subset=request.subset, seed=request.seed,
                            recal_images=request.recal_images, val_limit=request.val_limit)
    if choice is None:
        dataset = load_dataset(spec, subset=request.subset, seed=request.seed)
        full = (dataset.n_train if request.subset is None
                else train_size(spec, seed=request.seed))
        data = _DataChoice(dataset, dataset.n_train, full, "memory")
    else:
        data = _DataChoice(choice.dataset, choice.n_train, choice.n_train_full, choice.loader)
    if data.n_train < request.workers:
        raise UserError(f"{data.n_train} training images cannot feed {request.workers} "
                        "workers; raise --subset")
    return data


def _engine_config(request: TrainRequest, schedule: Schedule, space_name: str, spec: DataSpec,
                   data: _DataChoice, init: _InitFrom | None) -> EngineConfig:
    """What every Ray Train worker builds its engine from."""
    from ofa_platform.train.engine import EngineConfig

    small = data.dataset.small_input if request.small_input is None else request.small_input
    return EngineConfig(
        schedule=schedule, space=space_name, data=spec,
        batch_size=request.batch_size,
        seed=request.seed, subset=request.subset, width_mult=request.width_mult,
        small_input=small, amp=request.amp, recal_images=request.recal_images,
        val_limit=request.val_limit,
        init_checkpoint=init.checkpoint if init is not None else request.init_checkpoint,
        init_phase=init.phase if init is not None else None,
        loader_workers=request.loader_workers,
        data_loader=data.loader, data_cpus=request.data_cpus,
        eval_split=request.eval_split)


def _eval_images(spec: Any, dataset: Any, request: TrainRequest) -> int:
    """How many images each per-epoch accuracy is measured on (checks a test split exists)."""
    if request.eval_split == "test":  # no test split: one line now, not a worker crash later
        from ofa_platform.datasets import load_test_split, test_split_rows

        load_test_split(spec, 1)  # and its content checked, as every Parquet load is
        return test_split_rows(spec, request.val_limit)
    n = dataset.n_val
    return min(n, request.val_limit) if request.val_limit else n


@dataclass(frozen=True)
class _Resumed:
    """What continuing an interrupted run takes from it."""

    run_name: str
    storage_path: str
    prior_cost: tuple[tuple[str, float], ...]


def _resolve_resume(request: TrainRequest, schedule: str, tracking_uri: str
                    ) -> _Resumed | None:
    """Check ``resume_run_id`` names an unfinished training run of this schedule, and read
    the Ray run (name and storage) whose checkpoints it continues from."""
    if not request.resume_run_id:
        return None
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from ofa_platform.tracking import COST_METRICS

    rid = request.resume_run_id
    if tracking_uri.startswith("sqlite:///") and not os.path.isfile(
            tracking_uri.removeprefix("sqlite:///")):  # asking would create an empty store
        raise UserError(f"--resume {rid}: no such run in {tracking_uri}")
    try:
        run = MlflowClient(tracking_uri).get_run(rid)
    except MlflowException:
        raise UserError(f"--resume {rid}: no such run in {tracking_uri}") from None
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    if tags.get("ofa.kind") != "train" or "ofa.ray_run_name" not in tags:
        raise UserError(f"--resume {rid}: not a training run")
    if run.info.status == "FINISHED":
        raise UserError(f"--resume {rid}: the run already finished")
    if params.get("schedule") != schedule:  # by name: a recipe given as a path is its stem
        raise UserError(f"--resume {rid}: that run trains {params.get('schedule')!r}, "
                        f"not {schedule!r}")
    prior = tuple((k, float(metrics[k])) for k in (*COST_METRICS, "wall_s") if k in metrics)
    return _Resumed(run_name=tags["ofa.ray_run_name"],
                    storage_path=params.get("ray_storage") or default_storage_path(),
                    prior_cost=prior)


def _storage(path: str) -> str:
    """Local paths made absolute; URIs (``s3://...``) kept as they are."""
    return path if "://" in path else os.path.abspath(path)


def _check_checkpoint(path: str, space: Any) -> Path:
    """A readable supernet file whose weights can start a phase trained in ``space`` (same
    family and layout: ``search_spaces.transfer`` carries them over); returns the file."""
    from search_spaces.checkpoints import CheckpointError, load_supernet

    p = Path(path)
    if p.is_dir():
        from ofa_platform.train.engine import SUPERNET_FILE

        p = p / SUPERNET_FILE
    if not p.is_file():
        raise UserError(f"checkpoint {path}: no such file")
    try:
        supernet, _ = load_supernet(str(p))
    except CheckpointError as exc:
        raise UserError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"checkpoint {path}: cannot be read ({type(exc).__name__})") from None
    theirs = supernet.space
    if theirs.family != space.family or theirs.n_slots != space.n_slots:
        raise UserError(f"checkpoint {path} is a supernet of space {theirs.name!r} "
                        f"({theirs.family}), which cannot start a phase in {space.name!r} "
                        f"({space.family})")
    return p


@dataclass(frozen=True)
class _InitFrom:
    """A resolved ``--init-from``: the supernet file, the phase it finished, its run."""

    checkpoint: str
    phase: str
    run_id: str | None


def _resolve_init_from(request: TrainRequest, schedule: Any, space: Any,
                       tracking_uri: str) -> _InitFrom | None:
    """Validate ``--init-from SOURCE:PHASE`` and fetch the phase's supernet.

    SOURCE is a supernet file (or a checkpoint directory) or the MLflow id of a training run,
    whose ``phases/PHASE/supernet.pt`` artifact the training wrote when the phase ended. The
    recipe must have a phase of that name that is not its last, and no later phase may distil
    from a teacher phase the run skips (its weights would be missing).
    """
    if not request.init_from:
        return None
    source, sep, phase = request.init_from.rpartition(":")
    if not sep or not source or not phase:
        raise UserError(f"--init-from {request.init_from!r}: expected RUN_ID:PHASE or "
                        "CHECKPOINT:PHASE")
    names = [p.name for p in schedule.phases]
    if phase not in names:
        raise UserError(f"--init-from: schedule {schedule.name} has no phase {phase!r} "
                        f"(phases: {', '.join(names)})")
    k = names.index(phase)
    if k == len(names) - 1:
        raise UserError(f"--init-from: {phase!r} is the last phase of {schedule.name}; "
                        "nothing would be left to train")
    for p in schedule.phases[k + 1:]:
        teacher = schedule.teacher_of(p)
        if teacher is not None and names.index(teacher) < k:
            raise UserError(f"--init-from: phase {p.name} distils from {teacher!r}, which "
                            f"starting after {phase!r} skips")
    run_id = None
    if not Path(source).exists():
        run_id, source = source, _download_phase(source, phase, tracking_uri)
    path = _check_checkpoint(source, schedule.phases[k].base_space(space))
    return _InitFrom(checkpoint=str(path), phase=phase, run_id=run_id)


def _download_phase(run_id: str, phase: str, tracking_uri: str) -> str:
    """The ``phases/PHASE/supernet.pt`` artifact of training run ``run_id`` as a local file
    (cached under ``runs/init_from``), or a ``UserError`` saying what is missing."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from ofa_platform.train.engine import SUPERNET_FILE

    client = MlflowClient(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise UserError(f"--init-from: no MLflow run {run_id!r} in {tracking_uri} (and no "
                        "such checkpoint file)") from None
    if run.data.tags.get("ofa.kind") != "train":
        raise UserError(f"--init-from: run {run_id} is not a training run")
    dest = project_root() / "runs" / "init_from" / f"{run_id}_{phase}"
    local = dest / "phases" / phase / SUPERNET_FILE
    if local.is_file():
        return str(local)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        return client.download_artifacts(run_id, f"phases/{phase}/{SUPERNET_FILE}", str(dest))
    except (MlflowException, OSError):
        raise UserError(f"--init-from: run {run_id} has no finished phase {phase!r} "
                        f"(no artifact phases/{phase}/{SUPERNET_FILE})") from None


def _gpu_kind() -> str:
    """The price-table entry of this machine's GPU (``costs.hardware_for_device``). A GPU the
    table does not know, or a driver without CUDA (a CPU head node of a GPU cluster), is a
    ``UserError`` asking for ``--hardware``: billing it as some other GPU would be silent."""
    from ofa_platform.costs import hardware_for_device, list_hardware

    try:
        import torch

        name = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - no CUDA on the driver: the user must say
        raise UserError("GPU workers requested but this driver sees no GPU to price; pass "
                        f"--hardware (one of {', '.join(list_hardware())})") from None
    return hardware_for_device(name)


# --------------------------------------------------------------------------- MLflow callback
def _import_user_callback() -> type:
    from ray.train import UserCallback

    return UserCallback


class MlflowReportCallback(_import_user_callback()):  # type: ignore[misc]
    """Logs each epoch's report to the job's MLflow run and its phase's nested run, and
    prints a progress line. Runs in the Ray Train controller (not a worker); holds only
    strings, numbers and the frozen hardware spec so it pickles.

    Each phase's nested run also carries that phase's own cost (``device_hours``, ``dollars``,
    ``energy_kwh``, ``co2_kg``, ``co2_lbs``: the controller's wall time between reports in the
    phase x devices, priced by ``hardware``; estimated energy), so a phase another run starts
    from (``--init-from``) can be counted once. When a phase's last epoch is reported, its
    supernet is archived as ``phases/<phase>/supernet.pt`` on the job's run: what
    ``--init-from RUN_ID:PHASE`` fetches.
    """

    def __init__(self, tracking_uri: str, run_id: str, experiment_id: str,
                 phases: list[dict[str, Any]], total_epochs: int, n_devices: int,
                 events: Any = None, hardware: Any = None) -> None:
        self.tracking_uri, self.run_id, self.experiment_id = tracking_uri, run_id, experiment_id
        self.phases, self.total_epochs, self.n_devices = phases, total_epochs, n_devices
        self.events = events  # a ray.util.queue.Queue the driver's display reads, or None
        self.hardware = hardware
        self.phase_runs: dict[int, str] = {}
        self.phase_seconds: dict[int, float] = {}
        self.last_report: float | None = None
        self.t0: float | None = None
        self.epochs_seen = 0
        # worker-group failures, seen two ways: Ray's exception hook (a worker raised) and a
        # restart from a checkpoint mid-run (a lost node, for which Ray reports no exception);
        # one failure usually shows both ways, so the larger count is the failures
        self.exceptions = 0
        self.restarts = 0
        self.failures = 0
        self.resumes: list[int] = []

    def _client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(self.tracking_uri)

    def _phase_run(self, client: Any, index: int) -> str:
        if index in self.phase_runs:
            return self.phase_runs[index]
        for i, rid in list(self.phase_runs.items()):  # a new phase closes the previous ones
            if i < index:
                client.set_terminated(rid, "FINISHED")
                del self.phase_runs[i]
        p = self.phases[index]
        run = client.create_run(self.experiment_id, run_name=p["name"],
                                tags={"mlflow.parentRunId": self.run_id, "ofa.phase": p["name"],
                                      "ofa.kind": "train_phase"})
        rid = run.info.run_id
        for key in ("phase_index", "start_epoch", "end_epoch"):
            client.log_param(rid, key, p[key])
        self.phase_runs[index] = rid
        return rid

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]],
                     checkpoint: Any) -> None:
        try:
            self._log(metrics[0])
            self._log_phase_cost(metrics[0])
            self._archive_finished_phase(metrics[0], checkpoint)
        except Exception as exc:  # noqa: BLE001 - tracking must never kill training
            print(f"[ofa-train] MLflow logging failed: {exc}", file=sys.stderr, flush=True)

    def _log_phase_cost(self, m: dict[str, Any]) -> None:
        """The phase's cost so far on its nested run (the latest value is the phase's)."""
        from mlflow.entities import Metric

        from ofa_platform.costs import compute_cost

        if self.hardware is None:
            return
        now = time.time()
        if self.last_report is None:
            self.last_report = now - float(m.get("epoch_time_s", 0.0))
        index = int(m["phase_index"])
        self.phase_seconds[index] = self.phase_seconds.get(index, 0.0) + now - self.last_report
        self.last_report = now
        hours = self.phase_seconds[index] / 3600.0 * self.n_devices
        cost = compute_cost(hours, self.hardware).to_dict()
        client = self._client()
        rid = self._phase_run(client, index)
        ts = int(now * 1000)
        client.log_batch(rid, metrics=[Metric(k, float(v), ts, int(m["epoch"]))
                                       for k, v in cost.items()])

    def _archive_finished_phase(self, m: dict[str, Any], checkpoint: Any) -> None:
        """At a phase's last epoch, keep its supernet for ``--init-from RUN_ID:PHASE``."""
        from ofa_platform.train.engine import SUPERNET_FILE

        p = self.phases[int(m["phase_index"])]
        if checkpoint is None or int(m["epoch"]) != int(p["end_epoch"]):
            return
        with checkpoint.as_directory() as d:
            self._client().log_artifact(self.run_id, os.path.join(d, SUPERNET_FILE),
                                        artifact_path=f"phases/{p['name']}")

    def after_exception(self, run_context: Any, worker_exceptions: dict[int, Exception]) -> None:
        first = next(iter(worker_exceptions.values()), None)
        self.exceptions += 1
        self._count_failure(f"{type(first).__name__}: {first}")

    def _count_failure(self, what: str) -> None:
        """Log ``worker_failures`` (and say it) when a failure was newly seen."""
        failures = max(self.exceptions, self.restarts)
        if failures == self.failures:
            return
        self.failures = failures
        try:
            self._client().log_metric(self.run_id, "worker_failures", float(self.failures))
        except Exception:  # noqa: BLE001 - tracking must never kill training
            pass
        print(f"[ofa-train] worker failure {self.failures}: {what}", flush=True)

    def _log(self, m: dict[str, Any]) -> None:
        from mlflow.entities import Metric, RunTag

        from ofa_platform.tracking import split_bookkeeping

        now = time.time()
        if self.t0 is None:
            self.t0 = now - float(m.get("epoch_time_s", 0.0))
        self.epochs_seen += 1
        epoch = int(m["epoch"])
        index = int(m["phase_index"])
        client = self._client()
        names = ("loss", "lr", "beta", "acc_smallest", "acc_middle", "acc_largest",
                 "images_per_s", "epoch_time_s", "train_time_s", "arch_digest", "steps",
                 "resumed_from")
        restarts = len(self.resumes)
        values, marks = split_bookkeeping({k: float(m[k]) for k in names if k in m},
                                          self.resumes)
        if self.epochs_seen > 1 and len(self.resumes) > restarts:  # restored mid-run
            self.restarts += 1
            self._count_failure(f"worker group restarted from epoch {self.resumes[-1]}")
        values["images_per_s_per_device"] = values.get("images_per_s", 0.0) / self.n_devices
        ts = int(now * 1000)
        batch = [Metric(k, v, ts, epoch) for k, v in values.items()]
        tags = [RunTag(k, v) for k, v in marks.items()]
        client.log_batch(self.run_id, metrics=batch, tags=tags)
        client.log_batch(self._phase_run(client, index), metrics=batch, tags=tags)
        rate = (now - self.t0) / max(self.epochs_seen, 1)
        status = _epoch_status(m.get("phase"), index, len(self.phases), values,
                               rate * (self.total_epochs - epoch))
        if self.events is not None:  # the driver's display shows it
            self.events.put((epoch, status))
        else:
            print(f"[ofa-train] epoch {epoch}/{self.total_epochs} {status}", flush=True)


def _epoch_status(phase: Any, index: int, n_phases: int, values: dict[str, float],
                  eta_s: float) -> str:
    """The progress display's text for one epoch: phase, loss, accuracies, img/s, ETA."""
    from ofa_platform.progress import hms

    return (f"phase {phase} ({index + 1}/{n_phases}) loss {values.get('loss', float('nan')):.4f}"
            f" acc S/M/L {values.get('acc_smallest', 0):.3f}/{values.get('acc_middle', 0):.3f}"
            f"/{values.get('acc_largest', 0):.3f} {values.get('images_per_s', 0):.1f} img/s "
            f"ETA {hms(eta_s)}")


@contextmanager
def _epoch_display(reporter: Any, total_epochs: int) -> Iterator[Any]:
    """A queue the Train controller's callback puts ``(epoch, status)`` into, relayed to the
    driver's progress display by a thread (the controller is another process: its prints
    would only reach the driver as Ray worker logs, which are off unless --verbose)."""
    from ray.util.queue import Empty, Queue

    events = Queue(actor_options={"num_cpus": 0})
    stop = threading.Event()
    reporter.task("train", "train", total=total_epochs, unit="epochs")

    def relay() -> None:
        while True:
            try:
                epoch, status = events.get(block=True, timeout=0.5)
            except Empty:
                if stop.is_set():
                    return
                continue
            except Exception:  # noqa: BLE001 - the queue actor is gone: nothing to show
                return
            reporter.update("train", epoch, status)

    thread = threading.Thread(target=relay, name="ofa-train-progress", daemon=True)
    thread.start()
    try:
        yield events
    finally:
        stop.set()
        thread.join(timeout=10)
        reporter.done("train")
        events.shutdown()


# --------------------------------------------------------------------------- projection
def project_device_hours(full_schedule: Any, n_train_full: int,
                         phase_images_per_s_per_device: dict[str, float]) -> float:
    """Device-hours the published recipe would take at the measured per-phase speeds.

    A phase's speed depends on its subnets per step and teacher, so each phase is projected
    at its own measured images/s per device; a phase that was not measured uses the slowest
    measured one (a conservative estimate). Evaluation time is not included.
    """
    from ofa_platform.costs import project_device_hours as hours_at

    if not phase_images_per_s_per_device:
        return float("nan")
    slowest = min(phase_images_per_s_per_device.values())
    return sum(hours_at(max(phase_images_per_s_per_device.get(p.name, slowest), 1e-12),
                        n_train_full, p.total_epochs) for p in full_schedule.phases)


# --------------------------------------------------------------------------- the job
def _tags(prep: PreparedRun) -> dict[str, str]:
    tags = {"ofa.kind": "train", "ofa.method": prep.full_schedule.name, "ofa.space": prep.space,
            "ofa.dataset": prep.request.data, "ofa.hardware": prep.hardware.name,
            "ofa.ray_run_name": prep.run_name}
    if prep.init_phase is not None:  # a shared phase: its cost lives in the source run
        tags["ofa.init_from_phase"] = prep.init_phase
        if prep.init_from_run_id:
            tags["ofa.init_from_run_id"] = prep.init_from_run_id
        else:
            tags["ofa.init_from_checkpoint"] = str(prep.engine.init_checkpoint)
    tags.update(dict(prep.request.tags))
    return tags


def _params(prep: PreparedRun) -> dict[str, Any]:
    from ofa_platform.datasets import describe_spec

    r = prep.request
    return {**describe_spec(prep.engine.data),
            "schedule": prep.full_schedule.name, "space": prep.space, "data": r.data,
            "workers": r.workers, "gpus_per_worker": r.gpus_per_worker,
            "cpus_per_worker": r.cpus_per_worker, "n_devices": prep.n_devices,
            "epoch_scale": r.epoch_scale, "subset": r.subset, "seed": r.seed,
            "batch_size_per_worker": r.batch_size, "total_batch": r.batch_size * r.workers,
            "width_mult": r.width_mult, "small_input": prep.engine.small_input,
            "amp": r.amp, "max_failures": r.max_failures, "n_train": prep.n_train,
            "epochs_total": prep.schedule.total_epochs,
            "epochs_full_recipe": prep.full_schedule.total_epochs,
            "phases": ",".join(f"{p.name}:{p.total_epochs}" for p in prep.schedule.phases),
            "init_checkpoint": prep.engine.init_checkpoint, "init_from": r.init_from,
            "ray_storage": prep.storage_path, "data_loader": prep.engine.data_loader,
            "eval_split": r.eval_split, "eval_images": prep.eval_images}


def _ensure_ray(prep: PreparedRun) -> None:
    import ray

    from ofa_platform.cluster import init_ray

    init_ray()  # no-op when the command started Ray already (with its --verbose)
    have = ray.cluster_resources()
    r = prep.request
    need_gpu = r.workers * r.gpus_per_worker
    if need_gpu and have.get("GPU", 0) < need_gpu:
        raise UserError(f"{r.workers} workers x {r.gpus_per_worker} GPUs need {need_gpu:g} "
                        f"GPUs; the Ray cluster has {have.get('GPU', 0):g}")
    if have.get("CPU", 0) < r.workers * r.cpus_per_worker:
        raise UserError(f"{r.workers} workers x {r.cpus_per_worker:g} CPUs need "
                        f"{r.workers * r.cpus_per_worker:g} CPUs; the Ray cluster has "
                        f"{have.get('CPU', 0):g}")
    if prep.engine.data_loader == "ray-data" and (
            have.get("CPU", 0) < r.workers * r.cpus_per_worker + r.data_cpus):
        raise UserError(f"streaming with Ray Data needs {r.data_cpus:g} CPU beside the "
                        f"workers' {r.workers * r.cpus_per_worker:g}; the Ray cluster has "
                        f"{have.get('CPU', 0):g} (lower --cpus-per-worker or --data-cpus)")


def run_training(request: TrainRequest | PreparedRun,
                 progress: Reporter | Callable[[str], None] | None = None) -> TrainOutcome:
    """Run a whole schedule as one Ray Train job and record it in MLflow.

    Raises ``UserError`` for bad input (before any run exists). A job that fails after it
    started returns its outcome with ``status == "FAILED"`` (the MLflow run says so and holds
    the cost); ``KeyboardInterrupt`` (and SIGTERM, which ``ray job stop`` sends to a job's
    driver) ends the run FAILED (tagged ``ofa.interrupted``) after recording the cost, and
    propagates.
    """
    from ofa_platform.progress import as_reporter

    prep = request if isinstance(request, PreparedRun) else prepare(request)
    _ensure_ray(prep)
    with _sigterm_as_interrupt():
        return _run_tracked(prep, as_reporter(progress))


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while the job runs (main thread only), so the
    cost is logged and the MLflow run is ended instead of the process just vanishing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _ray_sigint_as_interrupt() -> Iterator[None]:
    """Ctrl-C during ``fit()`` ends as a KeyboardInterrupt, like anywhere else in the job.

    Ray Train V2 installs its own SIGINT handler for the duration of ``fit()``: it aborts
    the controller (which kills the worker group) and then calls ``sys.exit(0)``, so the
    driver would leave with a SystemExit, no ``ofa.interrupted`` tag and no message. Nothing
    else raises SystemExit inside ``fit()`` in this process (the training loop runs in the
    workers, the MLflow callback in the controller), so it is turned back into the interrupt
    it was. Ray leaves its handler installed after ``fit()``, aimed at a dead controller;
    the previous handler is put back.
    """
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    except SystemExit as exc:
        raise KeyboardInterrupt("SIGINT during Ray Train fit()") from exc
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGINT, previous)


def _run_tracked(prep: PreparedRun, progress: Reporter) -> TrainOutcome:
    """The job inside its MLflow run. The job's status is decided once, by
    :func:`_job_status`; a failed job ends its run FAILED (cost logged) and returns, an
    interrupt or an error of the platform's own ends it FAILED and propagates."""
    import mlflow

    from ofa_platform.tracking import tracked_run

    run_id, status = "", "FAILED"
    try:
        with tracked_run(prep.request.experiment, prep.run_name, tags=_tags(prep),
                         params=_params(prep), tracking_uri=prep.tracking_uri,
                         run_id=prep.request.resume_run_id) as run:
            run_id = run.info.run_id
            progress(f"[ofa-train] MLflow run {run_id} ({prep.tracking_uri}); "
                     f"Ray run {prep.run_name}; {prep.schedule.total_epochs} epochs in "
                     f"{len(prep.schedule.phases)} phases on {prep.n_devices} "
                     f"{'GPU' if prep.request.gpus_per_worker else 'CPU worker'}(s)")
            progress(_data_line(prep))
            fit = _fit_and_record(prep, run, progress)
            status = fit.status
            if status == "FAILED":
                progress(f"[ofa-train] job failed: {fit.error}")
                mlflow.end_run(status="FAILED")  # tracked_run keeps a status set here
    finally:
        _close_phase_runs(prep.tracking_uri, run_id, status)
    return TrainOutcome(run_id=run_id, run_name=prep.run_name, status=status,
                        checkpoint_dir=fit.checkpoint_dir, final_metrics=fit.metrics,
                        cost=fit.cost, error=fit.error)


def _data_line(prep: PreparedRun) -> str:
    """The data configuration chosen, said once at the start (a path and its recipe name
    must train alike; this line shows whether they do)."""
    from ofa_platform.datasets import describe_spec

    d = describe_spec(prep.engine.data)
    stem = "small-input stem (stride 1)" if prep.engine.small_input else "ImageNet stem (stride 2)"
    return (f"[ofa-train] data {prep.request.data}: resolutions {d['data_resolutions']}, "
            f"mean {d['data_mean']}, std {d['data_std']}, {stem} ({d['data_recipe']})")


@dataclass(frozen=True)
class _Fit:
    """What ``trainer.fit()`` left: the job's status (:func:`_job_status`), the checkpoint
    of a finished job, the summary metrics and the cost logged."""

    status: str
    error: str | None
    checkpoint_dir: str | None
    metrics: dict[str, float]
    cost: dict[str, float]


def _job_status(error: str | None, checkpoint: Any) -> tuple[str, str | None]:
    """The one place a job's status is decided: FINISHED with a checkpoint and no error."""
    if error is None and checkpoint is None:
        error = "the job ended without a checkpoint"
    return ("FAILED", error) if error else ("FINISHED", None)


def _fit_and_record(prep: PreparedRun, run: Any, progress: Reporter) -> _Fit:
    """Train with the epoch display and the MLflow callback attached."""
    phases = [{"name": p.name, "phase_index": i, "start_epoch": p.start_epoch,
               "end_epoch": p.end_epoch} for i, p in enumerate(prep.schedule.phases)]
    with _epoch_display(progress, prep.schedule.total_epochs) as events:
        callback = MlflowReportCallback(prep.tracking_uri, run.info.run_id,
                                        run.info.experiment_id, phases,
                                        prep.schedule.total_epochs, prep.n_devices, events,
                                        hardware=prep.hardware)
        return _fit(prep, callback, run, progress)


def _trainer(prep: PreparedRun, callback: MlflowReportCallback, run_id: str) -> Any:
    """The Ray Train job: ``workers`` copies of the per-worker loop, checkpoints in
    ``storage_path`` under the run's name (how a resumed run finds them)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from ofa_platform.train.engine import train_loop_per_worker

    r = prep.request
    resources = {"CPU": r.cpus_per_worker}
    if r.gpus_per_worker:
        resources["GPU"] = r.gpus_per_worker
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"engine": replace(prep.engine, mlflow_run_id=run_id),
                           "threads": max(1, int(r.cpus_per_worker))},
        scaling_config=ScalingConfig(num_workers=r.workers, use_gpu=r.gpus_per_worker > 0,
                                     resources_per_worker=resources,
                                     placement_strategy=r.placement_strategy),
        run_config=RunConfig(name=prep.run_name, storage_path=prep.storage_path,
                             failure_config=FailureConfig(max_failures=r.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2),
                             callbacks=[callback]),
    )


def _fit(prep: PreparedRun, callback: MlflowReportCallback, run: Any,
         progress: Reporter) -> _Fit:
    """Run the trainer under the energy meter. The cost is logged whatever happens (an
    interrupt too, which then propagates); a finished job's supernet is logged as the
    ``checkpoint`` artifact."""
    import mlflow

    from ofa_platform.costs import EnergyMeter
    from ofa_platform.train.engine import SUPERNET_FILE

    trainer = _trainer(prep, callback, run.info.run_id)
    meter = EnergyMeter(prep.hardware, prep.n_devices, use_nvml=prep.request.gpus_per_worker > 0)
    meter.start()
    result, error = None, None
    try:
        with _ray_sigint_as_interrupt():
            result = trainer.fit()
        if result.error is not None:
            error = f"{type(result.error).__name__}: {result.error}"
    except Exception as exc:  # noqa: BLE001 - recorded as the job's failure, cost still logged
        error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    finally:
        meter.stop()
        metrics, cost = _log_cost(prep, meter, run.info.run_id, progress)
    checkpoint = result.checkpoint if result is not None else None
    status, error = _job_status(error, checkpoint)
    if status == "FINISHED":
        with checkpoint.as_directory() as d:
            mlflow.log_artifact(os.path.join(d, SUPERNET_FILE), artifact_path="checkpoint")
    return _Fit(status=status, error=error,
                checkpoint_dir=checkpoint.path if status == "FINISHED" else None,
                metrics=metrics, cost=cost)


def _log_cost(prep: PreparedRun, meter: Any, run_id: str,
              progress: Reporter) -> tuple[dict[str, float], dict[str, float]]:
    """Log this attempt's cost plus an interrupted attempt's (a resumed run) and the summary
    metrics; say them in one line. Returns (summary metrics, cost)."""
    import mlflow

    from ofa_platform.tracking import log_cost

    wall = meter.hours * 3600.0  # one clock for the wall time and the device-hours
    report = meter.report()  # device-hours = wall x devices; NVML energy where measured
    prior = dict(prep.prior_cost)  # an interrupted attempt's cost, when this resumes it
    if prior:
        report = type(report)(**{k: v + prior.get(k, 0.0)
                                 for k, v in report.to_dict().items()})
        wall += prior.get("wall_s", 0.0)
    log_cost(report)
    cost = {k: float(getattr(report, k)) for k in
            ("device_hours", "dollars", "energy_kwh", "co2_kg", "co2_lbs")}
    extra = _summary_metrics(prep, run_id)
    extra["wall_s"] = wall
    extra["energy_measured"] = float(meter.source == "nvml")
    mlflow.log_metrics(extra)
    progress(f"[ofa-train] {wall:.1f} s, {report.device_hours:.4f} device-hours, "
             f"${report.dollars:.4f}, {report.energy_kwh:.5f} kWh, "
             f"{report.co2_kg:.5f} kg CO2; full recipe at this speed: "
             f"{extra.get('projected_full_device_hours', float('nan')):.1f} device-hours")
    return extra, cost


def _summary_metrics(prep: PreparedRun, run_id: str) -> dict[str, float]:
    """epochs_run, measured images/s per device (per phase and overall) and the projected
    device-hours of the full recipe, read back from the per-epoch metrics in MLflow (which
    the controller wrote, so they survive worker failures)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(prep.tracking_uri)
    ips = {int(m.step): m.value for m in
           client.get_metric_history(run_id, "images_per_s_per_device")}
    out: dict[str, float] = {"epochs_run": float(len(ips)),
                             "epochs_total": float(prep.schedule.total_epochs)}
    per_phase: dict[str, float] = {}
    for i, p in enumerate(prep.schedule.phases):
        vals = [v for e, v in ips.items() if p.start_epoch < e <= p.end_epoch]
        if vals:
            per_phase[p.name] = statistics.median(vals)
            out[f"images_per_s_per_device_phase{i}"] = per_phase[p.name]
    if ips:
        out["images_per_s_per_device"] = statistics.median(ips.values())
    out["projected_full_device_hours"] = project_device_hours(
        prep.full_schedule, prep.n_train_full, per_phase)
    return out


def _close_phase_runs(tracking_uri: str, parent_id: str, status: str) -> None:
    """End any nested phase run the controller left open (the last phase, or all of them
    when the controller died)."""
    if not parent_id:
        return
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    parent = client.get_run(parent_id)
    for child in client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parent_id}'"):
        if child.info.status == "RUNNING":
            client.set_terminated(child.info.run_id, status)
