"""Latency tables, MACs and measured latency of the search."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from ofa_platform.errors import UserError
from ofa_platform.search.genes import GeneCodec
from ofa_platform.search.latency import (
    build_lut,
    load_lut_dir,
    lut_estimator,
    lut_latency_of_arch,
    macs_estimator,
    write_lut_dir,
)
from search_spaces.blueprint import network_plan
from search_spaces.flops import count_macs_params
from search_spaces.spaces import get_space

NOTE10_RES = tuple(range(160, 225, 4))


@pytest.fixture(scope="module")
def note10(shared_data: Path) -> Path:
    return shared_data / "ofa_mbv3_imagenet" / "latency_note10"


def test_note10_tables_cover_every_arch_and_match_layer_walk(note10: Path) -> None:
    space = get_space("ofa_mbv3")
    codec = GeneCodec(space, NOTE10_RES)
    plan = network_plan("mbv3", 1.2)
    est = lut_estimator(codec, plan, note10)  # raises if any reachable layer is missing
    tables = load_lut_dir(note10, NOTE10_RES)
    rng = random.Random(1)
    archs = [space.sample(rng).replace(r=rng.choice(NOTE10_RES)) for _ in range(300)]
    archs += [space.smallest(160), space.largest(224)]
    fast = est.of_archs(archs)
    slow = np.array([lut_latency_of_arch(tables, plan, a) for a in archs])
    np.testing.assert_allclose(fast, slow, rtol=1e-12)
    assert fast[-2] < fast[-1]
    assert fast[-2] < 15 < 60 < fast[-1]  # the targets lie inside the table's range


def test_lut_missing_layer_is_a_user_error(note10: Path, tmp_path: Path) -> None:
    for f in note10.glob("*_lookup_table.yaml"):
        shutil.copy(f, tmp_path / f.name)
    path = tmp_path / "192_lookup_table.yaml"
    lines = path.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("expanded_conv")
                 and "kernel:7" in line)
    path.write_text("".join(lines[:start] + lines[start + 4:]))
    codec = GeneCodec(get_space("ofa_mbv3"), NOTE10_RES)
    with pytest.raises(UserError, match="192_lookup_table.yaml has no entry for layer "
                                        "expanded_conv-.*kernel:7"):
        lut_estimator(codec, network_plan("mbv3", 1.2), tmp_path)
    with pytest.raises(UserError, match="no latency table for resolution 128"):
        lut_estimator(GeneCodec(get_space("ofa_mbv3"), (128,)), network_plan("mbv3", 1.2),
                      tmp_path)


def test_macs_estimator_equals_analytic_count() -> None:
    space = get_space("ofa_proxyless")
    codec = GeneCodec(space)
    plan = network_plan("proxyless", 1.3)
    est = macs_estimator(codec, plan)
    rng = random.Random(2)
    archs = [space.sample(rng) for _ in range(50)]
    want = [count_macs_params(plan, a)[0] / 1e6 for a in archs]
    np.testing.assert_allclose(est.of_archs(archs), want, rtol=1e-12)


def test_build_own_table_then_search_with_it(tmp_path: Path) -> None:
    space = get_space("compofa_mbv3")
    codec = GeneCodec(space, (128, 132))
    plan = network_plan("mbv3", 1.0)
    # a deterministic "device": latency proportional to MACs
    from search_spaces.flops import layer_macs_params

    tables = build_lut(plan, codec, lambda ly: [layer_macs_params(ly)[0] / 1e6] * 3)
    write_lut_dir(tables, tmp_path)
    est = lut_estimator(codec, plan, tmp_path)
    archs = list(space.with_resolutions((128, 132)).enumerate())
    want = macs_estimator(codec, plan).of_archs(archs)
    np.testing.assert_allclose(est.of_archs(archs), want, rtol=1e-9)


def test_parsed_tables_are_kept_by_content(note10: Path, tmp_path: Path) -> None:
    """A second search reads the cached means, equal to the YAML's; an edited table is parsed
    again (the cache is keyed by its bytes); a damaged memo is rewritten, not trusted."""
    tables = tmp_path / "tables"
    shutil.copytree(note10, tables)
    cache = tmp_path / "cache"
    res = (160, 164)
    first = load_lut_dir(tables, res, cache)
    memos = sorted((cache / "lut").glob("*.json"))
    assert len(memos) == 2 and first == load_lut_dir(tables, res)
    assert load_lut_dir(tables, res, cache) == first
    path = tables / "160_lookup_table.yaml"
    text = path.read_text()
    key = next(k for k in first[160] if k.startswith("expanded_conv"))
    old = f"{first[160][key]}"
    assert f"mean: {old}" in text
    path.write_text(text.replace(f"mean: {old}", "mean: 99.5", 1))
    assert load_lut_dir(tables, res, cache)[160][key] == 99.5
    assert len(list((cache / "lut").glob("*.json"))) == 3
    for memo in memos:
        memo.write_text("{not json")
    assert load_lut_dir(tables, res, cache)[164] == first[164]
    codec = GeneCodec(get_space("ofa_mbv3"), res)
    plan = network_plan("mbv3", 1.2)
    archs = [get_space("ofa_mbv3").sample(random.Random(i)).replace(r=160) for i in range(20)]
    path.write_text(text)
    np.testing.assert_allclose(lut_estimator(codec, plan, tables, cache_dir=cache).of_archs(archs),
                               lut_estimator(codec, plan, note10).of_archs(archs), rtol=1e-12)


def test_a_compiled_estimator_is_kept_and_follows_its_tables(note10: Path,
                                                             tmp_path: Path) -> None:
    """The compiled tables are kept by content: a second process reads them (same costs), an
    edited table or other resolutions compile again, and a damaged memo is not trusted."""
    tables = tmp_path / "tables"
    shutil.copytree(note10, tables)
    cache = tmp_path / "cache"
    res = (160, 164)
    codec = GeneCodec(get_space("ofa_mbv3"), res)
    plan = network_plan("mbv3", 1.2)
    archs = [get_space("ofa_mbv3").sample(random.Random(i)).replace(r=r)
             for i, r in zip(range(20), res * 10)]
    want = lut_estimator(codec, plan, note10).of_archs(archs)
    first = lut_estimator(codec, plan, tables, cache_dir=cache)
    [memo] = (cache / "lut").glob("compiled-*.npz")
    np.testing.assert_array_equal(first.of_archs(archs), want)
    stamp = memo.stat().st_mtime_ns
    again = lut_estimator(codec, plan, tables, cache_dir=cache)
    assert memo.stat().st_mtime_ns == stamp and again.name == first.name
    np.testing.assert_array_equal(again.of_archs(archs), want)
    lut_estimator(GeneCodec(get_space("ofa_mbv3"), (160,)), plan, tables, cache_dir=cache)
    assert len(list((cache / "lut").glob("compiled-*.npz"))) == 2  # other resolutions: own
    path = tables / "160_lookup_table.yaml"
    text = path.read_text()
    key = next(k for k in load_lut_dir(tables, (160,))[160] if k.startswith("Conv-"))
    old = load_lut_dir(tables, (160,))[160][key]
    path.write_text(text.replace(f"mean: {old}", f"mean: {old + 1.0}", 1))
    edited = lut_estimator(codec, plan, tables, cache_dir=cache).of_archs(archs)
    at160 = np.array([a.r == 160 for a in archs])
    np.testing.assert_allclose(edited[at160], want[at160] + 1.0)
    np.testing.assert_array_equal(edited[~at160], want[~at160])
    path.write_text(text)
    memo.write_bytes(b"not an npz")
    np.testing.assert_array_equal(
        lut_estimator(codec, plan, tables, cache_dir=cache).of_archs(archs), want)
