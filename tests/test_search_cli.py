"""``ofa-platform search``: user errors are one line and exit 2; a run writes its outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from ofa_platform.cli import main
from ofa_platform.search.runner import SearchRequest, run_search


@pytest.fixture(scope="module")
def assets(shared_data: Path) -> Path:
    return shared_data / "ofa_mbv3_imagenet"


def _args(assets: Path, tmp_path: Path, **over: str) -> list[str]:
    opts = {"--space": "ofa_mbv3", "--width-mult": "1.2",
            "--predictor": str(assets / "acc_predictor.pth"),
            "--latency": f"lut:{assets / 'latency_note10'}", "--targets": "20,40",
            "--resolutions": "160-224:4", "--strategy": "bottom-up", "--generations": "4",
            "--population-size": "16", "--out": str(tmp_path / "out"),
            "--cache-dir": str(tmp_path / "cache")}
    opts.update(over)
    args = ["search"]
    for k, v in opts.items():
        if v is not None:
            args += [k, v]
    return args


def _fails_with(args: list[str], capsys: pytest.CaptureFixture[str], text: str,
                tmp_path: Path) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert text in err, err
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_infeasible_target(assets: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    _fails_with(_args(assets, tmp_path, **{"--targets": "5,20"}), capsys,
                "target 5 ms is infeasible: the smallest subnet of ofa_mbv3 at r=160 costs 9.890",
                tmp_path)


def test_unknown_space(assets: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    _fails_with(_args(assets, tmp_path, **{"--space": "ofa_nope"}), capsys,
                "unknown space 'ofa_nope'", tmp_path)


def test_predictor_of_wrong_input_size(assets: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    bad = tmp_path / "bad.pth"
    torch.save(torch.nn.Sequential(torch.nn.Linear(120, 4), torch.nn.ReLU(),
                                   torch.nn.Linear(4, 1)).state_dict(), bad)
    _fails_with(_args(assets, tmp_path, **{"--predictor": str(bad)}), capsys,
                "takes 120 inputs but space ofa_mbv3 encodes to 128", tmp_path)


def test_lut_missing_a_layer(assets: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    lut = tmp_path / "lut"
    shutil.copytree(assets / "latency_note10", lut)
    path = lut / "200_lookup_table.yaml"
    lines = path.read_text().splitlines(keepends=True)
    i = next(i for i, line in enumerate(lines) if line.startswith("Logits"))
    path.write_text("".join(lines[:i] + lines[i + 4:]))
    _fails_with(_args(assets, tmp_path, **{"--latency": f"lut:{lut}"}), capsys,
                "200_lookup_table.yaml has no entry for layer Logits-input:1x1x1536-output:1000",
                tmp_path)


def test_bad_latency_and_resolution(assets: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    _fails_with(_args(assets, tmp_path, **{"--latency": "phone"}), capsys,
                "--latency 'phone'", tmp_path)
    _fails_with(_args(assets, tmp_path, **{"--resolutions": "100-120:4"}), capsys,
                "not in space ofa_mbv3", tmp_path)


def test_search_run_writes_table_and_mlflow_run(assets: Path, tmp_path: Path, mlflow_uri: str,
                                                capsys) -> None:  # noqa: ANN001
    import mlflow
    import pyarrow.parquet as pq

    assert main(_args(assets, tmp_path) + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["target"] for r in out["results"]] == [20, 40]
    for r in out["results"]:
        assert r["feasible"] and r["cost"] <= r["target"] and r["unit"] == "ms"
        assert r["measured_accuracy"] is None and r["macs"] > 0
    table = pq.read_table(tmp_path / "out" / "pareto.parquet")
    assert table.column_names == ["target", "feasible", "arch_json", "cost", "unit",
                                  "accuracy", "measured_accuracy", "macs", "params"]
    run = mlflow.MlflowClient(mlflow_uri).get_run(out["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["ofa.kind"] == "search" and run.data.tags["ofa.strategy"] == "bottom-up"
    assert run.data.params["targets"] == "20,40" and run.data.params["space"] == "ofa_mbv3"
    assert run.data.tags["ofa.method"] == "ofa" and "ofa.train_run_id" not in run.data.tags
    # opened when the work starts: the run lasts at least the search it records
    assert (run.info.end_time - run.info.start_time) / 1000 >= out["search_time_s"] > 0
    for m in ("search_time_s", "search_time_per_target_s", "evaluations", "device_hours",
              "dollars", "energy_kwh", "co2_kg", "co2_lbs"):
        assert m in run.data.metrics, m
    arts = {a.path for a in mlflow.MlflowClient(mlflow_uri).list_artifacts(out["run_id"])}
    assert {"pareto.parquet", "population.parquet"} <= arts


def test_second_measured_search_measures_nothing(tmp_path: Path) -> None:
    def request(predictor: Path) -> SearchRequest:
        return SearchRequest(
            space="compofa_mbv3", targets=(1e9,), latency="measured:cpu", strategy="vanilla",
            predictor=str(predictor), checkpoint=None, resolutions="128", generations=1,
            population_size=4, out_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "c"),
            n_population_rows=3, log_mlflow=False, measure_warmup=1, measure_repeats=1)

    # a predictor fitted to nothing in particular: this test is about latency
    from ofa_platform.search.genes import GeneCodec
    from ofa_platform.search.predictor import AccuracyPredictor, default_encoding
    from search_spaces.spaces import get_space

    codec = GeneCodec(get_space("compofa_mbv3"), (128,))
    enc = default_encoding(codec)
    net = torch.nn.Sequential(torch.nn.Linear(enc.dim(codec.n_slots), 8), torch.nn.ReLU(),
                              torch.nn.Linear(8, 1))
    path = AccuracyPredictor(net.state_dict(), enc).save(tmp_path / "p.pth")
    out1 = run_search(request(path))
    assert out1.measurements > 0
    out2 = run_search(request(path))
    assert out2.measurements == 0
    assert [r.arch for r in out2.results] == [r.arch for r in out1.results]


def test_job_config_is_parsed_and_checked(tmp_path: Path) -> None:
    import importlib.util

    from ofa_platform.errors import UserError

    path = Path(__file__).resolve().parents[1] / "jobs" / "search.py"
    spec = importlib.util.spec_from_file_location("search_job", path)
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    req = job.load_request(path.parent / "search_note10.yaml")
    assert req.space == "ofa_mbv3" and req.width_mult == 1.2
    assert req.targets == tuple(float(t) for t in range(15, 61, 5))
    bad = tmp_path / "bad.yaml"
    bad.write_text("space: ofa_mbv3\ntargets: [20]\nlatency: macs\ngenerashuns: 3\n")
    with pytest.raises(UserError, match="generashuns: unknown key"):
        job.load_request(bad)
    assert job.main([str(bad)]) == 2


def test_macs_search_states_its_unit(assets: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    import pyarrow.parquet as pq

    args = _args(assets, tmp_path, **{"--latency": "macs", "--targets": "300"}) + [
        "--no-mlflow", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["unit"] == "MMACs"
    [row] = out["results"]
    assert row["unit"] == "MMACs" and row["cost"] <= 300
    assert abs(row["cost"] - row["macs"] / 1e6) < 1e-6  # cost is the MAC count, in millions
    pop = pq.read_table(tmp_path / "out" / "population.parquet").to_pandas()
    assert set(pop["unit"]) == {"MMACs"}


def test_method_and_training_run_overrides(assets: Path, tmp_path: Path, mlflow_uri: str,
                                           capsys) -> None:  # noqa: ANN001
    import mlflow

    args = _args(assets, tmp_path, **{"--strategy": "top-down", "--followup-generations": "2"})
    assert main(args + ["--method", "compofa_ek", "--train-run-id", "abc123", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    run = mlflow.MlflowClient(mlflow_uri).get_run(out["run_id"])
    assert run.data.tags["ofa.method"] == "compofa_ek"
    assert run.data.tags["ofa.train_run_id"] == "abc123"
    assert run.data.params["generations"] == "4"
    assert run.data.params["followup_generations"] == "2"
