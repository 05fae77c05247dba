"""Element-level attention masks as boolean matrices (True = the query may attend the key).

Every function returns an ``np.ndarray`` of dtype bool and shape [M, N] (M query
positions, N key positions), except ``block_sparse_from_density`` which returns a
block-level grid. Bad arguments raise ``ValueError``.

Alignment (as FlashAttention >= 2.1): when M != N the queries are aligned to the
*bottom-right* corner, i.e. query ``m`` sits at key position ``m + (N - M)``, so the
last query sees every key. With M > N the first ``M - N`` causal rows see nothing.

    causal, M=3, N=5 (offset N-M = 2)

        n: 0 1 2 3 4
    m=0    x x x . .
    m=1    x x x x .
    m=2    x x x x x
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def _check_pos(**kw: int) -> None:
    for name, val in kw.items():
        if isinstance(val, (bool, np.bool_)) or not isinstance(val, (int, np.integer)):
            raise ValueError(f"{name} must be an int, got {val!r}")
        if val < 1:
            raise ValueError(f"{name} must be >= 1, got {val}")


def _check_nonneg(**kw: int) -> None:
    for name, val in kw.items():
        if isinstance(val, (bool, np.bool_)) or not isinstance(val, (int, np.integer)):
            raise ValueError(f"{name} must be an int, got {val!r}")
        if val < 0:
            raise ValueError(f"{name} must be >= 0, got {val}")


def _rel(M: int, N: int) -> np.ndarray:
    """Key position minus the aligned query position: n - (m + N - M).  # [M, N]"""
    m = np.arange(M)[:, None]  # [M, 1]
    n = np.arange(N)[None, :]  # [1, N]
    return n - (m + (N - M))  # [M, N]


def full_mask(M: int, N: int) -> np.ndarray:
    """Every query sees every key.  # [M, N] all True"""
    _check_pos(M=M, N=N)
    return np.ones((M, N), dtype=bool)


def causal_mask(M: int, N: int) -> np.ndarray:
    """Bottom-right aligned causal mask: allowed iff ``n <= m + (N - M)``.

    M=N=4:            M=2, N=4:          M=4, N=2:
        x . . .           x x x .            . .   (rows that see nothing
        x x . .           x x x x            . .    produce zeros)
        x x x .                              x .
        x x x x                              x x
    """
    _check_pos(M=M, N=N)
    return _rel(M, N) <= 0


def window_mask(M: int, N: int, window: int, sink: int = 0, causal: bool = True) -> np.ndarray:
    """Sliding-window mask, with optional attention sinks. Let ``p = m + (N - M)``.

    causal=True:  allowed iff ``p - window < n <= p``  (the last ``window`` keys,
                  itself included), or ``n < sink and n <= p`` (the first ``sink``
                  keys stay visible, but never keys from the future).
    causal=False: allowed iff ``-window < n - p < window`` (``window - 1`` keys each
                  side plus itself), or ``n < sink`` (sinks visible to every query).

    M=N=6, window=3, sink=0       M=N=6, window=3, sink=1       M=N=6, window=2, causal=False
        x . . . . .                   x . . . . .                   x x . . . .
        x x . . . .                   x x . . . .                   x x x . . .
        x x x . . .                   x x x . . .                   . x x x . .
        . x x x . .                   x x x x . .                   . . x x x .
        . . x x x .                   x . x x x .                   . . . x x x
        . . . x x x                   x . . x x x                   . . . . x x

    A causal window >= N equals ``causal_mask`` (every allowed ``n - p`` is > -N); a
    non-causal window >= max(M, N) equals ``full_mask``.
    """
    _check_pos(M=M, N=N, window=window)
    _check_nonneg(sink=sink)
    rel = _rel(M, N)  # [M, N]
    sinks = np.arange(N)[None, :] < sink  # [1, N]
    if causal:
        return ((rel > -window) | sinks) & (rel <= 0)
    return (np.abs(rel) < window) | sinks


# ----------------------------------------------------------------------------- block sparse


def _n_blocks(M: int, N: int, block_m: int, block_n: int) -> tuple[int, int]:
    _check_pos(M=M, N=N, block_m=block_m, block_n=block_n)
    return math.ceil(M / block_m), math.ceil(N / block_n)


