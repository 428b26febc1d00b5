"""Pure training math: LR scaling and schedule, the DεpS β ramp, losses, step sampling."""

from __future__ import annotations

import math

import pytest
import torch

from ofa_platform.train.eps import beta_at, schedule_beta
from ofa_platform.train.losses import label_smoothed_ce, soft_ce, subnet_loss
from ofa_platform.train.lr import lr_at, scale_lr, schedule_lr
from ofa_platform.train.sampling import sample_step
from ofa_platform.train.schedule import load_schedule
from search_spaces.spaces import get_space


def test_scale_lr_is_linear() -> None:
    assert scale_lr(2.6, 2048) == pytest.approx(2.6)
    assert scale_lr(2.6, 256) == pytest.approx(0.325)
    with pytest.raises(ValueError):
        scale_lr(1.0, 0)


def test_lr_warmup_then_cosine() -> None:
    kw = dict(base_lr=1.0, total_steps=100, warmup_steps=10)
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(55, **kw) == pytest.approx(0.5)  # half way through the cosine
    vals = [lr_at(s, **kw) for s in range(10, 100)]
    assert all(a > b for a, b in zip(vals, vals[1:]))
    assert 0 < vals[-1] < 1e-3
    assert lr_at(1000, **kw) == vals[-1]


def test_schedule_lr_per_phase_restarts() -> None:
    s = load_schedule("ofa")
    spe = 4
    kernel = s.phases[1]
    start = kernel.start_epoch * spe
    assert schedule_lr(s, start - 1, spe, 2048) < 1e-3  # end of teacher's cosine
    assert schedule_lr(s, start, spe, 2048) == pytest.approx(0.96 / (5 * spe))
    assert schedule_lr(s, start + 5 * spe, spe, 2048) == pytest.approx(0.96)
    assert schedule_lr(s, 0, spe, 1024) == pytest.approx(1.3)  # teacher: no warm-up


def test_schedule_lr_global_cosine() -> None:
    s = load_schedule("deps")
    spe = 3
    total = s.total_epochs * spe
    half = total // 2
    assert schedule_lr(s, half, spe, 2048) == pytest.approx(
        0.5 * 2.6 * (1 + math.cos(math.pi * half / total)))
    boundary = s.phases[1].start_epoch * spe  # no restart at the phase boundary
    assert schedule_lr(s, boundary, spe, 2048) < schedule_lr(s, boundary - 1, spe, 2048)


def test_beta_ramp_reaches_full_model_lr_at_tw() -> None:
    s = load_schedule("deps")
    spe = 20
    t0, tw = 145 * spe, 150 * spe
    assert schedule_beta(s, 0, spe, 2048) == 0.0
    assert schedule_beta(s, t0 - 1, spe, 2048) == 0.0
    assert schedule_beta(s, t0, spe, 2048) == 0.0
    assert schedule_beta(s, tw, spe, 2048) == 1.0
    assert schedule_beta(s, s.total_epochs * spe - 1, spe, 2048) == 1.0
    eff = [schedule_beta(s, t, spe, 2048) * schedule_lr(s, t, spe, 2048) for t in range(t0, tw)]
    lr_tw = schedule_lr(s, tw, spe, 2048)
    steps = [b - a for a, b in zip(eff, eff[1:])]
    assert all(d == pytest.approx(lr_tw / (tw - t0)) for d in steps)  # linear in iterations
    betas = [schedule_beta(s, t, spe, 2048) for t in range(t0, tw)]
    assert all(0 <= b < 1 for b in betas)
    assert schedule_beta(load_schedule("bignas"), 0, spe, 2048) == 1.0


def test_beta_at_clamps() -> None:
    assert beta_at(5, ramp_start=0, tw=10, lr_now=0.1, lr_tw=1.0) == 1.0
    assert beta_at(-1, ramp_start=0, tw=10, lr_now=1.0, lr_tw=1.0) == 0.0
    assert beta_at(5, ramp_start=0, tw=10, lr_now=1.0, lr_tw=1.0) == pytest.approx(0.5)


