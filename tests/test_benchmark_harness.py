"""The benchmark harness: interleaving, medians, ratios, JSON; and the reference install.

The harness logic runs on fake clocks (no sleeping, exact numbers). The reference part installs
the pinned ``ofa`` aside (skipped when the package index cannot be reached) and checks that our
largest subnet, loaded from the reference supernet's own weights, computes what the reference
computes: otherwise every ratio in ``benchmarks/`` would compare different networks.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load(name: str) -> ModuleType:
    """Load a benchmarks/ module by path (benchmarks/ is scripts, not an installed package)."""
    key = f"_bench_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, REPO / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


harness = _load("harness")
reference = _load("reference")


class FakeClock:
    """A clock that only moves when a toy callable says it worked."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def work(self, seconds: float, log: list[str], tag: str):
        def fn():
            self.t += seconds
            log.append(tag)
            return {"tag": tag, "seconds": seconds}
        return fn


def test_median_odd_even_and_empty() -> None:
    assert harness.median([3.0, 1.0, 2.0]) == 2.0
    assert harness.median([4.0, 1.0, 3.0, 2.0]) == 2.5
    with pytest.raises(ValueError):
        harness.median([])


def test_compare_interleaves_and_computes_ratios() -> None:
    wall, cpu = FakeClock(), FakeClock()
    log: list[str] = []
    ours_costs = iter([9.0, 1.0, 2.0, 100.0, 1.5])  # warm-up 9, then timed 1, 2, 100, 1.5
    ref_costs = iter([9.0, 4.0, 6.0, 5.0, 5.0])

    def ours():
        c = next(ours_costs)
        wall.t += c
        cpu.t += c / 2
        log.append("o")
        return c

    def ref():
        c = next(ref_costs)
        wall.t += c
        cpu.t += c
        log.append("r")
        return c

    comp = harness.compare("toy", ours, ref, repeats=4, warmup=1, work=8, unit="img",
                           wall_clock=wall, cpu_clock=cpu)
    # warm-up pair, then alternating order: o r | r o | o r | r o
    assert log == ["o", "r", "o", "r", "r", "o", "o", "r", "r", "o"]
    assert comp.ours.wall_s == [1.0, 2.0, 100.0, 1.5]
    assert comp.reference.wall_s == [4.0, 6.0, 5.0, 5.0]
    assert comp.ours.median_wall_s == 1.75  # the 100 s outlier does not move the median
    assert comp.reference.median_wall_s == 5.0
    assert comp.ratio == pytest.approx(5.0 / 1.75)
    assert comp.cpu_ratio == pytest.approx(5.0 / 0.875)
    # per-round ratios 4, 3, 0.05, 3.33: median (3 + 3.33) / 2
    assert comp.paired_ratio == pytest.approx((3.0 + 5.0 / 1.5) / 2)
    assert comp.throughput(comp.ours) == pytest.approx(8 / 1.75)
    assert comp.ours.result == 1.5 and comp.reference.result == 5.0


def test_slower_ours_gives_ratio_below_one() -> None:
    clock = FakeClock()
    log: list[str] = []
    comp = harness.compare("slow", clock.work(2.0, log, "o"), clock.work(1.0, log, "r"),
                           repeats=3, warmup=0, wall_clock=clock, cpu_clock=clock)
    assert comp.ratio == pytest.approx(0.5)
    assert log == ["o", "r", "r", "o", "o", "r"]


def test_compare_rejects_bad_repeats() -> None:
    with pytest.raises(ValueError):
        harness.compare("x", lambda: None, lambda: None, repeats=0)


def test_results_json_roundtrip_and_table(tmp_path: Path) -> None:
    clock = FakeClock()
    log: list[str] = []
    comp = harness.compare("toy step", clock.work(0.5, log, "o"), clock.work(1.0, log, "r"),
                           repeats=3, warmup=0, work=16, unit="img", notes={"batch": 16},
                           wall_clock=clock, cpu_clock=clock)
    payload = harness.results_payload([comp], meta={"seed": 0}, skipped={"search": "why"})
    out = harness.write_results(tmp_path / "sub" / "r.json", payload)
    data = json.loads(out.read_text())
    [row] = data["comparisons"]
    assert row["ratio"] == pytest.approx(2.0)
    assert row["ours_per_s"] == pytest.approx(32.0)
    assert row["reference_per_s"] == pytest.approx(16.0)
    assert row["ours"]["result"] == {"tag": "o", "seconds": 0.5}
    assert row["notes"] == {"batch": 16}
    assert data["skipped"] == {"search": "why"}
    assert data["meta"] == {"seed": 0} and "cpu_count" in data["machine"]
    assert [p.name for p in out.parent.iterdir()] == ["r.json"]  # no temp file left
    table = harness.format_table([comp])
    assert "toy step" in table and "2.00x" in table


def test_write_results_leaves_nothing_on_failure(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        harness.write_results(tmp_path / "bad.json", {"x": object()})
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------- the reference itself


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory):
    """The installed reference: the repo's own aside copy if present, else a fresh install."""
    target = reference.default_reference_dir(REPO)
    if not reference.is_installed(target):
        target = tmp_path_factory.mktemp("ofa_ref") / "ref"
        try:
            reference.ensure_reference(target, timeout_s=120)
        except reference.ReferenceUnavailable as exc:
            pytest.skip(f"reference not installable here: {exc}")
    return reference.load_reference(target)


def test_reference_search_anchors(ref, shared_data: Path) -> None:
    """The reference, fed the local predictor and tables, gives the README's anchors."""
    d = shared_data / "ofa_mbv3_imagenet"
    search = reference.ReferenceSearch(ref, d / "acc_predictor.pth", d / "latency_note10")
    acc_big, lat_big = search.predict({"ks": [7] * 20, "e": [6] * 20, "d": [4] * 5, "r": 224})
    acc_small, lat_small = search.predict({"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5,
                                           "r": 160})
    assert acc_big == pytest.approx(0.836, abs=1e-3)
    assert acc_small == pytest.approx(0.753, abs=1e-3)
    assert lat_small < 15.0 < 60.0 < lat_big
    [found] = search.search([30.0], population=20, generations=3, seed=0)
    assert found["latency_ms"] <= 30.0
    assert acc_small <= found["accuracy"] <= acc_big


def test_our_largest_subnet_equals_reference(ref) -> None:
    torch = pytest.importorskip("torch")
    try:
        load_ofa_checkpoint = importlib.import_module(
            "search_spaces.checkpoints").load_ofa_checkpoint
        create_supernet = importlib.import_module("search_spaces.registry").create_supernet
    except (ImportError, AttributeError) as exc:
        pytest.skip(f"our supernet is not there yet: {exc}")
    from search_spaces.spaces import get_space

    torch.manual_seed(0)
    theirs = reference.build_supernet(ref, n_classes=10, dropout=0.0)
    # Non-trivial BN statistics, so that eval mode tests more than the affine weights.
    with torch.no_grad():
        for m in theirs.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    space = get_space("ofa_mbv3")
    ours = create_supernet(space, n_classes=10, dropout=0.0)
    load_ofa_checkpoint(ours, {"state_dict": theirs.state_dict()})
    x = torch.randn(2, 3, 128, 128)
    for arch in (space.largest(128), space.smallest(128)):
        ours.set_active(arch)
        reference.set_active(theirs, space.to_ofa_dict(arch))
        for train in (False, True):
            ours.train(train)
            theirs.train(train)
            with torch.no_grad():
                a, b = ours(x), theirs(x)
            assert a.shape == b.shape == (2, 10)
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (arch.key, train)
