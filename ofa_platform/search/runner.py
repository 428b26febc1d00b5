"""One search job, end to end: validate, build the estimators, search, record, export.

Everything a user can get wrong (space, resolutions, targets, latency source, predictor,
checkpoint, data spec) is checked in :func:`prepare` before an MLflow run is started, so a bad
command leaves no run and no files behind. :func:`prepare` returns a frozen :class:`Prepared`
value and never changes the request it was given. :func:`execute` opens the MLflow search run
when the work starts (so the run's duration is the work: subnet evaluation for a checkpoint's
predictor, the search, the final measurements), runs the strategy, meters the search's own
cost, writes the Pareto table, and ends the run FINISHED or FAILED.

Which method a search is filed under (``ofa.method``) and which training run it searched
(``ofa.train_run_id``) come from the checkpoint (``extra["method"]`` and
``extra["mlflow_run_id"]``, written by training), unless ``--method``/``--train-run-id`` say
otherwise; a published file or a predictor search falls back to the space's prefix.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ofa_platform.errors import UserError
from ofa_platform.progress import Reporter
from ofa_platform.search.evolution import EvolutionConfig, Fitness, SearchResult
from ofa_platform.search.genes import GeneCodec
from ofa_platform.search.request import LATENCY_CHOICES, SearchRequest, parse_targets
from ofa_platform.search.resnet_genes import ResNetGeneCodec, make_codec, resnet_macs_estimator
from search_spaces.blueprint import NetworkPlan, network_plan
from search_spaces.space import SearchSpace, parse_resolutions

if TYPE_CHECKING:
    from ofa_platform.costs import EnergyMeter, HardwareSpec
    from ofa_platform.search.population import PopulationEvaluator
    from ofa_platform.search.predictor import AccuracyPredictor
    from search_spaces.arch import ArchConfig
    from search_spaces.supernet import Supernet

__all__ = ["SearchRequest", "Prepared", "SearchOutcome", "prepare", "execute", "run_search",
           "parse_targets", "LATENCY_CHOICES"]

Scorer = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Prepared:
    """A checked search, ready to run: built in one pass by :func:`prepare`.

    ``request`` is the caller's request with its targets parsed (a new value: requests are
    frozen). ``predictor`` is the accuracy predictor given with ``--predictor``; without one
    (a ``--checkpoint`` search) :func:`execute` evaluates subnets of ``supernet`` and fits a
    predictor inside the search run, because that is the search's main work. ``method`` and
    ``train_run_id`` are what the MLflow run is filed under; ``hardware`` prices the search's
    own device time."""

    request: SearchRequest
    space: SearchSpace
    codec: GeneCodec
    plan: NetworkPlan
    efficiency: Scorer
    unit: str
    estimator_name: str
    smallest_cost: float
    config: EvolutionConfig
    method: str
    train_run_id: str | None
    hardware: HardwareSpec
    supernet: Supernet | None = None
    predictor: AccuracyPredictor | None = None
    prep_seconds: float = 0.0

    @property
    def targets(self) -> tuple[float, ...]:
        return tuple(self.request.targets)

    def with_targets(self, targets: Sequence[float]) -> Prepared:
        """The same search for other targets (checked like the request's)."""
        parsed = parse_targets(targets)
        _check_feasible(parsed, self.smallest_cost, self.unit, self.space.name,
                        self.codec.resolutions[0], self.estimator_name)
        return replace(self, request=replace(self.request, targets=parsed))


@dataclass(frozen=True)
class _Accuracy:
    """Where a search's accuracy comes from: the scorer, and for a checkpoint search the
    predictor fitted inside the run, its held-out metrics and the evaluator (which measures
    the chosen subnets afterwards)."""

    scorer: Scorer
    trained: AccuracyPredictor | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    evaluator: PopulationEvaluator | None = None
    sampled: tuple[tuple[ArchConfig, float], ...] = ()  # the subnets measured to fit it


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


def _named_space(name: str) -> SearchSpace:
    from search_spaces.spaces import UnknownSpaceError, get_space

    try:
        return get_space(name)
    except UnknownSpaceError as exc:
        raise UserError(str(exc)) from None


def _resolutions(req: SearchRequest, space: SearchSpace) -> tuple[int, ...]:
    """The resolutions to search: ``--resolutions`` (each one in ``space``, which is a
    checkpoint's own space, e.g. with CIFAR resolutions, when searching a checkpoint), else all
    of the space's."""
    if not req.resolutions:
        return tuple(space.resolutions)
    try:
        res = parse_resolutions(req.resolutions)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    bad = [r for r in res if r not in space.resolutions]
    if bad or not res:
        lo, hi = space.resolutions[0], space.resolutions[-1]
        raise UserError(f"resolutions {list(bad) or req.resolutions} are not in space "
                        f"{space.name} ({lo}..{hi} step 4)")
    return tuple(res)


def _load_checkpoint(path: str, space: str, width_mult: float | None
                     ) -> tuple[Supernet, dict[str, Any]]:
    """The supernet and its training metadata. Whether the file is ours or an OFA/CompOFA
    file is read from its content (our files carry a format marker; OFA's layout names no space,
    so the request's space and width decide)."""
    if not Path(path).is_file():
        raise UserError(f"checkpoint {path} does not exist")
    from search_spaces.checkpoints import load_checkpoint

    loaded = load_checkpoint(path, space=space, width_mult=width_mult)
    return loaded.supernet, dict(loaded.extra)


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
        return latency.lut_estimator(codec, plan, spec[4:], cache_dir=req.cache_dir)
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
    """Check the request and build what the search needs; raises :class:`UserError`. The
    request is not modified."""
    from ofa_platform.costs import load_hardware
    from ofa_platform.search.strategies import STRATEGIES, default_generations

    t0 = time.perf_counter()
    targets = parse_targets(req.targets)
    _check_knobs(req, STRATEGIES)
    hardware = load_hardware(req.hardware)
    space, plan, supernet, extra = _source(req)
    resolutions = _resolutions(req, space)
    codec = make_codec(space, resolutions)

    def model_source() -> Any:
        if supernet is not None:
            return supernet
        from search_spaces.registry import create_supernet

        return create_supernet(space, width_mult=plan.width_mult)

    eff = _efficiency(req, codec, plan, model_source)
    unit = str(getattr(eff, "unit", "ms"))
    name = str(getattr(eff, "name", req.latency))
    smallest = float(eff(codec.extreme(largest=False))[0])
    _check_feasible(targets, smallest, unit, space.name, resolutions[0], name)
    predictor = None
    if req.predictor:
        from ofa_platform.search.predictor import load_predictor

        predictor = load_predictor(req.predictor, codec)
    generations = req.generations or default_generations(space.name)
    return Prepared(
        request=replace(req, targets=targets), space=space, codec=codec,
        plan=plan, efficiency=eff, unit=unit, estimator_name=name, smallest_cost=smallest,
        config=EvolutionConfig(population_size=req.population_size, generations=generations),
        method=_method(req, extra, space.name), train_run_id=_train_run_id(req, extra),
        hardware=hardware, supernet=supernet, predictor=predictor,
        prep_seconds=time.perf_counter() - t0)


def _check_knobs(req: SearchRequest, strategies: Sequence[str]) -> None:
    if req.strategy not in strategies:
        raise UserError(f"unknown strategy {req.strategy!r}; choose from {', '.join(strategies)}")
    if (req.predictor is None) == (req.checkpoint is None):
        raise UserError("give exactly one of --predictor PATH and --checkpoint PATH")
    if (req.workers < 1 or (req.generations is not None and req.generations < 1)
            or (req.followup_generations is not None and req.followup_generations < 1)
            or req.population_size < 4):
        raise UserError("workers and generations must be >= 1 and population size >= 4")
    from ofa_platform.search.predictor import MIN_PREDICTOR_ARCHS

    if req.checkpoint is not None and req.n_arch_samples < MIN_PREDICTOR_ARCHS:
        raise UserError(f"--arch-samples {req.n_arch_samples}: the accuracy predictor is fit on "
                        f"at least {MIN_PREDICTOR_ARCHS} evaluated subnets")
    from ofa_platform.cli.extract import FORMATS

    if req.export_format not in FORMATS:
        raise UserError(f"export format {req.export_format!r}: choose from {', '.join(FORMATS)}")


def _source(req: SearchRequest
            ) -> tuple[SearchSpace, NetworkPlan, Supernet | None, dict[str, Any]]:
    """The space, network plan, supernet and training metadata of what is searched: a
    checkpoint's own (its space may carry CIFAR resolutions), or the named space at
    ``width_mult`` for a predictor search."""
    space = _named_space(req.space)
    if not req.checkpoint:
        width = 1.0 if req.width_mult is None else req.width_mult
        try:
            plan = network_plan(space.family, width)
        except ValueError as exc:  # e.g. a width multiplier ResNet50D does not have
            raise UserError(f"--width-mult: {exc}") from None
        return space, plan, None, {}
    supernet, extra = _load_checkpoint(req.checkpoint, req.space, req.width_mult)
    if supernet.space.name != space.name:
        raise UserError(f"checkpoint {req.checkpoint} holds a {supernet.space.name} "
                        f"supernet, not {space.name}")
    _check_data(req.data)
    return supernet.space, supernet.plan, supernet, extra


def _check_feasible(targets: Sequence[float], smallest: float, unit: str, space: str,
                    resolution: int, estimator: str) -> None:
    low = [t for t in targets if t < smallest]
    if low:
        raise UserError(f"target {min(low):g} {unit} is infeasible: the smallest subnet of "
                        f"{space} at r={resolution} costs {smallest:.3f} {unit} ({estimator})")


def _check_data(data: str | None) -> None:
    """A checkpoint search evaluates subnets on ``data``: the spec must parse and its files
    exist before the run starts."""
    from ofa_platform.datasets import parse_data_spec

    if not data:
        raise UserError("--checkpoint needs --data SPEC to evaluate subnets")
    spec = parse_data_spec(data)
    path = getattr(spec, "path", None)
    if path is not None and not Path(path).exists():
        raise UserError(f"data {data!r}: {path} does not exist")


def _method(req: SearchRequest, extra: dict[str, Any], space: str) -> str:
    """What the search is filed under: ``--method``, else the training schedule the
    checkpoint records (``method``; older checkpoints: ``schedule``), else the space's prefix
    (a published OFA/CompOFA file, or a predictor search)."""
    if req.method:
        return req.method
    for key in ("method", "schedule"):
        value = extra.get(key)
        if isinstance(value, str) and value:
            return value
    return space.split("_")[0]


def _train_run_id(req: SearchRequest, extra: dict[str, Any]) -> str | None:
    if req.train_run_id:
        return req.train_run_id
    value = extra.get("mlflow_run_id") or extra.get("run_id")
    return str(value) if value else None


def _accuracy(prepared: Prepared, progress: Reporter | None = None) -> _Accuracy:
    """The published or given predictor, or OFA's recipe on our supernet: evaluate sampled
    subnets (Ray Tune, shown on ``progress``), fit the MLP."""
    codec = prepared.codec
    if prepared.predictor is not None:
        predictor = prepared.predictor
        return _Accuracy(scorer=lambda genes: predictor(codec, genes))
    from ofa_platform.search.population import PopulationEvaluator
    from ofa_platform.search.predictor import single_thread, train_predictor

    req = prepared.request
    rng = random.Random(req.seed)
    space = codec.space.with_resolutions(codec.resolutions)
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(req.n_arch_samples)))
    evaluator = PopulationEvaluator.from_request(prepared, progress)
    accs = evaluator.evaluate(archs)
    with single_thread():  # a small MLP: one thread is fastest on a busy machine
        trained, metrics = train_predictor(codec, archs, accs, seed=req.seed)
    return _Accuracy(scorer=lambda genes: trained(codec, genes), trained=trained,
                     metrics=dict(metrics), evaluator=evaluator,
                     sampled=tuple(zip(archs, accs)))


