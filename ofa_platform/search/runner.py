"""One search job, end to end: validate, build the estimators, search, record, export.

Everything a user can get wrong (space, resolutions, targets, latency source, predictor,
checkpoint) is checked in :func:`prepare` before an MLflow run is started, so a bad command
leaves no run and no files behind. :func:`execute` runs the strategy inside a tracked run
that ends FINISHED or FAILED, meters the search's own cost, and writes the Pareto table.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ofa_platform.errors import UserError
from ofa_platform.search.evolution import EvolutionConfig, Fitness, SearchResult
from ofa_platform.search.genes import GeneCodec
from ofa_platform.search.resnet_genes import ResNetGeneCodec, make_codec, resnet_macs_estimator
from search_spaces.arch import ArchConfig
from search_spaces.blueprint import NetworkPlan, network_plan
from search_spaces.space import SearchSpace, parse_resolutions

__all__ = ["SearchRequest", "Prepared", "SearchOutcome", "prepare", "execute", "run_search",
           "parse_targets", "LATENCY_CHOICES"]

LATENCY_CHOICES = "lut:DIR | measured:cpu | measured:cuda | macs"


@dataclass
class SearchRequest:
    """The knobs of ``ofa-platform search`` (and of a ``jobs/search.py`` YAML config)."""

    space: str
    targets: Sequence[float]
    latency: str
    strategy: str = "vanilla"
    width_mult: float = 1.0
    predictor: str | None = None
    checkpoint: str | None = None
    resolutions: str | None = None
    workers: int = 1
    export: str | None = None
    seed: int = 0
    generations: int = 500
    population_size: int = 100
    data: str | None = None
    experiment: str = "search"
    tracking_uri: str | None = None
    out_dir: str = "runs/search"
    cache_dir: str = ".ofa_cache"
    batch_size: int | None = None
    hardware: str = "cpu"
    method: str | None = None
    n_arch_samples: int = 1000
    n_population_rows: int = 200
    calib_images: int = 2000
    calib_batch: int = 200
    eval_batch: int = 200
    val_subset: int | None = None
    gpus_per_worker: float = 0.0
    log_mlflow: bool = True
    log_models: bool = False
    measure_warmup: int = 5
    measure_repeats: int = 20
    measure_threads: int | None = None  # None: 1 on a small machine (latency.default_threads)


@dataclass
class Prepared:
    request: SearchRequest
    space: SearchSpace
    codec: GeneCodec
    plan: NetworkPlan
    fitness: Fitness
    config: EvolutionConfig
    estimator_name: str
    supernet: Any = None
    predictor_metrics: dict[str, float] = field(default_factory=dict)
    train_run_id: str | None = None
    prep_seconds: float = 0.0
    meter: Any = None


@dataclass
class SearchOutcome:
    results: list[SearchResult]
    rows: list[dict[str, Any]]
    pareto_path: Path
    population_path: Path
    run_id: str | None
    search_time_s: float
    evaluations: int
    exported: list[Path]
    unit: str
    estimator: str
    predictor_metrics: dict[str, float]
    measurements: int = 0
    noisy_latencies: int = 0  # measured layers whose timing stayed noisy (machine busy)


def parse_targets(text: str | Sequence[float]) -> tuple[float, ...]:
    """``"15,20,25"`` -> (15.0, 20.0, 25.0); every target must be a positive number."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        try:
            value = float(item)
        except (TypeError, ValueError):
            raise UserError(f"targets: {item!r} is not a number") from None
        if not 0 < value < float("inf"):  # NaN and inf are no target either
            raise UserError(f"targets: {value:g} is not a positive finite number")
        out.append(value)
    if not out:
        raise UserError("targets: none given")
    return tuple(out)


def _space(req: SearchRequest, space: SearchSpace | None = None
           ) -> tuple[SearchSpace, tuple[int, ...]]:
    """The space (a checkpoint's own, e.g. with CIFAR resolutions, when given) and the
    resolutions to search."""
    from search_spaces.spaces import UnknownSpaceError, get_space

    if space is None:
        try:
            space = get_space(req.space)
        except UnknownSpaceError as exc:
            raise UserError(str(exc)) from None
    if req.resolutions:
        try:
            res = parse_resolutions(req.resolutions)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        bad = [r for r in res if r not in space.resolutions]
        if bad or not res:
            lo, hi = space.resolutions[0], space.resolutions[-1]
            raise UserError(f"resolutions {list(bad) or req.resolutions} are not in space "
                            f"{space.name} ({lo}..{hi} step 4)")
    else:
        res = space.resolutions
    return space, tuple(res)


