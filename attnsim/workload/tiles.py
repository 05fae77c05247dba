"""Exact tile statistics of neighborhood masks on token grids (1D/2D/3D).

Interval masks (full, causal, window, block-sparse) are counted in closed form inside the
model's kernel; a neighborhood mask (clipped, or NATTEN's generalized one with dilation, stride,
shifted borders and causal axes, ``masks.axis_windows``) is counted here and cached:

    flattened tiles   run by run over the keys each query sees (``window_counts``, for many
                      key-tile sizes at once; slow twin ``window_counts_reference``)
    box tiles         multi-dimensional query and key boxes (GNA / NATTEN's q_tile_shape and
                      kv_tile_shape) factor per axis: a closed form (``box_tile_stats``)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numba import njit

from attnsim.numba_config import JIT_OPTS
from attnsim.workload.masks import axis_windows, tile_order


@dataclass(frozen=True)
class TileStats:
    tiles: int  # non-empty (query tile, key tile) pairs
    full_tiles: int
    max_row_tiles: int
    min_row_tiles: int
    rows: int  # query tiles
    allowed: int  # allowed (m, n) pairs
    cols: int  # key tiles of the layout (a kernel that visits every tile visits rows x cols)


@njit(**JIT_OPTS)
def window_counts(shape, lo, hi, step, base, qtok, kpos, pk, bp, bns):
    """Tile statistics of a neighborhood mask in a token layout, for query tiles of bp positions
    and every key-tile size in bns: (tiles, full tiles, max and min tiles per query tile) per bn,
    then query tiles and allowed pairs. Its slow, obvious twin is ``window_counts_reference``.

    Grid `shape` (row-major tokens). Along axis a a query at coordinate x sees the key coordinates
    lo[base[a] + x], lo + step[a], ..., hi[base[a] + x]; the mask is their product over axes.
    Layout: query position p holds token qtok[p] (-1: padding, sees nothing); token t sits at key
    position kpos[t] of pk positions. The flattened layout is the identity; multi-dimensional
    tiles are ``masks.tile_order``.

    A query's keys are runs along the last axis, one per key of the other axes: each key adds 1 to
    the per-position count, so a query tile costs its allowed pairs, not its key range times its
    rows; prefix sums of those counts give every key-tile size at once."""
    nd = shape.shape[0]
    strides = np.ones(nd, dtype=np.int64)
    for a in range(nd - 2, -1, -1):
        strides[a] = strides[a + 1] * shape[a + 1]
    nb = bns.shape[0]
    tiles = np.zeros(nb)
    full = np.zeros(nb)
    lmax = np.zeros(nb)
    lmin = np.full(nb, 1e300)
    pq = qtok.shape[0]
    rows = (pq + bp - 1) // bp
    counts = np.zeros(pk, dtype=np.int64)
    seen_pre = np.zeros(pk + 1, dtype=np.int64)
    all_pre = np.zeros(pk + 1, dtype=np.int64)
    qc = np.zeros(nd, dtype=np.int64)
    off = np.zeros(nd, dtype=np.int64)
    allowed = 0.0
    last = nd - 1
    for i in range(rows):
        r0 = i * bp
        r1 = min(pq, r0 + bp)
        k0, k1 = pk, 0  # key positions some query of the tile sees lie in [k0, k1)
        for p in range(r0, r1):
            if qtok[p] < 0:
                continue
            rem = qtok[p]
            for a in range(nd):
                qc[a] = rem // strides[a]
                rem -= qc[a] * strides[a]
            for a in range(last):  # odometer over the key coordinates of the outer axes
                off[a] = lo[base[a] + qc[a]]
            lo_l, hi_l, st = lo[base[last] + qc[last]], hi[base[last] + qc[last]], step[last]
            while True:
                row0 = 0
                for a in range(last):
                    row0 += off[a] * strides[a]
                for y in range(lo_l, hi_l + 1, st):
                    k = kpos[row0 + y]
                    counts[k] += 1
                    k0 = min(k0, k)
                    k1 = max(k1, k + 1)
                allowed += (hi_l - lo_l) // st + 1
                a = last - 1
                while a >= 0:
                    if off[a] + step[a] <= hi[base[a] + qc[a]]:
                        off[a] += step[a]
                        break
                    off[a] = lo[base[a] + qc[a]]
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
            if k1 > k0:
                for t in range(k0 // bc, (k1 - 1) // bc + 1):
                    t0, t1 = t * bc, min(pk, (t + 1) * bc)
                    a, b = max(t0, k0) - k0, min(t1, k1) - k0
                    if seen_pre[b] > seen_pre[a]:
                        cnt += 1
                        if all_pre[b] - all_pre[a] == t1 - t0:  # every key of the tile, seen by every row
                            full[j] += 1
            tiles[j] += cnt
            lmax[j] = max(lmax[j], cnt)
            lmin[j] = min(lmin[j], cnt)
        for k in range(k0, k1):
            counts[k] = 0
    return tiles, full, lmax, lmin, rows, allowed


def _clipped_tables(shape: np.ndarray, half: np.ndarray):
    """lo/hi tables of the clipped neighborhood |coord delta| <= half on every axis."""
    lo = np.concatenate([np.maximum(np.arange(n) - h, 0) for n, h in zip(shape, half)]).astype(np.int64)
    hi = np.concatenate([np.minimum(np.arange(n) + h, n - 1) for n, h in zip(shape, half)]).astype(np.int64)
    base = np.concatenate([[0], np.cumsum(shape)[:-1]]).astype(np.int64)
    return lo, hi, np.ones(len(shape), dtype=np.int64), base


def neighborhood_counts(shape, half, bp, bns):
    """``window_counts`` of the clipped neighborhood (|coord delta| <= half[axis] on every axis) in
    the flattened row-major layout: what attnsim's original neighborhood mask means. Its slow,
    obvious twin is ``neighborhood_counts_reference`` below."""
    shape = np.asarray(shape, dtype=np.int64)
    lo, hi, step, base = _clipped_tables(shape, np.asarray(half, dtype=np.int64))
    ident = np.arange(int(np.prod(shape)), dtype=np.int64)
    return window_counts(shape, lo, hi, step, base, ident, ident, ident.size, int(bp),
                         np.asarray(bns, dtype=np.int64))


def neighborhood_counts_reference(shape, half, bp, bc):
    """The slow, obvious twin of ``neighborhood_counts`` (tests compare them exactly): per query
    tile, non-empty and full key tiles and allowed pairs of the clipped neighborhood in the
    flattened layout, pair by pair (``window_counts_reference``)."""
    shape = np.asarray(shape, dtype=np.int64)
    lo, hi, step, base = _clipped_tables(shape, np.asarray(half, dtype=np.int64))
    ident = np.arange(int(np.prod(shape)), dtype=np.int64)
    return window_counts_reference(shape, lo, hi, step, base, ident, ident, ident.size, int(bp), int(bc))


@njit(**JIT_OPTS)
def window_counts_reference(shape, lo, hi, step, base, qtok, kpos, pk, bp, bc):
    """The slow, obvious twin of ``window_counts`` (tests compare them exactly): per query tile,
    non-empty and full key tiles, and the allowed pairs, testing every (query, key) pair of
    tokens against the per-axis windows."""
    nd = shape.shape[0]
    total = 1
    for a in range(nd):
        total *= shape[a]
    strides = np.ones(nd, dtype=np.int64)
    for a in range(nd - 2, -1, -1):
        strides[a] = strides[a + 1] * shape[a + 1]
    pq = qtok.shape[0]
    rows = (pq + bp - 1) // bp
    ncol = (pk + bc - 1) // bc
    tiles = np.zeros(rows, dtype=np.int64)
    full = np.zeros(rows, dtype=np.int64)
    allowed = 0
    qc = np.zeros(nd, dtype=np.int64)
    counts = np.zeros(ncol, dtype=np.int64)
    for i in range(rows):
        r0 = i * bp
        r1 = min(pq, r0 + bp)
        counts[:] = 0
        for p in range(r0, r1):
            if qtok[p] < 0:
                continue
            rem = qtok[p]
            for a in range(nd):
                qc[a] = rem // strides[a]
                rem -= qc[a] * strides[a]
            for kk in range(total):
                rem = kk
                ok = True
                for a in range(nd):
                    c = rem // strides[a]
                    rem -= c * strides[a]
                    l, h = lo[base[a] + qc[a]], hi[base[a] + qc[a]]
                    if c < l or c > h or (c - l) % step[a] != 0:
                        ok = False
                        break
                if ok:
                    counts[kpos[kk] // bc] += 1
        nq = r1 - r0
        for j in range(ncol):
            if counts[j] > 0:
                tiles[i] += 1
                allowed += counts[j]
                width = min(pk, (j + 1) * bc) - j * bc
                if counts[j] == nq * width:
                    full[i] += 1
    return tiles, full, allowed


# ---------------------------------------------------------------------------- from a Mask


def _is_clipped(mask) -> bool:
    """attnsim's original neighborhood: clipped windows, no dilation, stride, causal axis or nd tiles."""
    return (mask.border == "clip" and not mask.q_tile and not mask.kv_tile
            and all(x == 1 for x in mask.dilation) and all(x == 1 for x in mask.stride)
            and not any(mask.axis_causal))


