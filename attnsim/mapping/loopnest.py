"""The general mapping form: a loop nest per storage level (Timeloop's words).

Each level, outermost first, has temporal loops (rank, factor) in loop order, spatial loops
(rank, factor) unrolled across the instances of the next level, and the tensors it `keep`s
(the others bypass it). `fusion` groups einsums that share loops, so their intermediates
(S, P) never leave the level that keeps them.

Reuse rule: a tile of tensor T kept at level L is fetched from the level above once per
iteration of the loops above L, except the innermost run of those loops whose ranks T does
not depend on (the tile stays put while they iterate: stationarity).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from attnsim.errors import MappingError, Problem
from attnsim.workload.spec import Workload

# rank dependence of the attention tensors (K and V index heads through h / g)
TENSOR_RANKS = {
    "Q": ("b", "h", "m", "d"), "K": ("b", "h", "n", "d"), "V": ("b", "h", "n", "f"),
    "S": ("b", "h", "m", "n"), "P": ("b", "h", "m", "n"), "O": ("b", "h", "m", "f"),
}


@dataclass(frozen=True)
class LevelLoops:
    level: str
    temporal: tuple[tuple[str, int], ...] = ()  # outermost first
    spatial: tuple[tuple[str, int], ...] = ()
    keep: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoopNest:
    levels: tuple[LevelLoops, ...]  # outermost (DRAM) first
    fusion: tuple[tuple[str, ...], ...] = ()
    element_bytes: int = 2

    def level_index(self, name: str) -> int:
        for i, lv in enumerate(self.levels):
            if lv.level == name:
                return i
        raise MappingError(Problem(f"no level {name!r} in the loop nest; levels: {[l.level for l in self.levels]}"))

    def tile_elements(self, tensor: str, level: str) -> int:
        """Elements of `tensor` one instance of `level` holds: its ranks' factors at and below."""
        deps = TENSOR_RANKS[tensor]
        size = 1
        for lv in self.levels[self.level_index(level):]:
            for rank, f in lv.temporal + lv.spatial:
                if rank in deps:
                    size *= f
        return size

    def fetches(self, tensor: str, level: str) -> int:
        """How many times a tile of `tensor` is brought into `level` from the one above (all instances)."""
        deps = TENSOR_RANKS[tensor]
        outer = []
        for lv in self.levels[: self.level_index(level)]:
            outer += list(lv.temporal) + list(lv.spatial)
        # drop the innermost run of loops the tensor does not depend on (the tile stays resident)
        while outer and outer[-1][0] not in deps:
            outer.pop()
        return math.prod(f for _, f in outer) if outer else 1

    def traffic_bytes(self, tensor: str, level: str) -> int:
        """Bytes of `tensor` moved into `level` from the level above."""
        return self.fetches(tensor, level) * self.tile_elements(tensor, level) * self.element_bytes


def kernel_to_loopnest(m, w: Workload) -> LoopNest:
    """Lower a fused GPU kernel mapping (full mask) to the general form:

        HBM:  for b, h, m-tile (CTAs spread over the SMs)      keeps Q K V O
        L2:   for n-tile (each CTA walks its key tiles)          keeps K V
        SMEM: one K and one V tile of block_n keys, the Q tile   keeps Q K V
        RF:   S, P (block_m x block_n) and the O accumulator     keeps S P O
    """
    if m.style == "unfused":
        raise MappingError(Problem("the loop-nest lowering covers fused kernels; unfused runs three kernels"))
    bp = max(1, m.block_m // m.q_heads_per_cta)
    mt, nt = math.ceil(w.seq_q / bp), math.ceil(w.seq_kv / m.block_n)
    return LoopNest(
        levels=(
            LevelLoops("HBM", temporal=(), spatial=(("b", w.batch), ("h", w.heads), ("m", mt)),
                       keep=("Q", "K", "V", "O")),
            LevelLoops("L2", temporal=(("n", nt),), keep=("K", "V")),
            LevelLoops("SMEM", keep=("Q", "K", "V")),
            LevelLoops("RF", temporal=(("m", bp), ("n", m.block_n), ("d", w.head_dim), ("f", w.value_dim)),
                       keep=("S", "P", "O")),
        ),
        fusion=(("S", "X", "E", "L", "O"),),
        element_bytes=w.dtype_bytes,
    )
