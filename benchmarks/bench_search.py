"""Search speed: our strategies side by side, and our evolution against the reference OFA's.

    .venv/bin/python benchmarks/bench_search.py [--generations 500] [--reference-generations 500]

Part 1 (OFA's defaults: population 100, 500 generations; published predictor and Note10
tables, ofa_mbv3 w1.2, resolutions 160..224 step 4): every strategy for 1 target (30 ms) and
for the 10 targets 15..60 ms; time, predicted accuracy, the time and accuracy against vanilla;
exhaustive runs on compofa_mbv3, the only space small enough.
Part 1b: top-down and bottom-up against vanilla over several seeds (mean and worst gap per seed,
and vanilla's own seed-to-seed spread per target).
Part 2: our vanilla evolution against the reference's tutorial ``EvolutionFinder`` (installed
aside by ``benchmarks/reference.py``) on the same 10 targets, predictor and tables, at the
reference's resolutions (160..224 step 16), interleaved by ``benchmarks/harness.py``.
Results go to ``benchmarks/results/bench_search.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

from ofa_platform.search.evolution import EvolutionConfig, Fitness  # noqa: E402
from ofa_platform.search.genes import GeneCodec  # noqa: E402
from ofa_platform.search.latency import lut_estimator  # noqa: E402
from ofa_platform.search.predictor import load_predictor, single_thread  # noqa: E402
from ofa_platform.search.strategies import run_strategy  # noqa: E402
from search_spaces.blueprint import network_plan  # noqa: E402
from search_spaces.spaces import get_space  # noqa: E402

ASSETS = REPO.parent / "shared" / "data" / "ofa_mbv3_imagenet"
TARGETS = [15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0, 55.0, 60.0]


def fitness(space: str, resolutions: tuple[int, ...]) -> Fitness:
    codec = GeneCodec(get_space(space), resolutions)
    pred = load_predictor(ASSETS / "acc_predictor.pth", codec)
    est = lut_estimator(codec, network_plan("mbv3", 1.2), ASSETS / "latency_note10")
    return Fitness(codec, accuracy=lambda g: pred(codec, g), efficiency=est)


def part_strategies(generations: int, seed: int) -> dict:
    res = tuple(range(160, 225, 4))
    fit = {"ofa_mbv3": fitness("ofa_mbv3", res), "compofa_mbv3": fitness("compofa_mbv3", res)}
    cfg = EvolutionConfig(generations=generations)
    rows, out = [], {}
    with single_thread():
        for n_targets, targets in ((1, [30.0]), (10, TARGETS)):
            for strategy in ("vanilla", "top-down", "bottom-up", "exhaustive"):
                space = "compofa_mbv3" if strategy == "exhaustive" else "ofa_mbv3"
                f = fit[space]
                t0 = time.perf_counter()
                results = run_strategy(strategy, f, targets, seed=seed, config=cfg)
                secs = time.perf_counter() - t0
                out[(strategy, n_targets)] = (secs, results)
                rows.append({"strategy": strategy, "space": space, "targets": n_targets,
                             "seconds": secs, "accuracy": [r.accuracy for r in results],
                             "latency": [r.cost for r in results],
                             "within": all(r.feasible and r.cost <= r.target for r in results)})
    print(f"\nPart 1: strategies (population {cfg.population_size}, {generations} generations)")
    print(f"{'strategy':<11} {'space':<13} {'n':>3} {'time s':>8} {'vs vanilla':>10} "
          f"{'mean acc %':>10} {'gap pts':>8} {'worst gap':>9} {'in target':>9}")
    for row in rows:
        van_s, van = out[("vanilla", row["targets"])]
        gaps = 100 * (np.array(row["accuracy"]) - np.array([r.accuracy for r in van]))
        row.update(time_vs_vanilla=row["seconds"] / van_s, mean_gap_points=float(gaps.mean()),
                   worst_gap_points=float(gaps.min()))
        print(f"{row['strategy']:<11} {row['space']:<13} {row['targets']:>3} "
              f"{row['seconds']:>8.2f} {row['time_vs_vanilla']:>9.0%} "
              f"{100 * np.mean(row['accuracy']):>10.2f} {row['mean_gap_points']:>8.2f} "
              f"{row['worst_gap_points']:>9.2f} {str(row['within']):>9}")
    print("(exhaustive searches compofa_mbv3, so its gap to vanilla on ofa_mbv3 is not "
          "like for like)")
    print("\nper target, 10 targets, predicted top-1 %:")
    print(f"{'target':>6} " + " ".join(f"{s:>10}" for s in ("vanilla", "top-down", "bottom-up")))
    for i, t in enumerate(TARGETS):
        print(f"{t:>6g} " + " ".join(f"{100 * out[(s, 10)][1][i].accuracy:>10.2f}"
                                     for s in ("vanilla", "top-down", "bottom-up")))
    return {"generations": generations, "rows": rows}


def part_seeds(generations: int, seeds: int) -> dict:
    """The warm-started strategies against vanilla over several seeds: one seed's per-target
    gaps are mostly vanilla's own seed-to-seed spread, printed alongside."""
    f = fitness("ofa_mbv3", tuple(range(160, 225, 4)))
    cfg = EvolutionConfig(generations=generations)
    acc: dict[str, list[list[float]]] = {s: [] for s in ("vanilla", "top-down", "bottom-up")}
    secs: dict[str, float] = dict.fromkeys(acc, 0.0)
    with single_thread():
        for seed in range(seeds):
            for strategy in acc:
                t0 = time.perf_counter()
                found = run_strategy(strategy, f, TARGETS, seed=seed, config=cfg)
                secs[strategy] += time.perf_counter() - t0
                acc[strategy].append([r.accuracy for r in found])
    van = 100 * np.array(acc["vanilla"])
    print(f"\nPart 1b: 10 targets over seeds 0..{seeds - 1} (gap = strategy - vanilla, "
          f"same seed, points)")
    print(f"{'strategy':<10} {'time vs vanilla':>15} " + " ".join(
        f"{'seed ' + str(s) + ' mean/worst':>19}" for s in range(seeds)))
    out: dict = {"seeds": seeds,
                 "vanilla_spread_points": (van.max(0) - van.min(0)).tolist()}
    for strategy in ("top-down", "bottom-up"):
        gaps = 100 * np.array(acc[strategy]) - van
        out[strategy] = {"time_vs_vanilla": secs[strategy] / secs["vanilla"],
                         "mean_gap_points": gaps.mean(1).tolist(),
                         "worst_gap_points": gaps.min(1).tolist()}
        print(f"{strategy:<10} {secs[strategy] / secs['vanilla']:>15.0%} " + " ".join(
            f"{m:>+10.2f} / {w:>+6.2f}" for m, w in zip(gaps.mean(1), gaps.min(1))))
    print("vanilla's own spread over the seeds, max - min per target (points): "
          + " ".join(f"{x:.2f}" for x in out["vanilla_spread_points"]))
    return out


