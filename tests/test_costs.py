"""Costs: CompOFA's published table, the hardware table, the meter, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ofa_platform.cli import main
from ofa_platform.costs import (
    LBS_PER_KG,
    EnergyMeter,
    compute_cost,
    list_hardware,
    load_hardware,
    project_device_hours,
    project_schedule_device_hours,
)
from ofa_platform.errors import UserError
from ofa_platform.train.schedule import load_schedule


@pytest.mark.parametrize("hours, dollars, lbs", [(978.3, 2426, 277.0), (493.5, 1224, 139.7)])
def test_compofa_published_cost_lines(hours: float, dollars: int, lbs: float) -> None:
    r = compute_cost(hours, load_hardware("v100"))
    assert round(r.dollars) == dollars
    assert round(r.co2_lbs, 1) == lbs
    assert r.co2_kg == pytest.approx(r.co2_lbs / LBS_PER_KG)
    assert r.energy_kwh == pytest.approx(hours * 0.18785 * 1.58)


def test_table_has_gpu_and_cpu_entries() -> None:
    names = list_hardware()
    assert "v100" in names
    kinds = {load_hardware(n).kind for n in names}
    assert kinds == {"gpu", "cpu"}


def test_overrides_and_measured_energy() -> None:
    hw = load_hardware("v100", overrides={"price_per_hour": 1.0, "pue": 1.0})
    r = compute_cost(10, hw)
    assert r.dollars == 10 and r.energy_kwh == pytest.approx(1.8785)
    assert compute_cost(10, hw, energy_kwh=5.0).co2_lbs == pytest.approx(5 * 0.954)
    with pytest.raises(UserError, match="watts"):
        load_hardware("v100", overrides={"watts": -1})
    with pytest.raises(UserError, match="unknown hardware 'tpu9'"):
        load_hardware("tpu9")


def test_custom_table(tmp_path: Path) -> None:
    t = tmp_path / "hw.yaml"
    t.write_text("mine: {kind: cpu, price_per_hour: 0.5, watts: 10}\n")
    assert load_hardware("mine", t).pue == 1.58
    t.write_text("bad: {kind: fpga, price_per_hour: 1, watts: 1, colour: red}\n")
    with pytest.raises(UserError, match="colour: unknown key.*kind: 'fpga'"):
        load_hardware("bad", t)


def test_energy_meter_estimate_without_gpus() -> None:
    hw = load_hardware("cpu")
    m = EnergyMeter(hw, devices=2).start()
    kwh = m.stop()
    assert m.source == "estimate"
    assert kwh == pytest.approx(hw.energy_kwh(m.device_hours))
    assert m.device_hours == pytest.approx(2 * m.hours)
    assert m.report().device_hours == m.device_hours


def test_projection() -> None:
    assert project_device_hours(100.0, 360_000, 10) == pytest.approx(10.0)
    s = load_schedule("ofa")
    one = project_schedule_device_hours(s.phases, 100.0, 36_000, measured_subnets_per_step=1)
    # teacher and kernel at 1 subnet, depth at 2, expand at 4 (relative to 1 measured)
    want = (180 + 125 + 2 * (25 + 125) + 4 * (25 + 125)) * 36_000 / 100 / 3600
    assert one == pytest.approx(want)


def test_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "--device-hours", "978.3", "--hardware", "v100"]) == 0
    out = capsys.readouterr().out
    assert "$2,426" in out and "277.0 lbs" in out
    assert main(["cost", "--device-hours", "493.5", "--hardware", "v100", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert round(data["dollars"]) == 1224 and round(data["co2_lbs"], 1) == 139.7
    assert main(["cost", "--device-hours", "1", "--hardware", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown hardware 'nope'" in err and len(err.strip().splitlines()) == 1
    assert main(["cost", "--list"]) == 0
    assert "v100" in capsys.readouterr().out
    assert main(["cost"]) == 2
    assert "--device-hours is required" in capsys.readouterr().err
    assert main(["cost", "--device-hours", "-1"]) == 2


def test_energy_meter_reads_nvml_counters(monkeypatch: pytest.MonkeyPatch) -> None:
    """The NVML path, with a stand-in module: counters in millijoules, times the PUE."""
    import sys
    import types

    counters = {0: 1_000_000, 1: 5_000_000}
    fake = types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetTotalEnergyConsumption=lambda h: counters[h])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    hw = load_hardware("v100")
    m = EnergyMeter(hw, devices=2).start()
    assert m.source == "nvml"
    counters[0] += 1_800_000_000  # 0.5 kWh on GPU 0
    counters[1] += 1_800_000_000  # and on GPU 1
    assert m.stop() == pytest.approx(1.0 * hw.pue)
    assert m.report().energy_kwh == pytest.approx(1.0 * hw.pue)
    one = EnergyMeter(hw, devices=1, gpu_indices=[1]).start()
    counters[1] += 3_600_000
    assert one.stop() == pytest.approx(0.001 * hw.pue)
