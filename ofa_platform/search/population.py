"""Accuracy of subnet populations, evaluated in parallel by Ray Tune on reused actors.

Accuracy of a subnet = BN recalibration on a fixed subset of training images (OFA: 2000,
batch 200), then top-1 on the validation split. A population is cut into shards; each Tune
trial evaluates one shard on an actor that Tune reuses (``reuse_actors=True``), which built
the supernet (weights through the object store) and decoded only the images evaluation uses
(calibration and validation subsets) once. A reused trial still costs Tune bookkeeping
(budgeted at 100 ms; measured ~15 ms here), so shards are sized to keep that under 2% of the
trial's evaluation time, and balanced by MACs so no worker is left finishing a heavy shard
alone. What remains of Tune's cost is fixed per population: its actors are fresh processes
that import ``ray.tune`` (about a second) before building the supernet. Tune gives what a
cluster needs: failed trials retried (``FailureConfig``), CPUs or GPU fractions per trial,
machines scheduled by Ray. Results are cached persistently (arch and resolution -> accuracy)
per supernet checkpoint.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ofa_platform.errors import UserError
from ofa_platform.evaluation import evaluate_top1, recalibrate_bn
from ofa_platform.progress import Reporter
from ofa_platform.search.cache import JsonMemo, accuracy_cache_path
from search_spaces.arch import ArchConfig, arch_from_dict
from search_spaces.flops import count_macs_params

__all__ = ["EvalSetup", "ShardEvaluator", "PopulationEvaluator", "shard_size_for",
           "balanced_shards", "plan_shards", "TUNE_TRIAL_OVERHEAD_S"]

#: Measured cost of one reused Tune trial (issue 6), used to size shards.
TUNE_TRIAL_OVERHEAD_S = 0.1


@dataclass(frozen=True)
class EvalSetup:
    """How a subnet is evaluated; part of the accuracy cache's key."""

    data: str
    calib_images: int = 2000
    calib_batch: int = 200
    eval_batch: int = 200
    val_subset: int | None = None
    seed: int = 0
    #: ``val`` (held out of the training rows: what a search selects on) or ``test`` (the
    #: dataset's whole test split: what a study reports; ``val_subset`` caps it)
    split: str = "val"
    #: the training rows the supernet saw (``--subset``): the validation split is held out of
    #: these, as in training, so no training image is scored as validation
    subset: int | None = None

    def key(self) -> str:
        where = "val" if self.split == "val" else f"{self.split}-"
        rows = "" if self.subset is None else f"|subset{self.subset}"
        return (f"{self.data}|calib{self.calib_images}x{self.calib_batch}|eval{self.eval_batch}"
                f"|{where}{self.val_subset}|seed{self.seed}{rows}")


def shard_size_for(n: int, workers: int, seconds_per_subnet: float, *,
                   overhead_s: float = TUNE_TRIAL_OVERHEAD_S, budget: float = 0.02) -> int:
    """Subnets per trial: enough that ``overhead_s`` is at most ``budget`` of a trial, with the
    number of shards a multiple of the workers and the shards even (no worker idles while
    another finishes a second shard)."""
    workers = max(1, workers)
    need = math.ceil(overhead_s / (budget * max(seconds_per_subnet, 1e-6)))
    n_shards = math.ceil(max(1, n) / need)
    n_shards = math.ceil(n_shards / workers) * workers
    return max(1, math.ceil(n / n_shards))