def _load_checkpoint(path: str, space: str, width_mult: float) -> tuple[Any, dict[str, Any]]:
    if not Path(path).is_file():
        raise UserError(f"checkpoint {path} does not exist")
    from search_spaces.checkpoints import load_any_checkpoint, load_supernet

    try:
        supernet, extra = load_supernet(path)
    except UserError as exc:
        if "OFA file" not in str(exc):
            raise
        # an OFA/CompOFA-published checkpoint: its layout names no space, the request does
        supernet, extra = load_any_checkpoint(path, space=space, width_mult=width_mult), {}
    return supernet, dict(extra or {})


def _efficiency(req: SearchRequest, codec: GeneCodec, plan: NetworkPlan,
                model_source: Callable[[], Any]) -> Any:
    from ofa_platform.search import latency

    spec = req.latency
    if spec == "macs":
        if isinstance(codec, ResNetGeneCodec):  # not additive per slot: its own tables
            return resnet_macs_estimator(codec, plan)  # type: ignore[arg-type]
        return latency.macs_estimator(codec, plan)
    if spec.startswith("lut:") and isinstance(codec, ResNetGeneCodec):
        raise UserError(f"--latency {spec}: OFA's lookup tables describe MobileNet layers; "
                        f"space {codec.space.name} takes macs or measured:cpu|cuda")
    if spec.startswith("lut:"):
        return latency.lut_estimator(codec, plan, spec[4:])
    if spec in ("measured:cpu", "measured:cuda"):
        device = spec.split(":")[1]
        if device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise UserError("--latency measured:cuda: no CUDA device on this machine")
        batch = req.batch_size or (64 if device == "cuda" else 1)
        memo = latency.LatencyMemo(Path(req.cache_dir) / "latency_layers.json")
        policy = latency.MeasurePolicy(warmup=req.measure_warmup, repeats=req.measure_repeats,
                                       threads=req.measure_threads)
        if isinstance(codec, ResNetGeneCodec):  # widths: not additive per slot, whole subnets
            tag = f"resnet-w{getattr(plan, 'width_mult', 1):g}-c{getattr(plan, 'n_classes', 0)}"
            return latency.MeasuredSubnetLatency(codec, model_source().extract, model_tag=tag,
                                                 memo=memo, device=device, batch_size=batch,
                                                 policy=policy)
        return latency.MeasuredLatency(codec, plan, memo=memo, device=device, batch_size=batch,
                                       policy=policy)
    raise UserError(f"--latency {spec!r}: expected {LATENCY_CHOICES}")


def prepare(req: SearchRequest) -> Prepared:
    """Check the request and build what the search needs; raises :class:`UserError`."""
    from ofa_platform.search.predictor import load_predictor
    from ofa_platform.search.strategies import STRATEGIES

    t0 = time.perf_counter()
    meter = _meter(req)  # the search's own cost starts with subnet evaluation, not after it
    targets = parse_targets(req.targets)
    req.targets = targets
    if req.strategy not in STRATEGIES:
        raise UserError(f"unknown strategy {req.strategy!r}; choose from {', '.join(STRATEGIES)}")
    if (req.predictor is None) == (req.checkpoint is None):
        raise UserError("give exactly one of --predictor PATH and --checkpoint PATH")
    if req.workers < 1 or req.generations < 1 or req.population_size < 4:
        raise UserError("workers and generations must be >= 1 and population size >= 4")
    space, resolutions = _space(req)
    supernet, extra = None, {}
    if req.checkpoint:
        supernet, extra = _load_checkpoint(req.checkpoint, req.space, req.width_mult)
        if supernet.space.name != space.name:
            raise UserError(f"checkpoint {req.checkpoint} holds a {supernet.space.name} "
                            f"supernet, not {space.name}")
        space, resolutions = _space(req, supernet.space)
        if req.method is None and isinstance(extra.get("method"), str):
            req.method = extra["method"]  # the training schedule: training + search cost
        plan = supernet.plan
    else:
        try:
            plan = network_plan(space.family, req.width_mult)
        except ValueError as exc:  # e.g. a width multiplier ResNet50D does not have
            raise UserError(f"--width-mult: {exc}") from None
    codec = make_codec(space, resolutions)

    def model_source() -> Any:
        if supernet is not None:
            return supernet
        from search_spaces.registry import create_supernet

        return create_supernet(space, width_mult=req.width_mult)

    eff = _efficiency(req, codec, plan, model_source)
    unit = getattr(eff, "unit", "ms")
    prepared = Prepared(request=req, space=space, codec=codec, plan=plan,
                        fitness=Fitness(codec, accuracy=_no_accuracy, efficiency=eff,
                                        unit=unit),
                        config=EvolutionConfig(population_size=req.population_size,
                                               generations=req.generations),
                        estimator_name=getattr(eff, "name", req.latency), supernet=supernet,
                        train_run_id=extra.get("mlflow_run_id") or extra.get("run_id"),
                        meter=meter)
    smallest = prepared.fitness.smallest_cost()
    low = [t for t in targets if t < smallest]
    if low:
        raise UserError(f"target {min(low):g} {unit} is infeasible: the smallest subnet of "
                        f"{space.name} at r={resolutions[0]} costs {smallest:.3f} {unit} "
                        f"({prepared.estimator_name})")
    if req.predictor:
        predictor = load_predictor(req.predictor, codec)
        prepared.fitness.accuracy = lambda genes: predictor(codec, genes)
    else:
        _train_predictor_from_checkpoint(prepared)
    prepared.prep_seconds = time.perf_counter() - t0
    return prepared


