"""Mask conventions, checked against brute-force loops written straight from the definitions."""
from __future__ import annotations

import math

import numpy as np
import pytest

from attnsim.workload.masks import (
    block_sparse_from_density,
    block_sparse_mask,
    causal_block_limits,
    causal_mask,
    expand_block_grid,
    full_mask,
    neighborhood_2d_mask,
    neighborhood_3d_mask,
    window_mask,
)

SIZES = [(1, 1), (1, 257), (7, 7), (63, 100), (100, 63), (100, 100), (33, 257)]
SIZE_IDS = [f"M{m}-N{n}" for m, n in SIZES]


def brute(M, N, allowed):
    return np.array([[allowed(m, n) for n in range(N)] for m in range(M)], dtype=bool)


def block_any(mask, bm, bn):
    """Block grid: True where the [bm, bn] tile holds any allowed element."""
    M, N = mask.shape
    return np.array(
        [[mask[i:i + bm, j:j + bn].any() for j in range(0, N, bn)] for i in range(0, M, bm)]
    )


# ----------------------------------------------------------------------------- full / causal


@pytest.mark.parametrize("M,N", SIZES, ids=SIZE_IDS)
def test_full_and_causal_match_definition(M, N):
    assert full_mask(M, N).dtype == bool and full_mask(M, N).all()
    want = brute(M, N, lambda m, n: n <= m + (N - M))
    np.testing.assert_array_equal(causal_mask(M, N), want)
    assert causal_mask(M, N)[-1].all()  # bottom-right: the last query sees every key


def test_causal_small_pictures():
    # M=3, N=5: offset 2, so query 0 already sees keys 0..2
    np.testing.assert_array_equal(
        causal_mask(3, 5).astype(int),
        [[1, 1, 1, 0, 0],
         [1, 1, 1, 1, 0],
         [1, 1, 1, 1, 1]],
    )
    # M=4, N=2: the first M-N rows see nothing
    np.testing.assert_array_equal(causal_mask(4, 2).astype(int), [[0, 0], [0, 0], [1, 0], [1, 1]])
    assert causal_mask(100, 100).sum() == 100 * 101 // 2


# ----------------------------------------------------------------------------- window


