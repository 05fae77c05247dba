"""Spatial-array mappings for the attention cascade.

    unfused    S = QK^T on the 2D array, S to DRAM; softmax on the 1D array, P to DRAM; O = PV
    row_fused  (FLAT-like) a block of query rows keeps its whole S/P row in the global buffer;
               the 2D and 1D arrays take turns
    fused      (FuseMax-like) online softmax over key tiles; the 2D array (QK^T, PV) and the 1D
               array (softmax) work in a pipeline, so a tile costs the slower of the two
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from attnsim.errors import MappingError, Problem
from attnsim.spec.schema import did_you_mean

SPATIAL_STYLES = ("unfused", "row_fused", "fused")


@dataclass(frozen=True)
class SpatialMapping:
    style: str = "fused"
    block_m: int = 256  # query rows per tile
    block_n: int = 256  # keys per tile (fused)
    name: str = ""

    def label(self) -> str:
        return self.name or f"{self.style}-{self.block_m}x{self.block_n}"


def default_block_m(arch, w) -> int:
    """Query rows streamed past each stationary K/V tile: as many as the online-softmax state
    (an fp32 O accumulator plus max and sum per row) fits in half the global buffer."""
    glb = arch.levels[1]
    state_per_row = (w.value_dim + 2) * 4
    most = max(1, min(w.seq_q, int(glb.capacity_bytes // 2 // state_per_row)))
    return math.ceil(w.seq_q / math.ceil(w.seq_q / most))  # equal blocks, no ragged last one


def resolve_spatial_mapping(mapping, arch, w) -> SpatialMapping:
    if isinstance(mapping, SpatialMapping):
        return mapping
    if mapping is None:
        style = "fused" if arch.array.vector_lanes >= arch.array.cols else "unfused"
    elif isinstance(mapping, str) and mapping in SPATIAL_STYLES:
        style = mapping
    elif isinstance(mapping, str) and mapping in ("flash2", "flash3", "flash_decode"):
        style = "fused"
    else:
        raise MappingError(Problem(f"a spatial arch takes a mapping style {list(SPATIAL_STYLES)}, got {mapping!r}",
                                   key="mapping", hint=did_you_mean(str(mapping), SPATIAL_STYLES)))
    bm = default_block_m(arch, w) if style == "fused" else min(w.seq_q, arch.array.rows)
    return SpatialMapping(style=style, block_m=bm, block_n=arch.array.cols, name=style)
