"""Efficiency estimators: OFA-format latency lookup tables, measured latency, MACs.

Every estimator maps a whole population (gene rows, see :mod:`genes`) to an array, because
the search asks for a generation at a time. Latency tables and MACs are *additive*: a block's
cost depends only on its slot, kernel, ratio and the resolution, so they compile to one array
``slot[r, slot, k, e]`` plus ``fixed[r]`` and a population costs two numpy gathers. Measured
latency is not additive; it measures each arch once on the device and memoizes the result
persistently, keyed by hardware, model, arch, resolution and batch size.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ofa_platform.errors import UserError
from ofa_platform.search.cache import JsonMemo, atomic_write_text
from ofa_platform.search.genes import GeneCodec
from search_spaces.arch import ArchConfig
from search_spaces.blueprint import LayerShape, NetworkPlan, layer_shapes
from search_spaces.flops import layer_macs_params

__all__ = [
    "AdditiveEstimator", "lut_key", "load_lut_dir", "write_lut_dir", "lut_estimator",
    "lut_latency_of_arch", "macs_estimator", "build_lut", "measure_latency", "timed_forwards",
    "hardware_key",
    "MeasuredLatency", "measure_layer_torch",
]


# --------------------------------------------------------------------------- additive model
@dataclass
class AdditiveEstimator:
    """Cost = ``fixed[r] + sum over active slots of slot[r, slot, k, e]``, for whole populations.

    ``name`` is what MLflow records as the hardware/estimator (``ofa.hardware``), ``unit`` what
    targets are given in (``ms`` or ``MMACs``).
    """

    codec: GeneCodec
    fixed: np.ndarray  # (R,)
    slot: np.ndarray  # (R, L, K, E)
    name: str
    unit: str = "ms"

    def __call__(self, genes: np.ndarray) -> np.ndarray:
        c = self.codec
        g = genes.astype(np.int64)
        r = g[:, c.r_col]
        per_slot = self.slot[r[:, None], np.arange(c.n_slots)[None, :], g[:, c.k_cols],
                             g[:, c.e_cols]]
        return self.fixed[r] + np.where(c.active(genes), per_slot, 0.0).sum(axis=1)

    def of_archs(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        return self(self.codec.encode(archs))

    @property
    def measurements(self) -> int:
        return 0


def _full_depth_arch(codec: GeneCodec, r: int, ki: int, ei: int) -> ArchConfig:
    """Every slot active, each with its stage's ki-th kernel and ei-th ratio (clamped)."""
    stages = codec.space.stages
    ks = tuple((st.kernels[min(ki, len(st.kernels) - 1)],) * st.n_slots for st in stages)
    es = tuple((st.ratios[min(ei, len(st.ratios) - 1)],) * st.n_slots for st in stages)
    return ArchConfig(ks=ks, e=es, r=r)


def _compile(codec: GeneCodec, plan: NetworkPlan,
             layer_cost: Callable[[LayerShape, int], float]) -> tuple[np.ndarray, np.ndarray]:
    """Walk one full-depth arch per (resolution, kernel index, ratio index) and record each
    block's cost in its slot; a slot's block does not depend on the other slots' choices.
    Returns ``(fixed[R], slot[R, L, K, E])``; costs ``layer_cost`` cannot give are NaN."""
    nk, ne = codec.kernel_values.shape[1], codec.ratio_values.shape[1]
    R, L = len(codec.resolutions), codec.n_slots
    fixed = np.zeros(R)
    slot = np.full((R, L, nk, ne), np.nan)
    for ri, r in enumerate(codec.resolutions):
        for ki in range(nk):
            for ei in range(ne):
                layers = layer_shapes(plan, _full_depth_arch(codec, r, ki, ei))
                blocks = [ly for ly in layers if ly.stage >= 0]
                for li, ly in enumerate(blocks):
                    slot[ri, li, ki, ei] = layer_cost(ly, r)
                if ki == 0 and ei == 0:
                    fixed[ri] = sum(layer_cost(ly, r) for ly in layers if ly.stage < 0)
    return fixed, slot


def _reachable_mask(codec: GeneCodec, shape: tuple[int, ...]) -> np.ndarray:
    """(L, K, E) entries an arch of the space can use (compound: ratio tied to depth)."""
    _, L, nk, ne = shape
    mask = np.zeros((L, nk, ne), dtype=bool)
    for li in range(L):
        st = codec.space.stages[codec.slot_stage[li]]
        pos = codec.slot_pos[li]
        ratios = range(len(st.ratios))
        if codec.compound:
            ratios = sorted({st.ratios.index(st.coupled_ratio(d)) for d in st.depths if d > pos})
        for ki in range(len(st.kernels)):
            for ei in ratios:
                mask[li, ki, ei] = True
    return mask


