"""A checkpoint search keeps what it measured (``subnets.parquet``, the space as params) and,
with ``--log-models``, logs every chosen subnet as an MLflow model that loads and predicts
without this project's code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ofa_platform.cli import main


def _checkpoint(tmp_path: Path, data: str) -> Path:
    from nets import randomize

    from ofa_platform.datasets import load_dataset
    from search_spaces.checkpoints import save_supernet
    from search_spaces.registry import create_supernet
    from search_spaces.spaces import get_space

    space = get_space("compofa_mbv3").with_resolutions((16,))
    net = create_supernet(space, n_classes=load_dataset(data, seed=0).n_classes,
                          small_input=True)
    return save_supernet(tmp_path / "net.pt", randomize(net, seed=3))


@pytest.mark.slow
def test_log_models_writes_loadable_mlflow_models(ray_local, mlflow_uri: str,  # noqa: ANN001
                                                  tmp_path: Path) -> None:
    import mlflow
    import pandas as pd
    import torch

    from ofa_platform.search.models import calibration_images
    from search_spaces.arch import ArchConfig
    from search_spaces.checkpoints import load_supernet
    from search_spaces.spaces import get_space

    data = "synthetic:60"
    ckpt = _checkpoint(tmp_path, data)
    from ofa_platform.search.runner import SearchRequest, run_search

    found = run_search(SearchRequest(
        space="compofa_mbv3", targets=(15.0, 30.5), latency="macs", strategy="exhaustive",
        checkpoint=str(ckpt), data=data, n_arch_samples=6, calib_images=16, val_subset=16,
        out_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"),
        n_population_rows=4, tracking_uri=mlflow_uri, log_models=True))
    out = {"run_id": found.run_id,
           "results": [{**r, "arch": json.loads(r["arch_json"]) if r["arch_json"] else None}
                       for r in found.rows]}
    client = mlflow.MlflowClient(mlflow_uri)
    run = client.get_run(out["run_id"])
    assert run.info.status == "FINISHED"
    # the space as params (bookkeeping, not metrics)
    space = get_space("compofa_mbv3")
    assert int(run.data.params["space_cardinality"]) == space.cardinality(False)
    assert int(run.data.params["space_macs_min"]) < int(run.data.params["space_macs_max"])
    # what the search measured: the predictor's samples and the chosen subnets
    local = client.download_artifacts(out["run_id"], "subnets.parquet", str(tmp_path / "dl"))
    subnets = pd.read_parquet(local)
    assert set(subnets["source"]) == {"sample", "search"}
    assert subnets["measured_accuracy"].notna().all() and (subnets["macs"] > 0).all()
    assert (subnets.loc[subnets["source"] == "sample", "cost"].notna()).all()

    chosen = [r for r in out["results"] if r["feasible"]]
    assert chosen
    supernet, _ = load_supernet(str(ckpt))
    logged = {m.name: m for m in mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], output_format="list")
        if m.source_run_id == out["run_id"]}
    for row in chosen:
        name = f"subnet-{row['target']:g}MMACs".replace(".", "_")
        uri = f"runs:/{out['run_id']}/{name}"
        assert name in logged, (name, sorted(logged))
        model = logged[name]
        tags = model.tags
        assert ArchConfig.from_json(tags["ofa.arch"]) == ArchConfig.from_dict(row["arch"])
        assert float(tags["ofa.target"]) == row["target"]
        assert float(tags["ofa.measured_accuracy"]) == pytest.approx(row["measured_accuracy"],
                                                                     rel=1e-5)
        assert float(tags["ofa.cost"]) == pytest.approx(row["cost"], rel=1e-5)
        # the logged module is the BN-recalibrated subnet: same logits as a fresh recalibration
        arch = ArchConfig.from_dict(row["arch"])
        images, _, _ = calibration_images(data, arch.r, n_images=16, batch=200, seed=0)
        from ofa_platform.evaluation import recalibrate_bn

        ref = recalibrate_bn(supernet, arch, images, "cpu")
        x = images[0][:3].numpy().astype(np.float32)
        with torch.no_grad():
            want = ref(torch.from_numpy(x)).numpy()
        loaded = mlflow.pytorch.load_model(model.model_uri)
        with torch.no_grad():
            got = loaded(torch.from_numpy(x))
        assert np.allclose(np.asarray(got), want, atol=1e-4)
        pyfunc = mlflow.pyfunc.load_model(uri)
        assert np.allclose(np.asarray(pyfunc.predict(x)), want, atol=1e-4)
        assert list(pyfunc.metadata.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [
            -1, 3, arch.r, arch.r]


def test_log_models_without_checkpoint_is_a_one_line_error(mlflow_uri: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    code = main(["search", "--space", "compofa_mbv3", "--predictor", "x.pth", "--latency",
                 "macs", "--targets", "100", "--log-models", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--log-models" in err
    assert not (tmp_path / "o").exists()
    assert not Path(mlflow_uri.removeprefix("sqlite:///")).exists()   # no run, no store
