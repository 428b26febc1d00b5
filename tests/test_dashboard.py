"""The comparison table and HTML report, from synthetic MLflow runs shaped like the schema in
docs/architecture.md (training runs with nested phases and per-epoch metrics, search runs with
pareto/population Parquet artifacts)."""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest

from ofa_platform.cli import main
from ofa_platform.errors import UserError

EXPERIMENT = "cmp-test"

# method -> (phases [(name, start, end)], device_hours, dollars, kwh, co2_kg, acc_s, acc_l)
TRAIN = {
    "ofa": ([("teacher", 0, 4), ("kernel", 4, 8), ("depth", 8, 12)], 4.0, 9.92, 1.2, 0.5,
            0.61, 0.75),
    "compofa": ([("teacher", 0, 4), ("compound", 4, 8)], 2.0, 4.96, 0.6, 0.25, 0.62, 0.76),
    "deps": ([("warmup", 0, 3), ("shrink", 3, 6)], 1.5, 3.72, 0.45, 0.2, 0.63, 0.74),
}
SEARCH_S_PER_TARGET = {"ofa": [3.0, 5.0], "compofa": [2.0], "deps": [1.0, 1.0]}
HARDWARE = ["note10", "cpu"]
# Measured subnets per method: MMACs on a 10-MMAC grid over each space's range, accuracy
# OFFSET + MMACs / 2000 (every sample on the front), so the shared range is 150-450 MMACs,
# the grid 150, 200, ..., 450 and the headline points 150, 300, 450.
MAC_RANGE = {"ofa": (120, 560), "compofa": (130, 450), "deps": (150, 560)}
OFFSET = {"ofa": 0.50, "compofa": 0.52, "deps": 0.51}
MS_PER_MMAC = {"note10": 1 / 20, "cpu": 1 / 50}
CARDINALITY = {"ofa": 2.0e19, "compofa": 243, "deps": 2.0e19}
# CompOFA starts from OFA's teacher phase (a shared teacher)
SHARED = ("compofa", "ofa", "teacher")


def phase_cost(method: str, upto: str) -> dict[str, float]:
    """The cost of ``method``'s phases up to ``upto``: each phase's share of the epochs."""
    phases, dh, dollars, kwh, co2, *_ = TRAIN[method]
    end = next(e for name, _, e in phases if name == upto)
    frac = end / phases[-1][2]
    return {"device_hours": dh * frac, "dollars": dollars * frac, "energy_kwh": kwh * frac,
            "co2_kg": co2 * frac}


def _train_run(client, exp_id: str, method: str, tags: dict[str, str] | None = None) -> str:
    from mlflow.entities import Metric, Param

    phases, dh, dollars, kwh, co2, acc_s, acc_l = TRAIN[method]
    total = phases[-1][2]
    run = client.create_run(exp_id, run_name=f"train-{method}", tags={
        "ofa.kind": "train", "ofa.method": method, "ofa.space": f"{method}_mbv3",
        "ofa.dataset": "synthetic", "ofa.hardware": "cpu", **(tags or {})})
    rid = run.info.run_id
    for index, (name, start, end) in enumerate(phases):
        child = client.create_run(exp_id, run_name=f"{method}-{name}", tags={
            "mlflow.parentRunId": rid, "ofa.phase": name, "ofa.kind": "train_phase",
            "ofa.method": method})
        client.log_batch(child.info.run_id, params=[
            Param("phase_index", str(index)), Param("start_epoch", str(start)),
            Param("end_epoch", str(end))], metrics=[
            Metric(k, v * (end - start) / total, 0, 0) for k, v in (
                ("device_hours", dh), ("dollars", dollars), ("energy_kwh", kwh),
                ("co2_kg", co2))])
        client.set_terminated(child.info.run_id, "FINISHED")
    metrics = []
    for epoch in range(total):
        frac = (epoch + 1) / total
        for key, value in (("loss", 2.0 - frac), ("lr", 0.1 * (1 - frac)), ("beta", frac),
                           ("acc_smallest", acc_s * frac),
                           ("acc_middle", (acc_s + acc_l) / 2 * frac),
                           ("acc_largest", acc_l * frac), ("images_per_s", 100.0)):
            metrics.append(Metric(key, value, 0, epoch))
    for key, value in (("device_hours", dh), ("dollars", dollars), ("energy_kwh", kwh),
                       ("co2_kg", co2), ("co2_lbs", co2 * 2.20462),
                       ("projected_full_device_hours", dh * 100), ("epochs_run", total),
                       ("epochs_total", total * 50)):
        metrics.append(Metric(key, value, 0, 0))
    client.log_batch(rid, metrics=metrics)
    client.set_terminated(rid, "FINISHED")
    return rid