def macs_estimator(codec: GeneCodec, plan: NetworkPlan) -> AdditiveEstimator:
    """MACs in millions (OFA's FLOPs count), for targets such as ``--targets 200,300``."""
    fixed, slot = _compile(codec, plan, lambda ly, r: layer_macs_params(ly)[0] / 1e6)
    return AdditiveEstimator(codec=codec, fixed=fixed, slot=np.nan_to_num(slot), name="macs",
                             unit="MMACs")


# --------------------------------------------------------------------------- lookup tables
def _shape(hw: int, c: int) -> str:
    return f"{hw}x{hw}x{c}"


def lut_key(layer: LayerShape) -> str:
    """The key of ``layer`` in an OFA latency lookup table (format of the Note10 tables)."""
    io = f"input:{_shape(layer.in_hw, layer.in_ch)}-output:{_shape(layer.out_hw, layer.out_ch)}"
    if layer.kind == "stem":
        return f"Conv-{io}"
    if layer.kind == "block":
        mid = layer.mid_ch or layer.in_ch
        return (f"expanded_conv-{io}-expand:{mid}-kernel:{layer.kernel}-stride:{layer.stride}"
                f"-idskip:{int(layer.shortcut)}-se:{int(layer.se)}"
                f"-hs:{int(layer.act == 'h_swish')}")
    if layer.kind == "final_expand":
        return f"Conv_1-{io}"
    if layer.kind == "pool":
        return f"AvgPool2D-{io}"
    if layer.kind == "feature_mix":
        return f"Conv_2-{io}"
    if layer.kind == "classifier":
        return f"Logits-input:{_shape(1, layer.in_ch)}-output:{layer.out_ch}"
    raise ValueError(f"no lookup-table key for layer kind {layer.kind!r}")


def _table_path(directory: Path, r: int) -> Path:
    return directory / f"{r}_lookup_table.yaml"


