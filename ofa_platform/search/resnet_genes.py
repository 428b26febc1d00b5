"""ResNet50D archs as gene rows, their predictor encoding and their MACs, for whole populations.

The search (evolution, strategies, predictor, estimators) works on integer gene rows through
:class:`~ofa_platform.search.genes.GeneCodec`'s columns. :class:`ResNetGeneCodec` keeps that
layout so every strategy runs unchanged, and adds six width columns:

``[0:L)`` kernel indices (ResNet50D has one kernel, 3: always 0), ``[L:2L)`` ratio indices,
``[2L:2L+5)`` depth indices (the stem's ``d[0]`` first, then the four stages), ``[2L+5:2L+11)``
width indices (OFA's ``w``), ``[2L+11]`` the resolution index; L = 18 block slots.

MACs are not additive per slot here (a stage's first block reads the previous stage's width),
so :func:`resnet_macs_estimator` compiles a table per (resolution, slot, input width, output
width, ratio) plus the stem per (resolution, stem widths, stem depth) and the classifier per
last width, and costs a population with numpy gathers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ofa_platform.errors import UserError
from ofa_platform.search.genes import GeneCodec
from search_spaces.blueprint import LayerShape, conv_out
from search_spaces.flops import layer_macs_params
from search_spaces.resnet_arch import ResNetArch
from search_spaces.resnet_plan import (
    BASE_DEPTHS,
    EXTRA_DEPTHS,
    STEM_DEPTHS,
    WIDTH_MULTS,
    ResNetPlan,
    bottleneck_mid_channels,
)
from search_spaces.resnet_space import ResNetSpace

__all__ = ["ResNetGeneCodec", "ResNetEncoding", "resnet_macs_estimator", "make_codec"]

_N_W = 2 + len(BASE_DEPTHS)


def make_codec(space: Any, resolutions: Sequence[int] | None = None) -> GeneCodec:
    """The gene codec of ``space``'s family (ResNet50D or the MobileNet-style spaces)."""
    if isinstance(space, ResNetSpace):
        return ResNetGeneCodec(space, resolutions)
    return GeneCodec(space, resolutions)


class ResNetGeneCodec(GeneCodec):
    """Gene rows of :class:`ResNetArch` values (column layout in the module docstring)."""

    def __init__(self, space: ResNetSpace, resolutions: Sequence[int] | None = None) -> None:
        self.space = space  # type: ignore[assignment]
        self.resolutions = tuple(resolutions) if resolutions else tuple(space.resolutions)
        bad = [r for r in self.resolutions if r not in space.resolutions]
        if bad:
            raise ValueError(f"resolutions {bad} are not resolutions of space {space.name}")
        slots = space.n_slots
        S = len(BASE_DEPTHS) + 1  # the stem's depth column, then the stages'
        self.n_stages = S
        self.slot_stage = np.array([s + 1 for s, n in enumerate(slots) for _ in range(n)])
        self.slot_pos = np.array([j for n in slots for j in range(n)])
        self.n_slots = L = int(len(self.slot_stage))
        self.k_cols = slice(0, L)
        self.e_cols = slice(L, 2 * L)
        self.d_cols = slice(2 * L, 2 * L + S)
        self.w_cols = slice(2 * L + S, 2 * L + S + _N_W)
        self.r_col = 2 * L + S + _N_W
        self.width = self.r_col + 1
        n_choices = [1] * L + [len(space.ratios)] * L
        n_choices += [len(space.stem_depths)] + [len(space.depths)] * len(BASE_DEPTHS)
        n_choices += [len(space.widths)] * _N_W + [len(self.resolutions)]
        self.n_choices = np.array(n_choices, dtype=np.int16)
        self.kernel_values = np.full((S, 1), 3, dtype=np.int32)
        self.ratio_values = np.array([space.ratios] * S, dtype=np.float64)
        stage_depths = [[b + x for x in space.depths] for b in BASE_DEPTHS]
        self.depth_values = self._pad([list(space.stem_depths)] + stage_depths)
        self.res_values = np.array(self.resolutions, dtype=np.int32)
        self.compound = False

    def encode(self, archs: Sequence[ResNetArch]) -> np.ndarray:  # type: ignore[override]
        """Gene rows for ``archs`` (inactive slots repeat the stage's last block's ratio)."""
        sp: ResNetSpace = self.space  # type: ignore[assignment]
        rows = np.zeros((len(archs), self.width), dtype=np.int16)
        L = self.n_slots
        for i, arch in enumerate(archs):
            sp.validate(arch)
            if arch.r not in self.resolutions:
                raise ValueError(f"r={arch.r} is not among the searched resolutions")
            col = 0
            for s, (n, es) in enumerate(zip(sp.n_slots, arch.e)):
                for j in range(n):
                    rows[i, L + col] = sp.ratios.index(es[min(j, len(es) - 1)])
                    col += 1
                rows[i, self.d_cols.start + 1 + s] = sp.depths.index(arch.d[1 + s])
            rows[i, self.d_cols.start] = sp.stem_depths.index(arch.d[0])
            rows[i, self.w_cols] = [sp.widths.index(w) for w in arch.w]
            rows[i, self.r_col] = self.resolutions.index(arch.r)
        return rows

    def decode(self, genes: np.ndarray) -> list[ResNetArch]:  # type: ignore[override]
        sp: ResNetSpace = self.space  # type: ignore[assignment]
        out = []
        L, d0 = self.n_slots, self.d_cols.start
        for row in np.asarray(genes):
            es, col = [], L
            depths = [sp.depths[int(row[d0 + 1 + s])] for s in range(len(BASE_DEPTHS))]
            for b, n, x in zip(BASE_DEPTHS, sp.n_slots, depths):
                es.append(tuple(sp.ratios[int(row[col + j])] for j in range(b + x)))
                col += n
            out.append(ResNetArch(
                d=(sp.stem_depths[int(row[d0])], *depths), e=tuple(es),
                w=tuple(sp.widths[int(v)] for v in row[self.w_cols]),
                r=self.resolutions[int(row[self.r_col])]))
        return out