def _search_run(client, exp_id: str, method: str, hardware: str, per_target: float,
                train_id: str, tmp: Path, rng: random.Random) -> str:
    from mlflow.entities import Metric, Param

    run = client.create_run(exp_id, run_name=f"search-{method}-{hardware}", tags={
        "ofa.kind": "search", "ofa.method": method, "ofa.space": f"{method}_mbv3",
        "ofa.hardware": hardware, "ofa.strategy": "top-down", "ofa.train_run_id": train_id})
    rid = run.info.run_id
    lo, hi = MAC_RANGE[method]
    client.log_batch(rid, params=[Param("space_cardinality", f"{CARDINALITY[method]:.0f}"),
                                  Param("space_macs_min", str(lo * 10**6)),
                                  Param("space_macs_max", str(hi * 10**6))])
    targets = [15.0, 25.0, 35.0]
    client.log_batch(rid, metrics=[
        Metric("search_time_s", per_target * len(targets), 0, 0),
        Metric("search_time_per_target_s", per_target, 0, 0),
        Metric("evaluations", 300, 0, 0), Metric("device_hours", 0.01, 0, 0),
        Metric("dollars", 0.02, 0, 0), Metric("energy_kwh", 0.001, 0, 0),
        Metric("co2_kg", 0.0004, 0, 0), Metric("co2_lbs", 0.0009, 0, 0)])
    out = tmp / rid
    out.mkdir()
    pd.DataFrame({
        "target": targets, "feasible": [False, True, True],
        "arch_json": ['{"ks":[[3]],"e":[[3]],"r":160}'] * 3,
        "cost": [12.0, 24.0, 33.0], "accuracy": [0.6, 0.7, 0.74],
        "measured_accuracy": [0.59, 0.69, 0.73], "macs": [1e8, 2e8, 3e8],
        "params": [2e6, 3e6, 4e6]}).to_parquet(out / "pareto.parquet")
    lat = [rng.uniform(10, 40) for _ in range(60)]
    pd.DataFrame({"cost": lat, "accuracy": [0.5 + x / 200 + rng.uniform(-.02, .02)
                                                  for x in lat]}).to_parquet(
        out / "population.parquet")
    mmacs = list(range(lo, hi + 1, 10))
    subnets = pd.DataFrame({
        "source": "sample", "arch_json": [f'{{"m":{m}}}' for m in mmacs],
        "macs": [m * 10**6 for m in mmacs], "params": 0,
        "cost": [m * MS_PER_MMAC[hardware] for m in mmacs], "unit": "ms",
        "measured_accuracy": [OFFSET[method] + m / 2000 for m in mmacs], "target": math.nan})
    # a dominated subnet: measured, but not on the front
    subnets.loc[len(subnets)] = ["sample", "{}", 400 * 10**6, 0, 400 * MS_PER_MMAC[hardware],
                                 "ms", 0.1, math.nan]
    subnets.to_parquet(out / "subnets.parquet")
    client.log_artifact(rid, str(out / "subnets.parquet"))
    client.log_artifact(rid, str(out / "pareto.parquet"))
    client.log_artifact(rid, str(out / "population.parquet"))
    client.set_terminated(rid, "FINISHED")
    return rid