def balanced_shards(costs: Sequence[float], n_shards: int) -> list[list[int]]:
    """Indices of the items dealt into ``n_shards`` shards of near-equal total cost, the
    costliest shard first.

    Subnets of one population differ in cost by 2-3x (and by the square of the resolution),
    so shards cut in sampling order leave one worker finishing a heavy shard while the others
    idle. Dealing the costliest item to the lightest shard so far (longest processing time
    first) evens the shards out, and handing out the heaviest shards first keeps whatever
    imbalance is left small at the end.
    """
    n_shards = max(1, min(n_shards, len(costs)))
    shards: list[list[int]] = [[] for _ in range(n_shards)]
    totals = [0.0] * n_shards
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        j = min(range(n_shards), key=lambda j: (totals[j], len(shards[j]), j))
        shards[j].append(i)
        totals[j] += costs[i]
    order = sorted(range(n_shards), key=lambda j: (-totals[j], j))
    return [shards[j] for j in order if shards[j]]


def plan_shards(archs: Sequence[ArchConfig], workers: int, seconds_per_subnet: float,
                cost: Callable[[ArchConfig], float] | None = None) -> list[list[ArchConfig]]:
    """The shards (one Tune trial each) a population is evaluated in: sized by
    :func:`shard_size_for`, balanced by ``cost(arch)`` (e.g. MACs; equal costs if None)."""
    size = shard_size_for(len(archs), workers, seconds_per_subnet)
    costs = [float(cost(a)) if cost is not None else 1.0 for a in archs]
    return [[archs[i] for i in shard]
            for shard in balanced_shards(costs, math.ceil(len(archs) / size))]


class ShardEvaluator:
    """Holds a supernet and the evaluation data once; evaluates shards of archs."""

    def __init__(self, supernet_spec: dict[str, Any], state_dict: dict[str, Any],
                 setup: EvalSetup, device: str = "cpu") -> None:
        import torch

        from ofa_platform.datasets import load_dataset
        from search_spaces.registry import create_supernet

        self.setup, self.device = setup, device
        self.supernet = create_supernet(**supernet_spec)
        self.supernet.load_state_dict(state_dict)
        self.supernet.to(device).eval()
        if setup.split == "test":
            from dataclasses import replace

            from ofa_platform.datasets import load_test_split

            splits = load_dataset(setup.data, seed=setup.seed, subset=setup.subset,
                                  heads=(setup.calib_images, 1))
            self.splits = replace(splits, val=load_test_split(setup.data, setup.val_subset))
        else:
            self.splits = load_dataset(setup.data, seed=setup.seed, subset=setup.subset,
                                       heads=(setup.calib_images, setup.val_subset))
        self.torch = torch

    def _batches(self, split: str, resolution: int, limit: int | None, batch: int) -> list[Any]:
        from ofa_platform.datasets import iterate_batches

        dataset = self.splits.train if split == "train" else self.splits.val
        out, seen = [], 0
        for x, y in iterate_batches(dataset, batch_size=batch, resolution=resolution,
                                    train=False, seed=self.setup.seed, epoch=0,
                                    mean=self.splits.mean, std=self.splits.std):
            if limit is not None and seen >= limit:
                break
            if limit is not None and seen + len(x) > limit:
                x, y = x[:limit - seen], y[:limit - seen]
            out.append((x, y))
            seen += len(x)
        return out

    def evaluate_one(self, arch: ArchConfig) -> float:
        s = self.setup
        calib = self._batches("train", arch.r, s.calib_images, s.calib_batch)
        val = self._batches("val", arch.r, s.val_subset, s.eval_batch)
        model = recalibrate_bn(self.supernet, arch, [x for x, _ in calib], self.device)
        return float(evaluate_top1(model, val, self.device))

    def evaluate(self, arch_dicts: Sequence[dict[str, Any]]) -> list[float]:
        return [self.evaluate_one(arch_from_dict(d)) for d in arch_dicts]


