"""Run a study: every unit of its protocol, skipping what MLflow says is done.

Each unit is one MLflow run in the study's experiment, tagged ``ofa.study`` and
``ofa.study_unit`` (and ``ofa.study_role``, ``ofa.study_recipe``, ``ofa.study_seed``,
``ofa.study_arch`` for peers). A rerun asks MLflow first: a unit with a FINISHED run is done;
a training unit whose run did not finish (interrupted, or the machine went away) continues
that same run from the last checkpoint Ray Train kept (``TrainRequest.resume_run_id``); a
search or evaluation unit that did not finish runs again (its subnet accuracies are cached).
So a study longer than one sitting is finished across several.

- ``train``: the recipe through :func:`ofa_platform.train.runner.run_training`, per-epoch
  accuracies on the test split (``eval_split="test"``, ``curve_images`` of it); a peer trains
  its arch alone (:func:`peer_schedule`: one phase, the recipe's first phase's optimizer, as
  many epochs as the whole scaled recipe).
- ``search``: the trained supernet searched for MAC targets across its space; subnets are
  scored on the validation split held out of the training rows (what a search may select on).
- ``eval``: the searched and sampled subnets and the space's smallest, middle and largest,
  each BN-recalibrated on training images and scored on the test split (Ray Tune, as a
  search's population): ``test_eval.parquet`` with binomial standard errors.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ofa_platform.progress import Reporter
from ofa_platform.study.protocol import PeerSpec, StudyProtocol, StudyUnit, study_units

__all__ = ["StudyOutcome", "UnitResult", "run_study", "unit_status", "peer_schedule",
           "binomial_se", "TEST_EVAL_FILE"]

TEST_EVAL_FILE = "test_eval.parquet"


@dataclass(frozen=True)
class UnitResult:
    """What happened to one unit in this run: ``done`` (finished before), ``ran``,
    ``resumed`` (a training run continued from its checkpoint) or ``failed``."""

    key: str
    outcome: str
    run_id: str
    seconds: float = 0.0
    error: str = ""


@dataclass
class StudyOutcome:
    experiment: str
    tracking_uri: str
    units: list[UnitResult] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return all(u.outcome != "failed" for u in self.units)

    def to_json(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "tracking_uri": self.tracking_uri,
                "complete": self.complete,
                "units": [vars(u) for u in self.units]}


def binomial_se(p: float, n: int) -> float:
    """Standard error of a top-1 accuracy ``p`` measured on ``n`` images."""
    return math.sqrt(max(p * (1.0 - p), 0.0) / n) if n > 0 else math.nan


# --------------------------------------------------------------------------- MLflow ledger
def study_tags(protocol: StudyProtocol, unit: StudyUnit) -> dict[str, str]:
    """The tags that file a unit's run under its study."""
    tags = {"ofa.study": protocol.name, "ofa.study_unit": unit.key,
            "ofa.study_role": unit.role, "ofa.study_recipe": unit.recipe,
            "ofa.study_seed": str(unit.seed), "ofa.study_scale": protocol.scale,
            "ofa.study_protocol": protocol.digest}
    if unit.peer is not None:
        tags["ofa.study_arch"] = unit.peer.arch
    return tags


def _unit_runs(client: Any, experiment_id: str | None, protocol: StudyProtocol,
               unit: StudyUnit) -> list[Any]:
    """The unit's runs, newest first."""
    if experiment_id is None:
        return []
    return client.search_runs(
        [experiment_id],
        filter_string=(f"tags.`ofa.study` = '{protocol.name}' and "
                       f"tags.`ofa.study_unit` = '{unit.key}' and "
                       f"tags.`ofa.study_scale` = '{protocol.scale}' and "
                       f"tags.`ofa.study_protocol` = '{protocol.digest}'"),
        order_by=["attributes.start_time DESC"])


