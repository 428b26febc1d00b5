"""The CIFAR-10 study report (``dashboards/study.py``) from a small fake study in a temporary
SQLite MLflow store: runs shaped like the study schema (train runs with nested phases and
per-epoch metrics, search runs with costs, eval runs with ``test_eval.parquet``), numbers
checked against values worked out by hand from the rows below."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from ofa_platform.errors import UserError

EXPERIMENT = "study-test"
STUDY = "cifar10-test"

# recipe -> test_eval rows (source, name, MMACs, top1). Fronts by hand:
#   ofa:        (100,.60) (150,.62) (200,.70) (300,.75) (400,.80); (250,.65) is dominated
#   deps_cifar: (120,.63) (220,.72) (300,.74) (380,.78)
# Shared range 120-380 MMACs; grid step 50 -> 150..350; headline points 150, 250, 350.
EVAL_ROWS = {
    "ofa": [("extreme", "smallest", 100, 0.60), ("extreme", "middle", 200, 0.70),
            ("extreme", "largest", 400, 0.80), ("sample", "", 150, 0.62),
            ("sample", "", 250, 0.65), ("search", "", 300, 0.75)],
    "deps_cifar": [("extreme", "smallest", 120, 0.63), ("extreme", "middle", 220, 0.72),
                   ("extreme", "largest", 380, 0.78), ("sample", "", 300, 0.74)],
}
MAC_POINTS = [150.0, 250.0, 350.0]
ACC_AT = {"ofa": [0.62, 0.70, 0.75], "deps_cifar": [0.63, 0.72, 0.74]}
# mean of the staircase over 120-380: (.60*30 + .62*50 + .70*100 + .75*80) / 260 and
# (.63*100 + .72*80 + .74*80) / 260
FRONT_MEAN = {"ofa": 179.0 / 260, "deps_cifar": 179.8 / 260}
# (device_hours, dollars, energy_kwh, co2_kg) per stage
COST = {"train": (2.0, 5.0, 0.8, 0.3), "search": (0.1, 0.25, 0.04, 0.015),
        "eval": (0.05, 0.125, 0.02, 0.0075)}
PEER_TOP1 = 0.78  # scratch-largest of the ofa space, 400 MMACs
N = 10000
NOTE = "epoch_scale 0.01: a smoke study, $not$ the paper's length"


def _se(p: float, n: int = N) -> float:
    return math.sqrt(p * (1 - p) / n)


def _tags(unit: str, recipe: str, kind: str, role: str = "recipe", arch: str = "",
          scale: str = "default") -> dict:
    tags = {"ofa.kind": kind, "ofa.study": STUDY, "ofa.study_unit": unit,
            "ofa.study_seed": "0", "ofa.study_recipe": recipe, "ofa.study_role": role,
            "ofa.study_scale": scale}
    if arch:
        tags["ofa.study_arch"] = arch
    return tags


def _costs(scale: float = 1.0, stage: str = "train") -> list:
    from mlflow.entities import Metric

    return [Metric(k, v * scale, 0, 0) for k, v in zip(
        ("device_hours", "dollars", "energy_kwh", "co2_kg"), COST[stage])]


def _train(client, exp_id: str, name: str, tags: dict, start: int, *, scale: float = 1.0,
           status: str = "FINISHED") -> str:
    from mlflow.entities import Metric, Param

    run = client.create_run(exp_id, start_time=start, run_name=f"train-{name}", tags=tags)
    rid = run.info.run_id
    for index, (phase, lo, hi) in enumerate([("warmup", 0, 2), ("shrink", 2, 4)]):
        child = client.create_run(exp_id, start_time=start + 1, run_name=f"{name}-{phase}",
                                  tags={"mlflow.parentRunId": rid, "ofa.phase": phase,
                                        "ofa.kind": "train_phase"})
        client.log_batch(child.info.run_id, params=[
            Param("phase_index", str(index)), Param("start_epoch", str(lo)),
            Param("end_epoch", str(hi))])
        client.set_terminated(child.info.run_id, "FINISHED")
    metrics = [Metric(k, v, 0, epoch) for epoch in range(1, 5)
               for k, v in (("loss", 2.0 / epoch), ("acc_smallest", 0.1 * epoch),
                            ("acc_middle", 0.12 * epoch), ("acc_largest", 0.15 * epoch))]
    metrics += _costs(scale) + [Metric("epochs_run", 4, 0, 0), Metric("wall_s", 60, 0, 0)]
    client.log_batch(rid, metrics=metrics, params=[
        Param("schedule", name), Param("space", "cifar_mbv3"), Param("epoch_scale", "0.01"),
        Param("eval_split", "test"), Param("eval_images", "1000")])
    client.set_terminated(rid, status)
    return rid


def _search(client, exp_id: str, recipe: str, start: int, scale: float = 1.0) -> str:
    from mlflow.entities import Metric

    run = client.create_run(exp_id, start_time=start, run_name=f"search-{recipe}",
                            tags=_tags(f"search/{recipe}/seed0", recipe, "search"))
    client.log_batch(run.info.run_id, metrics=_costs(scale, "search") + [
        Metric("search_time_s", 12.0, 0, 0)])
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def _eval(client, exp_id: str, tags: dict, rows: list, start: int, tmp: Path,
          status: str = "FINISHED") -> str:
    from mlflow.entities import Metric

    run = client.create_run(exp_id, start_time=start, run_name=tags["ofa.study_unit"],
                            tags=tags)
    rid = run.info.run_id
    frame = pd.DataFrame({
        "source": [r[0] for r in rows], "name": [r[1] for r in rows],
        "arch_json": ["{}"] * len(rows), "macs": [r[2] * 10**6 for r in rows],
        "params": [1e6] * len(rows), "top1": [r[3] for r in rows], "n": [N] * len(rows),
        "se": [_se(r[3]) for r in rows]})
    folder = tmp / rid
    folder.mkdir()
    frame.to_parquet(folder / "test_eval.parquet")
    client.log_artifact(rid, str(folder / "test_eval.parquet"))
    extremes = {r[1]: r[3] for r in rows if r[0] == "extreme"}
    client.log_batch(rid, metrics=_costs(1.0, "eval") + [Metric("test_images", N, 0, 0)] + [
        Metric(f"test_acc_{k}", v, 0, 0) for k, v in extremes.items()])
    client.set_terminated(rid, status)
    return rid


def make_study(uri: str, tmp: Path) -> dict[str, str]:
    """Two recipes (ofa, deps_cifar) with train + search + eval, a recipe with training only
    (bignas: missing its search and eval), a scratch-largest peer of the ofa space, an older
    FINISHED search of ofa that a newer one supersedes, a newer FAILED eval attempt of ofa
    with wrong numbers that must be ignored, and an older run of another scale of the same
    study (same unit key: never mixed in). Returns a few run ids by name."""
    from mlflow.tracking import MlflowClient

    from ofa_platform.tracking import ensure_experiment

    client = MlflowClient(tracking_uri=uri)
    exp_id = ensure_experiment(EXPERIMENT, uri)
    data = tmp / "artifacts-src"
    data.mkdir()
    ids = {}
    t = 1_700_000_000_000
    for i, recipe in enumerate(["ofa", "deps_cifar"]):
        ids[f"train/{recipe}"] = _train(client, exp_id, recipe,
                                        _tags(f"train/{recipe}/seed0", recipe, "train"),
                                        t + 10 * i)
        ids[f"search/{recipe}"] = _search(client, exp_id, recipe, t + 100 + 10 * i)
        ids[f"eval/{recipe}"] = _eval(client, exp_id,
                                      _tags(f"eval/{recipe}/seed0", recipe, "study_eval"),
                                      EVAL_ROWS[recipe], t + 200 + 10 * i, data)
    _search(client, exp_id, "ofa", t + 50, scale=7.0)  # older FINISHED attempt: superseded
    ids["failed"] = _eval(client, exp_id, _tags("eval/ofa/seed0", "ofa", "study_eval"),
                          [(s, n, m, 0.1) for s, n, m, _ in EVAL_ROWS["ofa"]], t + 900, data,
                          status="FAILED")
    _eval(client, exp_id, _tags("eval/ofa/seed0", "ofa", "study_eval", scale="paper"),
          [(s, n, m, 0.2) for s, n, m, _ in EVAL_ROWS["ofa"]], t - 1000, data)
    _train(client, exp_id, "bignas", _tags("train/bignas/seed0", "bignas", "train"), t + 20)
    peer = _tags("train/scratch-largest/seed0", "ofa", "train", "scratch", "largest")
    _train(client, exp_id, "scratch-largest", peer, t + 300, scale=0.5)
    _eval(client, exp_id, _tags("eval/scratch-largest/seed0", "ofa", "study_eval", "scratch",
                                "largest"), [("extreme", "largest", 400, PEER_TOP1)],
          t + 400, data)
    return ids


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str], object, Path]:
    """One fake study and its written report, shared by the tests below (creating the store
    and drawing the figures are most of the time): (uri, run ids, report, out dir)."""
    from dashboards.study import write_study_report

    tmp = tmp_path_factory.mktemp("study")
    uri = f"sqlite:///{tmp / 'm.db'}"
    ids = make_study(uri, tmp)
    out = tmp / "report"
    report = write_study_report(EXPERIMENT, out, uri, notes=[NOTE])
    return uri, ids, report, out


def test_study_results(study) -> None:
    uri, ids, report, out = study

    text = (out / "study_results.json").read_text()
    assert "NaN" not in text
    res = json.loads(text)
    assert res == report.results
    assert res["experiment"] == EXPERIMENT
    assert (res["study"], res["scale"]) == (STUDY, "default")
    assert res["other_studies"] == [{"study": STUDY, "scale": "paper"}]  # its 0.2s: unused
    assert res["mac_points"] == MAC_POINTS
    assert res["shared_range_mmacs"] == [120.0, 380.0]
    assert list(res["recipes"]) == ["ofa", "bignas", "deps_cifar"]

    for recipe in ("ofa", "deps_cifar"):
        rec = res["recipes"][recipe]
        assert rec["seeds"] == ["0"] and rec["missing"] == []
        assert [a["mmacs"] for a in rec["acc_at"]] == MAC_POINTS
        assert [a["mean"] for a in rec["acc_at"]] == pytest.approx(ACC_AT[recipe])
        assert rec["front_mean"]["mean"] == pytest.approx(FRONT_MEAN[recipe])
        for name, (_, _, mmacs, top1) in (
                (r[1], r) for r in EVAL_ROWS[recipe] if r[0] == "extreme"):
            t = rec["test"][name]
            assert t["top1"] == pytest.approx(top1) and t["macs"] == mmacs * 10**6
            assert t["se"] == pytest.approx(math.sqrt(top1 * (1 - top1) / N))
            assert t["sd"] is None  # one seed
        # the total is train + search + eval; the superseded search (7x cost) is not in it
        for i, metric in enumerate(("device_hours", "dollars", "energy_kwh", "co2_kg")):
            parts = [rec["cost"][p][metric]["mean"] for p in ("train", "search", "eval")]
            assert parts == pytest.approx([COST[p][i] for p in ("train", "search", "eval")])
            assert rec["cost"]["total"][metric]["mean"] == pytest.approx(sum(parts))

    # the FAILED newer eval attempt (top1 0.1 everywhere) is ignored
    ofa = res["recipes"]["ofa"]
    assert ofa["per_seed"]["0"]["test"]["largest"]["top1"] == pytest.approx(0.80)
    assert ofa["per_seed"]["0"]["runs"]["eval"] == ids["eval/ofa"] != ids["failed"]
    assert ofa["per_seed"]["0"]["runs"]["search"] == ids["search/ofa"]

    # a recipe without search and eval: shown as missing, no accuracy, no total
    bignas = res["recipes"]["bignas"]
    assert bignas["missing"] == ["search seed 0", "eval seed 0"]
    assert all(a["mean"] is None for a in bignas["acc_at"])
    assert bignas["test"]["largest"]["top1"] is None
    assert bignas["cost"]["total"]["device_hours"]["mean"] is None
    assert bignas["cost"]["train"]["device_hours"]["mean"] == pytest.approx(COST["train"][0])

    [peer] = res["scratch"]
    assert (peer["recipe"], peer["arch"], peer["seed"]) == ("ofa", "largest", "0")
    assert peer["recipe_top1"] == pytest.approx(0.80)
    assert peer["scratch_top1"] == pytest.approx(PEER_TOP1)
    assert peer["recipe_se"] == pytest.approx(_se(0.80))
    assert peer["scratch_se"] == pytest.approx(_se(PEER_TOP1))
    assert peer["diff"] == pytest.approx(0.80 - PEER_TOP1)
    assert peer["diff_se"] == pytest.approx(math.hypot(_se(0.80), _se(PEER_TOP1)))
    assert peer["scratch_cost"]["total"]["device_hours"] == pytest.approx(
        0.5 * COST["train"][0] + COST["eval"][0])
    assert peer["missing"] == []

    # ranked by mean front accuracy over the shared range, as measured; bignas unranked last
    assert [(r["rank"], r["recipe"]) for r in res["ranking"]] == [
        (1, "deps_cifar"), (2, "ofa"), (None, "bignas")]
    assert res["ranking"][0]["device_hours"] == pytest.approx(sum(c[0] for c in COST.values()))
    assert res["notes"] == [NOTE]


def test_study_report_files_and_run(study) -> None:
    from mlflow.tracking import MlflowClient

    from dashboards.study import FIGURES

    uri, _, report, out = study
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page and not re.search(r"(src|href)=['\"]?\w+://", page)
    assert page.count("src='data:image/png;base64,") == len(FIGURES)
    assert NOTE.replace("'", "&#x27;") in page
    assert "\u2014" in page  # bignas's missing values
    assert f"study {STUDY} scale paper, not in this report" in page
    for stem, _ in FIGURES:
        png = out / f"{stem}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", stem
        assert report.paths[stem] == png

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(report.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["ofa.kind"] == "study_report"
    assert run.info.run_name == "study-report"
    logged = {a.path for a in client.list_artifacts(report.run_id)}
    assert logged == {"report.html", "study_results.json",
                      *(f"{stem}.png" for stem, _ in FIGURES)}


def test_report_run_is_not_a_study_run(study) -> None:
    """A second report reads the same study: the first report's run is not part of it."""
    from dashboards.study import build_study_report

    uri, _, first, _ = study
    second = build_study_report(EXPERIMENT, uri, notes=[NOTE])
    assert second.results == first.results
    assert second.paths == {} and second.run_id is None


def test_experiment_without_study_runs_is_a_user_error(study, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from dashboards.study import build_study_report, write_study_report
    from ofa_platform.tracking import ensure_experiment

    mlflow_uri = study[0]
    exp_id = ensure_experiment("empty-study", mlflow_uri)
    client = MlflowClient(tracking_uri=mlflow_uri)
    # a FAILED study attempt is not a finished study run either
    run = client.create_run(exp_id, tags=_tags("train/ofa/seed0", "ofa", "train"))
    client.set_terminated(run.info.run_id, "FAILED")
    with pytest.raises(UserError, match="empty-study") as err:
        build_study_report("empty-study", mlflow_uri)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="empty-study"):
        write_study_report("empty-study", tmp_path / "out", mlflow_uri)
    assert not (tmp_path / "out").exists()
    assert [r.info.run_id for r in client.search_runs([exp_id])] == [run.info.run_id]
    with pytest.raises(UserError, match="no-such-study"):
        build_study_report("no-such-study", mlflow_uri)
    with pytest.raises(UserError, match="scale 'huge'"):
        build_study_report(EXPERIMENT, mlflow_uri, scale="huge")