def execute(prepared: Prepared, progress: Reporter | None = None) -> SearchOutcome:
    """Run the search inside an MLflow search run opened now, as the work starts (never left
    RUNNING), and write the outputs; ``progress`` shows the subnets evaluated and the
    search's targets and generations."""
    with _search_run(prepared) as run:
        meter = _meter(prepared)
        accuracy = _accuracy(prepared, progress)
        fitness = Fitness(prepared.codec, accuracy=accuracy.scorer,
                          efficiency=prepared.efficiency, unit=prepared.unit)
        results, search_time = _search(prepared, fitness, progress)
        rows, artifacts, exported = _outputs(prepared, fitness, accuracy, results)
        meter.stop()
        if run is not None:
            _log_results(prepared, fitness, accuracy, search_time, results, meter, artifacts,
                         rows)
    return SearchOutcome(results=results, rows=rows, pareto_path=artifacts[0],
                         population_path=artifacts[1],
                         run_id=None if run is None else run.info.run_id,
                         search_time_s=search_time, evaluations=fitness.evaluations,
                         exported=exported, unit=fitness.unit,
                         estimator=prepared.estimator_name, predictor_metrics=accuracy.metrics,
                         measurements=int(getattr(fitness.efficiency, "measurements", 0)),
                         noisy_latencies=int(getattr(fitness.efficiency, "noisy", 0)))