def axis_params(mask) -> list[tuple]:
    """Per axis: (length, window, dilation, stride, causal), the empty fields filled with 1 / False."""
    nd = len(mask.grid)
    dil = tuple(mask.dilation) or (1,) * nd
    stride = tuple(mask.stride) or (1,) * nd
    causal = tuple(mask.axis_causal) or (False,) * nd
    return [(int(mask.grid[a]), int(mask.win[a]), int(dil[a]), int(stride[a]), bool(causal[a]))
            for a in range(nd)]


def window_tables(mask):
    """(shape, lo, hi, step, base): the arrays ``window_counts`` takes, for a neighborhood mask."""
    axes = axis_params(mask)
    los, his = zip(*(axis_windows(n, w, d, s, c, mask.border) for n, w, d, s, c in axes))
    shape = np.array([a[0] for a in axes], dtype=np.int64)
    base = np.concatenate([[0], np.cumsum(shape)[:-1]]).astype(np.int64)
    return (shape, np.concatenate(los).astype(np.int64), np.concatenate(his).astype(np.int64),
            np.array([a[2] for a in axes], dtype=np.int64), base)


def layouts(mask):
    """(qtok, kpos, pk): the query order (position -> token, -1 padding) and the key positions
    (token -> position) of the mask's tiling: row-major, or ``tile_order`` boxes (nd tiles)."""
    total = math.prod(mask.grid)
    if not mask.q_tile:
        ident = np.arange(total, dtype=np.int64)
        return ident, ident, total
    dil = [a[2] for a in axis_params(mask)]
    qtok = tile_order(mask.grid, mask.q_tile, dil)
    korder = tile_order(mask.grid, mask.kv_tile, dil)
    kpos = np.empty(total, dtype=np.int64)
    kpos[korder[korder >= 0]] = np.flatnonzero(korder >= 0)
    return qtok.astype(np.int64), kpos, korder.size


