"""ResNet50D through the commands: extract (torch.export and TorchScript), search with MACs,
bad input as one line and exit status 2."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ofa_platform.cli import main
from search_spaces.blueprint import network_plan
from search_spaces.checkpoints import save_ofa_checkpoint
from search_spaces.flops import count_macs_params
from search_spaces.registry import create_supernet
from search_spaces.spaces import get_space

SPACE = get_space("ofa_resnet50")

# Loads a file with the project's packages made unimportable: the file must not need them.
_LOAD_WITHOUT_PROJECT = """
import sys
for name in ("search_spaces", "ofa_platform"):
    sys.modules[name] = None
import torch
torch.set_num_threads(1)
path, fmt, x_path, y_path = sys.argv[1:]
x = torch.load(x_path)
model = torch.export.load(path).module() if fmt == "export" else torch.jit.load(path)
torch.save(model(x), y_path)
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    """A ResNet50D supernet with non-trivial BN statistics, saved in OFA's layout."""
    torch.manual_seed(0)
    net = create_supernet("ofa_resnet50", n_classes=10)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = save_ofa_checkpoint(tmp_path_factory.mktemp("ckpt") / "ofa_resnet50.pth", net)
    return net.eval(), path


@pytest.mark.parametrize("fmt", ["export", "torchscript"])
def test_extract_writes_a_standalone_resnet(checkpoint, tmp_path: Path, capsys,  # noqa: ANN001
                                            fmt: str) -> None:
    net, path = checkpoint
    arch = SPACE.sample(random.Random(fmt)).replace(r=128)
    ofa = SPACE.to_ofa_dict(arch)  # the reference's own dict form, as --arch text
    out = tmp_path / f"sub.{'pt2' if fmt == 'export' else 'ts'}"
    argv = ["extract", "--space", "ofa_resnet50", "--checkpoint", str(path),
            "--arch", json.dumps(ofa), "--out", str(out), "--format", fmt, "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["macs"], report["params"]) == count_macs_params(net.plan, arch)
    assert report["arch"] == arch.to_dict() and report["space"] == "ofa_resnet50"
    x = torch.randn(2, 3, 128, 128)
    torch.save(x, tmp_path / "x.pt")
    subprocess.run([sys.executable, "-c", _LOAD_WITHOUT_PROJECT, str(out), fmt,
                    str(tmp_path / "x.pt"), str(tmp_path / "y.pt")], check=True, cwd=tmp_path,
                   capture_output=True, timeout=600)
    got = torch.load(tmp_path / "y.pt")
    net.set_active(arch)
    with torch.no_grad():
        want = net(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch, needle", [
    ({"d": [2, 3, 0, 0, 0], "e": [0.25] * 18, "w": [0] * 6, "r": 128}, "d[1]=3"),
    ({"d": [2, 0, 0, 0, 0], "e": [0.3] * 18, "w": [0] * 6, "r": 128}, "[0.3]"),
    ({"d": [2, 0, 0, 0, 0], "e": [0.25] * 18, "w": [0, 0, 4, 0, 0, 0], "r": 128}, "w[2]=4"),
])
def test_extract_rejects_an_arch_the_space_lacks(checkpoint, tmp_path: Path, capsys,  # noqa: ANN001
                                                 arch: dict, needle: str) -> None:
    _, path = checkpoint
    out = tmp_path / "sub.pt2"
    code = main(["extract", "--space", "ofa_resnet50", "--checkpoint", str(path),
                 "--arch", json.dumps(arch), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and not out.exists()
    assert len(err.splitlines()) == 1 and needle in err, err


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet50D accuracy predictor trained on made-up accuracies that grow with MACs."""
    from ofa_platform.search.predictor import train_predictor
    from ofa_platform.search.resnet_genes import make_codec

    codec = make_codec(SPACE)
    rng = random.Random(0)
    archs = [SPACE.sample(rng) for _ in range(40)]
    plan = network_plan("resnet")
    acc = [0.5 + 0.01 * np.log(count_macs_params(plan, a)[0]) for a in archs]
    pred, metrics = train_predictor(codec, archs, acc, seed=0, epochs=5)
    return pred.save(tmp_path_factory.mktemp("pred") / "resnet_predictor.pth", metrics)


def test_search_with_macs(predictor: Path, tmp_path: Path, mlflow_uri: str, capsys) -> None:  # noqa: ANN001
    import mlflow

    argv = ["search", "--space", "ofa_resnet50", "--predictor", str(predictor),
            "--latency", "macs", "--targets", "800,2000,5000", "--generations", "4",
            "--population-size", "8", "--out", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache"), "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["unit"] == "MMACs" and len(out["results"]) == 3
    plan = network_plan("resnet")
    for row in out["results"]:
        assert row["feasible"]
        arch = SPACE.parse_arch(row["arch"])
        macs, _ = count_macs_params(plan, arch)
        assert macs == row["macs"] and macs / 1e6 <= row["target"]
        assert row["cost"] == pytest.approx(macs / 1e6)
    run = mlflow.MlflowClient(mlflow_uri).get_run(out["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["ofa.space"] == "ofa_resnet50"


@pytest.mark.parametrize("extra, needle", [
    (["--latency", "lut:/nowhere"], "lookup tables"),
    (["--latency", "macs", "--width-mult", "1.2"], "width"),
    (["--latency", "macs", "--targets", "100"], "infeasible"),
])
def test_search_bad_input_is_one_line(predictor: Path, tmp_path: Path, capsys,  # noqa: ANN001
                                      extra: list[str], needle: str) -> None:
    argv = ["search", "--space", "ofa_resnet50", "--predictor", str(predictor),
            "--targets", "3000", "--out", str(tmp_path / "out"), "--no-mlflow", *extra]
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "out").exists()


def test_mobilenet_predictor_refused(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from ofa_platform.search.predictor import OneHotEncoding
    from ofa_platform.search.resnet_genes import make_codec

    with pytest.raises(Exception, match="does not fit space ofa_resnet50"):
        OneHotEncoding((3, 5, 7), (3, 4, 6), 112, 16, 8).check(make_codec(SPACE))


def test_search_with_measured_cpu_latency(predictor: Path, tmp_path: Path) -> None:
    """``measured:cpu`` times extracted ResNet subnets on this CPU, memoized: a second search
    measures nothing."""
    from ofa_platform.search.runner import SearchRequest, run_search

    def request() -> SearchRequest:
        return SearchRequest(
            space="ofa_resnet50", targets=(1e6,), latency="measured:cpu",
            predictor=str(predictor), resolutions="128", generations=1, population_size=4,
            n_population_rows=2, measure_warmup=0, measure_repeats=1, log_mlflow=False,
            out_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"))

    first = run_search(request())
    [row] = first.rows
    assert row["feasible"] and row["unit"] == "ms" and row["cost"] > 0
    assert SPACE.parse_arch(row["arch_json"]).r == 128
    assert first.measurements > 0
    assert run_search(request()).measurements == 0