# --------------------------------------------------------------------------- predictor
@dataclass(frozen=True)
class ResNetEncoding:
    """One-hot features of a ResNet50D arch for the accuracy predictor (OFA's MLP): per slot
    its ratio (zeros when the slot is skipped), the stem's ``d[0]``, each stage's extra
    depth, each of the six widths, and the resolution bucket ``(r - base) // step``."""

    ratios: tuple[float, ...]
    res_base: int
    res_step: int
    res_bins: int
    depths: tuple[int, ...] = EXTRA_DEPTHS
    stem_depths: tuple[int, ...] = STEM_DEPTHS
    widths: tuple[int, ...] = tuple(range(len(WIDTH_MULTS)))
    kind: str = "resnet"

    def dim(self, n_slots: int) -> int:
        return (n_slots * len(self.ratios) + len(self.stem_depths)
                + len(BASE_DEPTHS) * len(self.depths) + _N_W * len(self.widths) + self.res_bins)

    def check(self, codec: GeneCodec) -> None:
        if not isinstance(codec, ResNetGeneCodec):
            raise UserError(f"a ResNet50D predictor does not fit space {codec.space.name}")
        sp: ResNetSpace = codec.space  # type: ignore[assignment]
        bins = [(r - self.res_base) // self.res_step for r in codec.resolutions]
        problems = [f"{what} {bad}" for what, bad in (
            ("ratios", sorted(set(sp.ratios) - set(self.ratios))),
            ("depths", sorted(set(sp.depths) - set(self.depths))),
            ("widths", sorted(set(sp.widths) - set(self.widths))),
            ("resolutions", [r for r, b in zip(codec.resolutions, bins)
                             if not 0 <= b < self.res_bins])) if bad]
        if problems:
            raise UserError(f"the predictor's encoding has no place for {', '.join(problems)} "
                            f"of space {sp.name}")

    def features(self, codec: GeneCodec, genes: np.ndarray) -> np.ndarray:
        """(N, dim) float32 one-hot features of gene rows."""
        assert isinstance(codec, ResNetGeneCodec)
        sp: ResNetSpace = codec.space  # type: ignore[assignment]
        g = genes.astype(np.int64)
        n, L, ne = len(g), codec.n_slots, len(self.ratios)
        x = np.zeros((n, self.dim(L)), dtype=np.float32)
        rows = np.arange(n)[:, None]
        epos = np.array([self.ratios.index(v) for v in sp.ratios])[g[:, codec.e_cols]]
        x[rows, np.arange(L)[None, :] * ne + epos] = codec.active(genes).astype(np.float32)
        off = L * ne
        stem = np.array([self.stem_depths.index(v) for v in sp.stem_depths])
        x[np.arange(n), off + stem[g[:, codec.d_cols.start]]] = 1.0
        off += len(self.stem_depths)
        dpos = np.array([self.depths.index(v) for v in sp.depths])
        nd = len(self.depths)
        stages = np.arange(len(BASE_DEPTHS))[None, :]
        x[rows, off + stages * nd + dpos[g[:, codec.d_cols.start + 1:codec.d_cols.stop]]] = 1.0
        off += len(BASE_DEPTHS) * nd
        nw = len(self.widths)
        wpos = np.array([self.widths.index(v) for v in sp.widths])[g[:, codec.w_cols]]
        x[rows, off + np.arange(_N_W)[None, :] * nw + wpos] = 1.0
        off += _N_W * nw
        r = codec.res_values[g[:, codec.r_col]]
        x[np.arange(n), off + (r - self.res_base) // self.res_step] = 1.0
        return x


# --------------------------------------------------------------------------------- MACs
@dataclass
class ResNetMacsEstimator:
    """MACs in millions of whole populations from compiled tables (see the module doc)."""

    codec: ResNetGeneCodec
    stem: np.ndarray  # (R, W, W, stem depth choices)
    block: np.ndarray  # (R, L, W_in, W_out, E)
    classifier: np.ndarray  # (W,)
    name: str = "macs"
    unit: str = "MMACs"

    def __call__(self, genes: np.ndarray) -> np.ndarray:
        c = self.codec
        g = genes.astype(np.int64)
        r = g[:, c.r_col]
        w = g[:, c.w_cols]  # gene indices into the space's widths
        slots = np.arange(c.n_slots)
        stage = c.slot_stage - 1
        own = w[:, 2 + stage]  # each slot's stage width
        prev = w[:, stage + 1]  # a stage's first block reads the stem's or last stage's width
        w_in = np.where(c.slot_pos[None, :] == 0, prev, own)
        per_slot = self.block[r[:, None], slots[None, :], w_in, own, g[:, c.e_cols]]
        total = self.stem[r, w[:, 0], w[:, 1], g[:, c.d_cols.start]] + self.classifier[w[:, 5]]
        return total + np.where(c.active(genes), per_slot, 0.0).sum(axis=1)

    def of_archs(self, archs: Sequence[ResNetArch]) -> np.ndarray:
        return self(self.codec.encode(archs))

    @property
    def measurements(self) -> int:
        return 0


def resnet_macs_estimator(codec: ResNetGeneCodec, plan: ResNetPlan) -> ResNetMacsEstimator:
    """Compile the MACs tables of ``plan`` for ``codec``'s space and resolutions (MMACs, the
    same count as :func:`search_spaces.flops.count_macs_params`)."""
    sp: ResNetSpace = codec.space  # type: ignore[assignment]
    W, E, R = len(sp.widths), len(sp.ratios), len(codec.resolutions)
    stem = np.zeros((R, W, W, len(sp.stem_depths)))
    block = np.zeros((R, codec.n_slots, W, W, E))
    for ri, r in enumerate(codec.resolutions):
        hw = conv_out(r, plan.stem_stride)
        for a, wa in enumerate(sp.widths):
            mid = plan.stem_mid_ch[wa]
            for b, wb in enumerate(sp.widths):
                out = plan.stem_out_ch[wb]
                for k, d0 in enumerate(sp.stem_depths):
                    stem[ri, a, b, k] = 9 * hw * hw * (3 * mid + (mid * mid if d0 else 0)
                                                       + mid * out) / 1e6
        if plan.max_pool:
            hw = conv_out(hw, 2)
        slot = 0
        for s, n in enumerate(sp.n_slots):
            ins = plan.stem_out_ch if s == 0 else plan.stage_ch[s - 1]
            for j in range(n):
                stride = plan.strides[s] if j == 0 else 1
                out_hw = conv_out(hw, stride)
                for a, wa in enumerate(sp.widths):
                    for b, wb in enumerate(sp.widths):
                        in_ch = ins[wa] if j == 0 else plan.stage_ch[s][wa]
                        width = plan.stage_ch[s][wb]
                        for ei, ratio in enumerate(sp.ratios):
                            ly = LayerShape("bottleneck", hw, out_hw, in_ch, width, kernel=3,
                                            stride=stride,
                                            mid_ch=bottleneck_mid_channels(width, ratio),
                                            shortcut=j > 0, stage=s)
                            block[ri, slot, a, b, ei] = layer_macs_params(ly)[0] / 1e6
                hw = out_hw
                slot += 1
    classifier = np.array([plan.stage_ch[-1][w] * plan.n_classes / 1e6 for w in sp.widths])
    return ResNetMacsEstimator(codec=codec, stem=stem, block=block, classifier=classifier)