def _make_trainable() -> Any:
    """The Tune trainable (built lazily: Ray is imported only when a search needs it)."""
    from ray import tune

    class ShardTrainable(tune.Trainable):
        """One actor: supernet, data and the population's shards loaded in ``setup``; each
        reused trial swaps its shard index in ``reset_config`` and evaluates that shard in one
        ``step``. Trial configs hold only the index: Tune deep-copies and JSON-encodes every
        config on the driver, which with the archs inside cost the driver CPU that the two
        workers of a 2-core machine need (measured: Tune's overhead over a bare actor pool
        grew with the population)."""

        def setup(self, config: dict[str, Any], supernet_spec: dict[str, Any] | None = None,
                  state_dict: dict[str, Any] | None = None, setup: EvalSetup | None = None,
                  device: str = "cpu", shards: list[list[dict[str, Any]]] | None = None
                  ) -> None:
            self.evaluator = ShardEvaluator(supernet_spec or {}, state_dict or {},
                                            setup or EvalSetup("synthetic"), device)
            self.shards = shards or []
            self.shard = int(config["shard"])

        def reset_config(self, new_config: dict[str, Any]) -> bool:
            self.shard = int(new_config["shard"])
            return True

        def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any]:
            return {"shard": self.shard}  # stateless: a retry re-evaluates its shard

        def load_checkpoint(self, checkpoint: Any) -> None:
            return None

        def step(self) -> dict[str, Any]:
            t0 = time.perf_counter()
            accs = self.evaluator.evaluate(self.shards[self.shard])
            return {"accs": accs, "shard": self.shard, "eval_s":
                    time.perf_counter() - t0, "done": True}

    return ShardTrainable


def _CacheCallback(cache: JsonMemo, shards: list[list[dict[str, Any]]]) -> Any:  # noqa: N802
    """A Tune callback that writes each shard's accuracies to the cache as its trial reports,
    so an interrupted search, run again, evaluates only what was not finished."""
    from ray import tune

    class CacheCallback(tune.Callback):
        def on_trial_result(self, iteration: int, trials: list[Any], trial: Any,
                            result: dict[str, Any], **info: Any) -> None:
            if "accs" not in result:
                return
            cache.put_many({arch_from_dict(d).key: float(a)
                            for d, a in zip(shards[int(result["shard"])], result["accs"])})

    return CacheCallback()


def _ProgressCallback(progress: Reporter, shards: list[list[dict[str, Any]]],  # noqa: N802
                      done: int) -> Any:
    """A Tune callback (it runs in the driver) that counts subnets evaluated per shard. Tune
    pickles its callbacks with the Tuner; the display (a lock, a terminal) stays behind."""
    from ray import tune

    class ProgressCallback(tune.Callback):
        def __init__(self, reporter: Reporter | None, sizes: list[int], done: int) -> None:
            super().__init__()
            self.reporter, self.sizes, self.done = reporter, sizes, done

        def __getstate__(self) -> dict[str, Any]:
            return {**self.__dict__, "reporter": None}

        def on_trial_result(self, iteration: int, trials: list[Any], trial: Any,
                            result: dict[str, Any], **info: Any) -> None:
            if "accs" in result and self.reporter is not None:
                self.done += self.sizes[int(result["shard"])]
                self.reporter.update("population", self.done, f"{len(trials)} Tune trials")

    return ProgressCallback(progress, [len(s) for s in shards], done)


def _trial_row(n: int, trial_id: str, shard: int, subnets: int, eval_s: float | None,
               error: str | None, total_s: float | None = None) -> dict[str, Any]:
    return {"trial": n, "trial_id": trial_id, "shard": shard, "subnets": subnets,
            "eval_s": float("nan") if eval_s is None else float(eval_s),
            "trial_s": float("nan") if total_s is None else float(total_s),
            "status": "ERROR" if error else "OK", "error": (error or "")[:300]}


def _error_text(error: BaseException | None) -> str:
    if error is None:
        return "the trial ended without a result"
    return str(error) or type(error).__name__


