"""``ofa-platform extract``: write one subnet of a trained supernet as a standalone file.

The file is a ``torch.export`` archive (default) or TorchScript, in eval mode, that plain
PyTorch loads and runs without this project (``torch.export.load(f).module()`` or
``torch.jit.load(f)``), or an ONNX model for phones and inference servers (input ``image``,
output ``logits``, dynamic batch; opset, resolution and arch in the file's metadata), checked
with onnxruntime against the PyTorch subnet before the command returns. The checkpoint may be
ours or an OFA/CompOFA-published one.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ofa_platform.checks import positive_float, positive_int
from ofa_platform.errors import UserError
from ofa_platform.files import atomic_path

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["register", "run", "read_arch_text", "export_subnet", "check_onnx", "FORMATS",
           "ONNX_OPSET", "SUFFIXES"]

FORMATS = ("export", "torchscript", "onnx")
#: File name endings per format (``search --export`` names its files with them).
SUFFIXES = {"export": ".pt2", "torchscript": ".ts", "onnx": ".onnx"}
#: ONNX opset written: 18 is the newest opset onnxruntime 1.16+ (2023) runs in full, so the
#: file loads in runtimes a few years old; every op of an MBConv subnet exists since opset 14.
ONNX_OPSET = 18


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract", help="write one subnet as a standalone PyTorch file")
    p.add_argument("--space", help="search space (required for OFA-layout checkpoints)")
    p.add_argument("--width-mult", type=positive_float,
                   help="supernet width multiplier (default 1.0)")
    p.add_argument("--n-classes", type=positive_int, help="classes (default: from the checkpoint)")
    p.add_argument("--small-input", action="store_true", help="32x32 variant (CIFAR)")
    p.add_argument("--checkpoint", required=True, help="supernet checkpoint (ours or OFA's)")
    p.add_argument("--arch", required=True, help="arch as JSON (ours or OFA's dict) or a file")
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--format", choices=FORMATS, default="export",
                   help="torch.export archive (default), TorchScript or ONNX")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def read_arch_text(value: str) -> str:
    """The JSON text of ``--arch``: the value itself, or the contents of the file it names."""
    from ofa_platform.checks import strict_json
    from ofa_platform.files import read_user_text

    stripped = value.strip()
    if stripped.startswith("{"):
        text = stripped
    else:
        path = Path(value)
        if not path.exists():
            raise UserError(f"--arch: {value!r} is neither JSON nor an existing file")
        text = read_user_text(path, "--arch")
    strict_json(text, "--arch")  # NaN, Infinity, 1e999: one line here, not a traceback later
    return text


def export_subnet(model: nn.Module, example: torch.Tensor, out: str | os.PathLike[str],
                  fmt: str = "export", metadata: dict[str, str] | None = None) -> Path:
    """Write ``model`` (put in eval mode) atomically as a torch.export archive with a dynamic
    batch dimension, traced TorchScript, or ONNX (``metadata`` goes into the ONNX file's
    ``metadata_props`` beside the opset and resolution)."""
    import torch

    if fmt not in FORMATS:
        raise UserError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    model = model.eval()
    out = Path(out)
    # torch.export.save wants a name ending in .pt2; the final name is the user's choice.
    suffix = {"export": ".tmp.pt2", "onnx": ".tmp.onnx"}.get(fmt, ".tmp")
    with atomic_path(out, suffix=suffix) as tmp, torch.no_grad():
        if fmt == "export":
            batch = torch.export.Dim("batch", min=1, max=4096)
            program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
            torch.export.save(program, tmp)
        elif fmt == "onnx":
            _write_onnx(model, example, tmp, metadata or {})
        else:
            with warnings.catch_warnings():  # TorchScript is deprecated but still asked for
                warnings.simplefilter("ignore", FutureWarning)
                torch.jit.save(torch.jit.trace(model, (example,)), tmp)
    return out


def _write_onnx(model: nn.Module, example: torch.Tensor, path: Path,
                metadata: dict[str, str]) -> None:
    """ONNX through torch's TorchScript-based exporter (``dynamo=False``): for these static
    MBConv graphs it writes the same ops as the dynamo exporter in a quarter of the time and
    prints nothing on stdout (the dynamo exporter's progress lines would break ``--json``)."""
    import onnx
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    proto = onnx.load(str(path))
    props = {"opset": str(ONNX_OPSET), "resolution": str(example.shape[-1]),
             "input": "image: float32 N x 3 x R x R, normalised", **metadata}
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "ofa-platform"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def check_onnx(path: str | os.PathLike[str], model: nn.Module, example: torch.Tensor) -> float:
    """Largest absolute difference between onnxruntime's output for ``example`` and the
    PyTorch ``model``'s: what a deployment gets against what was searched."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": example.numpy()})[0]
    with torch.no_grad():
        want = model.eval()(example).numpy()
    return float(abs(got - want).max())


def run(args: argparse.Namespace) -> int:
    import torch

    from ofa_platform.files import check_output_file
    from search_spaces.checkpoints import load_any_checkpoint
    from search_spaces.flops import count_macs_params

    if args.n_classes is not None and args.n_classes < 1:
        raise UserError(f"--n-classes must be positive, got {args.n_classes}")
    check_output_file(args.out, "--out")
    arch_text = read_arch_text(args.arch)
    net = load_any_checkpoint(args.checkpoint, space=args.space, width_mult=args.width_mult,
                              n_classes=args.n_classes, small_input=args.small_input)
    arch = net.space.parse_arch(arch_text)
    model = net.extract(arch).eval()
    example = torch.randn(2, 3, arch.r, arch.r)
    meta = {"space": net.space.name, "width_mult": f"{net.plan.width_mult:g}",
            "arch": json.dumps(arch.to_dict())}
    out = export_subnet(model, example, args.out, args.format, metadata=meta)
    macs, params = count_macs_params(net.plan, arch)
    report = {"out": str(out), "format": args.format, "space": net.space.name,
              "width_mult": net.plan.width_mult, "n_classes": net.plan.n_classes,
              "small_input": net.plan.small_input, "arch": arch.to_dict(),
              "resolution": arch.r, "params": params, "macs": macs}
    if args.format == "onnx":
        report["onnx_opset"] = ONNX_OPSET
        report["onnx_max_abs_diff"] = check_onnx(out, model, torch.randn(3, 3, arch.r, arch.r))
    if args.json:
        print(json.dumps(report))
    else:
        print(f"wrote {out} ({args.format}): space {net.space.name} w{net.plan.width_mult:g}, "
              f"arch {arch.key}")
        print(f"  params {params:,}  MACs {macs:,} ({macs / 1e6:.2f}M) at {arch.r}x{arch.r}")
        if args.format == "onnx":
            print(f"  onnxruntime vs PyTorch: max |diff| {report['onnx_max_abs_diff']:.2e} "
                  f"(opset {ONNX_OPSET})")
    return 0
