"""``ofa-platform extract``: write one subnet of a trained supernet as a standalone file.

The file is a ``torch.export`` archive (default) or TorchScript, in eval mode, that plain
PyTorch loads and runs without this project (``torch.export.load(f).module()`` or
``torch.jit.load(f)``). The checkpoint may be ours or an OFA/CompOFA-published one.
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

__all__ = ["register", "run", "read_arch_text", "export_subnet"]

FORMATS = ("export", "torchscript")


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
                   help="torch.export archive (default) or TorchScript")
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
                  fmt: str = "export") -> Path:
    """Write ``model`` (put in eval mode) atomically as a torch.export archive with a dynamic
    batch dimension, or as traced TorchScript."""
    import torch

    if fmt not in FORMATS:
        raise UserError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    model = model.eval()
    out = Path(out)
    # torch.export.save wants a name ending in .pt2; the final name is the user's choice.
    with atomic_path(out, suffix=".tmp.pt2" if fmt == "export" else ".tmp") as tmp, \
            torch.no_grad():
        if fmt == "export":
            batch = torch.export.Dim("batch", min=1, max=4096)
            program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
            torch.export.save(program, tmp)
        else:
            with warnings.catch_warnings():  # TorchScript is deprecated but still asked for
                warnings.simplefilter("ignore", FutureWarning)
                torch.jit.save(torch.jit.trace(model, (example,)), tmp)
    return out


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
    out = export_subnet(model, example, args.out, args.format)
    macs, params = count_macs_params(net.plan, arch)
    report = {"out": str(out), "format": args.format, "space": net.space.name,
              "width_mult": net.plan.width_mult, "n_classes": net.plan.n_classes,
              "small_input": net.plan.small_input, "arch": arch.to_dict(),
              "resolution": arch.r, "params": params, "macs": macs}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"wrote {out} ({args.format}): space {net.space.name} w{net.plan.width_mult:g}, "
              f"arch {arch.key}")
        print(f"  params {params:,}  MACs {macs:,} ({macs / 1e6:.2f}M) at {arch.r}x{arch.r}")
    return 0