def _search(prepared: Prepared, fitness: Fitness,
            progress: Reporter | None = None) -> tuple[list[SearchResult], float]:
    from ofa_platform.search.predictor import single_thread
    from ofa_platform.search.strategies import run_strategy

    req = prepared.request
    t0 = time.perf_counter()
    with single_thread():
        results = run_strategy(req.strategy, fitness, prepared.targets, seed=req.seed,
                               config=prepared.config, workers=req.workers,
                               followup=req.followup_generations, progress=progress)
    return results, time.perf_counter() - t0


def _outputs(prepared: Prepared, fitness: Fitness, accuracy: _Accuracy,
             results: list[SearchResult]) -> tuple[list[dict[str, Any]], list[Path], list[Path]]:
    """The Pareto table (with the chosen subnets' measured accuracy for a checkpoint search),
    the population cloud, the Tune trials and the fitted predictor, and the exported subnets.
    Returns the table rows, the artifact paths (Pareto table first, population second) and the
    exported files."""
    from ofa_platform.search.pareto import PARETO_COLUMNS, pareto_rows, write_parquet

    req = prepared.request
    out_dir = Path(req.out_dir)
    measured: dict[str, float] = {}
    evaluator = accuracy.evaluator
    if evaluator is not None:
        chosen = [r.arch for r in results if r.arch is not None]
        measured = dict(zip((a.key for a in chosen), evaluator.evaluate(chosen)))
    rows = pareto_rows(results, prepared.plan, measured)
    pop_rows = _population_rows(fitness, req.seed, req.n_population_rows)
    artifacts = [write_parquet(rows, out_dir / "pareto.parquet", PARETO_COLUMNS),
                 write_parquet(pop_rows, out_dir / "population.parquet",
                               ("arch_json", "cost", "unit", "accuracy"))]
    if accuracy.sampled:  # measured subnets: the report's equal-cost fronts
        from ofa_platform.search.records import write_subnets

        artifacts.append(write_subnets(accuracy.sampled, fitness, prepared.plan, rows,
                                       out_dir / "subnets.parquet"))
    if evaluator is not None and evaluator.trial_rows:  # every Tune trial, for MLflow
        artifacts.append(write_parquet(evaluator.trial_rows, out_dir / "tune_trials.parquet"))
    if accuracy.trained is not None:  # reusable with --predictor for later searches
        artifacts.append(accuracy.trained.save(out_dir / "predictor.pth", accuracy.metrics))
    exported: list[Path] = []
    if req.export:
        from ofa_platform.search.pareto import export_subnets

        supernet = prepared.supernet
        if supernet is None:
            from search_spaces.registry import create_supernet

            supernet = create_supernet(prepared.codec.space,
                                       width_mult=prepared.plan.width_mult)
        exported = export_subnets(results, supernet, req.export, fitness.unit,
                                  fmt=req.export_format)
    return rows, artifacts, exported