def _axis_boxes(length, window, dilation, stride, causal, border, tq, tk):
    """One axis of box tiling: (tiles, full tiles, allowed pairs, query blocks, key blocks,
    per-query-block tile counts), summed over the axis' dilation sub-grids.

    Each sub-grid is padded to ceil(L / (t d)) blocks of t positions (NATTEN's token permute);
    a block is non-empty when one of its real queries sees one of its real keys, full when all
    t_q x t_k of its pairs are real and allowed."""
    lo, hi = axis_windows(length, window, dilation, stride, causal, border)
    nbq, nbk = -(-length // (tq * dilation)), -(-length // (tk * dilation))
    tiles = full = allowed = 0
    per_block = []
    for g in range(dilation):
        x = np.arange(g, length, dilation)  # the sub-grid's tokens
        lo_s, hi_s = (lo[x] - g) // dilation, (hi[x] - g) // dilation  # [L_g] key range, sub-grid coords
        lg = x.size
        allowed += int((hi_s - lo_s + 1).sum())
        for i in range(nbq):
            a, b = i * tq, min((i + 1) * tq, lg)
            if a >= b:  # a block of padding: no real query
                per_block.append(0)
                continue
            cover = np.zeros(nbk + 1, dtype=np.int64)  # key blocks some query of the block touches
            np.add.at(cover, lo_s[a:b] // tk, 1)
            np.add.at(cover, hi_s[a:b] // tk + 1, -1)
            cnt = int((np.cumsum(cover)[:nbk] > 0).sum())
            per_block.append(cnt)
            tiles += cnt
            if b - a == tq:  # key blocks inside every query's range, with tk real keys
                j0 = -(-int(lo_s[a:b].max()) // tk)
                j1 = min((int(hi_s[a:b].min()) + 1) // tk, lg // tk) - 1
                full += max(0, j1 - j0 + 1)
    return tiles, full, allowed, dilation * nbq, dilation * nbk, per_block


def box_tile_stats(mask) -> TileStats:
    """Closed-form statistics of multi-dimensional tiles (query boxes ``q_tile``, key boxes
    ``kv_tile``): the mask is a product over axes and so is a box pair, so a box pair is non-empty
    (full) exactly when it is on every axis, and

        tiles = prod_a tiles_a      full = prod_a full_a      allowed = prod_a allowed_a
        query tiles = prod_a blocks_a   max (min) tiles per query box = prod_a max_a (min_a)

    tests/families/test_neighborhood.py checks it against the element mask permuted into box order."""
    out = [_axis_boxes(n, w, d, s, c, mask.border, tq, tk)
           for (n, w, d, s, c), tq, tk in zip(axis_params(mask), mask.q_tile, mask.kv_tile)]
    return TileStats(tiles=math.prod(o[0] for o in out), full_tiles=math.prod(o[1] for o in out),
                     max_row_tiles=math.prod(max(o[5]) for o in out),
                     min_row_tiles=math.prod(min(o[5]) for o in out),
                     rows=math.prod(o[3] for o in out), allowed=math.prod(o[2] for o in out),
                     cols=math.prod(o[4] for o in out))


@lru_cache(maxsize=256)
def _layout_cached(mask, bp: int, bc: int) -> TileStats:
    tiles, full, lmax, lmin, rows, allowed = neighborhood_counts_many(mask, bp, (bc,))
    pk = layouts(mask)[2]
    return TileStats(tiles=int(tiles[0]), full_tiles=int(full[0]), max_row_tiles=int(lmax[0]),
                     min_row_tiles=int(lmin[0]), rows=int(rows), allowed=int(allowed), cols=-(-pk // bc))


@lru_cache(maxsize=256)
def _box_cached(mask) -> TileStats:
    return box_tile_stats(mask)


def neighborhood_counts_many(mask, bp: int, bns) -> tuple:
    """``window_counts`` of a neighborhood mask in its own layout, for several key-tile sizes:
    (tiles, full, max, min tiles per query tile) per bn, query tiles, allowed pairs."""
    bns = np.asarray(bns, dtype=np.int64)
    if _is_clipped(mask):
        shape = np.array(mask.grid, dtype=np.int64)
        return neighborhood_counts(shape, np.array([w // 2 for w in mask.win], dtype=np.int64), bp, bns)
    shape, lo, hi, step, base = window_tables(mask)
    qtok, kpos, pk = layouts(mask)
    return window_counts(shape, lo, hi, step, base, qtok, kpos, pk, int(bp), bns)


@lru_cache(maxsize=256)
def _nbhd_cached(grid: tuple, win: tuple, bp: int, bc: int) -> TileStats:
    shape = np.array(grid, dtype=np.int64)
    half = np.array([w // 2 for w in win], dtype=np.int64)
    tiles, full, lmax, lmin, rows, allowed = neighborhood_counts(shape, half, bp, np.array([bc], dtype=np.int64))
    return TileStats(tiles=int(tiles[0]), full_tiles=int(full[0]), max_row_tiles=int(lmax[0]),
                     min_row_tiles=int(lmin[0]), rows=int(rows), allowed=int(allowed),
                     cols=-(-math.prod(grid) // bc))


def explicit_tile_stats(mask, m_len: int, n_len: int, bp: int, bc: int) -> TileStats:
    """Tile statistics of a neighborhood mask at query tile `bp` x key tile `bc`.

    Flattened layout: tiles of bp x bc consecutive tokens (``window_counts``). Multi-dimensional
    tiles (``mask.q_tile``, ``mask.kv_tile``): boxes of prod(q_tile) x prod(kv_tile) tokens in
    closed form (``box_tile_stats``) when bp and bc are the box sizes; other sizes are consecutive
    positions of the box order, counted by ``window_counts``."""
    if mask.kind != "neighborhood":
        raise ValueError(f"explicit tile statistics are only needed for neighborhood masks, not {mask.kind!r}")
    if math.prod(mask.grid) != m_len or m_len != n_len:
        raise ValueError(f"grid {mask.grid} does not match seq_q={m_len}, seq_kv={n_len}")
    if _is_clipped(mask):
        return _nbhd_cached(tuple(int(g) for g in mask.grid), tuple(int(w) for w in mask.win), int(bp), int(bc))
    if mask.q_tile and bp == math.prod(mask.q_tile) and bc == math.prod(mask.kv_tile):
        return _box_cached(mask)
    return _layout_cached(mask, int(bp), int(bc))