def _as_block_grid(blocks, n_qb: int, n_kb: int) -> np.ndarray:
    """Normalise ``blocks`` (index lists per query block, or a bool grid) to a bool grid."""
    if isinstance(blocks, np.ndarray) and blocks.dtype == bool:
        if blocks.shape != (n_qb, n_kb):
            raise ValueError(f"block grid must have shape {(n_qb, n_kb)}, got {blocks.shape}")
        return blocks.copy()
    if len(blocks) != n_qb:
        raise ValueError(f"blocks must have one entry per query block ({n_qb}), got {len(blocks)}")
    grid = np.zeros((n_qb, n_kb), dtype=bool)
    for i, row in enumerate(blocks):
        for j in np.asarray(row, dtype=np.int64).ravel():
            if not 0 <= j < n_kb:
                raise ValueError(f"blocks[{i}] has key-block index {int(j)}, valid range is [0, {n_kb})")
            grid[i, j] = True
    return grid


def expand_block_grid(
    grid: np.ndarray, M: int, N: int, block_m: int, block_n: int, causal: bool = False
) -> np.ndarray:
    """Block grid [ceil(M/block_m), ceil(N/block_n)] -> element mask [M, N].

    Element (m, n) is allowed iff ``grid[m // block_m, n // block_n]``; with
    ``causal=True`` it is further ANDed with ``causal_mask(M, N)`` (what a kernel does
    inside the diagonal blocks).

    grid (2x2), block 2, M=N=4  ->     x x . .
        1 0                            x x . .
        1 1                            x x x x
                                       x x x x
    """
    n_qb, n_kb = _n_blocks(M, N, block_m, block_n)
    grid = np.asarray(grid, dtype=bool)
    if grid.shape != (n_qb, n_kb):
        raise ValueError(f"block grid must have shape {(n_qb, n_kb)}, got {grid.shape}")
    qb = np.arange(M) // block_m  # [M]
    kb = np.arange(N) // block_n  # [N]
    out = grid[qb[:, None], kb[None, :]]  # [M, N]
    if causal:
        out &= causal_mask(M, N)
    return out


def block_sparse_mask(
    M: int, N: int, block_m: int, block_n: int, blocks: Sequence[Sequence[int]] | np.ndarray
) -> np.ndarray:
    """Block-sparse mask: ``blocks[i]`` lists the key blocks visible to query block ``i``.

    The block grid is ceil(M/block_m) x ceil(N/block_n); edge blocks may be ragged.
    Element (m, n) is allowed iff ``n // block_n in blocks[m // block_m]``. ``blocks``
    may also be a bool ndarray grid of that shape.

    M=5, N=6, block_m=2, block_n=3, blocks=[[0], [1], [0, 1]]:
        x x x . . .
        x x x . . .
        . . . x x x
        . . . x x x
        x x x x x x
    """
    n_qb, n_kb = _n_blocks(M, N, block_m, block_n)
    grid = _as_block_grid(blocks, n_qb, n_kb)
    return expand_block_grid(grid, M, N, block_m, block_n)


