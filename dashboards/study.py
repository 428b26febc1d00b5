"""The CIFAR-10 study report (issue 12), read from MLflow alone.

A study trains several once-for-all recipes (OFA, CompOFA, DεpS, BigNAS) on CIFAR-10, searches
each supernet, evaluates subnets on the full CIFAR-10 test split, and trains "from-scratch
peers" (the smallest and largest arch of one recipe's space, trained alone). The runner that
produces those runs is separate; this module needs only the MLflow store, so the report can be
rebuilt anywhere, at any time, from what the runs recorded (schema: the study tags
``ofa.study``, ``ofa.study_unit``, ``ofa.study_seed``, ``ofa.study_recipe``, ``ofa.study_role``,
``ofa.study_arch``; see ``docs/architecture.md``).

Why it is built the way it is:

- Only FINISHED runs count, and per study unit the newest: a FAILED run is an interrupted
  attempt whose numbers describe no finished work, and a unit rerun after a fix supersedes the
  old run.
- Every accuracy is on the test split and carries its binomial standard error, so a reader can
  tell a difference from noise (10,000 images give about ±0.4 points at 80%).
- Recipes are compared at equal MACs (``dashboards/fronts.py``): their spaces differ, so their
  smallest and largest subnets are different networks. The points are read off each recipe's
  test-split Pareto front at budgets every recipe can meet; outside a recipe's range: no value.
- A recipe's cost is training + search + test evaluation, each part shown; a total with a part
  missing would understate the recipe's cost, so it is left empty rather than summed.
- OFA's headline claim (a subnet of the supernet is as good as the same network trained alone)
  is tested with its error bars: the difference and its SE, nothing more said.

Figures are drawn with matplotlib's Agg backend and every text drawn literally (method names
and notes are user text; ``$...$`` must not turn into mathtext). The HTML has no script and
inlines its plots as base64 PNG (the same images as the PNG files written beside it), so
MLflow's sandboxed artifact viewer shows it whole.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from dashboards.compare import format_cost, method_order, open_experiment, resolve_uri
from dashboards.figures import empty_figure, grid, pyplot
from dashboards.fronts import (
    Front,
    common_grid,
    front_area,
    headline_points,
    pareto_front,
    shared_range,
)
from ofa_platform.errors import UserError

__all__ = ["COST_PARTS", "EXTREMES", "FIGURES", "STUDY_COSTS", "StudyReport",
           "build_study_report", "write_study_report"]

#: The cost metrics a study reports, in table order (names of the MLflow schema).
STUDY_COSTS = ("device_hours", "dollars", "energy_kwh", "co2_kg")
#: The parts of a recipe's cost, in the order they happen.
COST_PARTS = ("train", "search", "eval")
#: The named subnets of every space the eval runs measure.
EXTREMES = ("smallest", "middle", "largest")
#: (file stem, title) of the figures, in report order; each is also written as ``<stem>.png``.
FIGURES = (
    ("curves", "Learning curves: loss and test top-1 per epoch, phase boundaries marked"),
    ("fronts", "Test top-1 against MACs: every evaluated subnet and each recipe's Pareto front"),
    ("scratch", "Supernet subnet vs the same network trained from scratch (± SE)"),
    ("cost", "Cost per recipe: training + search + test evaluation"),
)

_TAG = "ofa.study"
_UNIT, _SEED, _RECIPE = "ofa.study_unit", "ofa.study_seed", "ofa.study_recipe"
_ROLE, _ARCH, _SCALE = "ofa.study_role", "ofa.study_arch", "ofa.study_scale"
_PROTOCOL = "ofa.study_protocol"
_PARENT = "mlflow.parentRunId"
_KIND_STAGE = {"train": "train", "search": "search", "study_eval": "eval"}
_EVAL_ARTIFACT = "test_eval.parquet"
_N_HEADLINE = 3
_DASH = "\u2014"
_CURVE_STYLES = (("acc_largest", "-"), ("acc_middle", "--"), ("acc_smallest", ":"))
_PART_COLORS = {"train": "tab:blue", "search": "tab:orange", "eval": "tab:green"}


@dataclass(frozen=True)
class StudyReport:
    """What a study report holds: the numbers, the HTML and the figures, and where they went.

    ``build_study_report`` fills ``results``, ``html`` and ``figures`` (PNG bytes per figure
    stem) and leaves ``paths`` empty; ``write_study_report`` adds the written files (keys
    ``report``, ``results`` and the figure stems) and the MLflow run that holds them.
    """

    experiment: str
    results: Mapping[str, Any]
    html: str = field(repr=False)
    figures: Mapping[str, bytes] = field(repr=False)
    paths: Mapping[str, Path] = field(default_factory=dict)
    run_id: str | None = None


@dataclass(frozen=True)
class _Key:
    """Which study run: stage (train/search/eval), role (recipe/scratch), recipe, arch, seed."""

    stage: str
    role: str
    recipe: str
    arch: str
    seed: str


@dataclass(frozen=True)
class _Row:
    """One measured subnet of a test-split evaluation."""

    source: str
    name: str
    macs: float
    top1: float
    se: float
    n: float


@dataclass(frozen=True)
class _Runs:
    """The chosen study runs of one experiment (newest FINISHED per unit) and their phases."""

    experiment_id: str
    client: Any
    runs: Mapping[_Key, Any]
    phases: Mapping[str, tuple[tuple[str, float], ...]]
    study: str
    scale: str
    others: tuple[tuple[str, str], ...]


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _seed_order(seeds: Iterable[str]) -> list[str]:
    return sorted(set(seeds), key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))


def _stage(run: Any) -> str | None:
    tags = run.data.tags
    stage = _KIND_STAGE.get(tags.get("ofa.kind", ""))
    if stage is None:
        prefix = tags.get(_UNIT, "").split("/", 1)[0]
        stage = prefix if prefix in COST_PARTS else None
    return stage


def _load(experiment: str, uri: str, study: str | None = None,
          scale: str | None = None, protocol: str | None = None) -> _Runs:
    """The study runs of ``experiment``; a missing store or experiment, or one with no finished
    study run, is a ``UserError`` before anything is written.

    One experiment can hold several studies or scales (``ofa.study``, ``ofa.study_scale``: a
    smoke study and the paper-scale one); their units share keys, so they are never mixed. The
    caller picks one, else the one with the newest finished run is reported and the others are
    named in the notes. ``protocol`` (tag ``ofa.study_protocol``, the protocol's digest)
    keeps only runs of that exact protocol: an edited protocol's runs are a different study.
    """
    client, exp = open_experiment(experiment, uri)
    every = client.search_runs([exp.experiment_id], max_results=50000)
    finished = [r for r in every if r.info.status == "FINISHED" and r.data.tags.get(_UNIT)
                and not r.data.tags.get(_PARENT)
                and (study is None or r.data.tags.get(_TAG, "") == study)
                and (scale is None or r.data.tags.get(_SCALE, "") == scale)
                and (protocol is None or r.data.tags.get(_PROTOCOL, "") == protocol)]
    if not finished:
        which = "".join(f" {k} {v!r}" for k, v in (("study", study), ("scale", scale)) if v)
        raise UserError(f"MLflow experiment {experiment!r} has no finished study runs{which} "
                        f"(runs tagged {_UNIT})")
    groups: dict[tuple[str, str], Any] = {}
    for run in finished:
        g = (run.data.tags.get(_TAG, ""), run.data.tags.get(_SCALE, ""))
        if g not in groups or _newer(run, groups[g]):
            groups[g] = run
    newest = max(groups, key=lambda g: ((groups[g].info.start_time or 0),
                                        (groups[g].info.end_time or 0)))
    finished = [r for r in finished
                if (r.data.tags.get(_TAG, ""), r.data.tags.get(_SCALE, "")) == newest]
    chosen: dict[_Key, Any] = {}
    units: dict[str, Any] = {}
    for run in finished:
        unit = run.data.tags[_UNIT]
        old = units.get(unit)
        if old is None or _newer(run, old):
            units[unit] = run
    for run in units.values():
        stage = _stage(run)
        tags = run.data.tags
        if stage is None or not tags.get(_RECIPE):
            continue
        role = tags.get(_ROLE, "recipe")
        arch = tags.get(_ARCH, "") if role == "scratch" else ""
        key = _Key(stage, role, tags[_RECIPE], arch, tags.get(_SEED, "0"))
        if key not in chosen or _newer(run, chosen[key]):
            chosen[key] = run
    if not chosen:
        raise UserError(f"MLflow experiment {experiment!r} has no finished study runs "
                        f"(runs tagged {_UNIT})")
    train_ids = {r.info.run_id for k, r in chosen.items() if k.stage == "train"}
    phases: dict[str, dict[str, tuple[Any, float]]] = {rid: {} for rid in train_ids}
    for run in every:
        parent, name = run.data.tags.get(_PARENT), run.data.tags.get("ofa.phase")
        if parent in phases and name:
            start = _num(run.data.params.get("start_epoch"))
            seen = phases[parent].get(name)
            if seen is None or _newer(run, seen[0]):
                phases[parent][name] = (run, start)
    ordered = {rid: tuple(sorted(((n, s) for n, (_, s) in ph.items()),
                                 key=lambda p: (math.isnan(p[1]), p[1])))
               for rid, ph in phases.items()}
    others = tuple(sorted(g for g in groups if g != newest))
    return _Runs(exp.experiment_id, client, chosen, ordered, newest[0], newest[1], others)


def _newer(run: Any, other: Any) -> bool:
    return ((run.info.start_time or 0), (run.info.end_time or 0)) > \
        ((other.info.start_time or 0), (other.info.end_time or 0))


def _costs(run: Any | None) -> dict[str, float]:
    if run is None:
        return {m: math.nan for m in STUDY_COSTS}
    return {m: _num(run.data.metrics.get(m)) for m in STUDY_COSTS}


def _binomial_se(p: float, n: float) -> float:
    """sqrt(p(1-p)/n): the standard error of an accuracy measured on n images."""
    if not (_finite(p) and _finite(n)) or n <= 0:
        return math.nan
    return math.sqrt(max(p * (1.0 - p), 0.0) / n)


def _eval_rows(client: Any, run: Any | None, tmp: Path) -> list[_Row] | None:
    """The eval run's ``test_eval.parquet`` as rows; None when the run or artifact is absent
    (shown as missing, never a crash)."""
    if run is None:
        return None
    try:
        local = client.download_artifacts(run.info.run_id, _EVAL_ARTIFACT,
                                          str(tmp / run.info.run_id))
        frame = pd.read_parquet(local)
    except Exception:  # noqa: BLE001 - an unreadable artifact is missing data, not a crash
        return None
    images = _num(run.data.metrics.get("test_images"))
    rows = []
    for rec in frame.to_dict("records"):
        top1 = _num(rec.get("top1"))
        n = _num(rec.get("n", images))
        se = _num(rec.get("se"))
        if not _finite(se):
            se = _binomial_se(top1, n)
        name = rec.get("name")
        rows.append(_Row(str(rec.get("source", "") or ""), "" if name is None else str(name),
                         _num(rec.get("macs")), top1, se, n))
    return rows


def _extreme(rows: list[_Row] | None, name: str) -> dict[str, float]:
    """The ``extreme`` row called ``name``: top1, se, macs, n (NaN when absent)."""
    for row in rows or []:
        if row.source == "extreme" and row.name == name:
            return {"top1": row.top1, "se": row.se, "macs": row.macs, "mmacs": row.macs / 1e6,
                    "n": row.n}
    return {"top1": math.nan, "se": math.nan, "macs": math.nan, "mmacs": math.nan, "n": math.nan}


def _front(rows: list[_Row] | None) -> Front | None:
    if not rows:
        return None
    front = pareto_front((r.macs / 1e6, r.top1) for r in rows)
    return front if front.points else None


def _stat(values: Iterable[float]) -> dict[str, Any]:
    """Mean and sample sd over seeds (sd None with one seed); NaN seeds are left out."""
    vals = [v for v in values if _finite(v)]
    if not vals:
        return {"mean": math.nan, "sd": None, "n": 0}
    mean = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 \
        else None
    return {"mean": mean, "sd": sd, "n": len(vals)}


def _curves(client: Any, run: Any) -> dict[str, tuple[list[float], list[float]]]:
    out = {}
    for key in ("loss", "acc_smallest", "acc_middle", "acc_largest"):
        hist = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        if hist:
            out[key] = ([float(m.step) for m in hist], [float(m.value) for m in hist])
    return out


def _collect(data: _Runs, tmp: Path, notes: Sequence[str], experiment: str
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The results dict (JSON layout of ``study_results.json``) and what the figures need."""
    runs = data.runs
    recipes = method_order(k.recipe for k in runs if k.role == "recipe")
    rows: dict[_Key, list[_Row] | None] = {}
    for key, run in runs.items():
        if key.stage == "eval":
            rows[key] = _eval_rows(data.client, run, tmp)

    def run_of(stage: str, role: str, recipe: str, arch: str, seed: str) -> Any | None:
        return runs.get(_Key(stage, role, recipe, arch, seed))

    def rows_of(role: str, recipe: str, arch: str, seed: str) -> list[_Row] | None:
        return rows.get(_Key("eval", role, recipe, arch, seed))

    seeds = {r: _seed_order(k.seed for k in runs if k.role == "recipe" and k.recipe == r)
             for r in recipes}
    fronts = {(r, s): _front(rows_of("recipe", r, "", s)) for r in recipes for s in seeds[r]}
    present = [f for f in fronts.values() if f is not None]
    shared = shared_range(present)
    if shared is not None:
        points = headline_points(common_grid(*shared), _N_HEADLINE)
    elif present:  # no overlap: points over the union, each recipe empty outside its range
        points = headline_points(common_grid(min(f.lo for f in present),
                                             max(f.hi for f in present)), _N_HEADLINE)
    else:
        points = []

    out_recipes: dict[str, Any] = {}
    for r in recipes:
        per_seed: dict[str, Any] = {}
        missing: list[str] = []
        for s in seeds[r]:
            parts = {p: run_of(p, "recipe", r, "", s) for p in COST_PARTS}
            missing += [f"{p} seed {s}" for p, run in parts.items() if run is None]
            eval_rows = rows_of("recipe", r, "", s)
            if parts["eval"] is not None and eval_rows is None:
                missing.append(f"{_EVAL_ARTIFACT} seed {s}")
            cost = {p: _costs(run) for p, run in parts.items()}
            cost["total"] = {m: (sum(cost[p][m] for p in COST_PARTS)
                                 if all(parts.values()) else math.nan) for m in STUDY_COSTS}
            front = fronts[(r, s)]
            train = parts["train"]
            tparams = train.data.params if train is not None else {}
            per_seed[s] = {
                "runs": {p: (run.info.run_id if run is not None else None)
                         for p, run in parts.items()},
                "cost": cost,
                "test": {n: _extreme(eval_rows, n) for n in EXTREMES},
                "acc_at": [front.accuracy_at(x) if front else math.nan for x in points],
                "front_mean": front_area(front, *shared) if front and shared else math.nan,
                "range_mmacs": [front.lo, front.hi] if front else None,
                "n_subnets": front.n_subnets if front else 0,
                "train": {"schedule": tparams.get("schedule"), "space": tparams.get("space"),
                          "epoch_scale": tparams.get("epoch_scale"),
                          "eval_images": tparams.get("eval_images"),
                          "epochs_run": _num(train.data.metrics.get("epochs_run"))
                          if train is not None else math.nan},
            }
        ss = list(per_seed.values())
        out_recipes[r] = {
            "seeds": seeds[r],
            "missing": missing,
            "cost": {p: {m: _stat(x["cost"][p][m] for x in ss) for m in STUDY_COSTS}
                     for p in (*COST_PARTS, "total")},
            "test": {n: _test_stat([x["test"][n] for x in ss]) for n in EXTREMES},
            "acc_at": [dict(mmacs=x, **_stat(y["acc_at"][i] for y in ss))
                       for i, x in enumerate(points)],
            "front_mean": _stat(x["front_mean"] for x in ss),
            "per_seed": per_seed,
        }

    scratch = []
    peers = sorted({(k.recipe, k.arch, k.seed) for k in runs if k.role == "scratch"},
                   key=lambda p: (recipes.index(p[0]) if p[0] in recipes else len(recipes),
                                  p[1] != "smallest", p[1], p[2]))
    for recipe, arch, seed in peers:
        ours = _extreme(rows_of("recipe", recipe, "", seed), arch)
        peer_rows = rows_of("scratch", recipe, arch, seed)
        theirs = _extreme(peer_rows, arch)
        if not _finite(theirs["top1"]) and peer_rows:
            ext = [x for x in peer_rows if x.source == "extreme"]
            if len(ext) == 1:  # one row: the peer's arch, whatever its name says
                x = ext[0]
                theirs = {"top1": x.top1, "se": x.se, "macs": x.macs, "mmacs": x.macs / 1e6,
                          "n": x.n}
        train = run_of("train", "scratch", recipe, arch, seed)
        ev = run_of("eval", "scratch", recipe, arch, seed)
        missing = [what for what, ok in (
            (f"scratch train seed {seed}", train is not None),
            (f"scratch eval seed {seed}", ev is not None),
            (f"{recipe} eval seed {seed}",
             run_of("eval", "recipe", recipe, "", seed) is not None)) if not ok]
        pc = {"train": _costs(train), "eval": _costs(ev)}
        pc["total"] = {m: (pc["train"][m] + pc["eval"][m] if train is not None and ev is not None
                           else math.nan) for m in STUDY_COSTS}
        scratch.append({
            "recipe": recipe, "arch": arch, "seed": seed,
            "macs": theirs["macs"] if _finite(theirs["macs"]) else ours["macs"],
            "recipe_macs": ours["macs"],
            "recipe_top1": ours["top1"], "recipe_se": ours["se"],
            "scratch_top1": theirs["top1"], "scratch_se": theirs["se"],
            "diff": ours["top1"] - theirs["top1"],
            "diff_se": math.sqrt(ours["se"] ** 2 + theirs["se"] ** 2),
            "scratch_cost": pc,
            "epochs_run": _num(train.data.metrics.get("epochs_run")) if train else math.nan,
            "missing": missing,
        })

    def rank_key(recipe: str) -> tuple[bool, float]:
        mean = out_recipes[recipe]["front_mean"]["mean"]
        return (not _finite(mean), -mean if _finite(mean) else 0.0)

    ranked = sorted(recipes, key=rank_key)
    ranking = []
    for i, r in enumerate(ranked):
        rec = out_recipes[r]
        ok = _finite(rec["front_mean"]["mean"])
        ranking.append({
            "rank": i + 1 if ok else None, "recipe": r,
            "front_mean": rec["front_mean"]["mean"], "front_mean_sd": rec["front_mean"]["sd"],
            "acc_at": [a["mean"] for a in rec["acc_at"]],
            **{m: rec["cost"]["total"][m]["mean"] for m in STUDY_COSTS},
        })

    results = {
        "experiment": experiment,
        "study": data.study or None,
        "scale": data.scale or None,
        "other_studies": [{"study": st or None, "scale": sc or None} for st, sc in data.others],
        "mac_points": list(points),
        "shared_range_mmacs": list(shared) if shared else None,
        "recipes": out_recipes,
        "scratch": scratch,
        "ranking": ranking,
        "notes": [str(n) for n in notes],
    }
    train_runs = [(k, r) for k, r in runs.items() if k.stage == "train"]
    train_runs.sort(key=lambda kr: (kr[0].role != "recipe",
                                    (recipes.index(kr[0].recipe) if kr[0].recipe in recipes
                                     else len(recipes)), kr[0].arch, kr[0].seed))
    plot = {
        "curves": [(_label(k), _curves(data.client, r), data.phases.get(r.info.run_id, ()))
                   for k, r in train_runs],
        "fronts": {(r, s): (f, [(x.macs / 1e6, x.top1) for x in rows_of("recipe", r, "", s)
                                or []]) for (r, s), f in fronts.items() if f is not None},
    }
    return results, plot


def _label(key: _Key) -> str:
    if key.role == "scratch":
        return f"scratch-{key.arch} ({key.recipe} space) seed {key.seed}"
    return f"{key.recipe} seed {key.seed}"


def _test_stat(per_seed: list[dict[str, float]]) -> dict[str, Any]:
    """Test accuracy over seeds: mean, sd over seeds, and the SE of the mean of independent
    evaluations (sqrt(sum se^2) / k; with one seed, that seed's binomial SE)."""
    ok = [x for x in per_seed if _finite(x["top1"])]
    st = _stat(x["top1"] for x in ok)
    ses = [x["se"] for x in ok if _finite(x["se"])]
    se = math.sqrt(sum(s * s for s in ses)) / len(ses) if ses and len(ses) == len(ok) \
        else math.nan
    macs = _stat(x["macs"] for x in ok)["mean"]
    return {"top1": st["mean"], "sd": st["sd"], "se": se, "macs": macs, "mmacs": macs / 1e6,
            "n": _stat(x["n"] for x in ok)["mean"], "seeds": st["n"]}


# ---------------------------------------------------------------- figures



def _render(make: Callable[[], Any]) -> bytes:
    """One figure as PNG bytes, every text drawn literally: recipe names and notes are user
    text, and matplotlib would parse ``$...$`` in them as mathtext (crashing on what is not
    TeX). Text objects read the setting when created and tick labels when drawn, so both
    happen inside the context. The same bytes go to the README's PNG and, base64, into the
    HTML: one rendering per figure (drawing is most of the report's time)."""
    plt = pyplot()
    with plt.rc_context({"text.parse_math": False}):
        fig = make()
        try:
            png = io.BytesIO()
            fig.savefig(png, format="png", dpi=110, bbox_inches="tight", pad_inches=0.1)
        finally:
            plt.close(fig)
    return png.getvalue()




def _colors(names: Sequence[str]) -> dict[str, Any]:
    cmap = pyplot().get_cmap("tab10")
    return {m: cmap(i % 10) for i, m in enumerate(names)}


def _fig_curves(curves: list[tuple[str, dict[str, Any], tuple[tuple[str, float], ...]]]) -> Any:
    if not curves:
        return empty_figure("no finished training runs")
    fig, axes = grid(len(curves), 4.8, 3.5)
    for ax, (label, series, phases) in zip(axes, curves):
        for key, style in _CURVE_STYLES:
            if key in series:
                ax.plot(*series[key], style, color="tab:blue", label=key.removeprefix("acc_"),
                        marker="o", markersize=2.5)
        if "loss" in series:
            twin = ax.twinx()
            twin.plot(*series["loss"], "-", color="tab:red", alpha=0.6, lw=1, label="loss",
                      marker=".", markersize=3)
            twin.set_ylabel("loss", color="tab:red")
        for i, (name, start) in enumerate(phases):
            if not _finite(start) or (i == 0 and start <= 0):
                continue
            # a phase spans steps start+1 .. end (metrics are logged at 1-based epochs), so
            # its boundary lies half an epoch before its first point
            ax.axvline(start + 0.5, color="grey", ls="--", lw=0.8)
            ax.text(start + 0.5, 1.0, f" {name}", transform=ax.get_xaxis_transform(), fontsize=7,
                    va="top", rotation=90, color="grey")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test top-1")
        ax.grid(alpha=0.3)
        if any(k in series for k, _ in _CURVE_STYLES):
            ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def _fig_fronts(results: Mapping[str, Any], fronts: Mapping[tuple[str, str], Any],
                colors: Mapping[str, Any]) -> Any:
    if not fronts:
        return empty_figure(f"no recipe has a test evaluation ({_EVAL_ARTIFACT})")
    fig, ax = pyplot().subplots(figsize=(7.5, 4.5))
    for (recipe, seed), (front, points) in fronts.items():
        color = colors.get(recipe, "grey")
        ax.scatter([p[0] for p in points], [p[1] for p in points], s=10, alpha=0.3, color=color)
        ax.plot(*front.staircase(), "-", color=color, lw=2,
                label=f"{recipe} seed {seed} ({front.n_subnets} subnets)")
    for peer in results["scratch"]:
        if _finite(peer["scratch_top1"]) and _finite(peer["macs"]):
            ax.errorbar([peer["macs"] / 1e6], [peer["scratch_top1"]], yerr=[peer["scratch_se"]],
                        fmt="kx", capsize=3,
                        label=f"scratch-{peer['arch']} ({peer['recipe']} space)")
    if results["shared_range_mmacs"]:
        ax.axvspan(*results["shared_range_mmacs"], color="grey", alpha=0.08,
                   label="every recipe has subnets")
    for x in results["mac_points"]:
        ax.axvline(x, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("MMACs")
    ax.set_ylabel("test top-1 (CIFAR-10 test split)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _fig_scratch(results: Mapping[str, Any], colors: Mapping[str, Any]) -> Any:
    peers = [p for p in results["scratch"]
             if _finite(p["scratch_top1"]) or _finite(p["recipe_top1"])]
    if not peers:
        return empty_figure("no from-scratch peer with a test evaluation")
    fig, ax = pyplot().subplots(figsize=(max(4.5, 2.2 * len(peers)), 3.8))
    labels = []
    for i, p in enumerate(peers):
        if _finite(p["recipe_top1"]):
            ax.errorbar([i - 0.1], [p["recipe_top1"]], yerr=[_nz(p["recipe_se"])], fmt="o",
                        capsize=4, color=colors.get(p["recipe"], "tab:blue"),
                        label=f"{p['recipe']} subnet" if i == 0 else None)
        if _finite(p["scratch_top1"]):
            ax.errorbar([i + 0.1], [p["scratch_top1"]], yerr=[_nz(p["scratch_se"])], fmt="s",
                        capsize=4, color="black", label="from scratch" if i == 0 else None)
        labels.append(f"{p['arch']} ({p['recipe']})\nseed {p['seed']}, {_mm(p['macs'])} MMACs")
    ax.set_xticks(range(len(peers)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_xlim(-0.6, len(peers) - 0.4)
    ax.set_ylabel("test top-1 ± SE")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _nz(value: float) -> float:
    return value if _finite(value) else 0.0


def _fig_cost(results: Mapping[str, Any]) -> Any:
    bars: list[tuple[str, dict[str, dict[str, float]]]] = []
    for recipe, rec in results["recipes"].items():
        absent = sorted({m.split(" ", 1)[0] for m in rec["missing"]} & set(COST_PARTS),
                        key=COST_PARTS.index)
        label = f"{recipe}\n(no {', '.join(absent)})" if absent else recipe
        bars.append((label, {p: {m: rec["cost"][p][m]["mean"] for m in STUDY_COSTS}
                              for p in COST_PARTS}))
    for p in results["scratch"]:
        c = p["scratch_cost"]
        bars.append((f"scratch-{p['arch']}\n({p['recipe']}, s{p['seed']})",
                     {"train": c["train"], "search": {m: math.nan for m in STUDY_COSTS},
                      "eval": c["eval"]}))
    if not bars or all(not _finite(v) for _, parts in bars for c in parts.values()
                       for v in c.values()):
        return empty_figure("no finished study runs with cost metrics")
    fig, axes = pyplot().subplots(1, 3, figsize=(max(10.0, 1.4 * len(bars) * 3), 3.8))
    names = [b for b, _ in bars]
    for ax, (metric, label) in zip(axes, (("device_hours", "device-hours"),
                                          ("dollars", "dollars"), ("co2_kg", "CO2 (kg)"))):
        bottom = [0.0] * len(bars)
        for part in COST_PARTS:
            values = [_nz(parts[part][metric]) for _, parts in bars]
            ax.bar(names, values, bottom=bottom, color=_PART_COLORS[part], label=part)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_title(label)
        ax.tick_params(axis="x", rotation=30, labelsize=7)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- HTML


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _mm(value: Any) -> str:
    if not _finite(value):
        return _DASH
    return f"{value / 1e6:.0f}" if value >= 1e7 else f"{value / 1e6:.3g}"


def _pct(value: Any) -> str:
    return f"{100 * value:.2f}" if _finite(value) else _DASH


def _acc_se(top1: Any, se: Any) -> str:
    if not _finite(top1):
        return _DASH
    return f"{_pct(top1)} ± {_pct(se)}" if _finite(se) else _pct(top1)


def _mean_sd(stat: Mapping[str, Any], fmt: Callable[[Any], str]) -> str:
    if not _finite(stat.get("mean")):
        return _DASH
    sd = stat.get("sd")
    return fmt(stat["mean"]) + (f" ± {fmt(sd)}" if _finite(sd) else "")


def _cost_fmt(value: Any) -> str:
    return format_cost(value) if _finite(value) else _DASH


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain HTML table; cells are already escaped HTML."""
    h = "".join(f"<th>{c}</th>" for c in head)
    b = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<div class='scroll'><table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table></div>"


def _recipes_html(results: Mapping[str, Any]) -> str:
    recs = results["recipes"]
    if not recs:
        return "<p>No recipe runs in this study.</p>"
    cost_rows = []
    for r, rec in recs.items():
        cells = [f"<b>{_esc(r)}</b>", _esc(", ".join(rec["seeds"]))]
        for part in (*COST_PARTS, "total"):
            cells += [_esc(_mean_sd(rec["cost"][part][m], _cost_fmt))
                      for m in ("device_hours", "dollars", "co2_kg")]
        cells.append(_esc(", ".join(rec["missing"]) or _DASH))
        cost_rows.append(cells)
    head = ["recipe", "seeds"] + [f"{p} {u}" for p in (*COST_PARTS, "total")
                                  for u in ("device-h", "$", "CO2 kg")] + ["missing runs"]
    acc_rows = []
    points = results["mac_points"]
    for r, rec in recs.items():
        cells = [f"<b>{_esc(r)}</b>"]
        for n in EXTREMES:
            t = rec["test"][n]
            sd = f" (sd {_pct(t['sd'])})" if _finite(t["sd"]) else ""
            cells.append(_esc(f"{_acc_se(t['top1'], t['se'])}{sd} @ {_mm(t['macs'])} MMACs"))
        cells += [_esc(_mean_sd(a, _pct)) for a in rec["acc_at"]]
        acc_rows.append(cells)
    acc_head = ["recipe"] + [f"{n} top-1 % ± SE" for n in EXTREMES] + \
        [f"top-1 % @ {x:g} MMACs" for x in points]
    return ("<h3>Cost: training + search + test evaluation (mean ± sd over seeds)</h3>"
            + _table(head, cost_rows)
            + "<p>A total is shown only when all three parts finished: a missing part would "
              "understate what the recipe cost.</p>"
            + "<h3>Test-split accuracy</h3>" + _table(acc_head, acc_rows)
            + "<p>Top-1 on the CIFAR-10 test split with its binomial standard error "
              "sqrt(p(1-p)/n). Accuracy at X MMACs: the most accurate evaluated subnet costing "
              "at most X, read off the recipe's Pareto front; " + _DASH + " outside the "
              "recipe's range or without its test evaluation. The smallest, middle and largest "
              "subnets of different spaces are different networks: their MACs are shown.</p>")


def _scratch_html(results: Mapping[str, Any]) -> str:
    peers = results["scratch"]
    if not peers:
        return "<p>No from-scratch peers in this study.</p>"
    rows = []
    for p in peers:
        rows.append([_esc(p["arch"]), _esc(p["recipe"]), _esc(p["seed"]), _esc(_mm(p["macs"])),
                     _esc(_acc_se(p["recipe_top1"], p["recipe_se"])),
                     _esc(_acc_se(p["scratch_top1"], p["scratch_se"])),
                     _esc(_acc_se(p["diff"], p["diff_se"])),
                     _esc(_cost_fmt(p["scratch_cost"]["total"]["device_hours"])),
                     _esc(", ".join(p["missing"]) or _DASH)])
    head = ["arch", "recipe (space)", "seed", "MMACs", "recipe subnet top-1 % ± SE",
            "from scratch top-1 % ± SE", "difference (subnet − scratch) ± SE",
            "scratch device-h (train + eval)", "missing runs"]
    return (_table(head, rows) + "<p>The recipe's subnet of the same architecture (its "
            "test evaluation's extreme row) against the network trained alone for the same "
            "number of epochs; SE of the difference sqrt(se1² + se2²).</p>")


def _ranking_html(results: Mapping[str, Any]) -> str:
    ranking = results["ranking"]
    if not ranking:
        return "<p>No recipes to rank.</p>"
    rng = results["shared_range_mmacs"]
    mean_head = (f"mean top-1 % over {rng[0]:.4g}-{rng[1]:.4g} MMACs" if rng
                 else "mean top-1 % (no shared range)")
    rows = []
    for r in ranking:
        sd = f" ± {_pct(r['front_mean_sd'])}" if _finite(r["front_mean_sd"]) else ""
        rows.append([_esc(r["rank"] if r["rank"] is not None else _DASH),
                     f"<b>{_esc(r['recipe'])}</b>",
                     _esc(_pct(r["front_mean"]) + (sd if _finite(r["front_mean"]) else "")),
                     *[_esc(_pct(a)) for a in r["acc_at"]],
                     _esc(_cost_fmt(r["device_hours"])), _esc(_cost_fmt(r["dollars"])),
                     _esc(_cost_fmt(r["co2_kg"]))])
    head = ["rank", "recipe", mean_head, *[f"top-1 % @ {x:g} MMACs"
                                            for x in results["mac_points"]],
            "total device-h", "total $", "total CO2 kg"]
    return (_table(head, rows) + "<p>Ranked by the mean test accuracy of each recipe's front "
            "over the MAC range every recipe covers, as measured.</p>")


def _auto_notes(results: Mapping[str, Any]) -> list[str]:
    """Caveats the data itself shows: missing runs, per-epoch curves on fewer test images."""
    notes = [f"The experiment also holds study {o['study'] or '?'} scale {o['scale'] or '?'}, "
             "not in this report." for o in results["other_studies"]]
    for r, rec in results["recipes"].items():
        if rec["missing"]:
            notes.append(f"{r}: missing {', '.join(rec['missing'])}.")
    by_images: dict[str, list[str]] = {}
    for r, rec in results["recipes"].items():
        for x in rec["per_seed"].values():
            if x["train"]["eval_images"] is not None:
                by_images.setdefault(str(x["train"]["eval_images"]), []).append(r)
    for images, names in by_images.items():
        notes.append(f"The learning curves' per-epoch accuracies use {images} test images each "
                     f"({', '.join(dict.fromkeys(names))}); the tables use the full test "
                     "evaluation.")
    return notes


_STYLE = """
body{font-family:sans-serif;margin:1.5em;max-width:1400px;color:#222}
figure{margin:1.5em 0;padding:0.5em;border:1px solid #ddd}
figure img{max-width:100%;height:auto;display:block}
div.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:0.85em}
td,th{padding:3px 7px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
thead th{white-space:normal;text-align:center;background:#f3f3f3;border-bottom:1px solid #ccc;
max-width:12em}
"""


def _html(experiment: str, results: Mapping[str, Any], pngs: Mapping[str, bytes]) -> str:
    studies = results["study"] or experiment
    if results["scale"]:
        studies += f" (scale {results['scale']})"
    notes = [*results["notes"], *_auto_notes(results)]
    parts = [
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>ofa-platform study: {_esc(experiment)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Study {_esc(studies)} (MLflow experiment {_esc(experiment)})</h1>",
        f"<p>Generated {_esc(time.strftime('%Y-%m-%d %H:%M:%S %Z'))} from MLflow: the newest "
        "FINISHED run of each study unit; failed attempts are ignored.</p>",
        "<h2>Recipes</h2>", _recipes_html(results),
        "<h2>Subnet vs the same network trained from scratch</h2>", _scratch_html(results),
        "<h2>Cost against accuracy at equal MACs</h2>", _ranking_html(results),
    ]
    for stem, title in FIGURES:
        data = base64.b64encode(pngs[stem]).decode("ascii")
        parts.append(f"<h2>{_esc(title)}</h2><figure id='fig-{stem}'><img alt='{_esc(title)}' "
                     f"src='data:image/png;base64,{data}'>"
                     f"<figcaption>{_esc(title)}</figcaption></figure>")
    parts.append("<h2>Notes</h2>")
    parts.append("<ul>" + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul>" if notes
                 else "<p>None.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _jsonable(value: Any) -> Any:
    """NaN and infinities as null (JSON has no NaN), tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _build(experiment: str, data: _Runs, notes: Sequence[str]) -> StudyReport:
    """Results, figures and HTML; the figures and tables read the raw numbers (NaN where a
    value is missing), the report keeps the JSON form (null)."""
    with tempfile.TemporaryDirectory(prefix="ofa-study-") as tmp:
        raw, plot = _collect(data, Path(tmp), notes, experiment)
    colors = _colors(list(raw["recipes"]))
    makers: dict[str, Callable[[], Any]] = {
        "curves": lambda: _fig_curves(plot["curves"]),
        "fronts": lambda: _fig_fronts(raw, plot["fronts"], colors),
        "scratch": lambda: _fig_scratch(raw, colors),
        "cost": lambda: _fig_cost(raw),
    }
    pngs = {stem: _render(makers[stem]) for stem, _ in FIGURES}
    return StudyReport(experiment, _jsonable(raw), _html(experiment, raw, pngs), pngs)


def build_study_report(experiment: str, tracking_uri: str | None = None, *,
                       notes: Sequence[str] = (), study: str | None = None,
                       scale: str | None = None, protocol: str | None = None) -> StudyReport:
    """The study report of ``experiment``: results, HTML and figures, in memory.

    Reads MLflow only. An unknown experiment, or one without a FINISHED study run, is a
    ``UserError``; a recipe missing some of its runs is reported as missing. ``notes`` are the
    caller's caveats, listed in the report's notes section and in the results. ``study`` and
    ``scale`` pick one study of an experiment that holds several (tags ``ofa.study``,
    ``ofa.study_scale``); by default the one with the newest finished run. ``protocol`` keeps
    only runs of that protocol digest (``StudyProtocol.digest``).
    """
    uri = resolve_uri(tracking_uri)
    return _build(experiment, _load(experiment, uri, study, scale, protocol), notes)


def write_study_report(experiment: str, out_dir: str | Path, tracking_uri: str | None = None,
                       *, log_to_mlflow: bool = True, notes: Sequence[str] = (),
                       study: str | None = None, scale: str | None = None,
                       protocol: str | None = None) -> StudyReport:
    """Write ``report.html``, the figures as PNG and ``study_results.json`` into ``out_dir``
    (each file atomically), and log them to a new ``study-report`` run.

    The study is read (and a bad experiment refused) before any run or file is made; the
    report run (tag ``ofa.kind=study_report``, same experiment) is then opened before the work,
    so its duration is the report's, and ``tracked_run`` ends it FINISHED or FAILED, never
    RUNNING. Every output is built in memory first, so a failure leaves no half-written file.
    ``notes``, ``study``, ``scale``, ``protocol``: as for :func:`build_study_report`.
    """
    from ofa_platform.files import atomic_path, check_output_dir

    uri = resolve_uri(tracking_uri)
    out = check_output_dir(out_dir, "study report directory")
    data = _load(experiment, uri, study, scale, protocol)

    def produce() -> StudyReport:
        report = _build(experiment, data, notes)
        files: dict[str, tuple[Path, bytes]] = {
            "report": (out / "report.html", report.html.encode("utf-8")),
            "results": (out / "study_results.json",
                        json.dumps(report.results, indent=2, allow_nan=False).encode("utf-8")),
        }
        for stem, _ in FIGURES:
            files[stem] = (out / f"{stem}.png", report.figures[stem])
        for path, payload in files.values():
            with atomic_path(path, suffix=path.suffix) as tmp:
                tmp.write_bytes(payload)
        return replace(report, paths={k: p for k, (p, _) in files.items()})

    if not log_to_mlflow:
        return produce()
    import mlflow

    from ofa_platform.tracking import tracked_run

    with tracked_run(experiment, "study-report", tags={"ofa.kind": "study_report"},
                     tracking_uri=uri) as run:
        report = produce()
        for path in report.paths.values():
            mlflow.log_artifact(str(path))
    return replace(report, run_id=run.info.run_id)
