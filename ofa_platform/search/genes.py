"""Archs as rows of integer genes, so that populations are numpy arrays.

The evolutionary search, the predictor's one-hot encoding and the additive latency tables all
work on whole populations at once. A population is an ``int16`` array with one row per arch:
per block slot the index of its kernel and of its expand ratio in the slot's stage choices,
per stage the index of its depth, and the index of the resolution. Slots that a stage's depth
leaves out keep their genes (as OFA does), so a later mutation of the depth can revive them.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import numpy as np

from search_spaces.arch import ArchConfig
from search_spaces.space import SearchSpace

__all__ = ["GeneCodec"]


class GeneCodec:
    """Converts between :class:`ArchConfig` values and gene rows for one space and resolutions.

    Columns: ``[0:L)`` kernel indices, ``[L:2L)`` ratio indices, ``[2L:2L+S)`` depth indices,
    ``[2L+S]`` resolution index (L slots, S stages).
    """

    def __init__(self, space: SearchSpace, resolutions: Sequence[int] | None = None) -> None:
        self.space = space
        self.resolutions = tuple(resolutions) if resolutions else tuple(space.resolutions)
        bad = [r for r in self.resolutions if r not in space.resolutions]
        if bad:
            raise ValueError(f"resolutions {bad} are not resolutions of space {space.name}")
        stages = space.stages
        self.n_stages = len(stages)
        self.slot_stage = np.array([s for s, st in enumerate(stages) for _ in range(st.n_slots)])
        self.slot_pos = np.array([j for st in stages for j in range(st.n_slots)])
        self.n_slots = int(len(self.slot_stage))
        L, S = self.n_slots, self.n_stages
        self.k_cols = slice(0, L)
        self.e_cols = slice(L, 2 * L)
        self.d_cols = slice(2 * L, 2 * L + S)
        self.r_col = 2 * L + S
        self.width = 2 * L + S + 1
        # number of choices of every gene column (mutation draws below these)
        n_choices = [len(stages[s].kernels) for s in self.slot_stage]
        n_choices += [len(stages[s].ratios) for s in self.slot_stage]
        n_choices += [len(st.depths) for st in stages]
        n_choices += [len(self.resolutions)]
        self.n_choices = np.array(n_choices, dtype=np.int16)
        # value tables, padded with the last choice
        self.kernel_values = self._pad([st.kernels for st in stages])
        self.ratio_values = self._pad([st.ratios for st in stages])
        self.depth_values = self._pad([st.depths for st in stages])
        self.res_values = np.array(self.resolutions, dtype=np.int32)
        self.compound = space.compound
        # compound: ratio index coupled to the depth index, per stage
        if self.compound:
            coupled = np.zeros((S, self.depth_values.shape[1]), dtype=np.int16)
            for s, st in enumerate(stages):
                for di, d in enumerate(st.depths):
                    coupled[s, di] = st.ratios.index(st.coupled_ratio(d))
            self.coupled_ratio_index = coupled

    @staticmethod
    def _pad(lists: Sequence[Sequence[int]]) -> np.ndarray:
        width = max(len(v) for v in lists)
        return np.array([list(v) + [v[-1]] * (width - len(v)) for v in lists], dtype=np.int32)

    # ------------------------------------------------------------------ arrays
    @cached_property
    def _active_lookup(self) -> tuple[np.ndarray, np.ndarray]:
        """Flat (slot, depth index) -> active table and each slot's offset into it (derived
        from the value tables, which both codecs set in their constructors)."""
        n_depths = self.depth_values.shape[1]
        flags = (self.slot_pos[:, None] < self.depth_values[self.slot_stage]).ravel()
        return flags, np.arange(self.n_slots, dtype=np.int64) * n_depths

    def active(self, genes: np.ndarray) -> np.ndarray:
        """(N, L) boolean: slot is inside its stage's depth. One flat take from a table: the
        search asks this of every population several times a generation."""
        flags, offset = self._active_lookup
        return flags.take(genes[:, self.d_cols][:, self.slot_stage] + offset)

    def couple(self, genes: np.ndarray) -> np.ndarray:
        """Compound spaces: set every slot's ratio from its stage's depth (in place)."""
        if self.compound:
            d_idx = genes[:, self.d_cols].astype(np.int64)
            per_stage = self.coupled_ratio_index[np.arange(self.n_stages)[None, :], d_idx]
            genes[:, self.e_cols] = per_stage[:, self.slot_stage]
        return genes

    def random(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` uniform samples (each gene uniform, as OFA's sampler)."""
        genes = (rng.random((n, self.width)) * self.n_choices[None, :]).astype(np.int16)
        return self.couple(genes)

    def canonical(self, genes: np.ndarray) -> np.ndarray:
        """Inactive slots' genes zeroed, so equal archs give equal rows (for deduplication)."""
        out = genes.copy()
        inactive = ~self.active(genes)
        out[:, self.k_cols][inactive] = 0  # basic slices are views: this writes into ``out``
        out[:, self.e_cols][inactive] = 0
        return out

    # ------------------------------------------------------------ arch values
    def encode(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        """Gene rows for ``archs`` (inactive slots repeat the stage's last block)."""
        rows = np.zeros((len(archs), self.width), dtype=np.int16)
        for i, arch in enumerate(archs):
            self.space.validate(arch)
            if arch.r not in self.resolutions:
                raise ValueError(f"r={arch.r} is not among the searched resolutions")
            col = 0
            for s, st in enumerate(self.space.stages):
                d = len(arch.ks[s])
                for j in range(st.n_slots):
                    b = min(j, d - 1)
                    rows[i, col] = st.kernels.index(arch.ks[s][b])
                    rows[i, self.n_slots + col] = st.ratios.index(arch.e[s][b])
                    col += 1
                rows[i, 2 * self.n_slots + s] = st.depths.index(d)
            rows[i, self.r_col] = self.resolutions.index(arch.r)
        return rows

    def decode(self, genes: np.ndarray) -> list[ArchConfig]:
        """The archs of gene rows."""
        out = []
        L = self.n_slots
        for row in np.asarray(genes):
            ks, es, col = [], [], 0
            for s, st in enumerate(self.space.stages):
                d = st.depths[int(row[2 * L + s])]
                ks.append(tuple(st.kernels[int(row[col + j])] for j in range(d)))
                es.append(tuple(st.ratios[int(row[L + col + j])] for j in range(d)))
                col += st.n_slots
            out.append(ArchConfig(ks=tuple(ks), e=tuple(es),
                                  r=self.resolutions[int(row[self.r_col])]))
        return out

    def extreme(self, largest: bool) -> np.ndarray:
        """One row: the largest (or smallest) subnet at the largest (or smallest) resolution."""
        row = (self.n_choices - 1) if largest else np.zeros(self.width, dtype=np.int16)
        return self.couple(row.astype(np.int16)[None, :].copy())