def causal_block_limits(M: int, N: int, block_m: int, block_n: int) -> np.ndarray:
    """For each query block, the last key block holding a causally allowed element.

    Uses the last row of the block, aligned bottom-right: ``(row + N - M) // block_n``;
    -1 when the whole query block sees no key (possible only when M > N).  # [n_qblocks]
    """
    n_qb, _ = _n_blocks(M, N, block_m, block_n)
    last_row = np.minimum((np.arange(n_qb) + 1) * block_m, M) - 1  # [n_qb]
    pos = last_row + (N - M)
    return np.where(pos >= 0, pos // block_n, -1)


def block_sparse_from_density(
    M: int,
    N: int,
    block_m: int,
    block_n: int,
    density: float,
    causal: bool = False,
    seed: int = 0,
) -> np.ndarray:
    """Deterministic local+global block grid keeping about ``density`` of the allowed blocks.

    Returns the bool grid [ceil(M/block_m), ceil(N/block_n)] (expand it with
    ``expand_block_grid``). For query block ``i``:

    * candidates: every key block, or with ``causal=True`` key blocks ``0..d`` where
      ``d = causal_block_limits(...)[i]`` (blocks holding at least one causal element);
    * ``k = max(1, floor(density * n_candidates + 0.5))`` blocks are kept (0 if none; halves round up,
      as the model's kernel counts them);
    * they are taken in this order: the diagonal block ``d``, the sink block 0, then
      the remaining candidates nearest to ``d`` first (ties -> the earlier block).
      Non-causal ``d`` is the block of the aligned last query row, clipped to range.

    So a causal row keeps {d, 0, d-1, d-2, ...}: one global "sink" block plus the most
    recent blocks. ``seed`` is accepted for API stability; the choice does not use it.

    causal, 5x5 blocks, density=0.6 (k = 1, 1, 2, 2, 3):
        x . . . .
        . x . . .
        x . x . .
        x . . x .
        x . . x x
    """
    n_qb, n_kb = _n_blocks(M, N, block_m, block_n)
    if not 0.0 <= float(density) <= 1.0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    last = causal_block_limits(M, N, block_m, block_n)  # [n_qb]
    grid = np.zeros((n_qb, n_kb), dtype=bool)
    for i in range(n_qb):
        d = int(last[i])
        if causal:
            if d < 0:
                continue  # the query block sees no key at all
            cands = np.arange(d + 1)
        else:
            d = min(max(d, 0), n_kb - 1)
            cands = np.arange(n_kb)
        k = min(len(cands), max(1, math.floor(float(density) * len(cands) + 0.5)))
        rest = [j for j in sorted(cands.tolist(), key=lambda j: (abs(j - d), j)) if j not in (d, 0)]
        order = [d] + ([0] if d != 0 else []) + rest
        grid[i, order[:k]] = True
    return grid


# ----------------------------------------------------------------------------- neighborhood


def _neighborhood_nd(grid: Sequence[int], win: Sequence[int], names: Sequence[str]) -> np.ndarray:
    for g, w, nm in zip(grid, win, names):
        _check_pos(**{f"grid_{nm}": g, f"win_{nm}": w})
        if w % 2 == 0:
            raise ValueError(f"win_{nm} must be odd (centered window), got {w}")
    coords = np.indices(tuple(grid)).reshape(len(grid), -1)  # [ndim, L], row-major
    allowed = np.ones((coords.shape[1], coords.shape[1]), dtype=bool)  # [L, L]
    for c, w in zip(coords, win):
        allowed &= np.abs(c[:, None] - c[None, :]) <= w // 2
    return allowed


def neighborhood_2d_mask(grid_h: int, grid_w: int, win_h: int, win_w: int) -> np.ndarray:
    """2-D neighborhood attention on a row-major ``grid_h x grid_w`` token grid.

    M = N = grid_h * grid_w; token ``r * grid_w + c`` sits at (r, c). The query at (r, c)
    sees keys (r', c') with ``|r' - r| <= win_h // 2`` and ``|c' - c| <= win_w // 2``
    (windows must be odd). The window is *clipped* at the borders: a corner query sees
    fewer keys. This is NOT NATTEN-style, which shifts the window inward to keep
    ``win_h * win_w`` keys per query.

    grid 3x3, window 3x3, query at (0, 0):   keys visible (x) on the grid
        x x .
        x x .
        . . .
    """
    return _neighborhood_nd((grid_h, grid_w), (win_h, win_w), ("h", "w"))


def neighborhood_3d_mask(
    grid_t: int, grid_h: int, grid_w: int, win_t: int, win_h: int, win_w: int
) -> np.ndarray:
    """3-D neighborhood attention on a row-major (t, h, w) token grid (e.g. video).

    Token ``(t * grid_h + r) * grid_w + c`` sees (t', r', c') iff ``|t'-t| <= win_t//2``,
    ``|r'-r| <= win_h//2`` and ``|c'-c| <= win_w//2``; windows odd, clipped at borders
    (no NATTEN-style shifting). Shape [T*H*W, T*H*W].
    """
    return _neighborhood_nd((grid_t, grid_h, grid_w), (win_t, win_h, win_w), ("t", "h", "w"))


# ----------------------------------------------------------------------------- generalized neighborhood
#
# Generalized Neighborhood Attention (GNA, Hassani et al. 2025) as NATTEN defines it (its Flex
# backend's mask_mod, src/natten/backends/flex.py, is the reference we follow), per axis of the
# token grid:
#
#   dilation d   the axis splits into d interleaved sub-grids (x % d); a query attends only within
#                its own sub-grid, whose coordinate is x // d and whose length is L_g = ceil((L-g)/d)
#   stride s     queries are grouped in blocks of s sub-grid positions; every query of a group uses
#                the window of the group's leader: its center query (the right one of the two when
#                s is even), or its last query on a causal axis
#   window w     w keys: w // 2 left of the center and w // 2 (odd w) or w // 2 - 1 (even w) right
#   border       'shift' (NATTEN): the window moves inward at the borders, so every query sees
#                exactly w keys per axis (needs w * d <= L); 'clip': it is cut at the borders
#                (attnsim's original neighborhood mask)
#   causal       keys from leader - w + 1 to the query itself (NATTEN's is_causal; never shifted)

BORDERS = ("clip", "shift")


def axis_windows(length: int, window: int, dilation: int = 1, stride: int = 1, causal: bool = False,
                 border: str = "shift") -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi): the first and last key coordinate each query coordinate of one axis sees; the
    keys are lo, lo + d, ..., hi (the query's dilation sub-grid).  # lo [L], hi [L]

    L=9, w=3 (s=1, d=1), key ranges:       shift          clip
        query 0                             0..2           0..1
        query 4                             3..5           3..5
        query 8                             6..8           7..8
    """
    _check_pos(length=length, window=window, dilation=dilation, stride=stride)
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, got {border!r}")
    x = np.arange(length)  # [L]
    g = x % dilation  # dilation sub-grid of each position
    xs = x // dilation  # coordinate inside the sub-grid
    lg = (length - g + dilation - 1) // dilation  # [L] length of each position's sub-grid
    if causal:
        leader = np.minimum((xs // stride) * stride + stride - 1, lg - 1)
        lo, hi = np.maximum(leader - window + 1, 0), xs
    else:
        left, right = window // 2, window // 2 - (1 - window % 2)
        leader = np.minimum((xs // stride) * stride + stride // 2, lg - 1)
        if border == "shift":
            if (lg < window).any():
                raise ValueError(f"a shifted window of {window} needs window * dilation <= length, "
                                 f"got {window} * {dilation} > {length}")
            leader = np.clip(leader, left, lg - 1 - right)
        lo, hi = np.maximum(leader - left, 0), np.minimum(leader + right, lg - 1)
    return lo * dilation + g, hi * dilation + g


def neighborhood_mask(grid: Sequence[int], window: Sequence[int], dilation: Sequence[int] = (),
                      stride: Sequence[int] = (), causal: Sequence[bool] = (),
                      border: str = "shift") -> np.ndarray:
    """Generalized neighborhood attention on a row-major token grid.  # [L, L], L = prod(grid)

    Empty ``dilation``/``stride``/``causal`` mean 1 / 1 / False on every axis. The mask is the
    AND over axes of the per-axis masks ``lo[x] <= y <= hi[x] and y = x (mod d)``
    (``axis_windows``). With border 'clip', odd windows and no dilation, stride or causal axis
    it equals ``neighborhood_2d_mask`` / ``neighborhood_3d_mask``.

    1-D, L=12, w=3, s=3 (blocked: stride = window), d=1, and d=2:
        s=3:  x x x . . . . . . . . .     d=2:  x . x . x . . . . . . .   (query 0)
              . . . x x x . . . . . .           . x . x . x . . . . . .   (query 1)
    """
    nd = len(grid)
    dilation, stride = tuple(dilation) or (1,) * nd, tuple(stride) or (1,) * nd
    causal = tuple(causal) or (False,) * nd
    if not len(window) == len(dilation) == len(stride) == len(causal) == nd:
        raise ValueError(f"window, dilation, stride and causal need one entry per grid axis ({nd}), "
                         f"got {window}, {dilation}, {stride}, {causal}")
    coords = np.indices(tuple(grid)).reshape(nd, -1)  # [nd, L], row-major
    allowed = np.ones((coords.shape[1], coords.shape[1]), dtype=bool)  # [L, L]
    for a in range(nd):
        lo, hi = axis_windows(grid[a], window[a], dilation[a], stride[a], bool(causal[a]), border)
        c = coords[a]
        y = c[None, :]  # key coordinate
        allowed &= (y >= lo[c][:, None]) & (y <= hi[c][:, None]) & ((y - c[:, None]) % dilation[a] == 0)
    return allowed


def tile_order(grid: Sequence[int], tile: Sequence[int], dilation: Sequence[int] = ()) -> np.ndarray:
    """The token order of multi-dimensional tiling: position -> token index (-1 = padding).

    As NATTEN's token permute (src/natten/token_permute): each axis is padded to a multiple of
    tile * dilation; positions run over dilation sub-grids (row-major over the group of each
    axis), then tiles (row-major over tile coordinates), then tokens inside a tile (row-major),
    so ``prod(tile)`` consecutive positions are one box of one sub-grid.  # [P], P = padded size

    grid (4, 6), tile (2, 3): positions 0..5 are the box rows 0-1 x cols 0-2:
        token:  0  1  2  6  7  8 | 3  4  5  9 10 11 | 12 13 14 18 19 20 | ...
    """
    nd = len(grid)
    dilation = tuple(dilation) or (1,) * nd
    if not len(tile) == len(dilation) == nd:
        raise ValueError(f"tile and dilation need one entry per grid axis ({nd}), got {tile}, {dilation}")
    for a in range(nd):
        _check_pos(**{f"tile_{a}": tile[a], f"dilation_{a}": dilation[a]})
    blocks = [-(-g // (t * d)) for g, t, d in zip(grid, tile, dilation)]  # tiles per axis and sub-grid
    # every position's (groups, tiles, offsets), row-major: [3 * nd, P]
    idx = np.indices(list(dilation) + blocks + list(tile)).reshape(3 * nd, -1)
    tok = np.zeros(idx.shape[1], dtype=np.int64)
    inside = np.ones(idx.shape[1], dtype=bool)
    for a in range(nd):
        x = (idx[nd + a] * tile[a] + idx[2 * nd + a]) * dilation[a] + idx[a]  # coordinate on axis a
        inside &= x < grid[a]
        tok = tok * grid[a] + np.minimum(x, grid[a] - 1)
    return np.where(inside, tok, -1)


def neighborhood_problems(grid, window, dilation=(), stride=(), border="shift", causal=(), q_tile=(),
                          kv_tile=()) -> list[tuple[str, str]]:
    """What is wrong with a generalized neighborhood's settings: [(field, message)], [] if nothing.

    NATTEN's rules (src/natten/utils/checks.py): window * dilation <= grid and stride <= window on
    every axis; and attnsim's: odd windows when clipped, one entry per axis everywhere."""
    nd = len(grid)
    probs = []

    def ints(name, vals, lo):
        if len(vals) != nd:
            probs.append((name, f"expected {nd} entries (one per grid axis), got {list(vals)}"))
            return False
        if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo for v in vals):
            probs.append((name, f"expected integers >= {lo}, got {list(vals)}"))
            return False
        return True

    if nd not in (1, 2, 3) or not ints("grid", grid, 1):
        return probs + ([] if nd in (1, 2, 3) else [("grid", f"expected 1, 2 or 3 axes, got {list(grid)}")])
    ok_w = ints("window", window, 1)
    ok_d = not dilation or ints("dilation", dilation, 1)
    ok_s = not stride or ints("stride", stride, 1)
    if border not in BORDERS:
        probs.append(("border", f"expected one of {list(BORDERS)}, got {border!r}"))
    if causal and (len(causal) != nd or not all(isinstance(c, (bool, np.bool_)) for c in causal)):
        probs.append(("causal", f"expected {nd} booleans (one per grid axis), got {list(causal)}"))
    for name, tile in (("q_tile", q_tile), ("kv_tile", kv_tile)):
        if tile:
            ints(name, tile, 1)
    if bool(q_tile) != bool(kv_tile):
        probs.append(("kv_tile" if q_tile else "q_tile", "give both q_tile and kv_tile (boxes of the nd tiling), or neither"))
    if not (ok_w and ok_d and ok_s):
        return probs
    dil = dilation or (1,) * nd
    for a in range(nd):
        if stride and stride[a] > window[a]:
            probs.append(("stride", f"axis {a}: stride {stride[a]} exceeds the window {window[a]} "
                                    "(queries would see no key in between; NATTEN's rule: stride <= window)"))
        if border == "shift" and window[a] * dil[a] > grid[a]:
            probs.append(("window", f"axis {a}: window {window[a]} x dilation {dil[a]} exceeds the grid "
                                    f"({grid[a]}); a shifted window must fit its dilation sub-grid"))
        if border == "clip" and window[a] % 2 == 0:
            probs.append(("window", f"axis {a}: a clipped window must be odd (centered), got {window[a]}"))
    return probs
