"""Ours against the reference OFA implementation, side by side in one run.

Run from the repository root (installs the reference into ``benchmarks/.ref`` if missing)::

    .venv/bin/python -m benchmarks.bench_vs_reference

Comparisons (each interleaved, medians, speed ratio ours / reference; see ``harness.py``):

1. ``train step``: one supernet training step of ``ofa_mbv3`` (w1.0, 1000 classes): teacher
   forward, 4 subnets forward/backward with distillation from the largest, one SGD step. Both
   sides train the same subnets (sampled once from our space) on the same batch. On CUDA ours
   runs with mixed precision and channels-last, the reference as it ships (fp32).
2. ``extract``: a static subnet out of the supernet.
3. ``recal+eval``: BN recalibration of one subnet on N images, then top-1 on M images.
4. ``search 1 target`` / ``search 10 targets``: evolution with the published predictor and the
   Note10 tables (width 1.2), equal population, generations, targets and resolutions; ours
   with each multi-target strategy, the reference with one independent search per target
   (it has nothing else). Predicted accuracy found is printed per target.
5. ``search 10 targets, whole process``: what a user waits for. Ours is the command
   ``ofa-platform search --strategy vanilla ... --json`` in a fresh Python process (imports,
   predictor and tables loaded, search, Pareto table written), without and with its MLflow run
   (a SQLite store created beforehand); the reference is a fresh Python process that imports
   it, loads the same predictor and tables and runs its ``EvolutionFinder`` per target. CPU
   time is the child processes'. Goal (issue 17): ours >= 30x.

6. ``resnet-train`` / ``resnet-extract`` / ``resnet-recal`` (opt in with ``--only``, e.g.
   ``--only resnet-train,resnet-extract,resnet-recal``): the same three comparisons on
   ResNet50D (``ofa_resnet50`` against the reference's ``OFAResNets``; teacher: each side's
   static largest subnet), ``--resnet-resolution`` px.

Our training step is assembled here from the same public pieces the engine's inner loop uses
(``create_supernet``, ``param_groups``, ``subnet_loss``, autocast and channels-last on CUDA),
because the engine runs its step inside a Ray Train worker and exposes no step function.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import harness
from benchmarks import reference as refmod

__all__ = ["main", "build_parser"]

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "ofa_mbv3_imagenet"
DEFAULT_TARGETS = "15,20,25,30,35,40,45,50,55,60"
SEARCH_RESOLUTIONS = (160, 176, 192, 208, 224)  # the reference's evolution finder's set


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="train,extract,recal,search,whole",
                   help="comma-separated subset of train,extract,recal,search,whole, "
                        "resnet-train,resnet-extract,resnet-recal")
    p.add_argument("--resnet-resolution", type=int, default=64,
                   help="ResNet50D training-step and recalibration resolution")
    p.add_argument("--devices", default="auto",
                   help="training-step devices: cpu, cuda, cpu,cuda; auto = cpu (+cuda if any)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads for both sides (default 1: on a shared 2-core "
                        "box two threads per process make wall times chaotic; 0: torch's "
                        "default)")
    p.add_argument("--batch", type=int, default=8, help="training-step batch (CPU)")
    p.add_argument("--cuda-batch", type=int, default=128, help="training-step batch (CUDA)")
    p.add_argument("--resolution", type=int, default=128, help="training-step resolution")
    p.add_argument("--subnets", type=int, default=4, help="subnets per training step")
    p.add_argument("--train-repeats", type=int, default=7)
    p.add_argument("--extract-repeats", type=int, default=9)
    p.add_argument("--recal-images", type=int, default=128)
    p.add_argument("--recal-batch", type=int, default=64)
    p.add_argument("--eval-images", type=int, default=128)
    p.add_argument("--recal-resolution", type=int, default=128)
    p.add_argument("--recal-repeats", type=int, default=5)
    p.add_argument("--population", type=int, default=100)
    p.add_argument("--generations", type=int, default=100)
    p.add_argument("--targets", default=DEFAULT_TARGETS, help="Note10 targets in ms")
    p.add_argument("--strategies", default="vanilla,top-down,bottom-up",
                   help="our strategies timed against the reference")
    p.add_argument("--search-repeats", type=int, default=3, help="repeats of 1-target search")
    p.add_argument("--search-many-repeats", type=int, default=1,
                   help="repeats of the all-targets search")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--whole-repeats", type=int, default=2,
                   help="repeats of the whole-process 10-target search (each side)")
    p.add_argument("--reference-process", action="store_true",
                   help=argparse.SUPPRESS)  # internal: the reference side of a whole-process run
    p.add_argument("--data", type=Path, default=SHARED,
                   help="dir with acc_predictor.pth and latency_note10/")
    p.add_argument("--ref-dir", type=Path, default=refmod.default_reference_dir(REPO))
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results"
                   / "vs_reference.json")
    return p


# --------------------------------------------------------------------------- training step


class _OursTrainer:
    """Our supernet training step, the engine's inner loop without Ray around it."""

    def __init__(self, device: str, *, amp: bool, channels_last: bool, seed: int,
                 space_name: str = "ofa_mbv3") -> None:
        import torch

        from ofa_platform.train.engine import param_groups
        from search_spaces.registry import create_supernet
        from search_spaces.spaces import get_space

        torch.manual_seed(seed)
        self.space = get_space(space_name)
        self.device = torch.device(device)
        mf = torch.channels_last if channels_last else torch.contiguous_format
        self.net = create_supernet(self.space).to(self.device, memory_format=mf)
        if space_name == "ofa_resnet50":  # as the reference side: the static largest subnet
            teacher = self.net.extract(self.space.largest())
        else:
            teacher = create_supernet(self.space)
            teacher.set_active(self.space.largest())
        self.teacher = teacher.eval().requires_grad_(False).to(self.device, memory_format=mf)
        self.channels_last = channels_last
        self.amp_dtype = None
        if amp and self.device.type == "cuda":
            self.amp_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported()
                              else torch.float16)
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.amp_dtype == torch.float16)
        self.optimizer = torch.optim.SGD(param_groups(self.net, 3e-5, True), lr=0.1,
                                         momentum=0.9, nesterov=True)

    def _autocast(self) -> Any:
        import contextlib

        import torch

        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def step(self, images: Any, labels: Any, archs: Sequence[Any]) -> float:
        import torch

        from ofa_platform.train.losses import subnet_loss

        self.net.train()
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad(), self._autocast():
            soft = self.teacher(images).float()
        total = 0.0
        for arch in archs:
            self.net.set_active(arch)
            with self._autocast():
                logits = self.net(images).float()
                loss = subnet_loss("teacher", logits, labels, smoothing=0.1,
                                   teacher_logits=soft, weight=1.0)
            self.scaler.scale(loss).backward()
            total += float(loss.detach())
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return total / len(archs)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _cycler(items: Sequence[Any]) -> Callable[[], Any]:
    """Each call returns the next item (wrapping): both sides walk the same sequence."""
    state = {"i": 0}

    def nxt() -> Any:
        item = items[state["i"] % len(items)]
        state["i"] += 1
        return item

    return nxt


