"""``ofa-platform extract``: a standalone subnet file that plain PyTorch loads and runs."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ofa_platform.cli import main
from search_spaces.checkpoints import save_ofa_checkpoint, save_supernet
from search_spaces.flops import count_macs_params
from search_spaces.registry import create_supernet
from search_spaces.supernet import Supernet

# Loads a file with the project's packages made unimportable: the file must not need them.
_LOAD_WITHOUT_PROJECT = """
import sys
for name in ("search_spaces", "ofa_platform"):
    sys.modules[name] = None
import torch
torch.set_num_threads(1)
path, fmt, x_path, y_path = sys.argv[1:]
x = torch.load(x_path)
if fmt == "export":
    model = torch.export.load(path).module()
else:
    model = torch.jit.load(path)
torch.save(model(x), y_path)
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Supernet, Path, Path]:
    torch.manual_seed(0)
    net = create_supernet("ofa_mbv3", n_classes=10)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        for name, p in net.named_parameters():
            if "matrix" in name:
                p.add_(0.05 * torch.randn_like(p))
    d = tmp_path_factory.mktemp("ckpt")
    return net, save_supernet(d / "ours.pt", net), save_ofa_checkpoint(d / "ofa.pth", net)


def _run_standalone(out: Path, fmt: str, x: torch.Tensor, tmp: Path) -> torch.Tensor:
    torch.save(x, tmp / "x.pt")
    subprocess.run([sys.executable, "-c", _LOAD_WITHOUT_PROJECT, str(out), fmt,
                    str(tmp / "x.pt"), str(tmp / "y.pt")], check=True, cwd=tmp,
                   capture_output=True, timeout=300)
    return torch.load(tmp / "y.pt")


@pytest.mark.parametrize("fmt,which", [("export", "ours"), ("torchscript", "ofa")])
def test_extract_writes_a_standalone_subnet(trained, tmp_path: Path, capsys, fmt: str,
                                            which: str) -> None:
    net, ours, ofa = trained
    arch = net.space.sample(random.Random(fmt))
    arch = arch.replace(r=128)
    arch_file = tmp_path / "arch.json"
    arch_file.write_text(json.dumps(net.space.to_ofa_dict(arch)))  # OFA's flat form, a file
    out = tmp_path / f"sub.{'pt2' if fmt == 'export' else 'ts'}"
    argv = ["extract", "--space", "ofa_mbv3", "--width-mult", "1.0",
            "--checkpoint", str(ours if which == "ours" else ofa), "--arch", str(arch_file),
            "--out", str(out), "--format", fmt, "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    macs, params = count_macs_params(net.plan, arch)
    assert (report["params"], report["macs"]) == (params, macs)
    assert report["arch"] == arch.to_dict()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["arch.json", out.name])
    x = torch.randn(3, 3, 128, 128)
    y = _run_standalone(out, fmt, x, tmp_path)
    with torch.no_grad():
        want = net.extract(arch).eval()(x)
    assert torch.allclose(y, want, atol=1e-5)


def test_extract_human_output_and_bad_input(trained, tmp_path: Path, capsys) -> None:
    net, ours, _ = trained
    out = tmp_path / "never.pt2"
    bad_arch = json.dumps({"ks": [4] * 20, "e": [3] * 20, "d": [2] * 5, "r": 128})
    assert main(["extract", "--checkpoint", str(ours), "--arch", bad_arch,
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "ks: [4]" in err and err.count("\n") == 1
    assert main(["extract", "--checkpoint", str(tmp_path / "nope.pt"), "--arch", "{}",
                 "--out", str(out)]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["extract", "--checkpoint", str(ours), "--arch", "not-a-file.json",
                 "--out", str(out)]) == 2
    assert "neither JSON nor an existing file" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


_RUN_ONNX = """
import sys
for name in ("search_spaces", "ofa_platform", "torch"):
    sys.modules[name] = None
import numpy as np, onnx, onnxruntime as ort
path, x_path, y_path = sys.argv[1:]
meta = {p.key: p.value for p in onnx.load(path).metadata_props}
y = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(
    None, {"image": np.load(x_path)})[0]
np.save(y_path, y)
print(meta["opset"], meta["resolution"], meta["space"])
"""


def test_extract_onnx_matches_pytorch(trained, tmp_path: Path, capsys) -> None:
    """The ONNX file, run by onnxruntime without torch or this project, gives the PyTorch
    subnet's outputs within 1e-4, at another batch size than the export's; its metadata
    records the opset and the resolution."""
    import numpy as np

    from ofa_platform.cli.extract import ONNX_OPSET

    net, ours, _ = trained
    arch = net.space.sample(random.Random("onnx")).replace(r=128)
    out = tmp_path / "sub.onnx"
    assert main(["extract", "--checkpoint", str(ours), "--arch", json.dumps(arch.to_dict()),
                 "--out", str(out), "--format", "onnx", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["onnx_opset"] == ONNX_OPSET and report["onnx_max_abs_diff"] < 1e-4
    x = torch.randn(5, 3, 128, 128)
    np.save(tmp_path / "x.npy", x.numpy())
    res = subprocess.run([sys.executable, "-c", _RUN_ONNX, str(out), str(tmp_path / "x.npy"),
                          str(tmp_path / "y.npy")], capture_output=True, text=True,
                         timeout=300, check=True)
    assert res.stdout.split() == [str(ONNX_OPSET), "128", "ofa_mbv3"]
    with torch.no_grad():
        want = net.extract(arch).eval()(x).numpy()
    got = np.load(tmp_path / "y.npy")
    assert got.shape == want.shape and float(abs(got - want).max()) < 1e-4


def test_search_exports_onnx(shared_data: Path, tmp_path: Path, capsys) -> None:
    """``search --export DIR --format onnx``: one ONNX file per target beside its sidecar,
    whose recorded onnxruntime-vs-PyTorch difference is under 1e-4."""
    assets = shared_data / "ofa_mbv3_imagenet"
    argv = ["search", "--space", "ofa_mbv3", "--width-mult", "1.2",
            "--predictor", str(assets / "acc_predictor.pth"),
            "--latency", f"lut:{assets / 'latency_note10'}", "--targets", "30",
            "--resolutions", "160", "--strategy", "vanilla", "--generations", "2",
            "--population-size", "8", "--out", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache"), "--no-mlflow", "--json",
            "--export", str(tmp_path / "subnets"), "--format", "onnx"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert [Path(p).name for p in report["exported"]] == ["subnet_30ms.onnx"]
    sidecar = json.loads((tmp_path / "subnets" / "subnet_30ms.json").read_text())
    assert sidecar["format"] == "onnx" and sidecar["onnx_max_abs_diff"] < 1e-4
