"""Multi-target search: the paper's setting, its strategies and ours, side by side with its
figures; and our evolution against the reference OFA's.

    .venv/bin/python benchmarks/bench_search.py [--seeds 10] [--generations 500]

The setting of Kumar & Szidon, "Efficient Incorporation of Multiple Latency Targets in the
Once-For-All Network" (Sec. 4.1): OFA's published accuracy predictor and Samsung Note10
latency tables, ``ofa_mbv3`` w1.2 at 160..224 px (step 4), population 100, N = 500
generations, targets 15, 20, ..., 60 ms; the paper's top-down and bottom-up evolve 63
generations for every target after the first.

Part 1 (the paper's Table 1): for 1, 2, 3, 4, 5 and 10 targets (the first k of 15..60 ms; the
paper does not say which), each strategy's time as a share of vanilla's, mean over seeds, and
its share of vanilla's accuracy queries (the work, which a loaded machine does not distort),
beside the paper's shares. The strategies of one seed and k run back to back, so a machine
that slows down hurts them alike.
Part 2 (the paper's Table 2): per target (10 targets), each strategy's predicted top-1 minus
vanilla's, mean over seeds, beside the paper's gaps; vanilla's own seed-to-seed spread too.
The enhanced ``top-down+`` and ``bottom-up+`` are printed beside the paper's strategies.
Part 3: our vanilla evolution against the reference's tutorial ``EvolutionFinder`` (installed
aside by ``benchmarks/reference.py``) on the same 10 targets, predictor and tables, at the
reference's resolutions (160..224 step 16), interleaved by ``benchmarks/harness.py``.
Results go to ``benchmarks/results/bench_search.json``.
"""

from __future__ import annotations

import argparse
import os
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
COUNTS = (1, 2, 3, 4, 5, 10)
STRATEGIES = ("vanilla", "top-down", "bottom-up", "top-down+", "bottom-up+")

#: The paper's Table 1: running time (s), mean of 10 runs, vanilla / top-down / bottom-up.
PAPER_TIME_S = {1: (27.065, 15.352, 26.166), 2: (50.516, 21.317, 31.591),
                3: (68.795, 26.708, 38.235), 4: (96.670, 29.722, 43.809),
                5: (123.109, 35.341, 55.608), 10: (247.858, 47.781, 64.291)}
#: The paper's Table 2: accuracy of the subnet found per target (ms), vanilla / top-down /
#: bottom-up (fractions, as printed there).
PAPER_ACC = {15: (0.7844, 0.7838, 0.7851), 20: (0.8046, 0.8060, 0.8056),
             25: (0.8200, 0.8130, 0.8185), 30: (0.8272, 0.8244, 0.8250),
             35: (0.8328, 0.8307, 0.8328), 40: (0.8391, 0.8377, 0.8378),
             45: (0.8411, 0.8426, 0.8410), 50: (0.8413, 0.8471, 0.8447),
             55: (0.8483, 0.8476, 0.8462), 60: (0.8492, 0.8500, 0.8488)}


def fitness(space: str, resolutions: tuple[int, ...]) -> Fitness:
    codec = GeneCodec(get_space(space), resolutions)
    pred = load_predictor(ASSETS / "acc_predictor.pth", codec)
    est = lut_estimator(codec, network_plan("mbv3", 1.2), ASSETS / "latency_note10")
    return Fitness(codec, accuracy=lambda g: pred(codec, g), efficiency=est)


def _run(f: Fitness, strategy: str, targets: list[float], seed: int,
         cfg: EvolutionConfig) -> tuple[float, int, list[float], bool]:
    """Seconds, accuracy queries, accuracies and whether every result is within its target."""
    before = f.evaluations
    t0 = time.perf_counter()
    found = run_strategy(strategy, f, targets, seed=seed, config=cfg)
    secs = time.perf_counter() - t0
    ok = all(r.feasible and r.cost <= r.target for r in found)
    return secs, f.evaluations - before, [r.accuracy for r in found], ok