def unit_status(protocol: StudyProtocol, tracking_uri: str) -> dict[str, tuple[str, str]]:
    """Per unit key: (``done`` | ``interrupted`` | ``todo``, run id) as MLflow has them."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(protocol.experiment_name)
    out: dict[str, tuple[str, str]] = {}
    for unit in study_units(protocol):
        runs = _unit_runs(client, exp.experiment_id if exp else None, protocol, unit)
        done = [r for r in runs if r.info.status == "FINISHED"]
        if done:
            out[unit.key] = ("done", done[0].info.run_id)
        elif runs:
            out[unit.key] = ("interrupted", runs[0].info.run_id)
        else:
            out[unit.key] = ("todo", "")
    return out


# --------------------------------------------------------------------------- peers
def peer_schedule(recipe: Any, epochs: int, peer: PeerSpec) -> dict[str, Any]:
    """A one-phase recipe that trains ``peer.arch`` of ``recipe``'s space alone from scratch:
    ``epochs`` epochs (the whole scaled recipe's), the recipe's optimizer, label smoothing,
    dropout, LR schedule and resolution sampling, and its first phase's LR (what the recipe
    trains its first network with). The supernet restricted to one arch, sampled at its
    maximum, is that static network: the other weights get no gradient."""
    from search_spaces.spaces import get_space

    space = get_space(recipe.space)
    pick = min if peer.arch == "smallest" else max
    kernels = sorted({pick(s.kernels) for s in space.stages})
    restrict: dict[str, Any] = {"depths": [pick(pick(s.depths) for s in space.stages)]}
    if space.compound:
        restrict["compound"] = True
    else:
        restrict["kernels"] = kernels
        restrict["ratios"] = [pick(pick(s.ratios) for s in space.stages)]
    first = recipe.phases[0]
    return {
        "name": f"{recipe.name}_{peer.name.replace('-', '_')}",
        "description": f"{peer.arch} subnet of {recipe.name}'s space trained alone from "
                       f"scratch for {epochs} epochs (the whole scaled recipe), {recipe.name}'s "
                       "optimizer and first-phase LR",
        "space": recipe.space,
        "optimizer": {"type": recipe.optimizer.type, "momentum": recipe.optimizer.momentum,
                      "nesterov": recipe.optimizer.nesterov,
                      "weight_decay": recipe.optimizer.weight_decay,
                      "no_decay_bn_bias": recipe.optimizer.no_decay_bn_bias},
        "label_smoothing": recipe.label_smoothing, "dropout": recipe.dropout,
        "lr_schedule": recipe.lr_schedule, "lr_reference_batch": recipe.lr_reference_batch,
        "resolution_sampling": recipe.resolution_sampling,
        "phases": [{"name": "scratch", "epochs": epochs, "lr": first.lr, "sampling": "max",
                    "restrict": restrict, "init": "scratch"}],
    }


def _write_peer_schedule(protocol: StudyProtocol, peer: PeerSpec, out_dir: Path) -> str:
    import yaml

    from ofa_platform.files import atomic_path
    from ofa_platform.train.schedule import load_schedule

    recipe = load_schedule(peer.recipe)
    epochs = recipe.scaled(protocol.epoch_scale).total_epochs
    data = peer_schedule(recipe, epochs, peer)
    path = out_dir / "schedules" / f"{data['name']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    head = (f"# Generated by `ofa-platform study run` ({protocol.source}): the from-scratch "
            f"peer of {peer.recipe}\n# ({epochs} epochs = {peer.recipe} at epoch scale "
            f"{protocol.epoch_scale:g}). Trained at epoch scale 1.\n")
    with atomic_path(path) as tmp:
        Path(tmp).write_text(head + yaml.safe_dump(data, sort_keys=False))
    load_schedule(path)  # the generated recipe is valid (and its restriction applies)
    return str(path)


# --------------------------------------------------------------------------- the units
@dataclass(frozen=True)
class _Context:
    protocol: StudyProtocol
    tracking_uri: str
    out_dir: Path
    progress: Reporter


def _train(ctx: _Context, unit: StudyUnit, resume: str | None) -> str:
    from ofa_platform.train.runner import TrainRequest, run_training

    p = ctx.protocol
    schedule, scale = unit.recipe, p.epoch_scale
    if unit.peer is not None:
        schedule, scale = _write_peer_schedule(p, unit.peer, ctx.out_dir), 1.0
    request = TrainRequest(
        schedule=schedule, data=p.data, workers=p.workers, cpus_per_worker=p.cpus_per_worker,
        gpus_per_worker=p.gpus_per_worker, epoch_scale=scale, subset=p.subset,
        experiment=p.experiment_name, seed=unit.seed, batch_size=p.batch_size,
        small_input=p.small_input, val_limit=p.curve_images, eval_split="test",
        recal_images=p.recal_images,
        tracking_uri=ctx.tracking_uri, storage_path=str((ctx.out_dir / "ray").resolve()),
        tags=tuple(study_tags(p, unit).items()), resume_run_id=resume,
        run_name=None)
    outcome = run_training(request, progress=ctx.progress)
    if outcome.status != "FINISHED":
        raise _UnitFailed(outcome.run_id, outcome.error or outcome.status)
    return outcome.run_id


def _finished_run(ctx: _Context, kind: str, unit: StudyUnit) -> str:
    """The FINISHED run of ``unit``'s ``kind`` sibling (a search needs the training run):
    one query for that unit alone."""
    from dataclasses import replace

    from mlflow.tracking import MlflowClient

    sibling = replace(unit, kind=kind)
    client = MlflowClient(ctx.tracking_uri)
    exp = client.get_experiment_by_name(ctx.protocol.experiment_name)
    done = [r for r in _unit_runs(client, exp.experiment_id if exp else None, ctx.protocol,
                                  sibling) if r.info.status == "FINISHED"]
    if not done:
        raise _UnitFailed("", f"{sibling.key} has not finished")
    return str(done[0].info.run_id)


def _checkpoint(ctx: _Context, unit: StudyUnit) -> str:
    """The training run's final supernet, fetched from MLflow once."""
    import mlflow

    run_id = _finished_run(ctx, "train", unit)
    dest = ctx.out_dir / "checkpoints" / run_id
    path = dest / "checkpoint" / "supernet.pt"
    if not path.is_file():
        dest.mkdir(parents=True, exist_ok=True)
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="checkpoint",
                                            dst_path=str(dest), tracking_uri=ctx.tracking_uri)
    return str(path)


