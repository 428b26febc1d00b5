"""The quick start: the whole mission at toy scale on one machine, in minutes.

Train each recipe (OFA, CompOFA, DεpS) on a generated dataset with Ray Train, search latency
targets on each trained supernet (subnets evaluated by Ray Tune, latency measured on this CPU),
and write the comparison report from MLflow. Every step is the real code path a cluster run
takes; only the sizes are small (``QuickstartConfig``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ofa_platform.progress import Reporter

__all__ = ["QuickstartConfig", "QuickstartResult", "run_quickstart", "spread_targets"]


@dataclass(frozen=True)
class QuickstartConfig:
    """Sizes of the quick start. The defaults finish in a few minutes on 2 CPU cores."""

    methods: tuple[str, ...] = ("ofa", "compofa", "deps")
    data: str = "quickstart"  # jobs/datasets/quickstart.yaml: generated 16-px images
    subset: int = 192
    #: half-width supernets (OFA's width multiplier; sizes only, same code paths): OFA's
    #: quick-start training job took 79 s instead of 103 s on a quiet 2-core machine (issue 17)
    width_mult: float = 0.5
    epoch_scale: float = 0.002  # every phase of every recipe runs one (short) epoch
    workers: int = 2
    batch_size: int = 32
    val_limit: int = 64
    experiment: str = "quickstart"
    out_dir: str = "runs/quickstart"
    n_targets: int = 3
    search_samples: int = 12  # subnets evaluated (Ray Tune) to fit each accuracy predictor
    population: int = 12
    generations: int = 4
    seed: int = 0
    tracking_uri: str | None = None


@dataclass
class QuickstartResult:
    report: Path
    tracking_uri: str
    experiment: str
    train_runs: dict[str, str] = field(default_factory=dict)
    search_runs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def spread_targets(smallest: float, largest: float, n: int) -> tuple[float, ...]:
    """``n`` targets spread strictly between the smallest and largest subnet's cost, so each
    is feasible and binding (rounded up to 0.01 so rounding never makes one infeasible)."""
    if n < 1:
        raise ValueError("need at least one target")
    def up(x: float) -> float:
        return math.ceil(x * 100 - 1e-9) / 100

    if largest <= smallest:
        return (up(smallest),)
    step = (largest - smallest) / (n + 1)
    return tuple(up(smallest + step * (i + 1)) for i in range(n))


def _train(cfg: QuickstartConfig, method: str, progress: Reporter) -> Any:
    from ofa_platform.train.runner import TrainRequest, run_training

    request = TrainRequest(schedule=method, data=cfg.data, workers=cfg.workers,
                           epoch_scale=cfg.epoch_scale, subset=cfg.subset,
                           width_mult=cfg.width_mult, experiment=cfg.experiment, seed=cfg.seed,
                           batch_size=cfg.batch_size, val_limit=cfg.val_limit,
                           recal_images=min(64, cfg.subset), tracking_uri=cfg.tracking_uri,
                           storage_path=str(Path(cfg.out_dir, "ray").resolve()))
    outcome = run_training(request, progress=progress)
    if outcome.status != "FINISHED" or not outcome.checkpoint_dir:
        raise RuntimeError(f"training {method} ended {outcome.status}: {outcome.error}")
    return outcome


def _search(cfg: QuickstartConfig, method: str, checkpoint: str, progress: Reporter) -> Any:
    from ofa_platform.search.runner import SearchRequest, execute, prepare
    from search_spaces.checkpoints import load_supernet

    space = load_supernet(checkpoint)[0].space.name
    request = SearchRequest(
        space=space, targets=(1e9,), latency="measured:cpu",
        strategy="bottom-up+",
        checkpoint=checkpoint, data=cfg.data, seed=cfg.seed, method=method,
        population_size=cfg.population, generations=cfg.generations,
        n_arch_samples=cfg.search_samples, calib_images=min(64, cfg.subset),
        calib_batch=64, eval_batch=64, val_subset=cfg.val_limit,
        experiment=cfg.experiment, tracking_uri=cfg.tracking_uri,
        out_dir=str(Path(cfg.out_dir, "search", method)), measure_warmup=1, measure_repeats=5,
        n_population_rows=60)
    prepared = prepare(request)  # execute evaluates subnets with Ray Tune, fits the predictor
    largest = float(prepared.efficiency(prepared.codec.extreme(largest=True))[0])
    targets = spread_targets(prepared.smallest_cost, largest, cfg.n_targets)
    prepared = prepared.with_targets(targets)
    progress(f"[quickstart] {method}: searching {space} for "
             f"{', '.join(f'{t:g}' for t in targets)} {prepared.unit} "
             f"({prepared.request.strategy}, {prepared.estimator_name})")
    return execute(prepared, progress)


def run_quickstart(cfg: QuickstartConfig = QuickstartConfig(),
                   progress: Reporter | Callable[[str], None] | None = None) -> QuickstartResult:
    """Run every step in order; raises on the first failure (runs end FAILED, not RUNNING).
    ``progress`` shows the steps and each step's own progress (plain lines by default)."""
    from dashboards.report import write_report
    from ofa_platform.cluster import init_ray
    from ofa_platform.progress import as_reporter
    from ofa_platform.tracking import resolve_tracking_uri

    progress = as_reporter(progress)

    t0 = time.perf_counter()
    uri = resolve_tracking_uri(cfg.tracking_uri)
    cfg = replace(cfg, tracking_uri=uri)
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    init_ray(num_cpus=max(cfg.workers, 2))  # quiet, unless the command started it verbose
    result = QuickstartResult(report=Path(cfg.out_dir, "report.html").resolve(),
                              tracking_uri=uri, experiment=cfg.experiment)
    steps = len(cfg.methods) * 2 + 1
    progress.task("quickstart", "quick start", total=steps, unit="steps")
    for i, method in enumerate(cfg.methods):
        progress.update("quickstart", 2 * i, f"train {method}")
        progress(f"[quickstart] step {2 * i + 1}/{steps}: train {method} "
                 f"({time.perf_counter() - t0:.0f}s elapsed)")
        outcome = _train(cfg, method, progress)
        result.train_runs[method] = outcome.run_id
        from ofa_platform.train.engine import SUPERNET_FILE

        checkpoint = str(Path(outcome.checkpoint_dir, SUPERNET_FILE))
        progress.update("quickstart", 2 * i + 1, f"search {method}")
        progress(f"[quickstart] step {2 * i + 2}/{steps}: search {method} "
                 f"({time.perf_counter() - t0:.0f}s elapsed)")
        found = _search(cfg, method, checkpoint, progress)
        result.search_runs[method] = found.run_id or ""
        for row in found.rows:
            progress(f"    target {row.get('target')}: latency {row.get('cost')}, "
                     f"accuracy {row.get('accuracy')}")
    progress.update("quickstart", steps - 1, "comparison report")
    progress(f"[quickstart] step {steps}/{steps}: comparison report")
    report = write_report(cfg.experiment, result.report, tracking_uri=uri)
    from dashboards.compare import format_table

    progress.update("quickstart", steps, "done")
    progress.done("quickstart")
    progress(format_table(report.table))
    result.seconds = time.perf_counter() - t0
    return result


def summary_lines(result: QuickstartResult) -> Sequence[str]:
    """Where to look once the quick start is done."""
    return (
        f"quick start finished in {result.seconds / 60:.1f} min",
        f"report:  {result.report}",
        f"MLflow:  .venv/bin/mlflow ui --backend-store-uri {result.tracking_uri}",
        f"         (experiment '{result.experiment}')",
    )