def _meter(prepared: Prepared) -> EnergyMeter:
    from ofa_platform.costs import EnergyMeter

    return EnergyMeter(prepared.hardware, devices=prepared.request.workers).start()


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


@contextmanager
def _search_run(prepared: Prepared) -> Iterator[Any]:
    """The MLflow search run (tags and params known before the work), or nothing with
    ``log_mlflow=False``."""
    req = prepared.request
    if not req.log_mlflow:
        yield None
        return
    from ofa_platform.tracking import tracked_run

    tags = {"ofa.kind": "search", "ofa.method": prepared.method, "ofa.space": req.space,
            "ofa.hardware": prepared.estimator_name, "ofa.strategy": req.strategy}
    if prepared.train_run_id:
        tags["ofa.train_run_id"] = prepared.train_run_id
    tags.update(dict(req.tags))
    params = {"space": req.space, "estimator": req.latency, "strategy": req.strategy,
              "targets": ",".join(f"{t:g}" for t in prepared.targets), "seed": req.seed,
              "width_mult": prepared.plan.width_mult,
              "resolutions": ",".join(map(str, prepared.codec.resolutions)),
              "generations": prepared.config.generations,
              "population_size": req.population_size,
              "accuracy_source": "predictor" if req.predictor else "checkpoint"}
    from ofa_platform.search.records import space_params

    params.update(space_params(prepared.codec.space, prepared.plan, prepared.codec.resolutions))
    if req.strategy in ("top-down", "bottom-up"):
        from ofa_platform.search.strategies import followup_generations

        params["followup_generations"] = followup_generations(prepared.config.generations,
                                                              req.followup_generations)
    name = f"search-{req.space}-{req.strategy}-{int(time.time())}"
    with tracked_run(req.experiment, name, tags=tags, params=params,
                     tracking_uri=req.tracking_uri) as run:
        yield run


