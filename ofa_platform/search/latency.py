"""Efficiency estimators: OFA-format latency lookup tables, measured latency, MACs.

Every estimator maps a whole population (gene rows, see :mod:`genes`) to an array, because
the search asks for a generation at a time. Latency tables and MACs are *additive*: a block's
cost depends only on its slot, kernel, ratio and the resolution, so they compile to one array
``slot[r, slot, k, e]`` plus ``fixed[r]`` and a population costs two numpy gathers. Measured
latency is additive too: each layer an evaluated arch needs is measured lazily, the first time,
on the static module the supernet extracts for it, robustly on a busy machine, and memoised
persistently by hardware, batch size and layer (:class:`MeasuredLatency`).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ofa_platform.errors import UserError
from ofa_platform.files import atomic_path
from ofa_platform.search.cache import atomic_write_text
from ofa_platform.search.genes import GeneCodec
from search_spaces.arch import ArchConfig
from search_spaces.blueprint import LayerShape, NetworkPlan, layer_shapes
from search_spaces.flops import layer_macs_params

__all__ = [
    "AdditiveEstimator", "lut_key", "load_lut_dir", "write_lut_dir", "lut_estimator",
    "lut_latency_of_arch", "macs_estimator", "build_lut", "measure_latency", "timed_forwards",
    "hardware_key", "default_threads", "MeasurePolicy", "Measurement", "measuring_threads",
    "measure_robust", "measure_layer", "measuring_clock", "LatencyMemo", "stderr_progress",
    "MeasuredLatency", "MeasuredSubnetLatency", "measure_layer_torch",
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
        _, n_slots, nk, ne = self.slot.shape
        flat = ((r[:, None] * n_slots + np.arange(n_slots)[None, :]) * nk
                + g[:, c.k_cols]) * ne + g[:, c.e_cols]
        per_slot = self.slot.ravel().take(flat)  # one flat gather: the search's hottest call
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


def _read_table_yaml(path: Path, text: str) -> Any:
    """Parse one lookup table (libyaml's loader where installed); text that is not YAML (a
    syntax error) is a :class:`UserError` naming the file and the line, not a traceback."""
    import yaml

    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise UserError(f"latency table {path}: not valid YAML ({problem}{where})") from None


def _table_means(path: Path, raw: Any) -> dict[str, float]:
    """Layer key -> mean milliseconds of one parsed table, checked."""
    if not isinstance(raw, dict):
        raise UserError(f"{path}: not a lookup table (expected a mapping of layers)")
    try:
        means = {str(k): float(v["mean"]) for k, v in raw.items()}
    except (TypeError, KeyError, ValueError):
        raise UserError(f"{path}: every entry needs a numeric 'mean'") from None
    bad = next((k for k, v in means.items() if not 0 <= v < float("inf")), None)
    if bad is not None:
        raise UserError(f"{path}: entry {bad}: mean {means[bad]} is not a finite "
                        "non-negative number of milliseconds")
    return means


def _read_table(path: Path, cache_dir: Path | None) -> dict[str, float]:
    """One table's means. Parsing OFA's YAML is most of a short search's start-up (0.3 s for
    17 tables), so with a ``cache_dir`` the checked means are kept as JSON named by the hash
    of the YAML's bytes: an edited table is parsed again, an unchanged one never."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"latency table {path}: cannot read ({exc.strerror})") from None
    memo = None
    if cache_dir is not None:
        memo = cache_dir / "lut" / f"{hashlib.sha256(data).hexdigest()[:32]}.json"
        if memo.is_file():
            try:
                return {str(k): float(v) for k, v in json.loads(memo.read_text()).items()}
            except (ValueError, AttributeError, TypeError, OSError):
                pass  # a damaged memo is parsed again and rewritten
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"latency table {path}: not UTF-8 text") from None
    means = _table_means(path, _read_table_yaml(path, text))
    if memo is not None:
        atomic_write_text(memo, json.dumps(means))
    return means