def bench_train(ref: refmod.Reference, args: argparse.Namespace, device: str) -> harness.Comparison:
    import torch

    cuda = device.startswith("cuda")
    batch = args.cuda_batch if cuda else args.batch
    res = args.resolution
    ours = _OursTrainer(device, amp=cuda, channels_last=cuda, seed=args.seed)
    theirs = refmod.ReferenceTrainer(ref, seed=args.seed)
    theirs.net.to(device)
    theirs.teacher.to(device)
    space = ours.space
    rng = random.Random(args.seed)
    n_calls = args.train_repeats + 1
    steps = [[space.sample(rng, "uniform").replace(r=res) for _ in range(args.subnets)]
             for _ in range(n_calls)]
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(batch, 3, res, res, generator=gen).to(device)
    y = torch.randint(0, 1000, (batch,), generator=gen).to(device)
    ours_next, ref_next = _cycler(steps), _cycler(steps)

    def run_ours() -> float:
        loss = ours.step(x, y, ours_next())
        _sync(device)
        return loss

    def run_ref() -> float:
        loss = theirs.step(x, y, [space.to_ofa_dict(a) for a in ref_next()])
        _sync(device)
        return loss

    notes = {"device": device, "batch": batch, "resolution": res, "subnets": args.subnets,
             "ours_amp": str(ours.amp_dtype), "ours_channels_last": ours.channels_last,
             "archs": [[a.key for a in s] for s in steps]}
    comp = harness.compare(f"train step ({device})", run_ours, run_ref,
                           repeats=args.train_repeats, warmup=1, work=batch, unit="img",
                           notes=notes)
    return comp