def _search(ctx: _Context, unit: StudyUnit) -> str:
    from ofa_platform.quickstart import spread_targets
    from ofa_platform.search.runner import SearchRequest, execute, prepare
    from search_spaces.checkpoints import load_supernet

    p, s = ctx.protocol, ctx.protocol.search
    checkpoint = _checkpoint(ctx, unit)
    space = load_supernet(checkpoint)[0].space.name
    request = SearchRequest(
        space=space, targets=(1e12,), latency="macs", strategy=s.strategy,
        checkpoint=checkpoint, data=p.data, seed=unit.seed, workers=p.workers,
        gpus_per_worker=p.gpus_per_worker, population_size=s.population,
        generations=s.generations, n_arch_samples=s.samples, calib_images=s.calib_images,
        calib_batch=min(200, s.calib_images), val_subset=s.val_images, subset=p.subset,
        experiment=p.experiment_name, tracking_uri=ctx.tracking_uri,
        out_dir=str(ctx.out_dir / "search" / unit.subject / f"seed{unit.seed}"),
        cache_dir=str(ctx.out_dir / "cache"),  # method and training run: from the checkpoint
        tags=tuple(study_tags(p, unit).items()))
    prepared = prepare(request)
    largest = float(prepared.efficiency(prepared.codec.extreme(largest=True))[0])
    prepared = prepared.with_targets(spread_targets(prepared.smallest_cost, largest, s.targets))
    found = execute(prepared, ctx.progress)
    return found.run_id or ""


def _eval_archs(ctx: _Context, unit: StudyUnit, supernet: Any) -> list[tuple[str, str, Any]]:
    """(source, name, arch) of every subnet scored on the test split: the space's ends and
    middle (a peer: its own arch), then the search's sampled and found subnets."""
    import json

    import mlflow
    import pandas as pd

    from ofa_platform.datasets import parse_data_spec
    from ofa_platform.train.engine import eval_archs
    from search_spaces.arch import arch_from_dict

    space = supernet.space.with_resolutions(parse_data_spec(ctx.protocol.data).resolutions
                                            or supernet.space.resolutions)
    ends = eval_archs(space)
    if unit.peer is not None:
        return [("extreme", unit.peer.arch, ends[unit.peer.arch])]
    out = [("extreme", name, arch) for name, arch in ends.items()]
    search_id = _finished_run(ctx, "search", unit)
    local = mlflow.artifacts.download_artifacts(
        run_id=search_id, artifact_path="subnets.parquet", tracking_uri=ctx.tracking_uri,
        dst_path=str(ctx.out_dir / "search" / unit.subject / f"seed{unit.seed}" / search_id))
    rows = pd.read_parquet(local)
    seen = {arch.key for _, _, arch in out}
    for source, text in zip(rows["source"], rows["arch_json"], strict=True):
        arch = arch_from_dict(json.loads(text))
        if arch.key not in seen:
            seen.add(arch.key)
            out.append((str(source), "", arch))
    return out