def load_lut_dir(directory: str | Path, resolutions: Iterable[int],
                 cache_dir: str | Path | None = None) -> dict[int, dict[str, float]]:
    """Read ``{r}_lookup_table.yaml`` for each resolution: layer key -> mean milliseconds.
    ``cache_dir`` keeps parsed tables between processes (see :func:`_read_table`)."""
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
        tables[r] = _read_table(path, None if cache_dir is None else Path(cache_dir))
    return tables


def lut_latency_of_arch(tables: Mapping[int, Mapping[str, float]], plan: NetworkPlan,
                        arch: ArchConfig) -> float:
    """Latency of one arch by walking its layers (the slow, obvious path; tests compare)."""
    table = tables[arch.r]
    return float(sum(table[lut_key(ly)] for ly in layer_shapes(plan, arch)))


def lut_estimator(codec: GeneCodec, plan: NetworkPlan, directory: str | Path,
                  name: str | None = None,
                  cache_dir: str | Path | None = None) -> AdditiveEstimator:
    """Compile OFA-format tables into an additive estimator. A layer that some arch of the
    space needs but the table lacks is a :class:`UserError` naming the layer and the file."""
    directory = Path(directory)
    name = name or f"lut:{directory.name}"
    memo = _compiled_memo(directory, codec, plan, cache_dir)
    if memo is not None and memo.is_file():
        try:
            with np.load(memo) as saved:
                fixed, slot = saved["fixed"], saved["slot"]
            return AdditiveEstimator(codec=codec, fixed=fixed, slot=slot, name=name, unit="ms")
        except (OSError, ValueError, KeyError):
            pass  # a damaged memo is compiled again and rewritten
    tables = load_lut_dir(directory, codec.resolutions, cache_dir)

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
    slot = np.nan_to_num(slot)
    if memo is not None:
        with atomic_path(memo) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, fixed=fixed, slot=slot)
    return AdditiveEstimator(codec=codec, fixed=fixed, slot=slot, name=name, unit="ms")


