"""What a run cost: device-hours, dollars, energy and CO2 from a hardware price table.

The defaults reproduce CompOFA's published cost table (Sahni et al., 2021) from its GPU-hours:
a V100 at $2.48 per hour and 187.85 W, PUE 1.58 and 0.954 lbs CO2 per kWh (Strubell et al.,
2019): ``energy_kwh = device_hours * watts / 1000 * PUE`` and ``co2_lbs = energy_kwh *
0.954``. Where NVIDIA GPUs are present, :class:`EnergyMeter` measures energy with NVML's
cumulative energy counters instead (then multiplied by the PUE, as the estimate is).

Device-hours are GPU-hours on GPUs (wall time x devices) and worker-hours on CPUs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ofa_platform.errors import UserError

__all__ = [
    "LBS_PER_KG", "HardwareSpec", "CostReport", "default_table_path", "load_hardware_table",
    "load_hardware", "list_hardware", "hardware_for_device", "compute_cost", "EnergyMeter",
    "project_device_hours", "project_schedule_device_hours",
]

LBS_PER_KG = 2.20462262185
_KINDS = ("gpu", "cpu")


def default_table_path() -> Path:
    """``hardware.yaml`` shipped inside the package."""
    return Path(__file__).resolve().with_name("hardware.yaml")


@dataclass(frozen=True)
class HardwareSpec:
    """One device type: what an hour of it costs and how much power it draws.

    ``price_per_hour`` and ``watts`` are per device (one GPU, or one CPU worker).
    """

    name: str
    kind: str
    price_per_hour: float
    watts: float
    pue: float = 1.58
    co2_lbs_per_kwh: float = 0.954
    description: str = ""

    @property
    def co2_kg_per_kwh(self) -> float:
        return self.co2_lbs_per_kwh / LBS_PER_KG

    def energy_kwh(self, device_hours: float) -> float:
        """The estimate used without a meter: devices x hours x watts x PUE."""
        return device_hours * self.watts / 1000.0 * self.pue


@dataclass(frozen=True)
class CostReport:
    """The cost of some device-hours (the MLflow cost metrics)."""

    device_hours: float
    dollars: float
    energy_kwh: float
    co2_kg: float
    co2_lbs: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def line(self, hardware: str = "") -> str:
        """One human line, like CompOFA's table row."""
        on = f" on {hardware}" if hardware else ""
        return (f"{self.device_hours:,.1f} device-hours{on}: ${self.dollars:,.0f}, "
                f"{self.energy_kwh:,.1f} kWh, {self.co2_lbs:,.1f} lbs CO2 "
                f"({self.co2_kg:,.1f} kg)")


_NUMERIC = ("price_per_hour", "watts", "pue", "co2_lbs_per_kwh")


def _spec(name: str, data: Any, source: str) -> HardwareSpec:
    """One table entry read into :class:`HardwareSpec`: every bad field named at once."""
    from ofa_platform.configs import read_dataclass

    rules = {k: {"minimum": 0.0} for k in _NUMERIC} | {"kind": {"choices": _KINDS}}
    return read_dataclass(data, HardwareSpec, f"hardware {name!r} in {source}",
                          fixed={"name": name}, rules=rules)