def _evaluate(ctx: _Context, unit: StudyUnit) -> str:
    """Score the unit's subnets (sampled, searched, the space's ends) on the whole test
    split through Ray Tune, priced on the hardware its training ran on; its MLflow run id."""
    from mlflow.tracking import MlflowClient

    from ofa_platform.costs import EnergyMeter, load_hardware
    from ofa_platform.search.cache import JsonMemo, accuracy_cache_path
    from ofa_platform.search.population import EvalSetup, PopulationEvaluator
    from ofa_platform.tracking import log_cost, tracked_run
    from search_spaces.checkpoints import load_supernet

    p = ctx.protocol
    checkpoint = _checkpoint(ctx, unit)
    supernet = load_supernet(checkpoint)[0]
    setup = EvalSetup(data=p.data, calib_images=p.recal_images,
                      calib_batch=min(200, p.recal_images), eval_batch=200,
                      val_subset=p.test_images, seed=unit.seed, split="test", subset=p.subset)
    archs = _eval_archs(ctx, unit, supernet)
    train_id = _finished_run(ctx, "train", unit)
    trained_on = MlflowClient(ctx.tracking_uri).get_run(train_id).data.tags
    hardware = load_hardware(trained_on.get("ofa.hardware", "cpu"))  # priced as training is
    tags = {"ofa.kind": "study_eval", "ofa.space": supernet.space.name,
            "ofa.train_run_id": train_id, "ofa.hardware": hardware.name, **study_tags(p, unit)}
    with tracked_run(p.experiment_name, f"eval-{unit.subject}-seed{unit.seed}", tags=tags,
                     params={"subnets": len(archs), "split": "test", "data": p.data,
                             "recal_images": p.recal_images},
                     tracking_uri=ctx.tracking_uri) as run:
        meter = EnergyMeter(hardware, p.workers, use_nvml=p.gpus_per_worker > 0)
        meter.start()
        cache = JsonMemo(accuracy_cache_path(ctx.out_dir / "cache", supernet, setup.key()))
        evaluator = PopulationEvaluator(supernet, setup, workers=p.workers,
                                        gpus_per_worker=p.gpus_per_worker, cache=cache,
                                        storage_dir=ctx.out_dir / "cache" / "tune")
        ctx.progress(f"[study] {unit.key}: {len(archs)} subnets on the test split")
        top1 = evaluator.evaluate([a for _, _, a in archs])
        meter.stop()
        _log_test_eval(ctx, run.info.run_id, supernet, archs, top1)
        log_cost(meter.report())
    return run.info.run_id


def _log_test_eval(ctx: _Context, run_id: str, supernet: Any,
                   archs: list[tuple[str, str, Any]], top1: list[float]) -> None:
    """``test_eval.parquet`` (one row a subnet: MACs, params, top-1 with its binomial SE) as
    an artifact of the active eval run, and the ends' accuracies as its metrics."""
    import mlflow
    import pandas as pd

    from ofa_platform.datasets import test_split_rows
    from search_spaces.flops import count_macs_params

    n = test_split_rows(ctx.protocol.data, ctx.protocol.test_images)
    rows = []
    for (source, name, arch), acc in zip(archs, top1, strict=True):
        macs, params = count_macs_params(supernet.plan, arch)
        rows.append({"source": source, "name": name, "arch_json": arch.to_json(),
                     "macs": float(macs), "params": float(params), "top1": float(acc),
                     "n": n, "se": binomial_se(float(acc), n)})
    path = ctx.out_dir / "eval" / run_id / TEST_EVAL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path, index=False)
    mlflow.log_artifact(str(path))
    ends = {r["name"]: r["top1"] for r in rows if r["source"] == "extreme"}
    mlflow.log_metrics({f"test_acc_{k}": v for k, v in ends.items()}
                       | {"test_images": float(n), "subnets": float(len(rows))})