def make_experiment(uri: str, tmp: Path, name: str = EXPERIMENT) -> dict[str, str]:
    """Synthetic training + search runs of ofa, compofa and deps; returns method -> train id."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(name, artifact_location=(tmp / "artifacts").as_uri())
    rng = random.Random(0)
    ids = {}
    staging = tmp / "staging"
    staging.mkdir(exist_ok=True)
    for method in TRAIN:
        tags = None
        if method == SHARED[0]:
            tags = {"ofa.init_from_run_id": ids[SHARED[1]], "ofa.init_from_phase": SHARED[2]}
        ids[method] = _train_run(client, exp_id, method, tags)
        for hw, per_target in zip(HARDWARE, SEARCH_S_PER_TARGET[method]):
            _search_run(client, exp_id, method, hw, per_target, ids[method], staging, rng)
    # Noise the table must ignore: a FAILED training run and an unrelated run.
    failed = client.create_run(exp_id, tags={"ofa.kind": "train", "ofa.method": "ofa"})
    client.log_metric(failed.info.run_id, "device_hours", 999.0)
    client.set_terminated(failed.info.run_id, "FAILED")
    other = client.create_run(exp_id, tags={"note": "not ours"})
    client.set_terminated(other.info.run_id, "FINISHED")
    return ids


@pytest.fixture(scope="session")
def _template_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Build the synthetic store once (creating an MLflow SQLite store alone costs seconds)."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("mlflow-template")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    ids = make_experiment(uri, root)
    client = MlflowClient(tracking_uri=uri)
    client.create_experiment("empty", artifact_location=(root / "empty").as_uri())
    solo = client.create_experiment("solo", artifact_location=(root / "solo").as_uri())
    run = client.create_run(solo, tags={"ofa.kind": "train", "ofa.method": "deps"})
    client.log_metric(run.info.run_id, "device_hours", 2.0)
    client.set_terminated(run.info.run_id, "FINISHED")
    return root / "mlflow.db", ids


@pytest.fixture
def store(_template_store: tuple[Path, dict[str, str]], mlflow_uri: str) -> dict[str, str]:
    """A private copy of the synthetic store at ``mlflow_uri``; returns method -> train id."""
    shutil.copy(_template_store[0], mlflow_uri.removeprefix("sqlite:///"))
    return _template_store[1]


def test_table_numbers(mlflow_uri: str, store: dict[str, str]) -> None:
    from dashboards.compare import comparison_table, format_table

    ids = store
    table = comparison_table(EXPERIMENT, mlflow_uri)
    assert list(table.index) == ["ofa", "compofa", "deps"]
    for method, (phases, dh, dollars, kwh, co2, acc_s, acc_l) in TRAIN.items():
        row = table.loc[method]
        assert row["epochs"] == phases[-1][2]
        assert row["device_hours"] == pytest.approx(dh)
        assert row["dollars"] == pytest.approx(dollars)
        assert row["kwh"] == pytest.approx(kwh)
        assert row["co2_kg"] == pytest.approx(co2)
        assert row["acc_smallest"] == pytest.approx(acc_s)   # last epoch's value
        assert row["acc_largest"] == pytest.approx(acc_l)
        per_target = SEARCH_S_PER_TARGET[method]
        assert row["search_s_per_target"] == pytest.approx(sum(per_target) / len(per_target))
        assert row["train_run_id"] == ids[method]
        assert row["device_hours_vs_ofa"] == pytest.approx(dh / TRAIN["ofa"][1])
        assert row["dollars_vs_ofa"] == pytest.approx(dollars / TRAIN["ofa"][2])
        assert row["epochs_vs_ofa"] == pytest.approx(phases[-1][2] / 12)
        assert row["search_s_per_target_vs_ofa"] == pytest.approx(
            row["search_s_per_target"] / 4.0)
    text = format_table(table)
    assert "compofa" in text and "x0.50" in text and "x0.38" in text   # 2/4 and 1.5/4


def test_table_without_ofa_has_no_ratios(mlflow_uri: str, store: dict[str, str]) -> None:
    from dashboards.compare import comparison_table

    table = comparison_table("solo", mlflow_uri)
    assert table.loc["deps", "device_hours"] == 2.0
    assert math.isnan(table.loc["deps", "device_hours_vs_ofa"])
    assert math.isnan(table.loc["deps", "acc_largest"])   # missing stays missing


def test_report_has_every_plot_and_is_logged(mlflow_uri: str, store: dict[str, str],
                                             tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from dashboards.report import FIGURES, write_report

    out = tmp_path / "out" / "report.html"
    result = write_report(EXPERIMENT, out, mlflow_uri)
    text = out.read_text()
    assert "<link" not in text and "src=\"http" not in text   # self-contained
    for fig_id, _title in FIGURES:
        start = text.index(f"id='fig-{fig_id}'")
        body = text[start:text.index("</figure>", start)]
        assert "<svg" in body and body.count("<path") > 5, fig_id
        assert "no search runs" not in body and "no finished" not in body, fig_id
    curves = text[text.index("id='fig-curves'"):]
    assert "compound" not in curves[:200]   # labels are drawn as paths, not text
    client = MlflowClient(tracking_uri=mlflow_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["ofa.kind"] == "compare"
    names = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"report.html", "comparison.json"} <= names
    # a second comparison ignores the first comparison run
    again = write_report(EXPERIMENT, tmp_path / "again.html", mlflow_uri, log_to_mlflow=False)
    assert list(again.table.index) == ["ofa", "compofa", "deps"]


def test_report_with_missing_data_still_has_every_figure(mlflow_uri: str, store: dict[str, str],
                                                         tmp_path: Path) -> None:
    from dashboards.report import FIGURES, write_report

    write_report("empty", tmp_path / "r.html", mlflow_uri, log_to_mlflow=False)
    text = (tmp_path / "r.html").read_text()
    assert all(text.count(f"id='fig-{f}'") == 1 for f, _ in FIGURES)


def test_cli_compare(mlflow_uri: str, store: dict[str, str], tmp_path: Path,
                     capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli.html"
    assert main(["compare", "--experiment", EXPERIMENT, "--out", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [m["method"] for m in data["methods"]] == ["ofa", "compofa", "deps"]
    assert data["methods"][1]["device_hours_vs_ofa"] == pytest.approx(0.5)
    assert Path(data["report"]).is_file() and data["mlflow_run_id"]
    assert main(["compare", "--experiment", EXPERIMENT, "--out", str(out), "--no-log"]) == 0
    assert "compofa" in capsys.readouterr().out


def test_cli_unknown_experiment(mlflow_uri: str, store: dict[str, str], tmp_path: Path,
                                capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "nope.html"
    assert main(["compare", "--experiment", "does-not-exist", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does-not-exist" in err
    assert not out.exists()
    with pytest.raises(UserError):
        from dashboards.compare import load_runs
        load_runs("does-not-exist", mlflow_uri)


def test_missing_sqlite_store_is_not_created(tmp_path: Path) -> None:
    from dashboards.compare import load_runs

    db = tmp_path / "none" / "mlflow.db"
    with pytest.raises(UserError, match="no MLflow store"):
        load_runs("x", f"sqlite:///{db}")
    assert not db.exists()


def test_accuracy_at_equal_macs_and_spaces(mlflow_uri: str, store: dict[str, str]) -> None:
    from dashboards.compare import comparison_table, format_table

    table = comparison_table(EXPERIMENT, mlflow_uri)
    assert table.attrs["macs_shared"] == (150.0, 450.0)   # where every method has subnets
    assert [c for c in table.columns if c.startswith("acc@")] == [
        "acc@150MMACs", "acc@300MMACs", "acc@450MMACs"]
    for method in TRAIN:
        row = table.loc[method]
        for x in (150, 300, 450):   # the dominated subnet at 400 MMACs changes nothing
            assert row[f"acc@{x}MMACs"] == pytest.approx(OFFSET[method] + x / 2000)
        # staircase over 150-450: left-edge accuracies of 150, 160, ..., 440 averaged
        assert row["auc_macs"] == pytest.approx(OFFSET[method] + 295 / 2000)
        lo, hi = MAC_RANGE[method]
        assert (row["space_mmacs_min"], row["space_mmacs_max"]) == (lo, hi)
        assert (row["mmacs_smallest"], row["mmacs_largest"]) == (lo, hi)
        assert row["space_cardinality"] == pytest.approx(CARDINALITY[method])
        assert row["space"] == f"{method}_mbv3"
    text = format_table(table)
    assert "acc@300MMACs" in text and "0.6100 @120M" in text   # extremes labelled with MACs
    assert "(243, 130M-450M)" in text                            # CompOFA's space beside it
    assert "over 150-450 MMACs" in text


def test_latency_fronts_per_hardware_and_na_outside_range(mlflow_uri: str,
                                                          store: dict[str, str]) -> None:
    import math as m

    from dashboards.compare import compare_axes, load_runs

    axes = {a.axis: a for a in compare_axes(load_runs(EXPERIMENT, mlflow_uri))}
    assert set(axes) == {"macs", "latency:note10", "latency:cpu"}
    note10, cpu = axes["latency:note10"], axes["latency:cpu"]
    assert note10.unit == "ms" and note10.shared == pytest.approx((7.5, 22.5))
    assert set(cpu.fronts) == {"ofa", "deps"}            # CompOFA searched note10 only
    assert cpu.shared == pytest.approx((3.0, 11.2))
    assert m.isnan(cpu.accuracy("compofa", cpu.grid[0]))  # n/a: no subnets on this hardware
    assert m.isnan(note10.fronts["compofa"].accuracy_at(23.0))   # beyond CompOFA's range
    assert note10.accuracy("ofa", 15.0) == pytest.approx(OFFSET["ofa"] + 300 / 2000)


def test_shared_teacher_counted_once(mlflow_uri: str, store: dict[str, str]) -> None:
    from dashboards.compare import comparison_table, load_runs, shared_phases

    ids = store
    runs = load_runs(EXPERIMENT, mlflow_uri)
    shared = shared_phases(runs)
    assert len(shared) == 1
    sp = shared[0]
    assert (sp.run_id, sp.phase, sp.source_method) == (ids["ofa"], "teacher", "ofa")
    assert sp.methods == ("ofa", "compofa")
    teacher = phase_cost("ofa", "teacher")
    for key, value in teacher.items():
        assert sp.cost[key] == pytest.approx(value)
    table = comparison_table(runs)
    search = {"ofa": 0.02, "compofa": 0.01, "deps": 0.02}    # 0.01 device-hours per search
    own = {m: TRAIN[m][1] + search[m] for m in TRAIN}
    # OFA trained the teacher: from scratch is all it ran; given the teacher, less the teacher
    assert table.loc["ofa", "scratch_device_hours"] == pytest.approx(own["ofa"])
    assert table.loc["ofa", "total_device_hours"] == pytest.approx(
        own["ofa"] - teacher["device_hours"])
    # CompOFA started from it: given the teacher is what it ran, from scratch adds the teacher
    assert table.loc["compofa", "total_device_hours"] == pytest.approx(own["compofa"])
    assert table.loc["compofa", "scratch_device_hours"] == pytest.approx(
        own["compofa"] + teacher["device_hours"])
    assert table.loc["compofa", "scratch_dollars"] == pytest.approx(
        TRAIN["compofa"][2] + 0.02 + teacher["dollars"])
    assert table.loc["compofa", "teacher"] == f"{ids['ofa']}:teacher"
    # DεpS shares nothing: both columns equal
    assert table.loc["deps", "total_device_hours"] == pytest.approx(own["deps"])
    assert table.loc["deps", "scratch_device_hours"] == pytest.approx(own["deps"])


def test_costs_keep_significant_digits() -> None:
    from dashboards.compare import format_cost

    assert format_cost(0.000412) == "0.000412"
    assert format_cost(0.0213) == "0.0213"
    assert format_cost(3.764) == "3.76"
    assert format_cost(2400.4) == "2,400"
    assert format_cost(1.2e-5) == "1.20e-05"
    assert format_cost(0) == "0" and format_cost(math.nan) == "-"


def test_report_sections_table_once_and_shared_teacher(mlflow_uri: str, store: dict[str, str],
                                                       tmp_path: Path) -> None:
    from dashboards.report import write_report

    write_report(EXPERIMENT, tmp_path / "r.html", mlflow_uri, log_to_mlflow=False)
    text = (tmp_path / "r.html").read_text()
    summary = text[text.index("<h2>Summary</h2>"):text.index("<h2>Accuracy at equal cost")]
    assert summary.count("<table") == 1 and "<pre" not in text     # the table appears once
    assert "class='sticky'" in summary and "position:sticky" in text
    assert "cost from scratch" in summary and "0.0004" not in summary.replace("0.00040", "")
    assert "150</th>" in text and "450</th>" in text and "n/a" in text
    shared = text[text.index("<h2>Shared teacher"):text.index("<h2>Total cost")]
    assert "ofa, compofa" in shared and "teacher" in shared
    assert "bbox" not in text[:200]


def test_a_front_plots_as_the_staircase_it_is_read_as() -> None:
    from dashboards.fronts import pareto_front

    front = pareto_front([(1.0, 0.1), (2.0, 0.3), (3.0, 0.2)])
    assert front.staircase() == ([1.0, 2.0, 2.0, 3.0], [0.1, 0.1, 0.3, 0.3])
    assert pareto_front([]).staircase() == ([], [])