# --------------------------------------------------------------------------- extract, recal


def _paired_supernets(ref: refmod.Reference, seed: int) -> tuple[Any, Any, Any, bool]:
    """Our supernet and the reference's; ours loads the reference's weights when our OFA
    checkpoint loader exists, so both compute the same function."""
    import importlib

    import torch

    from search_spaces.registry import create_supernet
    from search_spaces.spaces import get_space

    torch.manual_seed(seed)
    theirs = refmod.build_supernet(ref)
    space = get_space("ofa_mbv3")
    ours = create_supernet(space)
    same = False
    try:
        loader = importlib.import_module("search_spaces.checkpoints").load_ofa_checkpoint
    except (ImportError, AttributeError):
        loader = None
    if loader is not None:
        loader(ours, {"state_dict": theirs.state_dict()})
        same = True
    return space, ours, theirs, same


def bench_extract(ref: refmod.Reference, args: argparse.Namespace) -> harness.Comparison:
    space, ours, theirs, same = _paired_supernets(ref, args.seed)
    rng = random.Random(args.seed + 1)
    archs = [space.sample(rng, "uniform") for _ in range(args.extract_repeats + 1)]
    ours_next, ref_next = _cycler(archs), _cycler(archs)
    comp = harness.compare(
        "extract subnet", lambda: (ours.extract(ours_next()), None)[1],
        lambda: (refmod.extract(theirs, space.to_ofa_dict(ref_next())), None)[1],
        repeats=args.extract_repeats, warmup=1, work=1, unit="subnet",
        notes={"same_weights": same})
    return comp