def _no_accuracy(genes: np.ndarray) -> np.ndarray:
    raise RuntimeError("accuracy is not set up yet")


def _train_predictor_from_checkpoint(prepared: Prepared) -> None:
    """OFA's recipe on our supernet: evaluate sampled subnets (Ray Tune), fit the MLP."""
    from ofa_platform.search.population import PopulationEvaluator
    from ofa_platform.search.predictor import single_thread, train_predictor

    req = prepared.request
    if not req.data:
        raise UserError("--checkpoint needs --data SPEC to evaluate subnets")
    codec = prepared.codec
    rng = random.Random(req.seed)
    space = codec.space.with_resolutions(codec.resolutions)
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(req.n_arch_samples)))
    evaluator = PopulationEvaluator.from_request(prepared)
    accs = evaluator.evaluate(archs)
    prepared.sampled_subnets = list(zip(archs, accs))  # type: ignore[attr-defined]
    with single_thread():  # a small MLP: one thread is fastest on a busy machine
        predictor, metrics = train_predictor(codec, archs, accs, seed=req.seed)
    prepared.predictor_metrics = metrics
    prepared.fitness.accuracy = lambda genes: predictor(codec, genes)
    prepared.evaluator = evaluator  # type: ignore[attr-defined]
    prepared.trained_predictor = predictor  # type: ignore[attr-defined]


def execute(prepared: Prepared) -> SearchOutcome:
    """Run the strategy inside an MLflow search run (never left RUNNING) and write outputs."""
    from ofa_platform.search.pareto import PARETO_COLUMNS, pareto_rows, write_parquet
    from ofa_platform.search.predictor import single_thread
    from ofa_platform.search.strategies import run_strategy

    req, codec, fitness = prepared.request, prepared.codec, prepared.fitness
    out_dir = Path(req.out_dir)
    meter = prepared.meter or _meter(req)
    t0 = time.perf_counter()
    with single_thread():
        results = run_strategy(req.strategy, fitness, req.targets, seed=req.seed,
                               config=prepared.config, workers=req.workers)
    search_time = time.perf_counter() - t0
    measured: dict[str, float] = {}
    evaluator = getattr(prepared, "evaluator", None)
    if evaluator is not None:
        chosen = [r.arch for r in results if r.arch is not None]
        measured = dict(zip((a.key for a in chosen), evaluator.evaluate(chosen)))
    rows = pareto_rows(results, prepared.plan, measured)
    pop_rows = _population_rows(fitness, req.seed, req.n_population_rows)
    pareto_path = write_parquet(rows, out_dir / "pareto.parquet", PARETO_COLUMNS)
    population_path = write_parquet(pop_rows, out_dir / "population.parquet",
                                    ("arch_json", "cost", "unit", "accuracy"))
    artifacts = [pareto_path, population_path]
    from ofa_platform.search.records import write_subnets

    subnets_path = write_subnets(prepared, rows, out_dir / "subnets.parquet")
    if subnets_path is not None:  # measured subnets: the report's equal-cost fronts
        artifacts.append(subnets_path)
    if evaluator is not None and evaluator.trial_rows:  # every Tune trial, for MLflow
        artifacts.append(write_parquet(evaluator.trial_rows, out_dir / "tune_trials.parquet"))
    trained = getattr(prepared, "trained_predictor", None)
    if trained is not None:  # reusable with --predictor for later searches of this checkpoint
        artifacts.append(trained.save(out_dir / "predictor.pth", prepared.predictor_metrics))
    exported: list[Path] = []
    if req.export:
        from ofa_platform.search.pareto import export_subnets

        supernet = prepared.supernet
        if supernet is None:
            from search_spaces.registry import create_supernet

            supernet = create_supernet(codec.space, width_mult=req.width_mult)
        exported = export_subnets(results, supernet, req.export, fitness.unit)
    meter.stop()
    run_id = None
    if req.log_mlflow:
        run_id = _log_run(prepared, results, search_time, meter, artifacts, pareto=rows)
    return SearchOutcome(results=results, rows=rows, pareto_path=pareto_path,
                         population_path=population_path, run_id=run_id,
                         search_time_s=search_time, evaluations=fitness.evaluations,
                         exported=exported, unit=fitness.unit,
                         estimator=prepared.estimator_name,
                         predictor_metrics=prepared.predictor_metrics,
                         measurements=int(getattr(fitness.efficiency, "measurements", 0)),
                         noisy_latencies=int(getattr(fitness.efficiency, "noisy", 0)))


