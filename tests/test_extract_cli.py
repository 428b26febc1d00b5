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