def _compiled_memo(directory: Path, codec: GeneCodec, plan: NetworkPlan,
                   cache_dir: str | Path | None) -> Path | None:
    """Where a compiled estimator is kept: named by the hash of the tables' bytes, the plan,
    the space and the resolutions, so that any change compiles again. Walking 153 full-depth
    archs through the tables was a tenth of a whole 10-target search process (issue 17).
    None without a ``cache_dir`` or when a table cannot be read (the slow path names it)."""
    if cache_dir is None:
        return None
    h = hashlib.sha256(repr((plan, codec.space, codec.resolutions)).encode())
    for r in codec.resolutions:
        try:
            h.update(hashlib.sha256(_table_path(directory, r).read_bytes()).digest())
        except OSError:
            return None
    return Path(cache_dir) / "lut" / f"compiled-{h.hexdigest()[:32]}.npz"


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
def default_threads() -> int:
    """Threads a measurement runs on: one on a small machine (a second thread only adds
    contention with whatever else runs there), up to four on a large one."""
    return 1 if (os.cpu_count() or 1) <= 4 else min(4, (os.cpu_count() or 1) // 2)


@dataclass(frozen=True)
class MeasurePolicy:
    """How a latency is measured on a machine that other programs also use (issue 13).

    Rounds of ``repeats`` timed passes run until the two quietest rounds' medians (of each
    round's faster half, see :func:`_fast_half_median`) agree within ``tolerance`` (at least
    ``min_rounds``: two rounds can agree inside one burst of load; at most ``max_rounds``); the
    estimate is the quietest round's, since contention only ever adds time. ``spread`` is how
    far the rounds' medians ranged (``(max - min) / min``); a measurement that never settled
    or spread beyond ``noisy_spread`` is re-measured up to ``retries`` times later in the same
    search (load comes in bursts) and, if still noisy, kept with its flag, which the search
    shows.
    ``threads`` pins torch's intra-op threads while measuring (``None``: :func:`default_threads`).
    """

    warmup: int = 5
    repeats: int = 20
    min_rounds: int = 3
    max_rounds: int = 8
    tolerance: float = 0.05
    noisy_spread: float = 0.25
    retries: int = 2
    threads: int | None = None

    def __post_init__(self) -> None:
        if (self.warmup < 0 or self.repeats < 1 or not 1 <= self.min_rounds <= self.max_rounds
                or self.retries < 0):
            raise ValueError("warmup >= 0, repeats >= 1, 1 <= min_rounds <= max_rounds and "
                             "retries >= 0")
        if self.threads is not None and self.threads < 1:
            raise ValueError("threads must be >= 1")

    @property
    def n_threads(self) -> int:
        return self.threads or default_threads()


@dataclass(frozen=True)
class Measurement:
    """One memoised latency: the estimate in ms, the rounds' spread, and whether it was noisy."""

    ms: float
    spread: float
    rounds: int
    samples: int
    noisy: bool

    def to_json(self) -> dict[str, Any]:
        return {"ms": self.ms, "spread": self.spread, "rounds": self.rounds,
                "samples": self.samples, "noisy": self.noisy}

    @classmethod
    def from_json(cls, value: Any) -> Measurement:
        return cls(ms=float(value["ms"]), spread=float(value["spread"]),
                   rounds=int(value["rounds"]), samples=int(value["samples"]),
                   noisy=bool(value["noisy"]))


@contextmanager
def measuring_threads(n: int) -> Iterator[None]:
    """Torch on ``n`` intra-op threads while measuring, restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def hardware_key(device: str, threads: int | None = None) -> str:
    """What the memo keys a measurement by: the device model (CUDA) or CPU and thread count."""
    import torch

    if device.startswith("cuda"):
        return f"cuda:{torch.cuda.get_device_name(torch.device(device))}"
    cpu = platform.processor() or platform.machine()
    n = threads or torch.get_num_threads()
    return f"cpu:{cpu}:{os.cpu_count()}cores:{n}threads"


def timed_forwards(model: Any, x: Any, device: str, warmup: int, repeats: int,
                   clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Milliseconds of each of ``repeats`` forward passes after ``warmup`` untimed ones; CUDA
    is synchronised around every timed pass so the time is the kernels', not the launch's."""
    import torch

    cuda = device.startswith("cuda")
    samples = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            if cuda:
                torch.cuda.synchronize(device)
            t0 = clock()
            model(x)
            if cuda:
                torch.cuda.synchronize(device)
            if i >= warmup:
                samples.append((clock() - t0) * 1e3)
    return samples


def measuring_clock(device: str, threads: int) -> Callable[[], float]:
    """The clock a measurement reads. On a CPU with one intra-op thread the forward runs on
    the calling thread, so that thread's CPU time is its latency on an idle core, and time
    the scheduler gives to other programs is not counted: a busy machine cannot inflate it
    (wall time was measured 10x higher beside two CPU burners; thread time within 20%).
    Otherwise (CUDA, several threads) wall time."""
    return time.thread_time if device == "cpu" and threads == 1 else time.perf_counter


def _fast_half_median(samples: Sequence[float]) -> float:
    """The median of the faster half of a round (its lower quartile): a pass the scheduler
    interrupted pays for cold caches afterwards even in CPU time, so the slow half of a
    round measures the neighbours. Beside two CPU burners on 2 cores the quietest round's
    plain median read 20-26% high, this 3-19% (load average 46)."""
    return float(np.percentile(np.asarray(samples, dtype=np.float64), 25))


def measure_robust(model: Any, x: Any, device: str = "cpu",
                   policy: MeasurePolicy = MeasurePolicy()) -> Measurement:
    """Rounds of timed passes until the two quietest rounds agree (see :class:`MeasurePolicy`),
    read on :func:`measuring_clock`."""
    medians: list[float] = []
    stable = False
    clock = measuring_clock(device, policy.n_threads)
    with measuring_threads(policy.n_threads):
        for i in range(policy.max_rounds):
            samples = timed_forwards(model, x, device, policy.warmup if i == 0 else 1,
                                     policy.repeats, clock)
            medians.append(_fast_half_median(samples))
            if len(medians) >= max(2, policy.min_rounds):
                a, b = sorted(medians)[:2]
                if b - a <= policy.tolerance * a:
                    stable = True
                    break
    best = min(medians)
    spread = (max(medians) - best) / best if best > 0 else 0.0
    return Measurement(ms=best, spread=spread, rounds=len(medians),
                       samples=len(medians) * policy.repeats,
                       noisy=not stable or spread > policy.noisy_spread)


def measure_latency(model: Any, resolution: int, *, device: str = "cpu", batch_size: int = 1,
                    policy: MeasurePolicy = MeasurePolicy()) -> Measurement:
    """Latency of one forward pass of a whole model at ``resolution`` (robust, see
    :func:`measure_robust`)."""
    import torch

    model = model.to(device).eval()
    x = torch.randn(batch_size, 3, resolution, resolution, device=device)
    return measure_robust(model, x, device, policy)


def measure_layer(layer: LayerShape, *, device: str = "cpu", batch_size: int = 1,
                  policy: MeasurePolicy = MeasurePolicy()) -> Measurement:
    """Latency of one layer, timed on the static module the supernet's ``extract`` produces
    for it (:func:`search_spaces.ops.static.static_layer`), so a table or memo times the
    module that is exported."""
    import torch

    from search_spaces.ops.static import static_layer

    model = static_layer(layer).to(device).eval()
    x = torch.randn(batch_size, layer.in_ch, layer.in_hw, layer.in_hw, device=device)
    return measure_robust(model, x, device, policy)


def measure_layer_torch(layer: LayerShape, *, device: str = "cpu", batch_size: int = 1,
                        warmup: int = 5, repeats: int = 20) -> list[float]:
    """Per-layer samples in ms for :func:`build_lut`, timed on :func:`static_layer`'s module."""
    import torch

    from search_spaces.ops.static import static_layer

    model = static_layer(layer).to(device).eval()
    x = torch.randn(batch_size, layer.in_ch, layer.in_hw, layer.in_hw, device=device)
    threads = default_threads()
    with measuring_threads(threads):
        return timed_forwards(model, x, device, warmup, repeats, measuring_clock(device, threads))


class LatencyMemo:
    """Persistent ``key -> Measurement`` (JSON, rewritten whole and renamed into place)."""

    def __init__(self, path: str | Path) -> None:
        import json

        self.path = Path(path)
        self._data: dict[str, Measurement] = {}
        if self.path.is_file():
            try:
                raw = json.loads(self.path.read_text())
                self._data = {str(k): Measurement.from_json(v) for k, v in raw.items()}
            except (ValueError, AttributeError, TypeError, KeyError, UnicodeDecodeError):
                raise UserError(f"latency memo {self.path} is not a JSON object of "
                                f"measurements; delete it to measure again") from None

    def get(self, key: str) -> Measurement | None:
        return self._data.get(key)

    def put_many(self, items: Mapping[str, Measurement]) -> None:
        import json

        if not items:
            return
        self._data.update(items)
        atomic_write_text(self.path, json.dumps({k: v.to_json() for k, v in self._data.items()},
                                                indent=0, sort_keys=True))

    def __len__(self) -> int:
        return len(self._data)


def stderr_progress(line: str) -> None:
    """The default progress callback: one line on stderr (stdout stays the command's own)."""
    print(line, file=sys.stderr, flush=True)


class MeasuredLatency:
    """Latency measured on this machine, additive over layers and measured lazily.

    A population's cost is ``fixed[r] + sum of slot[r, slot, k, e]`` as for a lookup table, but
    the table starts empty: an entry is measured the first time an arch the search evaluates
    needs it, at the resolution it uses, on the static module ``extract`` produces for that
    layer, and memoised persistently by hardware, batch size and layer (so OFA, CompOFA and
    DεpS share the layers they have in common). A space-wide sweep of whole subnets took the
    quick start 118 s per OFA target; the search needs a few hundred layers. When a call has
    layers to measure, ``progress`` gets a line with their number and an ETA.
    """

    def __init__(self, codec: GeneCodec, plan: NetworkPlan, *, memo: LatencyMemo,
                 device: str = "cpu", batch_size: int = 1,
                 policy: MeasurePolicy = MeasurePolicy(), hardware: str | None = None,
                 progress: Callable[[str], None] | None = stderr_progress,
                 measure: Callable[[LayerShape], Measurement] | None = None) -> None:
        self.codec, self.plan, self.memo = codec, plan, memo
        self.device, self.batch_size, self.policy = device, batch_size, policy
        self.hardware = hardware or hardware_key(device, policy.n_threads)
        self.name = f"measured:{self.hardware}"
        self.unit = "ms"
        self.progress = progress
        self.measure = measure or (lambda ly: measure_layer(
            ly, device=device, batch_size=batch_size, policy=policy))
        nk, ne = codec.kernel_values.shape[1], codec.ratio_values.shape[1]
        self.fixed = np.full(len(codec.resolutions), np.nan)
        self.slot = np.full((len(codec.resolutions), codec.n_slots, nk, ne), np.nan)
        self._walks: dict[tuple[int, int, int], list[LayerShape]] = {}
        self.measurements = 0  # layers measured by this instance (re-measurements included)
        self.measured_s = 0.0
        self.used: dict[str, Measurement] = {}  # every entry this instance's costs contain

    # -------------------------------------------------------------- population costs
    def __call__(self, genes: np.ndarray) -> np.ndarray:
        c = self.codec
        g = genes.astype(np.int64)
        r = g[:, c.r_col]
        active = c.active(genes)
        idx = (r[:, None], np.arange(c.n_slots)[None, :], g[:, c.k_cols], g[:, c.e_cols])
        if np.isnan(self.fixed[r]).any() or (active & np.isnan(self.slot[idx])).any():
            self._fill(np.unique(r), np.argwhere(active & np.isnan(self.slot[idx])), idx)
        return self.fixed[r] + np.where(active, self.slot[idx], 0.0).sum(axis=1)

    def of_archs(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        return self(self.codec.encode(archs))

    @property
    def noisy(self) -> int:
        """How many of the measurements behind this instance's costs stayed noisy."""
        return sum(m.noisy for m in self.used.values())

    # -------------------------------------------------------------- lazy measurement
    def key(self, layer: LayerShape) -> str:
        return (f"{self.hardware}|bs{self.batch_size}|{lut_key(layer)}|act:{layer.act}"
                f"|bn:{int(layer.bn)}")

    def _walk(self, ri: int, ki: int, ei: int) -> list[LayerShape]:
        if (ri, ki, ei) not in self._walks:
            arch = _full_depth_arch(self.codec, self.codec.resolutions[ri], ki, ei)
            self._walks[ri, ki, ei] = layer_shapes(self.plan, arch)
        return self._walks[ri, ki, ei]

    def _fill(self, resolutions: np.ndarray, cells: np.ndarray,
              idx: tuple[np.ndarray, ...]) -> None:
        """Measure what the missing cells and resolutions need, then fill them in."""
        wanted: list[tuple[tuple[int, ...], list[LayerShape]]] = []
        for ri in resolutions:
            if np.isnan(self.fixed[ri]):
                wanted.append(((int(ri),), [ly for ly in self._walk(int(ri), 0, 0)
                                            if ly.stage < 0]))
        seen = set()
        for n, li in cells:
            cell = (int(idx[0][n, 0]), int(li), int(idx[2][n, li]), int(idx[3][n, li]))
            if cell not in seen:
                seen.add(cell)
                blocks = [ly for ly in self._walk(cell[0], cell[2], cell[3]) if ly.stage >= 0]
                wanted.append((cell, [blocks[cell[1]]]))
        layers = {self.key(ly): ly for _, lys in wanted for ly in lys}
        got = self._measure_missing(layers)
        for cell, lys in wanted:
            total = sum(got[self.key(ly)].ms for ly in lys)
            if len(cell) == 1:
                self.fixed[cell[0]] = total
            else:
                self.slot[cell] = total

    def _measure_missing(self, layers: Mapping[str, LayerShape]) -> dict[str, Measurement]:
        got = {k: m for k in layers if (m := self.memo.get(k)) is not None}
        todo = [k for k in layers if k not in got]
        if todo:
            got.update(self._measure(todo, layers))
        self.used.update(got)
        return got

    def _measure(self, todo: list[str], layers: Mapping[str, LayerShape]
                 ) -> dict[str, Measurement]:
        """Measure ``todo``, then re-measure the noisy ones (up to ``retries`` passes, later
        in time: load comes in bursts), keeping each layer's least spread measurement."""
        fresh: dict[str, Measurement] = {}
        t0 = time.perf_counter()
        say = self.progress if len(todo) > 1 else None
        if say:
            say(f"[latency] measuring {len(todo)} layers on {self.device} "
                f"(first use on this machine; memo {self.memo.path})")
        last = t0
        for pass_no in range(1 + self.policy.retries):
            keys = todo if pass_no == 0 else [k for k in todo if fresh[k].noisy]
            for i, k in enumerate(keys):
                m = self.measure(layers[k])
                self.measurements += 1
                if k not in fresh or m.spread < fresh[k].spread:
                    fresh[k] = m
                now = time.perf_counter()
                if say and pass_no == 0 and (i == 2 < len(keys) - 8 or now - last > 15.0):
                    eta = (now - t0) / (i + 1) * (len(keys) - i - 1)
                    say(f"[latency] {i + 1}/{len(keys)} layers, ETA {eta:.0f} s")
                    last = now
        self.measured_s += time.perf_counter() - t0
        self.memo.put_many(fresh)
        noisy = sum(m.noisy for m in fresh.values())
        if say:
            say(f"[latency] measured {len(todo)} layers in {time.perf_counter() - t0:.1f} s"
                + (f"; {noisy} stayed noisy (machine busy)" if noisy else ""))
        return fresh


class MeasuredSubnetLatency:
    """Latency of whole subnets, each measured (robustly, :func:`measure_latency`) the first
    time the search evaluates it and memoised by hardware, model, batch size and arch. For
    families whose blocks are not additive per slot in :class:`GeneCodec` terms (ResNet50D's
    widths): a MobileNet space uses the cheaper per-layer :class:`MeasuredLatency`."""

    def __init__(self, codec: Any, build_model: Callable[[Any], Any], *, model_tag: str,
                 memo: LatencyMemo, device: str = "cpu", batch_size: int = 1,
                 policy: MeasurePolicy = MeasurePolicy(), hardware: str | None = None) -> None:
        self.codec, self.build_model = codec, build_model
        self.model_tag, self.memo = model_tag, memo
        self.device, self.batch_size, self.policy = device, batch_size, policy
        self.hardware = hardware or hardware_key(device, policy.n_threads)
        self.name = f"measured:{self.hardware}"
        self.unit = "ms"
        self.measurements = 0
        self.measured_s = 0.0
        self.used: dict[str, Measurement] = {}

    @property
    def noisy(self) -> int:
        return sum(m.noisy for m in self.used.values())

    def key(self, arch: Any) -> str:
        return f"{self.hardware}|{self.model_tag}|bs{self.batch_size}|{arch.key}"

    def of_archs(self, archs: Sequence[Any]) -> np.ndarray:
        out = np.zeros(len(archs))
        new: dict[str, Measurement] = {}
        for i, arch in enumerate(archs):
            key = self.key(arch)
            m = self.memo.get(key) or new.get(key)
            if m is None:
                t0 = time.perf_counter()
                m = measure_latency(self.build_model(arch), arch.r, device=self.device,
                                    batch_size=self.batch_size, policy=self.policy)
                self.measured_s += time.perf_counter() - t0
                self.measurements += 1
                new[key] = m
            self.used[key] = m
            out[i] = m.ms
        self.memo.put_many(new)
        return out

    def __call__(self, genes: np.ndarray) -> np.ndarray:
        return self.of_archs(self.codec.decode(genes))
