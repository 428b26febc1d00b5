"""Forward+backward throughput of the largest and smallest subnets of ofa_mbv3 and ofa_resnet50.

    .venv/bin/python benchmarks/bench_subnet_throughput.py [--batch 64] [--steps 3]
        [--resolutions 32,224] [--spaces ofa_mbv3,ofa_resnet50] [--device cpu|cuda]
        [--threads N] [--stems imagenet,cifar]

For each space, subnet (ofa_mbv3 largest: kernel 7, ratio 6, depth 4; smallest: 3/3/2;
ofa_resnet50 largest: depth 2 with the stem, ratio 0.35, width 1.0; smallest: depth 0 without
the stem's residual conv, ratio 0.2, width 0.65) and input size, times
training steps (forward, cross-entropy, backward; no optimizer) of batch 64 two ways side by
side in one run: inside the supernet (``set_active``, the path training takes) and as the
extracted static subnet. Prints images/s and the speed ratio smallest/largest; writes JSON
to ``benchmarks/results/bench_subnet_throughput.json``. CUDA is used when available unless
``--device cpu``. ``--stems imagenet,cifar`` times both stems side by side (the CIFAR stem,
``small_input``, keeps 32x32 after the first conv; the ImageNet one halves it) and prints the
speed ratio: what sizing the CIFAR-10 study on a small CPU rests on (README "The CIFAR-10
study": ``--spaces ofa_mbv3 --resolutions 32 --stems imagenet,cifar --threads 1 --batch 32``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _steps_per_s(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int,
                 sync: Callable[[], None]) -> float:
    import torch.nn.functional as F

    model.train()
    loss = F.cross_entropy(model(x), y)  # warm-up step (allocator, kernels)
    loss.backward()
    sync()
    times = []
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        sync()
        times.append(time.perf_counter() - t0)
    return x.shape[0] / statistics.median(times)


def main() -> int:
    import torch

    from search_spaces.registry import create_supernet

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=3, help="timed steps per case (median)")
    p.add_argument("--resolutions", default="32,224")
    p.add_argument("--spaces", default="ofa_mbv3,ofa_resnet50", help="comma-separated spaces")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--stems", default="imagenet",
                   help="comma-separated: imagenet (stride 2), cifar (small_input, stride 1)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" /
                                        "bench_subnet_throughput.json"))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rows = []
    print(f"forward+backward, batch {args.batch}, {device.type} "
          f"({torch.get_num_threads()} threads), median of {args.steps} steps", flush=True)
    print(f"{'space':<13} {'stem':<9} {'subnet':<9} {'res':>4} {'in supernet img/s':>18} "
          f"{'static img/s':>13}", flush=True)
    stems = args.stems.split(",")
    for space_name, stem in ((s, st) for s in args.spaces.split(",") for st in stems):
        torch.manual_seed(0)
        net = create_supernet(space_name, small_input=stem == "cifar").to(device)
        space = net.space
        # the chosen subnets run at each --resolutions size (architecture only from r)
        for r in (int(v) for v in args.resolutions.split(",")):
            x = torch.randn(args.batch, 3, r, r, device=device)
            y = torch.randint(0, 1000, (args.batch,), device=device)
            for name, arch in (("largest", space.largest(224)),
                               ("smallest", space.smallest(128))):
                net.set_active(arch)
                sub = net.extract(arch).to(device)
                row = {"space": space_name, "stem": stem, "subnet": name, "resolution": r,
                       "supernet_img_s": _steps_per_s(net, x, y, args.steps, sync),
                       "static_img_s": _steps_per_s(sub, x, y, args.steps, sync)}
                rows.append(row)
                print(f"{space_name:<13} {stem:<9} {name:<9} {r:>4} "
                      f"{row['supernet_img_s']:>18.1f} "
                      f"{row['static_img_s']:>13.1f}", flush=True)
        del net
    ratios, stem_ratios = {}, {}
    for space_name, r, stem in sorted({(row["space"], row["resolution"], row["stem"])
                                       for row in rows}):
        big, small = (next(x for x in rows if x["resolution"] == r and x["subnet"] == s
                           and x["space"] == space_name and x["stem"] == stem)
                      for s in ("largest", "smallest"))
        key = f"{space_name}@{r}" + ("" if stem == "imagenet" else f"/{stem}")
        ratios[key] = small["supernet_img_s"] / big["supernet_img_s"]
        print(f"{space_name} ({stem} stem): speed ratio smallest/largest at {r}px "
              f"(in supernet): {ratios[key]:.2f}x")
    if {"imagenet", "cifar"} <= set(stems):
        for row in (x for x in rows if x["stem"] == "imagenet"):
            other = next(x for x in rows if x["stem"] == "cifar" and all(
                x[k] == row[k] for k in ("space", "subnet", "resolution")))
            key = f"{row['space']}/{row['subnet']}@{row['resolution']}"
            stem_ratios[key] = row["supernet_img_s"] / other["supernet_img_s"]
            print(f"{key}: the ImageNet stem trains {stem_ratios[key]:.2f}x as many images/s "
                  "as the CIFAR stem")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "ratio_smallest_over_largest": ratios,
                               "ratio_imagenet_over_cifar_stem": stem_ratios,
                               "batch": args.batch, "device": device.type,
                               "threads": torch.get_num_threads(),
                               "machine": platform.platform()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
