"""Exact tile statistics for masks with no closed form (neighborhoods on token grids).

Interval masks (full, causal, window, block-sparse) are counted in closed form inside the
model's kernel; a neighborhood mask on a 1D/2D/3D grid is counted here, run by run over the
keys each query sees (``neighborhood_counts``, for many key-tile sizes at once), and cached.
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
def neighborhood_counts(shape, half, bp, bns):
    """Neighborhood-mask tile statistics at query blocks of bp positions for every key tile in
    bns: (tiles, full tiles, max and min tiles per block) per bn, then query blocks and allowed
    pairs. Its slow, obvious twin is ``neighborhood_counts_reference`` below.

    A query's neighborhood on a row-major grid is a set of runs along the last axis, one per
    offset of the other axes: each run adds 1 to the per-key count of the block, so a block
    costs its allowed pairs, not its key range times its rows."""
    nd = shape.shape[0]
    total = 1
    for a in range(nd):
        total *= shape[a]
    strides = np.ones(nd, dtype=np.int64)
    for a in range(nd - 2, -1, -1):
        strides[a] = strides[a + 1] * shape[a + 1]
    reach = 0
    for a in range(nd):
        reach += half[a] * strides[a]
    nb = bns.shape[0]
    tiles = np.zeros(nb)
    full = np.zeros(nb)
    lmax = np.zeros(nb)
    lmin = np.full(nb, 1e300)
    rows = (total + bp - 1) // bp
    counts = np.zeros(total, dtype=np.int64)
    seen_pre = np.zeros(total + 1, dtype=np.int64)
    all_pre = np.zeros(total + 1, dtype=np.int64)
    qc = np.zeros(nd, dtype=np.int64)
    off = np.zeros(nd, dtype=np.int64)
    allowed = 0.0
    last = nd - 1
    for i in range(rows):
        r0 = i * bp
        r1 = min(total, r0 + bp)
        k0 = max(0, r0 - reach)
        k1 = min(total, r1 + reach)
        for k in range(k0, k1):
            counts[k] = 0
        for q in range(r0, r1):
            rem = q
            for a in range(nd):
                qc[a] = rem // strides[a]
                rem -= qc[a] * strides[a]
            for a in range(last):  # odometer over the offsets of the outer axes
                off[a] = max(-half[a], -qc[a])
            lo = max(0, qc[last] - half[last])
            hi = min(shape[last] - 1, qc[last] + half[last])
            while True:
                base = 0
                for a in range(last):
                    base += (qc[a] + off[a]) * strides[a]
                for k in range(base + lo, base + hi + 1):
                    counts[k] += 1
                allowed += hi - lo + 1
                a = last - 1
                while a >= 0:
                    if off[a] < min(half[a], shape[a] - 1 - qc[a]):
                        off[a] += 1
                        break
                    off[a] = max(-half[a], -qc[a])
                    a -= 1
                if a < 0:
                    break
        nq = r1 - r0
        # prefix counts over [k0, k1): keys some row sees, keys every row sees
        for k in range(k0, k1):
            seen_pre[k - k0 + 1] = seen_pre[k - k0] + (counts[k] > 0)
            all_pre[k - k0 + 1] = all_pre[k - k0] + (counts[k] == nq)
        for j in range(nb):
            bc = bns[j]
            cnt = 0
            for t in range(k0 // bc, (k1 - 1) // bc + 1):
                t0, t1 = t * bc, min(total, (t + 1) * bc)
                a, b = max(t0, k0) - k0, min(t1, k1) - k0
                if seen_pre[b] > seen_pre[a]:
                    cnt += 1
                    if all_pre[b] - all_pre[a] == t1 - t0:  # every key of the tile, seen by every row
                        full[j] += 1
            tiles[j] += cnt
            lmax[j] = max(lmax[j], cnt)
            lmin[j] = min(lmin[j], cnt)
    return tiles, full, lmax, lmin, rows, allowed


@njit(**JIT_OPTS)
def neighborhood_counts_reference(shape, half, bp, bc):
    """The slow, obvious twin of ``neighborhood_counts`` (tests compare them exactly): per query
    tile, non-empty and full key tiles and allowed pairs for a clipped neighborhood
    (|coord delta| <= half[axis] on every axis) on a row-major grid, key by key."""
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
    tiles, full, lmax, lmin, rows, allowed = neighborhood_counts(shape, half, bp, np.array([bc], dtype=np.int64))
    return TileStats(tiles=int(tiles[0]), full_tiles=int(full[0]), max_row_tiles=int(lmax[0]),
                     min_row_tiles=int(lmin[0]), rows=int(rows), allowed=int(allowed))


def explicit_tile_stats(mask, m_len: int, n_len: int, bp: int, bc: int) -> TileStats:
    """Tile statistics of a neighborhood mask at query tile `bp` x key tile `bc`."""
    if mask.kind != "neighborhood":
        raise ValueError(f"explicit tile statistics are only needed for neighborhood masks, not {mask.kind!r}")
    if math.prod(mask.grid) != m_len or m_len != n_len:
        raise ValueError(f"grid {mask.grid} does not match seq_q={m_len}, seq_kv={n_len}")
    return _nbhd_cached(tuple(int(g) for g in mask.grid), tuple(int(w) for w in mask.win), int(bp), int(bc))
