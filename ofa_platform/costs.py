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
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ofa_platform.errors import UserError

__all__ = [
    "LBS_PER_KG", "HardwareSpec", "CostReport", "default_table_path", "load_hardware_table",
    "load_hardware", "list_hardware", "compute_cost", "EnergyMeter",
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
_FIELDS = {f.name for f in fields(HardwareSpec)} - {"name"}


def _spec(name: str, data: Any, source: str) -> HardwareSpec:
    if not isinstance(data, Mapping):
        raise UserError(f"hardware {name!r} in {source}: expected a mapping")
    errs = [f"{k}: unknown key" for k in sorted(set(map(str, data)) - _FIELDS)]
    for k in _NUMERIC:
        v = data.get(k)
        if k in ("price_per_hour", "watts") and v is None:
            errs.append(f"{k}: missing")
        elif v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                or not math.isfinite(v) or v < 0):
            errs.append(f"{k}: expected a non-negative number, got {v!r}")
    if data.get("kind", "gpu") not in _KINDS:
        errs.append(f"kind: {data.get('kind')!r} is not one of {', '.join(_KINDS)}")
    if errs:
        raise UserError(f"hardware {name!r} in {source}: " + "; ".join(errs))
    kw = {k: (float(v) if k in _NUMERIC else v) for k, v in data.items()}
    return HardwareSpec(name=name, **kw)


def load_hardware_table(table_path: str | Path | None = None) -> dict[str, HardwareSpec]:
    """All entries of a hardware YAML table (default: the packaged ``hardware.yaml``)."""
    import yaml

    path = Path(table_path) if table_path is not None else default_table_path()
    from ofa_platform.files import read_user_text

    try:
        data = yaml.safe_load(read_user_text(path, "hardware table"))
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
        raise UserError(f"unknown hardware {name!r}; known: {', '.join(sorted(table))}")
    spec = table[name]
    if overrides:
        merged = {k: v for k, v in asdict(spec).items() if k != "name"}
        merged.update(overrides)
        spec = _spec(name, merged, "overrides")
    return spec


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

