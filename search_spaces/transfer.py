"""Carry trained weights from one supernet to another of the same family.

CompOFA's teacher is OFA's K7 network, which its fixed-kernel space cannot express; its
compound phases start from that teacher's weights (CompOFA's code loads OFA's published
``ofa_D4_E6_K7``). Both supernets store every kernel at 7x7 and share every other shape, so the
weights carry over name by name; the one thing to decide is what a block whose space fixes a
smaller kernel (3 or 5) starts from. It starts from the kernel the source would run at that
size, taken as OFA's elastic kernel takes it: the centre of the 7x7, passed through the
source's kernel-transformation matrices when it has them (identity until an elastic-kernel
phase trains them, so a teacher's 3x3 is its centre crop).
"""

from __future__ import annotations

import torch

from search_spaces.supernet import Supernet

__all__ = ["transfer_weights"]


@torch.no_grad()
def transfer_weights(source: Supernet, target: Supernet) -> Supernet:
    """Copy ``source``'s weights into ``target`` (in place, returned).

    The two must be of the same family and layout (a ``ValueError`` otherwise). Parameters and
    buffers present in both with equal shapes are copied; kernel-transformation matrices that
    only ``target`` has stay as they are (identity when fresh). Then every block of a
    ``target`` stage with one fixed kernel ``k`` smaller than the stored one gets, in the centre
    of its stored filter, the ``k x k`` filter ``source`` computes for ``k``, which is what
    ``target`` (without kernel transformation, as CompOFA's fixed kernels) then runs; a
    ``target`` with transformation matrices has ``source``'s (or identity on both sides) and
    so computes the same kernels already.
    """
    if (source.plan.family != target.plan.family
            or source.space.n_slots != target.space.n_slots):
        raise ValueError(f"cannot carry weights from space {source.space.name} "
                         f"({source.plan.family}) to {target.space.name} ({target.plan.family})")
    src, dst = source.state_dict(), target.state_dict()
    mismatched = [k for k, v in dst.items()
                  if k in src and src[k].shape != v.shape]
    missing = [k for k in dst if k not in src and "matrix_" not in k]
    if mismatched or missing:
        raise ValueError(f"cannot carry weights from space {source.space.name} to "
                         f"{target.space.name}: {len(mismatched)} shapes differ, "
                         f"{len(missing)} missing (e.g. {(mismatched or missing)[0]})")
    target.load_state_dict({k: (src[k] if k in src else v) for k, v in dst.items()})
    if target.space.kernel_transform:  # same matrices (copied, or both identity): same kernels
        return target
    for stage, slots in zip(target.space.stages, target.stage_blocks):
        if len(stage.kernels) != 1:
            continue
        k = stage.kernels[0]
        for i in slots:
            theirs, ours = source.blocks[i].dw_conv, target.blocks[i].dw_conv
            if k == ours.max_kernel or k not in theirs.kernel_sizes:
                continue
            s = (ours.max_kernel - k) // 2
            ours.weight[:, :, s:s + k, s:s + k] = theirs.active_weight(theirs.max_channels, k)
    return target