def _run_unit(ctx: _Context, unit: StudyUnit, resume: str | None) -> str:
    """Run one unit; its MLflow run id."""
    if unit.kind == "train":
        return _train(ctx, unit, resume)
    return _search(ctx, unit) if unit.kind == "search" else _evaluate(ctx, unit)


class _UnitFailed(Exception):
    def __init__(self, run_id: str, error: str) -> None:
        super().__init__(error)
        self.run_id = run_id


# --------------------------------------------------------------------------- the study
def check_study(protocol: StudyProtocol) -> None:
    """What can be checked before anything starts: the data has a test split, every recipe
    and peer recipe prepares (a peer's restriction applies to its space)."""
    from ofa_platform.datasets import load_test_split, parse_data_spec

    load_test_split(parse_data_spec(protocol.data), 1)
    from ofa_platform.train.schedule import load_schedule
    from search_spaces.spaces import get_space

    for recipe in protocol.recipes:
        schedule = load_schedule(recipe)
        schedule.phase_spaces(get_space(schedule.space))
    for peer in protocol.peers:
        recipe = load_schedule(peer.recipe)
        from ofa_platform.train.schedule import parse_schedule

        data = peer_schedule(recipe, 1, peer)
        parsed = parse_schedule(data, name=data["name"], source=f"peer {peer.name}")
        parsed.phase_spaces(get_space(parsed.space))


def run_study(protocol: StudyProtocol, *, tracking_uri: str | None = None,
              out_dir: str | Path | None = None,
              progress: Reporter | Callable[[str], None] | None = None,
              stop_on_failure: bool = True) -> StudyOutcome:
    """Work through the protocol's units, skipping the finished ones (see the module
    docstring). A failed unit ends the run unless ``stop_on_failure`` is off (later units
    of the same recipe need it anyway); the outcome says what happened to each unit."""
    from ofa_platform.cluster import init_ray
    from ofa_platform.progress import as_reporter
    from ofa_platform.tracking import resolve_tracking_uri

    reporter = as_reporter(progress)
    uri = resolve_tracking_uri(tracking_uri)
    check_study(protocol)
    out = Path(out_dir or Path("runs") / protocol.experiment_name).resolve()
    out.mkdir(parents=True, exist_ok=True)
    ctx = _Context(protocol, uri, out, reporter)
    outcome = StudyOutcome(protocol.experiment_name, uri)
    units = study_units(protocol)
    status = unit_status(protocol, uri)
    init_ray(num_cpus=None)
    reporter.task("study", f"study {protocol.name}", total=len(units), unit="units")
    for i, unit in enumerate(units):
        state, run_id = status[unit.key]
        reporter.update("study", i, unit.key)
        if state == "done":
            reporter(f"[study] {unit.key}: done before (run {run_id})")
            outcome.units.append(UnitResult(unit.key, "done", run_id))
            continue
        resume = run_id if state == "interrupted" and unit.kind == "train" else None
        reporter(f"[study] unit {i + 1}/{len(units)}: {unit.key}"
                 + (f" (resuming run {resume})" if resume else ""))
        t0 = time.perf_counter()
        try:
            run = _run_unit(ctx, unit, resume)
        except _UnitFailed as exc:
            outcome.units.append(UnitResult(unit.key, "failed", exc.run_id,
                                            time.perf_counter() - t0, str(exc)))
            reporter(f"[study] {unit.key} failed: {exc}")
            if stop_on_failure:
                break
            continue
        outcome.units.append(UnitResult(unit.key, "resumed" if resume else "ran", run,
                                        time.perf_counter() - t0))
    reporter.update("study", len(units), "done")
    reporter.done("study")
    return outcome


def study_budget_line(protocol: StudyProtocol) -> str:
    """What the protocol asks for, in one line (epochs per recipe at its scale)."""
    from ofa_platform.train.schedule import load_schedule

    parts = [f"{r} {load_schedule(r).scaled(protocol.epoch_scale).total_epochs} epochs"
             for r in protocol.recipes]
    return (f"{protocol.name} ({protocol.scale}): {', '.join(parts)}; "
            f"{len(protocol.seeds)} seed(s), {len(protocol.peers)} peer(s), "
            f"subset {protocol.subset or 'all'}")