def part_reference(generations: int, seed: int, repeats: int) -> harness.Comparison | str:
    try:
        import reference
    except ImportError as exc:  # pragma: no cover
        return f"benchmarks/reference.py unavailable: {exc}"
    try:
        ref_dir = reference.ensure_reference(reference.default_reference_dir(REPO))
        ref = reference.load_reference(ref_dir)
    except reference.ReferenceUnavailable as exc:
        return str(exc)
    res = (160, 176, 192, 208, 224)
    ref_search = reference.ReferenceSearch(ref, ASSETS / "acc_predictor.pth",
                                           ASSETS / "latency_note10", res)
    fit = fitness("ofa_mbv3", res)
    cfg = EvolutionConfig(generations=generations)

    def ours() -> list[float]:
        with single_thread():
            return [r.accuracy for r in run_strategy("vanilla", fit, TARGETS, seed=seed,
                                                     config=cfg)]

    def theirs() -> list[float]:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(1)  # the same single thread as ours: like for like
        try:
            return [r["accuracy"] for r in ref_search.search(
                TARGETS, population=100, generations=generations, seed=seed)]
        finally:
            torch.set_num_threads(before)

    comp = harness.compare(f"evolution, 10 Note10 targets, {generations} generations", ours,
                           theirs, repeats=repeats, warmup=0, work=len(TARGETS),
                           unit="targets")
    ours_acc, ref_acc = np.array(comp.ours.result), np.array(comp.reference.result)
    comp.notes.update(ours_mean_acc=float(ours_acc.mean()), ref_mean_acc=float(ref_acc.mean()),
                      acc_gap_points=float(100 * (ours_acc.mean() - ref_acc.mean())))
    print(f"\nPart 2: against the reference EvolutionFinder (resolutions {res})")
    print(harness.format_table([comp]))
    print(f"{'target':>6} {'ours %':>8} {'ref %':>8}")
    for t, a, b in zip(TARGETS, ours_acc, ref_acc):
        print(f"{t:>6g} {100 * a:>8.2f} {100 * b:>8.2f}")
    print(f"mean predicted top-1: ours {100 * ours_acc.mean():.2f} %, reference "
          f"{100 * ref_acc.mean():.2f} %")
    return comp


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generations", type=int, default=500, help="OFA's default: 500")
    p.add_argument("--reference-generations", type=int, default=500)
    p.add_argument("--repeats", type=int, default=1, help="reference comparison repeats")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=5, help="seeds for the robustness part")
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "bench_search.json"))
    args = p.parse_args()
    strategies = part_strategies(args.generations, args.seed)
    strategies["over_seeds"] = part_seeds(args.generations, args.seeds)
    comparisons, skipped = [], {}
    if not args.skip_reference:
        comp = part_reference(args.reference_generations, args.seed, args.repeats)
        if isinstance(comp, str):
            skipped["reference"] = comp
            print(f"reference comparison skipped: {comp}")
        else:
            comparisons.append(comp)
    payload = harness.results_payload(comparisons, meta={"strategies": strategies},
                                      skipped=skipped)
    print(f"\nwrote {harness.write_results(Path(args.out), payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