def bench_recal_eval(ref: refmod.Reference, args: argparse.Namespace) -> harness.Comparison:
    import torch

    from ofa_platform.evaluation import evaluate_top1, recalibrate_bn

    space, ours, theirs, same = _paired_supernets(ref, args.seed)
    r = args.recal_resolution
    gen = torch.Generator().manual_seed(args.seed + 2)
    recal = [torch.randn(args.recal_batch, 3, r, r, generator=gen)
             for _ in range(max(1, args.recal_images // args.recal_batch))]
    evals = [(torch.randn(args.recal_batch, 3, r, r, generator=gen),
              torch.randint(0, 1000, (args.recal_batch,), generator=gen))
             for _ in range(max(1, args.eval_images // args.recal_batch))]
    recal_pairs = [(x, torch.zeros(len(x), dtype=torch.long)) for x in recal]
    rng = random.Random(args.seed + 3)
    archs = [space.sample(rng, "uniform").replace(r=r) for _ in range(args.recal_repeats + 1)]
    ours_next, ref_next = _cycler(archs), _cycler(archs)
    device = torch.device("cpu")

    def run_ours() -> float:
        model = recalibrate_bn(ours, ours_next(), recal, device)
        return float(evaluate_top1(model, evals, device))

    def run_ref() -> float:
        return refmod.recalibrate_and_evaluate(ref, theirs, space.to_ofa_dict(ref_next()),
                                               recal_pairs, evals)

    n = len(recal) * args.recal_batch + len(evals) * args.recal_batch
    return harness.compare(
        "recal+eval subnet", run_ours, run_ref, repeats=args.recal_repeats, warmup=1, work=n,
        unit="img", notes={"same_weights": same, "resolution": r,
                           "recal_images": len(recal) * args.recal_batch,
                           "eval_images": len(evals) * args.recal_batch})


# --------------------------------------------------------------------------- search


class _OursSearch:
    """Our search pieces as ``ofa-platform search --predictor ... --latency lut:...`` builds
    them (runner.prepare), and its timed part (runner.execute's ``run_strategy``)."""

    def __init__(self, data: Path, population: int, generations: int) -> None:
        from ofa_platform.search.evolution import EvolutionConfig, Fitness
        from ofa_platform.search.genes import GeneCodec
        from ofa_platform.search.latency import lut_estimator
        from ofa_platform.search.predictor import load_predictor
        from search_spaces.blueprint import network_plan
        from search_spaces.spaces import get_space

        space = get_space("ofa_mbv3")
        self.codec = GeneCodec(space, SEARCH_RESOLUTIONS)
        self.plan = network_plan(space.family, 1.2)
        eff = lut_estimator(self.codec, self.plan, data / "latency_note10")
        predictor = load_predictor(data / "acc_predictor.pth", self.codec)
        codec = self.codec
        self.fitness = Fitness(codec, accuracy=lambda g: predictor(codec, g), efficiency=eff,
                               unit="ms")
        self.config = EvolutionConfig(population_size=population, generations=generations)

    def search(self, strategy: str, targets: Sequence[float], seed: int) -> list[dict[str, Any]]:
        from ofa_platform.search.predictor import single_thread
        from ofa_platform.search.strategies import run_strategy

        with single_thread():
            results = run_strategy(strategy, self.fitness, list(targets), seed=seed,
                                   config=self.config)
        return [{"target_ms": r.target, "accuracy": r.accuracy, "latency_ms": r.cost,
                 "arch": self.codec.space.to_ofa_dict(r.arch) if r.arch is not None else None}
                for r in results]


def _summary(found: list[dict[str, Any]]) -> dict[str, Any]:
    return {"mean_accuracy": statistics.fmean(f["accuracy"] for f in found),
            "per_target": [{k: f[k] for k in ("target_ms", "accuracy", "latency_ms")}
                           for f in found],
            "found": found}


def bench_search(ref: refmod.Reference, args: argparse.Namespace) -> list[harness.Comparison]:
    t0 = time.perf_counter()
    theirs = refmod.ReferenceSearch(ref, args.data / "acc_predictor.pth",
                                    args.data / "latency_note10", SEARCH_RESOLUTIONS)
    ref_setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = _OursSearch(args.data, args.population, args.generations)
    ours_setup = time.perf_counter() - t0
    targets = [float(t) for t in args.targets.split(",")]
    common = {"population": args.population, "generations": args.generations,
              "resolutions": list(SEARCH_RESOLUTIONS), "setup_s_ours": ours_setup,
              "setup_s_reference": ref_setup}
    comps = []
    one = [targets[len(targets) // 2]]
    comps.append(harness.compare(
        "search 1 target (vanilla)",
        lambda: _summary(ours.search("vanilla", one, args.seed)),
        lambda: _summary(theirs.search(one, population=args.population,
                                       generations=args.generations, seed=args.seed)),
        repeats=args.search_repeats, warmup=0, work=1, unit="target",
        notes={**common, "targets": one}))

    def run_ref_many() -> dict[str, Any]:
        return _summary(theirs.search(targets, population=args.population,
                                      generations=args.generations, seed=args.seed))

    ref_side: harness.Side | None = None
    for strategy in [s for s in args.strategies.split(",") if s]:
        if ref_side is None:
            comp = harness.compare(
                f"search {len(targets)} targets ({strategy})",
                lambda s=strategy: _summary(ours.search(s, targets, args.seed)), run_ref_many,
                repeats=args.search_many_repeats, warmup=0, work=len(targets), unit="target",
                notes={**common, "targets": targets, "strategy": strategy})
            ref_side = comp.reference
        else:
            # The reference has one way to search many targets; time it once, compare every
            # strategy of ours against that same measurement (ours still timed here, now).
            ours_side = harness.Side()
            for _ in range(args.search_many_repeats):
                w0, c0 = time.perf_counter(), time.process_time()
                ours_side.result = _summary(ours.search(strategy, targets, args.seed))
                ours_side.wall_s.append(time.perf_counter() - w0)
                ours_side.cpu_s.append(time.process_time() - c0)
            comp = harness.Comparison(
                f"search {len(targets)} targets ({strategy})", ours_side, ref_side,
                work=len(targets), unit="target",
                notes={**common, "targets": targets, "strategy": strategy,
                       "reference_timing": "shared with the first strategy's run"})
        comps.append(comp)
    for comp in comps:
        comp.notes["cross_check"] = _cross_check(theirs, comp.ours.result["found"])
    return comps


def _children_cpu() -> float:
    """CPU seconds of finished child processes (user + system): a whole-process side's."""
    t = os.times()
    return t.children_user + t.children_system


def _run_json(cmd: Sequence[str], cwd: Path, env: dict[str, str]) -> Any:
    proc = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {proc.returncode}: "
                           f"{proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout)


def _ours_command(args: argparse.Namespace, targets: Sequence[float], out: Path,
                  mlflow: bool) -> list[str]:
    lo, hi = SEARCH_RESOLUTIONS[0], SEARCH_RESOLUTIONS[-1]
    step = SEARCH_RESOLUTIONS[1] - SEARCH_RESOLUTIONS[0]
    cmd = [sys.executable, "-m", "ofa_platform", "search", "--space", "ofa_mbv3",
           "--width-mult", "1.2", "--predictor", str(args.data / "acc_predictor.pth"),
           "--latency", f"lut:{args.data / 'latency_note10'}", "--strategy", "vanilla",
           "--targets", ",".join(f"{t:g}" for t in targets),
           "--resolutions", f"{lo}-{hi}:{step}", "--generations", str(args.generations),
           "--population-size", str(args.population), "--seed", str(args.seed), "--json",
           "--out", str(out / "search"), "--cache-dir", str(out / "cache"),
           "--experiment", "bench-whole-process"]
    return cmd if mlflow else cmd + ["--no-mlflow"]


def bench_search_whole(args: argparse.Namespace) -> list[harness.Comparison]:
    """The 10-target vanilla search as whole processes, ours against the reference's."""
    targets = [float(t) for t in args.targets.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="ofa-bench-whole-"))
    # Both sides run as on a user's machine: Python's default bytecode cache (a sandbox that
    # sets PYTHONDONTWRITEBYTECODE recompiles every module of every run, ~0.2 s a process).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=str(REPO), MLFLOW_TRACKING_URI=f"sqlite:///{tmp}/m.db")
    ref_cmd = [sys.executable, "-m", "benchmarks.bench_vs_reference", "--reference-process",
               "--data", str(args.data), "--ref-dir", str(args.ref_dir), "--targets",
               args.targets, "--population", str(args.population), "--generations",
               str(args.generations), "--seed", str(args.seed),
               "--threads", str(args.threads)]
    common = {"population": args.population, "generations": args.generations,
              "resolutions": list(SEARCH_RESOLUTIONS), "targets": targets,
              "strategy": "vanilla"}

    def ours(mlflow: bool) -> dict[str, Any]:
        got = _run_json(_ours_command(args, targets, tmp, mlflow), tmp, env)
        return {"mean_accuracy": statistics.fmean(r["accuracy"] for r in got["results"]),
                "search_time_s": got["search_time_s"],
                "per_target": [{"target_ms": r["target"], "accuracy": r["accuracy"],
                                "latency_ms": r["cost"]} for r in got["results"]]}

    def theirs() -> dict[str, Any]:
        found = _run_json(ref_cmd, REPO, env)
        return {"mean_accuracy": statistics.fmean(f["accuracy"] for f in found),
                "per_target": [{k: f[k] for k in ("target_ms", "accuracy", "latency_ms")}
                               for f in found]}

    try:
        ours(True)  # the MLflow store exists before the timed runs, as on a user's second day
        comps = [harness.compare(
            f"search {len(targets)} targets (vanilla), whole process",
            lambda: ours(False), theirs, repeats=args.whole_repeats, warmup=0,
            work=len(targets), unit="target", cpu_clock=_children_cpu,
            notes={**common, "ours": "ofa-platform search --no-mlflow --json"})]
        ref_side = comps[0].reference
        side = harness.Side()
        for _ in range(args.whole_repeats):
            w0, c0 = time.perf_counter(), _children_cpu()
            side.result = ours(True)
            side.wall_s.append(time.perf_counter() - w0)
            side.cpu_s.append(_children_cpu() - c0)
        comps.append(harness.Comparison(
            f"search {len(targets)} targets (vanilla), whole process + MLflow run", side,
            ref_side, work=len(targets), unit="target",
            notes={**common, "ours": "ofa-platform search --json (MLflow run, SQLite)",
                   "reference_timing": "shared with the row above"}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return comps


def _reference_process(args: argparse.Namespace) -> int:
    """The reference side of a whole-process run: import, load, search, print JSON."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    ref = refmod.load_reference(args.ref_dir)
    theirs = refmod.ReferenceSearch(ref, args.data / "acc_predictor.pth",
                                    args.data / "latency_note10", SEARCH_RESOLUTIONS)
    found = theirs.search([float(t) for t in args.targets.split(",")],
                          population=args.population, generations=args.generations,
                          seed=args.seed)
    print(json.dumps(found))
    return 0


def _cross_check(theirs: refmod.ReferenceSearch, found: list[dict[str, Any]]) -> dict[str, float]:
    """Re-score our archs with the reference's own predictor and table: both sides must
    measure the same thing for the accuracies to be comparable."""
    d_acc, d_lat = [0.0], [0.0]
    for f in found:
        if f["arch"] is None:
            continue
        acc, lat = theirs.predict(f["arch"])
        d_acc.append(abs(acc - f["accuracy"]))
        d_lat.append(abs(lat - f["latency_ms"]))
    return {"max_abs_accuracy_diff": max(d_acc), "max_abs_latency_ms_diff": max(d_lat)}


def _accuracy_table(comps: Sequence[harness.Comparison]) -> str:
    lines = []
    for c in comps:
        o, r = c.ours.result, c.reference.result
        if not (isinstance(o, dict) and isinstance(r, dict) and "per_target" in o):
            continue
        lines.append(f"{c.name}: predicted top-1 ours {o['mean_accuracy']:.4f} vs reference "
                     f"{r['mean_accuracy']:.4f} (mean over targets; diff "
                     f"{o['mean_accuracy'] - r['mean_accuracy']:+.4f})")
        xc = c.notes.get("cross_check")
        if xc:
            lines.append(f"    our archs re-scored by the reference: accuracy within "
                         f"{xc['max_abs_accuracy_diff']:.1e}, latency within "
                         f"{xc['max_abs_latency_ms_diff']:.1e} ms")
        for a, b in zip(o["per_target"], r["per_target"]):
            lines.append(f"    {a['target_ms']:5.1f} ms: ours {a['accuracy']:.4f} "
                         f"({a['latency_ms']:.2f} ms)  ref {b['accuracy']:.4f} "
                         f"({b['latency_ms']:.2f} ms)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


# --------------------------------------------------------------------------- ResNet50D


def bench_resnet_train(ref: refmod.Reference, args: argparse.Namespace) -> harness.Comparison:
    """One ResNet50D supernet training step (CPU), the same subnets on both sides."""
    import torch

    res, batch = args.resnet_resolution, args.batch
    ours = _OursTrainer("cpu", amp=False, channels_last=False, seed=args.seed,
                        space_name="ofa_resnet50")
    theirs = refmod.ReferenceResNetTrainer(ref, seed=args.seed)
    space = ours.space.with_resolutions((res,))  # same choices at the benchmark's size
    ours.net.space = space
    ours.net.set_active(space.largest())
    rng = random.Random(args.seed)
    steps = [[space.sample(rng).replace(r=res) for _ in range(args.subnets)]
             for _ in range(args.train_repeats + 1)]
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(batch, 3, res, res, generator=gen)
    y = torch.randint(0, 1000, (batch,), generator=gen)
    ours_next, ref_next = _cycler(steps), _cycler(steps)
    return harness.compare(
        "resnet50 train step (cpu)", lambda: ours.step(x, y, ours_next()),
        lambda: theirs.step(x, y, [space.to_ofa_dict(a) for a in ref_next()]),
        repeats=args.train_repeats, warmup=1, work=batch, unit="img",
        notes={"batch": batch, "resolution": res, "subnets": args.subnets,
               "archs": [[a.key for a in s] for s in steps]})


def _paired_resnets(ref: refmod.Reference, seed: int) -> tuple[Any, Any, Any]:
    import torch

    from search_spaces.checkpoints import load_ofa_checkpoint
    from search_spaces.registry import create_supernet
    from search_spaces.spaces import get_space

    torch.manual_seed(seed)
    theirs = refmod.build_resnet_supernet(ref)
    space = get_space("ofa_resnet50")
    ours = load_ofa_checkpoint(create_supernet(space, dropout=0.0),
                               {"state_dict": theirs.state_dict()})
    return space, ours, theirs


def bench_resnet_extract(ref: refmod.Reference, args: argparse.Namespace) -> harness.Comparison:
    space, ours, theirs = _paired_resnets(ref, args.seed)
    rng = random.Random(args.seed + 1)
    archs = [space.sample(rng) for _ in range(args.extract_repeats + 1)]
    ours_next, ref_next = _cycler(archs), _cycler(archs)
    return harness.compare(
        "resnet50 extract subnet", lambda: (ours.extract(ours_next()), None)[1],
        lambda: (refmod.extract_resnet(theirs, space.to_ofa_dict(ref_next())), None)[1],
        repeats=args.extract_repeats, warmup=1, work=1, unit="subnet",
        notes={"same_weights": True})


def bench_resnet_recal(ref: refmod.Reference, args: argparse.Namespace) -> harness.Comparison:
    import torch

    from ofa_platform.evaluation import evaluate_top1, recalibrate_bn

    space, ours, theirs = _paired_resnets(ref, args.seed)
    r = args.resnet_resolution
    gen = torch.Generator().manual_seed(args.seed + 2)
    recal = [torch.randn(args.recal_batch, 3, r, r, generator=gen)
             for _ in range(max(1, args.recal_images // args.recal_batch))]
    evals = [(torch.randn(args.recal_batch, 3, r, r, generator=gen),
              torch.randint(0, 1000, (args.recal_batch,), generator=gen))
             for _ in range(max(1, args.eval_images // args.recal_batch))]
    recal_pairs = [(x, torch.zeros(len(x), dtype=torch.long)) for x in recal]
    space = space.with_resolutions((r,))  # same choices at the benchmark's size
    ours.space = space
    ours.set_active(space.largest())
    rng = random.Random(args.seed + 3)
    archs = [space.sample(rng) for _ in range(args.recal_repeats + 1)]
    ours_next, ref_next = _cycler(archs), _cycler(archs)
    device = torch.device("cpu")
    n = (len(recal) + len(evals)) * args.recal_batch
    return harness.compare(
        "resnet50 recal+eval subnet",
        lambda: float(evaluate_top1(recalibrate_bn(ours, ours_next(), recal, device), evals,
                                    device)),
        lambda: refmod.recalibrate_and_evaluate_resnet(
            ref, theirs, space.to_ofa_dict(ref_next()), recal_pairs, evals),
        repeats=args.recal_repeats, warmup=1, work=n, unit="img",
        notes={"same_weights": True, "resolution": r})


RESNET_BENCHES: dict[str, Callable[[refmod.Reference, argparse.Namespace], Any]] = {
    "resnet-train": bench_resnet_train,
    "resnet-extract": bench_resnet_extract,
    "resnet-recal": bench_resnet_recal,
}


def _devices(spec: str) -> list[str]:
    import torch

    if spec == "auto":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    out = [d.strip() for d in spec.split(",") if d.strip()]
    if "cuda" in out and not torch.cuda.is_available():
        raise SystemExit("--devices cuda: no CUDA device here")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.reference_process:
        return _reference_process(args)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    load_start = harness.machine_info().get("load_avg_1m")
    wanted = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = wanted - {"train", "extract", "recal", "search", "whole", *RESNET_BENCHES}
    if unknown:
        raise SystemExit(f"--only: unknown {sorted(unknown)}")
    print(f"reference: {refmod.REFERENCE_REQUIREMENT} in {args.ref_dir}", flush=True)
    try:
        refmod.ensure_reference(args.ref_dir)
        ref = refmod.load_reference(args.ref_dir)
    except refmod.ReferenceUnavailable as exc:
        print(f"cannot benchmark against the reference: {exc}", file=sys.stderr)
        return 2
    comps: list[harness.Comparison] = []
    skipped: dict[str, str] = {}

    def attempt(name: str, fn: Callable[[], Any]) -> None:
        print(f"... {name}", flush=True)
        try:
            got = fn()
        except ImportError as exc:  # a piece of ours that has not landed yet
            skipped[name] = f"{type(exc).__name__}: {exc}"
            print(f"    skipped: {skipped[name]}", flush=True)
            return
        for c in (got if isinstance(got, list) else [got]):
            comps.append(c)
            print(f"    {c.name}: ratio {c.ratio:.2f}x (paired {c.paired_ratio:.2f}x, "
                  f"cpu {c.cpu_ratio:.2f}x)", flush=True)

    if "train" in wanted:
        for dev in _devices(args.devices):
            attempt(f"train step ({dev})", lambda d=dev: bench_train(ref, args, d))
    if "extract" in wanted:
        attempt("extract", lambda: bench_extract(ref, args))
    if "recal" in wanted:
        attempt("recal+eval", lambda: bench_recal_eval(ref, args))
    if "search" in wanted:
        attempt("search", lambda: bench_search(ref, args))
    if "whole" in wanted:
        attempt("search, whole process", lambda: bench_search_whole(args))
    for name, fn in RESNET_BENCHES.items():
        if name in wanted:
            attempt(name, lambda f=fn: f(ref, args))
    meta = {"reference": refmod.REFERENCE_REQUIREMENT, "load_avg_1m_start": load_start,
            "args": {k: (str(v) if isinstance(v, Path) else v)
                     for k, v in vars(args).items()}}
    path = harness.write_results(args.out, harness.results_payload(comps, meta=meta,
                                                                   skipped=skipped))
    print()
    print(harness.format_table(comps))
    acc = _accuracy_table(comps)
    if acc:
        print()
        print(acc)
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
