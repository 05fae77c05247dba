"""Exact tile statistics for masks with no closed form (neighborhoods on token grids).

Interval masks (full, causal, window, block-sparse) are counted in closed form inside the
model's kernel; a neighborhood mask on a 1D/2D/3D grid is counted here, element by element
but only over the key range a query tile can reach, and cached.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numba import njit

from attnsim.numba_config import JIT_OPTS


@dataclass(frozen=True)
class TileStats:
    tiles: int  # non-empty (query tile, key tile) pairs
    full_tiles: int
    max_row_tiles: int
    min_row_tiles: int
    rows: int  # query tiles
    allowed: int  # allowed (m, n) pairs


@njit(**JIT_OPTS)
def _nbhd_counts(shape, half, bp, bc):
    """Per query tile: non-empty and full key tiles, and allowed pairs, for a clipped
    neighborhood (|coord delta| <= half[axis] on every axis) on a row-major grid."""
    nd = shape.shape[0]
    total = 1
    for a in range(nd):
        total *= shape[a]
    strides = np.ones(nd, dtype=np.int64)
    for a in range(nd - 2, -1, -1):
        strides[a] = strides[a + 1] * shape[a + 1]
    reach = 0  # largest flattened distance between a query and a key it sees
    for a in range(nd):
        reach += half[a] * strides[a]
    rows = (total + bp - 1) // bp
    ncol = (total + bc - 1) // bc
    tiles = np.zeros(rows, dtype=np.int64)
    full = np.zeros(rows, dtype=np.int64)
    allowed = 0
    qc = np.zeros(nd, dtype=np.int64)
    counts = np.zeros(ncol, dtype=np.int64)
    for i in range(rows):
        r0 = i * bp
        r1 = min(total, r0 + bp)
        k0 = max(0, r0 - reach)
        k1 = min(total, r1 + reach)
        j0, j1 = k0 // bc, (k1 - 1) // bc
        for j in range(j0, j1 + 1):
            counts[j] = 0
        for q in range(r0, r1):
            rem = q
            for a in range(nd):
                qc[a] = rem // strides[a]
                rem -= qc[a] * strides[a]
            for kk in range(k0, k1):
                rem = kk
                ok = True
                for a in range(nd):
                    c = rem // strides[a]
                    rem -= c * strides[a]
                    if abs(c - qc[a]) > half[a]:
                        ok = False
                        break
                if ok:
                    counts[kk // bc] += 1
        nq = r1 - r0
        for j in range(j0, j1 + 1):
            if counts[j] > 0:
                tiles[i] += 1
                allowed += counts[j]
                width = min(total, (j + 1) * bc) - j * bc
                if counts[j] == nq * width:
                    full[i] += 1
    return tiles, full, allowed


@lru_cache(maxsize=256)
def _nbhd_cached(grid: tuple, win: tuple, bp: int, bc: int) -> TileStats:
    shape = np.array(grid, dtype=np.int64)
    half = np.array([w // 2 for w in win], dtype=np.int64)
    tiles, full, allowed = _nbhd_counts(shape, half, bp, bc)
    return TileStats(tiles=int(tiles.sum()), full_tiles=int(full.sum()), max_row_tiles=int(tiles.max()),
                     min_row_tiles=int(tiles.min()), rows=len(tiles), allowed=int(allowed))


def explicit_tile_stats(mask, m_len: int, n_len: int, bp: int, bc: int) -> TileStats:
    """Tile statistics of a neighborhood mask at query tile `bp` x key tile `bc`."""
    if mask.kind != "neighborhood":
        raise ValueError(f"explicit tile statistics are only needed for neighborhood masks, not {mask.kind!r}")
    if math.prod(mask.grid) != m_len or m_len != n_len:
        raise ValueError(f"grid {mask.grid} does not match seq_q={m_len}, seq_kv={n_len}")
    return _nbhd_cached(tuple(int(g) for g in mask.grid), tuple(int(w) for w in mask.win), int(bp), int(bc))