def _read_table_yaml(path: Path, loader: Any) -> Any:
    """Parse one lookup table; a file that is not YAML text (binary, not UTF-8, a syntax
    error) is a :class:`UserError` naming it and the line, not a parser traceback."""
    import yaml

    try:
        with path.open(encoding="utf-8") as fh:
            return yaml.load(fh, Loader=loader)
    except UnicodeDecodeError:
        raise UserError(f"latency table {path}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise UserError(f"latency table {path}: not valid YAML ({problem}{where})") from None
    except OSError as exc:
        raise UserError(f"latency table {path}: cannot read ({exc.strerror})") from None


def load_lut_dir(directory: str | Path, resolutions: Iterable[int]) -> dict[int, dict[str, float]]:
    """Read ``{r}_lookup_table.yaml`` for each resolution: layer key -> mean milliseconds."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"latency table directory {directory} does not exist")
    tables: dict[int, dict[str, float]] = {}
    for r in resolutions:
        path = _table_path(directory, r)
        if not path.is_file():
            have = sorted(int(p.name.split("_")[0]) for p in directory.glob("*_lookup_table.yaml")
                          if p.name.split("_")[0].isdigit())
            span = f"{have[0]}..{have[-1]}" if have else "none"
            raise UserError(f"no latency table for resolution {r} in {directory} "
                            f"(tables there: {span})")
        raw = _read_table_yaml(path, loader)
        if not isinstance(raw, dict):
            raise UserError(f"{path}: not a lookup table (expected a mapping of layers)")
        try:
            tables[r] = {str(k): float(v["mean"]) for k, v in raw.items()}
        except (TypeError, KeyError, ValueError):
            raise UserError(f"{path}: every entry needs a numeric 'mean'") from None
        bad = next((k for k, v in tables[r].items() if not 0 <= v < float("inf")), None)
        if bad is not None:
            raise UserError(f"{path}: entry {bad}: mean {tables[r][bad]} is not a finite "
                            "non-negative number of milliseconds")
    return tables


def lut_latency_of_arch(tables: Mapping[int, Mapping[str, float]], plan: NetworkPlan,
                        arch: ArchConfig) -> float:
    """Latency of one arch by walking its layers (the slow, obvious path; tests compare)."""
    table = tables[arch.r]
    return float(sum(table[lut_key(ly)] for ly in layer_shapes(plan, arch)))


def lut_estimator(codec: GeneCodec, plan: NetworkPlan, directory: str | Path,
                  name: str | None = None) -> AdditiveEstimator:
    """Compile OFA-format tables into an additive estimator. A layer that some arch of the
    space needs but the table lacks is a :class:`UserError` naming the layer and the file."""
    directory = Path(directory)
    tables = load_lut_dir(directory, codec.resolutions)

    def cost(ly: LayerShape, r: int) -> float:
        return tables[r].get(lut_key(ly), float("nan"))

    fixed, slot = _compile(codec, plan, cost)
    for ri, r in enumerate(codec.resolutions):
        if np.isnan(fixed[ri]):
            layers = layer_shapes(plan, _full_depth_arch(codec, r, 0, 0))
            key = next(lut_key(ly) for ly in layers if lut_key(ly) not in tables[r])
            raise UserError(f"latency table {_table_path(directory, r)} has no entry for layer "
                            f"{key}")
    bad = np.isnan(slot) & _reachable_mask(codec, slot.shape)[None]
    if bad.any():
        ri, li, ki, ei = (int(v) for v in np.argwhere(bad)[0])
        r = codec.resolutions[ri]
        blocks = [ly for ly in layer_shapes(plan, _full_depth_arch(codec, r, ki, ei))
                  if ly.stage >= 0]
        raise UserError(f"latency table {_table_path(directory, r)} has no entry for layer "
                        f"{lut_key(blocks[li])} ({int(bad.sum())} block entries missing)")
    return AdditiveEstimator(codec=codec, fixed=fixed, slot=np.nan_to_num(slot),
                             name=name or f"lut:{directory.name}", unit="ms")


def build_lut(plan: NetworkPlan, codec: GeneCodec,
              measure_layer: Callable[[LayerShape], Sequence[float]]) -> dict[int, dict[str, Any]]:
    """A lookup table for your own device: every distinct layer the space's archs use at the
    codec's resolutions, measured once by ``measure_layer(layer) -> samples in ms``."""
    tables: dict[int, dict[str, Any]] = {}
    for r in codec.resolutions:
        table: dict[str, Any] = {}
        nk, ne = codec.kernel_values.shape[1], codec.ratio_values.shape[1]
        for ki in range(nk):
            for ei in range(ne):
                for ly in layer_shapes(plan, _full_depth_arch(codec, r, ki, ei)):
                    key = lut_key(ly)
                    if key in table:
                        continue
                    samples = [float(v) for v in measure_layer(ly)]
                    table[key] = {"count": len(samples), "mean": statistics.fmean(samples),
                                  "std": statistics.pstdev(samples) if len(samples) > 1 else 0.0}
        tables[r] = table
    return tables


def write_lut_dir(tables: Mapping[int, Mapping[str, Any]], directory: str | Path) -> list[Path]:
    """Write tables as OFA's ``{r}_lookup_table.yaml`` files (each written whole, then renamed,
    so a reader never sees half a table)."""
    import yaml

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for r, table in sorted(tables.items()):
        path = _table_path(directory, r)
        atomic_write_text(path, yaml.safe_dump({k: dict(v) for k, v in table.items()}))
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- measured latency
def hardware_key(device: str) -> str:
    """What the memo keys a measurement by: the device model (CUDA) or CPU and thread count."""
    import torch

    if device.startswith("cuda"):
        return f"cuda:{torch.cuda.get_device_name(torch.device(device))}"
    cpu = platform.processor() or platform.machine()
    return f"cpu:{cpu}:{os.cpu_count()}cores:{torch.get_num_threads()}threads"


def timed_forwards(model: Any, x: Any, device: str, warmup: int, repeats: int) -> list[float]:
    """Milliseconds of each of ``repeats`` forward passes after ``warmup`` untimed ones; CUDA
    is synchronised around every timed pass so the time is the kernels', not the launch's."""
    import torch

    cuda = device.startswith("cuda")
    samples = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            if cuda:
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            model(x)
            if cuda:
                torch.cuda.synchronize(device)
            if i >= warmup:
                samples.append((time.perf_counter() - t0) * 1e3)
    return samples


def measure_latency(model: Any, resolution: int, *, device: str = "cpu", batch_size: int = 1,
                    warmup: int = 5, repeats: int = 20) -> float:
    """Median wall time of one forward pass in milliseconds, after ``warmup`` passes; CUDA is
    synchronised around every timed pass so the time is the kernels', not the launch's."""
    import torch

    model = model.to(device).eval()
    x = torch.randn(batch_size, 3, resolution, resolution, device=device)
    return float(statistics.median(timed_forwards(model, x, device, warmup, repeats)))


class MeasuredLatency:
    """Latency measured on this machine's device, memoized by hardware, model, arch, resolution
    and batch size (CompOFA's memo forgot the resolution). ``measurements`` counts what this
    instance actually ran, so a repeated search can be checked to re-measure nothing."""

    def __init__(self, codec: GeneCodec, build_model: Callable[[ArchConfig], Any], *,
                 model_tag: str, memo: JsonMemo, device: str = "cpu", batch_size: int = 1,
                 warmup: int = 5, repeats: int = 20, hardware: str | None = None) -> None:
        self.codec = codec
        self.build_model = build_model
        self.model_tag = model_tag
        self.memo = memo
        self.device = device
        self.batch_size = batch_size
        self.warmup = warmup
        self.repeats = repeats
        self.hardware = hardware or hardware_key(device)
        self.name = f"measured:{self.hardware}"
        self.unit = "ms"
        self.measurements = 0

    def key(self, arch: ArchConfig) -> str:
        return f"{self.hardware}|{self.model_tag}|bs{self.batch_size}|{arch.key}"

    def of_archs(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        out = np.zeros(len(archs))
        new: dict[str, float] = {}
        for i, arch in enumerate(archs):
            key = self.key(arch)
            value = self.memo.get(key)
            if value is None:
                value = new.get(key)
            if value is None:
                value = measure_latency(self.build_model(arch), arch.r, device=self.device,
                                        batch_size=self.batch_size, warmup=self.warmup,
                                        repeats=self.repeats)
                self.measurements += 1
                new[key] = value
            out[i] = value
        self.memo.put_many(new)
        return out

    def __call__(self, genes: np.ndarray) -> np.ndarray:
        return self.of_archs(self.codec.decode(genes))


def measure_layer_torch(layer: LayerShape, *, device: str = "cpu", batch_size: int = 1,
                        warmup: int = 5, repeats: int = 20) -> list[float]:
    """Per-layer samples in ms for :func:`build_lut`, from a plain torch twin of the layer."""
    import torch
    from torch import nn

    def act(name: str) -> nn.Module:
        return {"relu": nn.ReLU(), "relu6": nn.ReLU6(), "h_swish": nn.Hardswish()}.get(
            name, nn.Identity())

    def conv(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1) -> nn.Module:
        return nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)

    class _SE(nn.Module):
        def __init__(self, c: int, mid: int) -> None:
            super().__init__()
            self.f = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, mid, 1), nn.ReLU(),
                                   nn.Conv2d(mid, c, 1), nn.Hardsigmoid())

        def forward(self, x: Any) -> Any:
            return x * self.f(x)

    class _Block(nn.Module):
        def __init__(self, ly: LayerShape) -> None:
            super().__init__()
            mods: list[nn.Module] = []
            mid = ly.in_ch
            if ly.mid_ch:
                mid = ly.mid_ch
                mods += [conv(ly.in_ch, mid), nn.BatchNorm2d(mid), act(ly.act)]
            mods += [conv(mid, mid, ly.kernel, ly.stride, mid), nn.BatchNorm2d(mid), act(ly.act)]
            if ly.se:
                mods.append(_SE(mid, ly.se_ch))
            mods += [conv(mid, ly.out_ch), nn.BatchNorm2d(ly.out_ch)]
            self.body = nn.Sequential(*mods)
            self.shortcut = ly.shortcut

        def forward(self, x: Any) -> Any:
            y = self.body(x)
            return x + y if self.shortcut else y

    if layer.kind == "block":
        model: nn.Module = _Block(layer)
    elif layer.kind == "pool":
        model = nn.AdaptiveAvgPool2d(1)
    elif layer.kind == "classifier":
        model = nn.Sequential(nn.Flatten(), nn.Linear(layer.in_ch, layer.out_ch))
    else:
        parts = [conv(layer.in_ch, layer.out_ch, layer.kernel, layer.stride)]
        parts += [nn.BatchNorm2d(layer.out_ch)] if layer.bn else []
        model = nn.Sequential(*parts, act(layer.act))
    model = model.to(device).eval()
    x = torch.randn(batch_size, layer.in_ch, layer.in_hw, layer.in_hw, device=device)
    return timed_forwards(model, x, device, warmup, repeats)