def load_hardware_table(table_path: str | Path | None = None) -> dict[str, HardwareSpec]:
    """All entries of a hardware YAML table (default: the packaged ``hardware.yaml``)."""
    import yaml

    path = Path(table_path) if table_path is not None else default_table_path()
    from ofa_platform.files import read_user_text

    try:
        # libyaml's loader where installed: the pure-Python one was 0.09 s of every search
        data = yaml.load(read_user_text(path, "hardware table"),
                         Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise UserError(f"hardware table {path}: invalid YAML ({type(exc).__name__})") from None
    if not isinstance(data, Mapping) or not data:
        raise UserError(f"hardware table {path}: expected a non-empty mapping of names")
    return {str(k): _spec(str(k), v, str(path)) for k, v in data.items()}


def list_hardware(table_path: str | Path | None = None) -> list[str]:
    return sorted(load_hardware_table(table_path))


def load_hardware(name: str, table_path: str | Path | None = None, *,
                  overrides: Mapping[str, Any] | None = None) -> HardwareSpec:
    """One entry of the table, with ``overrides`` (e.g. ``{"price_per_hour": 1.9}``) applied.

    Unknown names and bad override fields are ``UserError``.
    """
    table = load_hardware_table(table_path)
    if name not in table:
        raise UserError(_unknown(f"hardware {name!r}", table, table_path))
    spec = table[name]
    if overrides:
        merged = {k: v for k, v in asdict(spec).items() if k != "name"}
        merged.update(overrides)
        spec = _spec(name, merged, "overrides")
    return spec


def _unknown(what: str, table: Mapping[str, HardwareSpec], table_path: str | Path | None) -> str:
    """One line: what is missing, which table was read, and how to add an entry (a device that
    is billed as some other device without a word is the error this prevents)."""
    path = Path(table_path) if table_path is not None else default_table_path()
    return (f"unknown {what}: not in the hardware table {path} (known: "
            f"{', '.join(sorted(table))}); "
            "add an entry with kind, price_per_hour and watts to that file, or pass --table "
            "with your own")


def hardware_for_device(device_name: str, table_path: str | Path | None = None) -> str:
    """The table entry of a device as the driver reports it (``torch.cuda.get_device_name``,
    e.g. ``"NVIDIA A100-SXM4-80GB"`` -> ``a100_80gb``, ``"NVIDIA A10G"`` -> ``a10g``).

    Matches an entry named by a word of the name, or by a word joined with the memory size
    (``a100`` + ``80gb``); an unknown device is a ``UserError`` rather than a silent fallback to
    another device's price.
    """
    import re

    table = load_hardware_table(table_path)
    words = [w for w in re.split(r"[\s_\-/]+", device_name.lower()) if w]
    memory = next((w for w in words if re.fullmatch(r"\d+gb", w)), None)
    for word in words:
        if memory and f"{word}_{memory}" in table:
            return f"{word}_{memory}"
        if word in table and table[word].kind == "gpu":
            return word
    raise UserError(_unknown(f"GPU {device_name!r}", table, table_path))


def compute_cost(device_hours: float, hardware: HardwareSpec,
                 energy_kwh: float | None = None) -> CostReport:
    """Dollars, energy and CO2 of ``device_hours`` on ``hardware``.

    ``energy_kwh`` is a measured value (already including PUE) when there is one; otherwise
    the estimate ``device_hours x watts x PUE`` is used.
    """
    if device_hours < 0 or not math.isfinite(device_hours):
        raise UserError(f"device hours must be a non-negative number, got {device_hours}")
    energy = hardware.energy_kwh(device_hours) if energy_kwh is None else float(energy_kwh)
    lbs = energy * hardware.co2_lbs_per_kwh
    return CostReport(device_hours=float(device_hours),
                      dollars=device_hours * hardware.price_per_hour,
                      energy_kwh=energy, co2_kg=lbs / LBS_PER_KG, co2_lbs=lbs)


class EnergyMeter:
    """Energy used between :meth:`start` and :meth:`stop`, in kWh including PUE.

    With NVIDIA GPUs and ``pynvml`` (nvidia-ml-py) it reads each GPU's cumulative energy
    counter (``nvmlDeviceGetTotalEnergyConsumption``, millijoules, Volta and newer) at start
    and stop; it measures the GPUs *of this machine* (``gpu_indices`` or all), so on a
    multi-node cluster each node needs its own meter. Otherwise (no GPU, no NVML, an
    unsupported GPU) it falls back to ``devices x hours x watts x PUE``. ``source`` says
    which was used: ``"nvml"`` or ``"estimate"``.
    """

    def __init__(self, hardware: HardwareSpec, devices: int, *,
                 gpu_indices: Sequence[int] | None = None, use_nvml: bool = True) -> None:
        self.hardware, self.devices = hardware, max(0, int(devices))
        self._gpu_indices = gpu_indices
        self._use_nvml = use_nvml and hardware.kind == "gpu"
        self._handles: list[Any] = []
        self._start_mj: list[int] = []
        self._t0: float | None = None
        self._elapsed = 0.0
        self._measured_kwh: float | None = None
        self.source = "estimate"

    def _nvml_start(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            n = pynvml.nvmlDeviceGetCount()
            idx = list(self._gpu_indices) if self._gpu_indices is not None else list(range(n))
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in idx]
            self._start_mj = [pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
                              for h in self._handles]
            self.source = "nvml" if self._handles else "estimate"
        except Exception:  # no driver, no GPU, unsupported counter: estimate instead
            self._handles, self._start_mj, self.source = [], [], "estimate"

    def start(self) -> EnergyMeter:
        self._t0 = time.monotonic()
        if self._use_nvml:
            self._nvml_start()
        return self

    @property
    def hours(self) -> float:
        """Wall hours metered so far (running or stopped)."""
        running = time.monotonic() - self._t0 if self._t0 is not None else 0.0
        return (self._elapsed + running) / 3600.0

    @property
    def device_hours(self) -> float:
        return self.hours * self.devices

    def stop(self) -> float:
        """Stop metering; returns the energy in kWh (PUE included)."""
        if self._t0 is not None:
            self._elapsed += time.monotonic() - self._t0
            self._t0 = None
        if self.source == "nvml" and self._handles:
            try:
                import pynvml

                used_mj = sum(pynvml.nvmlDeviceGetTotalEnergyConsumption(h) - s
                              for h, s in zip(self._handles, self._start_mj))
                self._measured_kwh = used_mj / 3.6e9 * self.hardware.pue
            except Exception:
                self.source, self._measured_kwh = "estimate", None
        return self.energy_kwh

    @property
    def energy_kwh(self) -> float:
        if self._measured_kwh is not None:
            return self._measured_kwh
        return self.hardware.energy_kwh(self.device_hours)

    def report(self) -> CostReport:
        """The cost of what was metered (measured energy when NVML was used)."""
        return compute_cost(self.device_hours, self.hardware, self.energy_kwh)

    def __enter__(self) -> EnergyMeter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def project_device_hours(images_per_s_per_device: float, images_per_epoch: int,
                         epochs: float) -> float:
    """Device-hours to process ``epochs`` epochs of ``images_per_epoch`` images at a measured
    per-device throughput (the devices share the work, so their count cancels out)."""
    if images_per_s_per_device <= 0:
        raise ValueError(f"throughput must be positive, got {images_per_s_per_device}")
    return epochs * images_per_epoch / images_per_s_per_device / 3600.0


def project_schedule_device_hours(phases: Iterable[Any], images_per_s_per_device: float,
                                  images_per_epoch: int,
                                  measured_subnets_per_step: int = 1) -> float:
    """Device-hours a whole recipe would take, from a throughput measured while training
    ``measured_subnets_per_step`` subnets per step.

    ``phases`` are schedule phases (anything with ``total_epochs`` and ``subnets_per_step``,
    e.g. ``Schedule.phases``). A step's cost is taken as proportional to its number of
    subnets (forward + backward each; a frozen teacher's forward is ignored), so a phase
    training ``k`` subnets runs at ``measured * m / k`` images/s. This is a projection to
    compare recipes before paying for them, not a measurement.
    """
    total = 0.0
    for p in phases:
        speed = images_per_s_per_device * measured_subnets_per_step / p.subnets_per_step
        total += project_device_hours(speed, images_per_epoch, p.total_epochs)
    return total