def _log_results(prepared: Prepared, fitness: Fitness, accuracy: _Accuracy, search_time: float,
                 results: list[SearchResult], meter: EnergyMeter, artifacts: list[Path],
                 pareto: Sequence[dict[str, Any]] = ()) -> None:
    import mlflow

    from ofa_platform.tracking import log_cost

    metrics = {"search_time_s": search_time, "prepare_time_s": prepared.prep_seconds,
               "search_time_per_target_s": search_time / max(1, len(results)),
               "evaluations": float(fitness.evaluations),
               "feasible_targets": float(sum(r.feasible for r in results))}
    metrics.update({f"predictor_{k}": v for k, v in accuracy.metrics.items() if v == v})
    metrics.update(_latency_metrics(fitness.efficiency))
    if "latency_noisy_layers" in metrics:
        mlflow.set_tag("ofa.latency_noisy", str(metrics["latency_noisy_layers"] > 0).lower())
    evaluator = accuracy.evaluator
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
    req = prepared.request
    if req.log_models:
        from ofa_platform.search.models import log_models

        log_models(pareto, prepared.supernet, data=str(req.data), seed=req.seed,
                   calib_images=req.calib_images, calib_batch=req.calib_batch,
                   hardware=prepared.estimator_name)


def _latency_metrics(estimator: Any) -> dict[str, float]:
    """Measured latency: layers measured, seconds spent, and how many stayed noisy."""
    from ofa_platform.search.latency import MeasuredLatency, MeasuredSubnetLatency

    if not isinstance(estimator, (MeasuredLatency, MeasuredSubnetLatency)):
        return {}
    return {"latency_layers_measured": float(estimator.measurements),
            "latency_measure_s": estimator.measured_s,
            "latency_noisy_layers": float(estimator.noisy)}


def run_search(req: SearchRequest, progress: Reporter | None = None) -> SearchOutcome:
    """:func:`prepare` then :func:`execute`, shown on ``progress`` when given."""
    return execute(prepare(req), progress)
