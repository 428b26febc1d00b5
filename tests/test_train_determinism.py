"""Same seed, same run: the sampled subnets and the losses repeat exactly (CPU).

Runs the engine's loop in this process (the same loop Ray Train workers run, without Ray) on a
tiny DεpS-like recipe that exercises FM-warm-up, channel sorting, the sandwich, in-place
distillation and the β ramp.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TINY = """\
name: tiny_deps
space: deps_mbv3
lr_schedule: global_cosine
dropout_full_model_only: true
phases:
  - name: fm_warmup
    epochs: 1
    lr: 0.5
    sampling: max
    init: scratch
  - name: shrink
    epochs: 1
    lr: 0.5
    subnets_per_step: 3
    sampling: sandwich
    distillation: inplace
    sort_channels: true
    beta_ramp_epochs: 1
"""


@pytest.mark.slow
def test_same_seed_repeats_subnets_and_losses(tmp_path: Path, shared_data: Path) -> None:
    import torch

    from ofa_platform.train.engine import EngineConfig, run_plain
    from ofa_platform.train.schedule import load_schedule

    torch.set_num_threads(1)
    path = tmp_path / "tiny_deps.yaml"
    path.write_text(TINY)
    schedule = load_schedule(path)

    def run(seed: int) -> list[dict]:
        cfg = EngineConfig(schedule=schedule, space="deps_mbv3", data="cifar10", batch_size=4,
                           seed=seed, subset=12, recal_images=4, val_limit=4)
        return run_plain(cfg)

    a, b, c = run(0), run(0), run(1)
    assert len(a) == schedule.total_epochs == 2
    keys = ("loss", "arch_digest", "beta", "lr", "acc_smallest", "acc_largest")
    assert [[m[k] for k in keys] for m in a] == [[m[k] for k in keys] for m in b]
    assert a[0]["beta"] == 0.0 and 0.0 < a[1]["beta"] <= 1.0  # FM warm-up, then the ramp
    assert [m["arch_digest"] for m in a] != [m["arch_digest"] for m in c]
    assert [m["loss"] for m in a] != [m["loss"] for m in c]