def _meter(req: SearchRequest) -> Any:
    from ofa_platform.costs import EnergyMeter, load_hardware

    hw = load_hardware(req.hardware)
    return EnergyMeter(hw, devices=req.workers).start()


def _population_rows(fitness: Fitness, seed: int, n: int) -> list[dict[str, Any]]:
    """Random subnets with their cost and accuracy: the cloud a Pareto front is drawn over."""
    if n <= 0:
        return []
    genes = fitness.codec.random(np.random.default_rng([seed, 7919]), n)
    cost = np.asarray(fitness.efficiency(genes), dtype=np.float64)
    acc = fitness.score(genes)
    return [{"arch_json": a.to_json(), "cost": float(c), "unit": fitness.unit,
             "accuracy": float(y)}
            for a, c, y in zip(fitness.codec.decode(genes), cost, acc)]


def _method(prepared: Prepared) -> str:
    req = prepared.request
    if req.method:
        return req.method
    return prepared.space.name.split("_")[0]


def _log_run(prepared: Prepared, results: list[SearchResult], search_time: float, meter: Any,
             artifacts: list[Path], pareto: Sequence[dict[str, Any]] = ()) -> str:
    import mlflow

    from ofa_platform.tracking import log_cost, tracked_run

    req = prepared.request
    tags = {"ofa.kind": "search", "ofa.method": _method(prepared), "ofa.space": req.space,
            "ofa.hardware": prepared.estimator_name, "ofa.strategy": req.strategy}
    if prepared.train_run_id:
        tags["ofa.train_run_id"] = str(prepared.train_run_id)
    params = {"space": req.space, "estimator": req.latency, "strategy": req.strategy,
              "targets": ",".join(f"{t:g}" for t in req.targets), "seed": req.seed,
              "width_mult": req.width_mult, "resolutions": ",".join(map(str,
                                                                       prepared.codec.resolutions)),
              "generations": req.generations, "population_size": req.population_size,
              "accuracy_source": "predictor" if req.predictor else "checkpoint"}
    from ofa_platform.search.records import space_params

    params.update(space_params(prepared.codec.space, prepared.plan, prepared.codec.resolutions))
    name = f"search-{req.space}-{req.strategy}-{int(time.time())}"
    with tracked_run(req.experiment, name, tags=tags, params=params,
                     tracking_uri=req.tracking_uri) as run:
        metrics = {"search_time_s": search_time, "prepare_time_s": prepared.prep_seconds,
                   "search_time_per_target_s": search_time / max(1, len(results)),
                   "evaluations": float(prepared.fitness.evaluations),
                   "feasible_targets": float(sum(r.feasible for r in results))}
        metrics.update({f"predictor_{k}": v for k, v in prepared.predictor_metrics.items()
                        if v == v})
        metrics.update(_latency_metrics(prepared.fitness.efficiency))
        if "latency_noisy_layers" in metrics:
            mlflow.set_tag("ofa.latency_noisy", str(metrics["latency_noisy_layers"] > 0).lower())
        evaluator = getattr(prepared, "evaluator", None)
        if evaluator is not None:
            rows = evaluator.trial_rows
            metrics.update(
                tune_trials=float(evaluator.trials_run),
                tune_failed_trials=float(sum(r["status"] != "OK" for r in rows)),
                subnets_evaluated=float(evaluator.evaluated),
                subnet_eval_s=float(np.nansum([r["eval_s"] for r in rows])))
        mlflow.log_metrics(metrics)
        log_cost(meter.report())
        for path in artifacts:
            mlflow.log_artifact(str(path))
        if req.log_models:
            from ofa_platform.search.models import log_models

            log_models(pareto, prepared.supernet, data=str(req.data), seed=req.seed,
                       calib_images=req.calib_images, calib_batch=req.calib_batch,
                       hardware=prepared.estimator_name)
        return run.info.run_id


def _latency_metrics(estimator: Any) -> dict[str, float]:
    """Measured latency: layers measured, seconds spent, and how many stayed noisy."""
    from ofa_platform.search.latency import MeasuredLatency, MeasuredSubnetLatency

    if not isinstance(estimator, (MeasuredLatency, MeasuredSubnetLatency)):
        return {}
    return {"latency_layers_measured": float(estimator.measurements),
            "latency_measure_s": estimator.measured_s,
            "latency_noisy_layers": float(estimator.noisy)}


def run_search(req: SearchRequest) -> SearchOutcome:
    return execute(prepare(req))


def archs_of(results: Sequence[SearchResult]) -> list[ArchConfig]:
    return [r.arch for r in results if r.arch is not None]