def part_paper(generations: int, seeds: int) -> dict:
    """Parts 1 and 2: every strategy for every target count and seed."""
    f = fitness("ofa_mbv3", tuple(range(160, 225, 4)))
    cfg = EvolutionConfig(generations=generations)
    secs = {(s, k): [] for s in STRATEGIES for k in COUNTS}
    evals = {(s, k): [] for s in STRATEGIES for k in COUNTS}
    acc: dict[str, list[list[float]]] = {s: [] for s in STRATEGIES}
    within = True
    with single_thread():
        for seed in range(seeds):
            for k in COUNTS:
                for strategy in STRATEGIES:
                    t, n, a, ok = _run(f, strategy, TARGETS[:k], seed, cfg)
                    secs[(strategy, k)].append(t)
                    evals[(strategy, k)].append(n)
                    within &= ok
                    if k == len(TARGETS):
                        acc[strategy].append(a)
            print(f"  seed {seed} done (load average {os.getloadavg()[0]:.1f})", flush=True)
    time_rows = []
    print(f"\nPart 1: share of vanilla's time (mean over seeds 0..{seeds - 1}; population "
          f"{cfg.population_size}, N = {generations}); paper = its Table 1")
    print(f"{'targets':>7} {'vanilla s':>9} " + " ".join(f"{s:>10}" for s in STRATEGIES[1:])
          + f" {'paper TD':>9} {'paper BU':>9}   share of vanilla's accuracy queries")
    for k in COUNTS:
        van_s = float(np.mean(secs[("vanilla", k)]))
        van_n = float(np.mean(evals[("vanilla", k)]))
        share = {s: float(np.mean(np.array(secs[(s, k)]) / np.array(secs[("vanilla", k)])))
                 for s in STRATEGIES[1:]}
        work = {s: float(np.mean(evals[(s, k)])) / van_n for s in STRATEGIES[1:]}
        pv, ptd, pbu = PAPER_TIME_S[k]
        time_rows.append({"targets": k, "vanilla_s": van_s, "share_of_vanilla_time": share,
                          "share_of_vanilla_evaluations": work,
                          "paper_share": {"top-down": ptd / pv, "bottom-up": pbu / pv}})
        print(f"{k:>7} {van_s:>9.2f} " + " ".join(f"{share[s]:>10.0%}" for s in STRATEGIES[1:])
              + f" {ptd / pv:>9.0%} {pbu / pv:>9.0%}   "
              + " ".join(f"{s} {work[s]:.0%}" for s in STRATEGIES[1:]))
    van = 100 * np.array(acc["vanilla"])
    gap = {s: (100 * np.array(acc[s]) - van).mean(0) for s in STRATEGIES[1:]}
    acc_rows = []
    print(f"\nPart 2: predicted top-1 minus vanilla's per target, points (mean over seeds "
          f"0..{seeds - 1}); paper = its Table 2")
    print(f"{'ms':>4} {'vanilla %':>9} " + " ".join(f"{s:>10}" for s in STRATEGIES[1:])
          + f" {'paper V %':>9} {'paper TD':>9} {'paper BU':>9} {'V spread':>9}")
    for i, t in enumerate(TARGETS):
        pv, ptd, pbu = PAPER_ACC[int(t)]
        spread = float(van[:, i].max() - van[:, i].min())
        acc_rows.append({"target_ms": t, "vanilla_acc": float(van[:, i].mean()),
                         "gap_points": {s: float(gap[s][i]) for s in STRATEGIES[1:]},
                         "paper_vanilla_acc": 100 * pv,
                         "paper_gap_points": {"top-down": 100 * (ptd - pv),
                                              "bottom-up": 100 * (pbu - pv)},
                         "vanilla_spread_points": spread})
        print(f"{t:>4g} {van[:, i].mean():>9.2f} "
              + " ".join(f"{gap[s][i]:>+10.2f}" for s in STRATEGIES[1:])
              + f" {100 * pv:>9.2f} {100 * (ptd - pv):>+9.2f} {100 * (pbu - pv):>+9.2f} "
              f"{spread:>9.2f}")
    print("mean gap " + " ".join(f"{s} {gap[s].mean():+.2f}" for s in STRATEGIES[1:])
          + f"; worst {' '.join(f'{s} {gap[s].min():+.2f}' for s in STRATEGIES[1:])}")
    print(f"every result within its target: {within}")
    return {"generations": generations, "population": cfg.population_size, "seeds": seeds,
            "targets": TARGETS, "time": time_rows, "accuracy": acc_rows,
            "mean_gap_points": {s: float(gap[s].mean()) for s in STRATEGIES[1:]},
            "worst_gap_points": {s: float(gap[s].min()) for s in STRATEGIES[1:]},
            "all_within_target": within, "load_average_end": os.getloadavg()[0]}


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
    print(f"\nPart 3: against the reference EvolutionFinder (resolutions {res})")
    print(harness.format_table([comp]))
    print(f"{'target':>6} {'ours %':>8} {'ref %':>8}")
    for t, a, b in zip(TARGETS, ours_acc, ref_acc):
        print(f"{t:>6g} {100 * a:>8.2f} {100 * b:>8.2f}")
    print(f"mean predicted top-1: ours {100 * ours_acc.mean():.2f} %, reference "
          f"{100 * ref_acc.mean():.2f} %")
    return comp


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generations", type=int, default=500, help="N; OFA's and the paper's: 500")
    p.add_argument("--reference-generations", type=int, default=500)
    p.add_argument("--repeats", type=int, default=1, help="reference comparison repeats")
    p.add_argument("--seed", type=int, default=0, help="seed of the reference comparison")
    p.add_argument("--seeds", type=int, default=10, help="seeds 0..S-1 (the paper: 10 runs)")
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "bench_search.json"))
    args = p.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    strategies = part_paper(args.generations, args.seeds)
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
