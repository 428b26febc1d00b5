"""Analytic MACs/parameters against the issue's published anchors."""

from __future__ import annotations

import random

from search_spaces.blueprint import network_plan
from search_spaces.flops import count_macs_params
from search_spaces.spaces import get_space


def test_ofa_mbv3_anchors() -> None:
    space, plan = get_space("ofa_mbv3"), network_plan("mbv3", 1.0, 1000)
    assert count_macs_params(plan, space.largest(224)) == (566_170_656, 7_664_760)
    assert count_macs_params(plan, space.smallest(128)) == (41_476_224, 3_410_792)


def test_monotone_in_resolution_and_depth() -> None:
    space, plan = get_space("ofa_mbv3"), network_plan("mbv3", 1.2, 1000)
    arch = space.sample(random.Random(3))
    m_lo, p_lo = count_macs_params(plan, arch.replace(r=160))
    m_hi, p_hi = count_macs_params(plan, arch.replace(r=224))
    assert m_hi > m_lo and p_hi == p_lo
    assert count_macs_params(plan, space.largest())[0] > count_macs_params(plan, arch.replace(
        r=224))[0]