def test_losses() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 10, generator=g)
    targets = torch.randint(0, 10, (8,), generator=g)
    onehot = torch.nn.functional.one_hot(targets, 10).float()
    soft = 0.9 * onehot + 0.1 / 10
    want = -(soft * torch.log_softmax(logits, 1)).sum(1).mean()
    assert label_smoothed_ce(logits, targets, 0.1) == pytest.approx(want.item(), rel=1e-5)
    # soft CE against itself is the entropy, and it is minimised by matching the target
    teacher = torch.randn(8, 10, generator=g)
    p = torch.softmax(teacher, 1)
    entropy = -(p * torch.log_softmax(teacher, 1)).sum(1).mean()
    assert soft_ce(teacher, teacher) == pytest.approx(entropy.item(), rel=1e-5)
    assert soft_ce(logits, teacher) > soft_ce(teacher, teacher)
    # the teacher gets no gradient
    t = teacher.clone().requires_grad_(True)
    s = logits.clone().requires_grad_(True)
    subnet_loss("inplace", s, targets, teacher_logits=t).backward()
    assert t.grad is None and s.grad is not None
    full = subnet_loss("inplace", logits, targets, teacher_logits=teacher, is_full_model=True)
    assert full == pytest.approx(label_smoothed_ce(logits, targets).item())
    kd = subnet_loss("teacher", logits, targets, teacher_logits=teacher, weight=1.0)
    assert kd == pytest.approx((label_smoothed_ce(logits, targets)
                                + soft_ce(logits, teacher)).item(), rel=1e-5)
    with pytest.raises(ValueError):
        subnet_loss("teacher", logits, targets)


def test_sampling_is_deterministic_and_follows_the_rule() -> None:
    ofa = load_schedule("ofa")
    space = get_space("ofa_mbv3")
    expand = ofa.phase("expand_2")
    pspace = expand.space(space)
    a = [sample_step(expand, pspace, seed=7, global_step=t) for t in range(20)]
    b = [sample_step(expand, pspace, seed=7, global_step=t) for t in range(20)]
    assert a == b
    c = [sample_step(expand, pspace, seed=8, global_step=t) for t in range(20)]
    assert a != c
    assert len({x.resolution for x in a}) > 1  # resolution varies per step
    for x in a:
        assert len(x.archs) == 4 and all(arch.r == x.resolution for arch in x.archs)
        assert all(pspace.contains(arch) for arch in x.archs)
    teacher = sample_step(ofa.phases[0], ofa.phases[0].space(space), seed=0, global_step=3)
    assert teacher.archs == (space.largest(teacher.resolution),) and teacher.full_model == (True,)
    deps = load_schedule("deps")
    dspace = get_space("deps_mbv3")
    sw = sample_step(deps.phases[1], dspace, seed=1, global_step=5)
    assert sw.archs[0] == dspace.largest(sw.resolution)
    assert sw.archs[1] == dspace.smallest(sw.resolution)
    assert sw.full_model[0] and not any(sw.full_model[1:]) and len(sw.archs) == 4
    comp = load_schedule("compofa")
    cspace = comp.phases[2].space(get_space("compofa_mbv3"))
    for t in range(10):
        for arch in sample_step(comp.phases[2], cspace, seed=0, global_step=t).archs:
            assert all(len(set(e)) == 1 for e in arch.e)  # ratio coupled per stage
            assert cspace.contains(arch)


def test_sandwich_marks_only_the_first_as_full_model() -> None:
    from ofa_platform.train.schedule import parse_schedule

    s = parse_schedule({"space": "deps_mbv3", "phases": [
        {"name": "s", "epochs": 1, "lr": 1, "sampling": "sandwich", "subnets_per_step": 3,
         "restrict": {"ratios": [6], "depths": [4]}}]})
    space = s.phases[0].space(get_space("deps_mbv3"))  # one subnet: every draw is the largest
    x = sample_step(s.phases[0], space, seed=0, global_step=0)
    assert len(set(x.archs)) == 1 and x.full_model == (True, False, False)