@pytest.mark.parametrize("M,N", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("window,sink", [(1, 0), (5, 0), (16, 0), (16, 4), (3, 1)],
                         ids=["W1", "W5", "W16", "W16-S4", "W3-S1"])
def test_window_causal_matches_definition(M, N, window, sink):
    off = N - M
    want = brute(M, N, lambda m, n: (m + off - window < n <= m + off) or (n < sink and n <= m + off))
    np.testing.assert_array_equal(window_mask(M, N, window, sink=sink), want)


@pytest.mark.parametrize("M,N", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("window,sink", [(1, 0), (4, 0), (9, 2)], ids=["W1", "W4", "W9-S2"])
def test_window_noncausal_matches_definition(M, N, window, sink):
    off = N - M
    want = brute(M, N, lambda m, n: -window < n - (m + off) < window or n < sink)
    np.testing.assert_array_equal(window_mask(M, N, window, sink=sink, causal=False), want)


@pytest.mark.parametrize("M,N", SIZES, ids=SIZE_IDS)
def test_window_covering_sequence_equals_causal(M, N):
    np.testing.assert_array_equal(window_mask(M, N, N), causal_mask(M, N))
    np.testing.assert_array_equal(window_mask(M, N, N + 37, sink=3), causal_mask(M, N))
    np.testing.assert_array_equal(window_mask(M, N, max(M, N), causal=False), full_mask(M, N))


def test_window_counts_and_sinks():
    M = N = 100
    w = window_mask(M, N, 16)
    # rows m >= 15 see exactly 16 keys; earlier rows see m + 1
    np.testing.assert_array_equal(w.sum(1), np.minimum(np.arange(M) + 1, 16))
    ws = window_mask(M, N, 16, sink=4)
    assert ws[:, :4].sum() == causal_mask(M, N)[:, :4].sum()  # sinks, never in the future
    assert not window_mask(3, 3, 1, sink=3)[0, 1:].any()
    assert (window_mask(M, N, 1) == np.eye(N, dtype=bool)).all()  # window 1 = the diagonal


def test_window_docstring_pictures():
    np.testing.assert_array_equal(
        window_mask(6, 6, 3, sink=1).astype(int),
        [[1, 0, 0, 0, 0, 0],
         [1, 1, 0, 0, 0, 0],
         [1, 1, 1, 0, 0, 0],
         [1, 1, 1, 1, 0, 0],
         [1, 0, 1, 1, 1, 0],
         [1, 0, 0, 1, 1, 1]],
    )
    np.testing.assert_array_equal(
        window_mask(6, 6, 2, causal=False).astype(int),
        [[1, 1, 0, 0, 0, 0],
         [1, 1, 1, 0, 0, 0],
         [0, 1, 1, 1, 0, 0],
         [0, 0, 1, 1, 1, 0],
         [0, 0, 0, 1, 1, 1],
         [0, 0, 0, 0, 1, 1]],
    )


# ----------------------------------------------------------------------------- block sparse


@pytest.mark.parametrize(
    "M,N,bm,bn",
    [(100, 257, 16, 32), (63, 100, 7, 9), (257, 63, 64, 64), (5, 6, 2, 3)],
    ids=["M100-N257-b16x32", "M63-N100-b7x9", "M257-N63-b64x64", "M5-N6-b2x3"],
)
def test_block_sparse_matches_definition(M, N, bm, bn):
    nq, nk = math.ceil(M / bm), math.ceil(N / bn)
    rng = np.random.default_rng(0)
    blocks = [sorted(rng.choice(nk, size=rng.integers(0, nk + 1), replace=False).tolist())
              for _ in range(nq)]
    want = brute(M, N, lambda m, n: n // bn in blocks[m // bm])
    got = block_sparse_mask(M, N, bm, bn, blocks)
    np.testing.assert_array_equal(got, want)
    grid = np.zeros((nq, nk), dtype=bool)
    for i, row in enumerate(blocks):
        grid[i, row] = True
    np.testing.assert_array_equal(block_sparse_mask(M, N, bm, bn, grid), want)  # bool grid input
    np.testing.assert_array_equal(expand_block_grid(grid, M, N, bm, bn), want)
    np.testing.assert_array_equal(block_any(got, bm, bn), grid)  # round trip


def test_block_sparse_docstring_picture():
    np.testing.assert_array_equal(
        block_sparse_mask(5, 6, 2, 3, [[0], [1], [0, 1]]).astype(int),
        [[1, 1, 1, 0, 0, 0],
         [1, 1, 1, 0, 0, 0],
         [0, 0, 0, 1, 1, 1],
         [0, 0, 0, 1, 1, 1],
         [1, 1, 1, 1, 1, 1]],
    )


@pytest.mark.parametrize(
    "M,N,bm,bn",
    [(100, 100, 16, 16), (63, 257, 16, 32), (257, 100, 32, 16), (100, 63, 7, 64)],
    ids=["M100-N100-b16x16", "M63-N257-b16x32", "M257-N100-b32x16", "M100-N63-b7x64"],
)
def test_density_one_is_full_or_causal(M, N, bm, bn):
    nq, nk = math.ceil(M / bm), math.ceil(N / bn)
    assert block_sparse_from_density(M, N, bm, bn, 1.0).all()
    np.testing.assert_array_equal(expand_block_grid(block_sparse_from_density(M, N, bm, bn, 1.0), M, N, bm, bn),
                                  full_mask(M, N))
    g = block_sparse_from_density(M, N, bm, bn, 1.0, causal=True)
    assert g.shape == (nq, nk)
    np.testing.assert_array_equal(g, block_any(causal_mask(M, N), bm, bn))
    np.testing.assert_array_equal(expand_block_grid(g, M, N, bm, bn, causal=True), causal_mask(M, N))


@pytest.mark.parametrize("density", [0.0, 0.1, 0.25, 0.5, 0.77])
def test_density_picks_diagonal_sink_then_recent(density):
    M, N, bm, bn = 257, 257, 16, 16
    g = block_sparse_from_density(M, N, bm, bn, density, causal=True)
    last = causal_block_limits(M, N, bm, bn)
    for i, d in enumerate(last):
        k = min(d + 1, max(1, math.floor(density * (d + 1) + 0.5)))  # halves round up, as the kernel counts
        want = ([d] + ([0] if d else []) + list(range(d - 1, 0, -1)))[:k]
        assert sorted(np.flatnonzero(g[i]).tolist()) == sorted(want), f"query block {i}"
    assert g.sum(1).min() >= 1
    assert not np.triu(g, 1).any()  # never a block from the future
    # deterministic, seed does not matter
    np.testing.assert_array_equal(g, block_sparse_from_density(M, N, bm, bn, density, causal=True, seed=7))


def test_density_docstring_picture_and_noncausal():
    np.testing.assert_array_equal(
        block_sparse_from_density(10, 10, 2, 2, 0.6, causal=True).astype(int),
        [[1, 0, 0, 0, 0],
         [0, 1, 0, 0, 0],
         [1, 0, 1, 0, 0],
         [1, 0, 0, 1, 0],
         [1, 0, 0, 1, 1]],
    )
    # non-causal: diagonal, sink, then nearest (ties -> earlier); 5 blocks, k = 3
    np.testing.assert_array_equal(
        block_sparse_from_density(10, 10, 2, 2, 0.6).astype(int),
        [[1, 1, 1, 0, 0],
         [1, 1, 1, 0, 0],
         [1, 1, 1, 0, 0],
         [1, 0, 1, 1, 0],
         [1, 0, 0, 1, 1]],
    )


def test_density_causal_rows_without_keys_are_empty():
    # M > N: the first query block (rows 0..15, aligned to positions -37..-22) sees no key
    g = block_sparse_from_density(100, 63, 16, 16, 0.5, causal=True)
    assert causal_block_limits(100, 63, 16, 16)[0] == -1
    assert not g[0].any() and g[3:].any(axis=1).all()


# ----------------------------------------------------------------------------- neighborhood


@pytest.mark.parametrize(
    "gh,gw,wh,ww",
    [(5, 7, 3, 3), (9, 13, 5, 3), (6, 4, 1, 7), (10, 10, 7, 7)],
    ids=["G5x7-W3x3", "G9x13-W5x3", "G6x4-W1x7", "G10x10-W7x7"],
)
def test_neighborhood_2d_matches_definition(gh, gw, wh, ww):
    L = gh * gw
    want = brute(L, L, lambda a, b: abs(a // gw - b // gw) <= wh // 2 and abs(a % gw - b % gw) <= ww // 2)
    got = neighborhood_2d_mask(gh, gw, wh, ww)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, got.T)  # clipped windows are symmetric
    # clipped, not shifted: the corner sees fewer keys than the center (when the window fits)
    assert got[0].sum() == min(wh // 2 + 1, gh) * min(ww // 2 + 1, gw)


def test_neighborhood_2d_picture_and_1d_equivalence():
    np.testing.assert_array_equal(neighborhood_2d_mask(3, 3, 3, 3)[0].reshape(3, 3).astype(int),
                                  [[1, 1, 0], [1, 1, 0], [0, 0, 0]])
    # a 1 x N grid with window 2w-1 is the non-causal 1-D window w
    np.testing.assert_array_equal(neighborhood_2d_mask(1, 63, 1, 9), window_mask(63, 63, 5, causal=False))


@pytest.mark.parametrize("gt,gh,gw,wt,wh,ww", [(3, 4, 5, 3, 3, 3), (5, 3, 6, 1, 3, 5)],
                         ids=["G3x4x5-W3x3x3", "G5x3x6-W1x3x5"])
def test_neighborhood_3d_matches_definition(gt, gh, gw, wt, wh, ww):
    L = gt * gh * gw

    def coords(a):
        return a // (gh * gw), (a // gw) % gh, a % gw

    def ok(a, b):
        (t, r, c), (t2, r2, c2) = coords(a), coords(b)
        return abs(t - t2) <= wt // 2 and abs(r - r2) <= wh // 2 and abs(c - c2) <= ww // 2

    np.testing.assert_array_equal(neighborhood_3d_mask(gt, gh, gw, wt, wh, ww), brute(L, L, ok))


def test_neighborhood_whole_grid_is_full():
    np.testing.assert_array_equal(neighborhood_2d_mask(7, 9, 13, 17), full_mask(63, 63))
    np.testing.assert_array_equal(neighborhood_2d_mask(7, 9, 99, 99), full_mask(63, 63))
    np.testing.assert_array_equal(neighborhood_3d_mask(3, 5, 7, 5, 9, 13), full_mask(105, 105))
    np.testing.assert_array_equal(neighborhood_3d_mask(1, 5, 7, 1, 3, 5), neighborhood_2d_mask(5, 7, 3, 5))


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call",
    [
        lambda: full_mask(0, 4),
        lambda: causal_mask(4, -1),
        lambda: window_mask(4, 4, 0),
        lambda: window_mask(4, 4, 2, sink=-1),
        lambda: window_mask(4, 4, 2.5),
        lambda: block_sparse_mask(10, 10, 4, 4, [[0], [1]]),  # 3 query blocks expected
        lambda: block_sparse_mask(10, 10, 4, 4, [[0], [3], [1]]),  # key block 3 out of range
        lambda: block_sparse_mask(10, 10, 4, 4, np.ones((2, 3), dtype=bool)),
        lambda: block_sparse_mask(10, 10, 0, 4, [[0]]),
        lambda: expand_block_grid(np.ones((3, 2), dtype=bool), 10, 10, 4, 4),
        lambda: block_sparse_from_density(10, 10, 4, 4, 1.5),
        lambda: block_sparse_from_density(10, 10, 4, 4, -0.1),
        lambda: neighborhood_2d_mask(4, 4, 2, 3),  # even window
        lambda: neighborhood_3d_mask(2, 4, 4, 3, 3, 4),
        lambda: neighborhood_2d_mask(0, 4, 3, 3),
    ],
    ids=["full-M0", "causal-Nneg", "window0", "sink-neg", "window-float", "blocks-len",
         "blocks-range", "grid-shape", "block-m0", "expand-shape", "density-high", "density-neg",
         "nb2d-even", "nb3d-even", "nb2d-grid0"],
)
def test_bad_arguments_raise(call):
    with pytest.raises(ValueError):
        call()