class PopulationEvaluator:
    """Evaluates archs of one supernet checkpoint with Ray Tune, caching every accuracy."""

    def __init__(self, supernet: Any, setup: EvalSetup, *, workers: int = 1,
                 gpus_per_worker: float = 0.0, cache: JsonMemo | None = None,
                 storage_dir: str | Path = ".ofa_cache/tune", max_failures: int = 2,
                 seconds_per_subnet: float | None = None,
                 progress: Reporter | None = None) -> None:
        self.supernet, self.setup = supernet, setup
        self.workers, self.gpus_per_worker = max(1, workers), gpus_per_worker
        self.cache = cache
        self.storage_dir = Path(storage_dir).resolve()
        self.max_failures = max_failures
        self.seconds_per_subnet = seconds_per_subnet
        self.trials_run = 0
        self.evaluated = 0
        #: one row per Tune trial (and per timing probe): what the driver logs to MLflow
        self.trial_rows: list[dict[str, Any]] = []
        #: where subnets evaluated so far are shown (None: nowhere)
        self.progress = progress

    @classmethod
    def from_request(cls, prepared: Any,
                     progress: Reporter | None = None) -> PopulationEvaluator:
        """The evaluator a search request describes (its data, batches, workers, cache)."""
        req = prepared.request
        setup = EvalSetup(data=req.data, calib_images=req.calib_images,
                          calib_batch=req.calib_batch, eval_batch=req.eval_batch,
                          val_subset=req.val_subset, seed=req.seed, subset=req.subset)
        cache = JsonMemo(accuracy_cache_path(Path(req.cache_dir), prepared.supernet,
                                               setup.key()))
        return cls(prepared.supernet, setup, workers=req.workers,
                   gpus_per_worker=req.gpus_per_worker, cache=cache,
                   storage_dir=Path(req.cache_dir) / "tune", progress=progress)

    def subnet_cost(self, arch: ArchConfig) -> float:
        """Relative evaluation cost of a subnet (its MACs), to balance the shards."""
        plan = getattr(self.supernet, "plan", None)
        if plan is None:
            return 1.0
        return float(count_macs_params(plan, arch)[0])

    def _spec_and_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        spec = dict(getattr(self.supernet, "spec", {}) or {})
        if not spec:
            raise UserError("the supernet has no spec to rebuild it on the workers")
        state = {k: v.detach().cpu() for k, v in self.supernet.state_dict().items()}
        return spec, state

    def evaluate(self, archs: Sequence[ArchConfig]) -> list[float]:
        """Accuracy of every arch (cached ones are not evaluated again)."""
        keys = [a.key for a in archs]
        known: dict[str, float] = {}
        if self.cache is not None:
            known = {k: v for k in keys if (v := self.cache.get(k)) is not None}
        todo = list({a.key: a for a in archs if a.key not in known}.values())
        if todo:
            new = self._run_tune(todo)
            known.update(new)
            if self.cache is not None:
                self.cache.put_many(new)
        return [known[k] for k in keys]

    def _run_tune(self, archs: list[ArchConfig]) -> dict[str, float]:
        """One Tune trial per shard of ``archs`` on reused actors; a driver-side timing probe
        first sizes the shards when ``seconds_per_subnet`` is not given."""
        spec, state = self._spec_and_state()
        if self.progress is not None:
            self.progress.task("population", "evaluate subnets", total=len(archs),
                               unit="subnets")
        out: dict[str, float] = {}
        per = self.seconds_per_subnet
        if per is None:  # time subnets here to size the shards; keep their results
            per, probed = self._probe(spec, state, archs[:2])
            out.update(probed)
            archs = archs[len(probed):]
            if not archs:
                self.evaluated += len(out)
                return out
        shards = [[a.to_dict() for a in shard]
                  for shard in plan_shards(archs, self.workers, per, self.subnet_cost)]
        grid = self._tuner(spec, state, shards, len(out)).fit()
        errors = self._collect(grid, shards, out)
        self.trials_run += len(shards)
        if self.progress is not None:
            self.progress.done("population")
        if errors:
            raise RuntimeError(f"{len(errors)} population shard(s) failed after "
                               f"{self.max_failures} retries: {errors[0]}")
        self.evaluated += len(out)
        return out

    def _probe(self, spec: dict[str, Any], state: dict[str, Any],
               probe: list[ArchConfig]) -> tuple[float, dict[str, float]]:
        """Seconds per subnet measured on ``probe`` here, and the probed accuracies."""
        t0 = time.perf_counter()
        per, accs = self._time_probe(spec, state, probe)
        self.trial_rows.append(_trial_row(len(self.trial_rows), "driver-probe", -1,
                                          len(probe), time.perf_counter() - t0, None))
        if self.progress is not None:
            self.progress.update("population", len(probe), "timing probe done")
        return per, {a.key: acc for a, acc in zip(probe, accs)}

    def _tuner(self, spec: dict[str, Any], state: dict[str, Any],
               shards: list[list[dict[str, Any]]], done: int) -> Any:
        """The Tune experiment: a grid over shard indices, one CPU (or GPU share) a trial,
        at most ``workers`` at once, actors reused between shards."""
        from ray import tune

        from ofa_platform.cluster import init_ray

        init_ray()  # its own quiet local Ray unless the command started one
        device = "cuda" if self.gpus_per_worker > 0 else "cpu"
        trainable = tune.with_parameters(_make_trainable(), supernet_spec=spec, state_dict=state,
                                         setup=self.setup, device=device, shards=shards)
        resources = {"cpu": 1, "gpu": self.gpus_per_worker} if self.gpus_per_worker else {
            "cpu": 1}
        callbacks = [_CacheCallback(self.cache, shards)] if self.cache is not None else []
        if self.progress is not None:
            callbacks.append(_ProgressCallback(self.progress, shards, done))
        return tune.Tuner(
            tune.with_resources(trainable, resources),
            param_space={"shard": tune.grid_search(list(range(len(shards))))},
            tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=self.workers),
            run_config=tune.RunConfig(
                name=f"population-{int(time.time() * 1000)}",
                storage_path=str(self.storage_dir), verbose=0,
                stop={"training_iteration": 1},
                failure_config=tune.FailureConfig(max_failures=self.max_failures),
                callbacks=callbacks),
        )

    def _collect(self, grid: Any, shards: list[list[dict[str, Any]]],
                 out: dict[str, float]) -> list[Any]:
        """Accuracies of the finished shards into ``out``, a trial row for each; the errors
        of the failed ones."""
        errors = []
        for result in grid:
            metrics = result.metrics or {}
            if (result.config or {}).get("shard") is None:  # the trial never started
                errors.append(result.error or "a trial never started")
                self.trial_rows.append(_trial_row(len(self.trial_rows), "", -1, 0, None,
                                                  _error_text(result.error), None))
                continue
            index = int(result.config["shard"])
            failed = result.error is not None or "accs" not in metrics
            self.trial_rows.append(_trial_row(
                len(self.trial_rows), str(metrics.get("trial_id", "")), index,
                len(shards[index]), metrics.get("eval_s"),
                _error_text(result.error) if failed else None,
                metrics.get("time_total_s")))
            if failed:
                errors.append(result.error)
                continue
            for d, acc in zip(shards[index], metrics["accs"]):
                out[arch_from_dict(d).key] = float(acc)
        return errors

    def _time_probe(self, spec: dict[str, Any], state: dict[str, Any],
                    archs: list[ArchConfig]) -> tuple[float, list[float]]:
        """Seconds a subnet takes here (the second one: the first pays one-time costs), and
        the probed subnets' accuracies."""
        from ofa_platform.search.predictor import single_thread

        evaluator = ShardEvaluator(spec, state, self.setup)
        accs, took = [], 0.0
        with single_thread():  # as a 1-CPU Ray actor runs (Ray sets its OMP threads to 1)
            for arch in archs:
                t0 = time.perf_counter()
                accs.append(evaluator.evaluate_one(arch))
                took = time.perf_counter() - t0
        return took, accs
