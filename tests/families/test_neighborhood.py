"""The neighborhood family (generalized neighborhood attention, NATTEN / GNA): its semantics, its
exact tile counters, its executable form against the numpy reference, golden counts, properties."""
import dataclasses
import math

import numpy as np
import pytest

import attnsim
from attnsim.errors import MappingError, WorkloadError
from attnsim.mapping.kernel import default_mapping
from attnsim.model.bounds import speed_of_light
from attnsim.model.families.neighborhood import default_tiles, plan
from attnsim.workload.families import neighborhood as nb
from attnsim.workload.masks import (axis_windows, neighborhood_2d_mask, neighborhood_3d_mask, neighborhood_mask,
                                    tile_order)
from attnsim.workload.reference import attention_reference
from attnsim.workload.spec import Mask
from attnsim.workload import tiles as T

H100 = attnsim.load_arch("h100_sxm5_80gb")


def nbhd(grid, batch=1, heads=2, head_dim=8, **params):
    return attnsim.attention("neighborhood", batch=batch, heads=heads, seq=math.prod(grid), head_dim=head_dim,
                             params={"grid": list(grid), **params})


# ---------------------------------------------------------------- semantics (NATTEN's Flex mask_mod)

def test_axis_windows_by_hand():
    # L=9, w=3: the shifted window keeps 3 keys at the borders, the clipped one keeps 2
    assert [list(x) for x in axis_windows(9, 3, border="shift")] == [[0, 0, 1, 2, 3, 4, 5, 6, 6],
                                                                     [2, 2, 3, 4, 5, 6, 7, 8, 8]]
    assert [list(x) for x in axis_windows(9, 3, border="clip")] == [[0, 0, 1, 2, 3, 4, 5, 6, 7],
                                                                    [1, 2, 3, 4, 5, 6, 7, 8, 8]]
    # stride 3 = window: blocked windows {0,1,2}, {3,4,5}, {6,7,8} (leader = group center)
    assert [list(x) for x in axis_windows(9, 3, stride=3)] == [[0, 0, 0, 3, 3, 3, 6, 6, 6],
                                                               [2, 2, 2, 5, 5, 5, 8, 8, 8]]
    # even window 4: 2 keys left of the center, 1 right (NATTEN: right = w // 2 - 1)
    assert [list(x) for x in axis_windows(9, 4)] == [[0, 0, 0, 1, 2, 3, 4, 5, 5],
                                                     [3, 3, 3, 4, 5, 6, 7, 8, 8]]
    # dilation 2 on L=9: sub-grids {0,2,4,6,8} (5) and {1,3,5,7} (4); window 3 in each
    assert [list(x) for x in axis_windows(9, 3, dilation=2)] == [[0, 1, 0, 1, 2, 3, 4, 3, 4],
                                                                 [4, 5, 4, 5, 6, 7, 8, 7, 8]]
    # causal, stride 2: leader = last query of the group (1, 3, 5, 7); keys leader-w+1 .. the query
    assert [list(x) for x in axis_windows(8, 3, stride=2, causal=True)] == [[0, 0, 1, 1, 3, 3, 5, 5],
                                                                            [0, 1, 2, 3, 4, 5, 6, 7]]


def test_clipped_odd_undilated_equals_the_original_masks():
    np.testing.assert_array_equal(neighborhood_mask((9, 11), (5, 3), border="clip"), neighborhood_2d_mask(9, 11, 5, 3))
    np.testing.assert_array_equal(neighborhood_mask((3, 5, 7), (3, 3, 5), border="clip"),
                                  neighborhood_3d_mask(3, 5, 7, 3, 3, 5))


@pytest.mark.parametrize("grid,win,dil,stride", [((13, 20), (5, 7), (2, 1), (1, 3)), ((7, 9, 11), (3, 4, 5), (2, 2, 1), (3, 1, 5)),
                                                  ((257,), (31,), (3,), (7,))],
                         ids=["G13x20-W5x7-D2x1-S1x3", "G7x9x11-W3x4x5-D2x2x1-S3x1x5", "G257-W31-D3-S7"])
def test_keys_per_axis_never_exceed_the_window(grid, win, dil, stride):
    """Dilation and stride never widen a window: at most w keys per axis, exactly w when shifted
    and not causal, so every query sees prod(w) keys; causal axes see fewer."""
    shifted = neighborhood_mask(grid, win, dil, stride).sum(axis=1)
    assert (shifted == math.prod(win)).all()
    for causal in ([True] + [False] * (len(grid) - 1), [False] * len(grid)):
        clipped = neighborhood_mask(grid, win, dil, stride, causal, border="clip").sum(axis=1)
        assert (clipped >= 1).all() and (clipped <= math.prod(win)).all()
    assert neighborhood_mask(grid, win, dil, stride, [True] * len(grid)).sum(axis=1).max() <= math.prod(win)


def test_stride_equal_to_window_is_blocked_attention():
    m = neighborhood_mask((12, 15), (4, 5), stride=(4, 5))
    r, c = np.divmod(np.arange(180), 15)
    block = (r // 4) * 3 + c // 5
    np.testing.assert_array_equal(m, block[:, None] == block[None, :])


def test_tile_order_is_natten_token_permute():
    # grid 4 x 6, tile 2 x 3: the first box is rows 0-1 x cols 0-2
    assert list(tile_order((4, 6), (2, 3))[:12]) == [0, 1, 2, 6, 7, 8, 3, 4, 5, 9, 10, 11]
    # L=5, tile 2, dilation 2: padded to 8 = 2 (tile x dilation) x 2; group 0 then group 1, -1 = padding
    assert list(tile_order((5,), (2,), (2,))) == [0, 2, 4, -1, 1, 3, -1, -1]


# ---------------------------------------------------------------- exact tile counters

def _brute(mask_el, qtok, ktok, bp, bc):
    """Tile statistics of the element mask laid out in a tile order (padding sees nothing)."""
    pm = np.zeros((qtok.size, ktok.size), dtype=bool)
    qi, ki = qtok >= 0, ktok >= 0
    pm[np.ix_(qi, ki)] = mask_el[np.ix_(qtok[qi], ktok[ki])]
    per_row, full = [], 0
    for i in range(0, qtok.size, bp):
        row = [pm[i:i + bp, j:j + bc] for j in range(0, ktok.size, bc)]
        per_row.append(sum(t.any() for t in row))
        full += sum(t.all() for t in row)
    return sum(per_row), full, max(per_row), min(per_row), len(per_row), int(pm.sum())


CASES = {  # non-power-of-two grids, ragged edge tiles; (grid, window, dilation, stride, causal, border, q_tile, kv_tile)
    "G13x20-W5x7-nd4x8/8x4": ((13, 20), (5, 7), (), (), (), "shift", (4, 8), (8, 4)),
    "G13x20-W5x8-D2x1-S3x4-nd3x5/4x4": ((13, 20), (5, 8), (2, 1), (3, 4), (), "shift", (3, 5), (4, 4)),
    "G13x20-W7x5-causalT-clip-nd4x4/2x8": ((13, 20), (7, 5), (), (2, 1), (True, False), "clip", (4, 4), (2, 8)),
    "G7x9x11-W3x5x4-nd2x4x3/2x2x4": ((7, 9, 11), (3, 5, 4), (), (), (), "shift", (2, 4, 3), (2, 2, 4)),
    "G7x9x11-W3x3x5-D2x3x2-S1x2x5-nd1x2x8/2x2x2": ((7, 9, 11), (3, 3, 5), (2, 3, 2), (1, 2, 5), (), "shift",
                                                   (1, 2, 8), (2, 2, 2)),
    "G7x9x11-W5x3x3-causalTFF-S2x1x3-nd2x3x3/4x1x4": ((7, 9, 11), (5, 3, 3), (), (2, 1, 3), (True, False, False),
                                                       "shift", (2, 3, 3), (4, 1, 4)),
    "G257-W31-D3-S5-nd16/24": ((257,), (31,), (3,), (5,), (), "shift", (16,), (24,)),
    "G100-W9-causal-nd7/13": ((100,), (9,), (), (), (True,), "shift", (7,), (13,)),
}


def _mask(grid, win, dil, stride, causal, border, qt=(), kt=()):
    return Mask("neighborhood", grid=grid, win=win, dilation=dil, stride=stride, axis_causal=causal, border=border,
                q_tile=qt, kv_tile=kt)


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_box_closed_form_equals_brute_force_in_tile_order(case):
    grid, win, dil, stride, causal, border, qt, kt = case
    m = _mask(grid, win, dil, stride, causal, border, qt, kt)
    el = neighborhood_mask(grid, win, dil, stride, causal, border)
    d = dil or (1,) * len(grid)
    bp, bc = math.prod(qt), math.prod(kt)
    want = _brute(el, tile_order(grid, qt, d), tile_order(grid, kt, d), bp, bc)
    s = T.box_tile_stats(m)
    assert (s.tiles, s.full_tiles, s.max_row_tiles, s.min_row_tiles, s.rows, s.allowed) == want
    assert s.allowed == el.sum()  # padding adds no allowed pair
    # the general counter on the box layout agrees, and so does its slow twin
    tiles, full, lmax, lmin, rows, allowed = T.neighborhood_counts_many(m, bp, (bc,))
    assert (tiles[0], full[0], lmax[0], lmin[0], rows, allowed) == want
    shape, lo, hi, step, base = T.window_tables(m)
    qtok, kpos, pk = T.layouts(m)
    rt, rf, ra = T.window_counts_reference(shape, lo, hi, step, base, qtok, kpos, pk, bp, bc)
    assert (rt.sum(), rf.sum(), rt.max(), rt.min(), len(rt), ra) == want


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
@pytest.mark.parametrize("bp,bns", [(1, (1, 7, 64)), (16, (16, 13, 100)), (48, (48, 5))], ids=["bp1", "bp16", "bp48"])
def test_flat_counter_equals_twin_and_brute_force(case, bp, bns):
    grid, win, dil, stride, causal, border, _, _ = case
    m = _mask(grid, win, dil, stride, causal, border)
    el = neighborhood_mask(grid, win, dil, stride, causal, border)
    ident = np.arange(el.shape[0])
    got = T.neighborhood_counts_many(m, bp, bns)
    shape, lo, hi, step, base = T.window_tables(m)
    for j, bc in enumerate(bns):
        want = _brute(el, ident, ident, bp, bc)  # ragged last tiles: full when every real element is allowed
        assert (got[0][j], got[1][j], got[2][j], got[3][j], got[4], got[5]) == want, bc
        rt, rf, ra = T.window_counts_reference(shape, lo, hi, step, base, ident, ident, ident.size, bp, bc)
        assert (rt.sum(), rf.sum(), ra) == (want[0], want[1], want[5])


def test_nd_tiles_of_whole_rows_equal_flat_tiling():
    """Boxes spanning every axis but the first are runs of consecutive row-major tokens."""
    grid, win = (12, 10), (5, 3)
    s_nd = T.box_tile_stats(_mask(grid, win, (), (1, 2), (), "shift", (2, 10), (3, 10)))
    s_flat = T.explicit_tile_stats(_mask(grid, win, (), (1, 2), (), "shift"), 120, 120, 20, 30)
    assert s_nd == s_flat
    s_nd3 = T.box_tile_stats(_mask((6, 4, 5), (3, 3, 3), (), (), (), "shift", (2, 4, 5), (3, 4, 5)))
    s_flat3 = T.explicit_tile_stats(_mask((6, 4, 5), (3, 3, 3), (), (), (), "shift"), 120, 120, 40, 60)
    assert s_nd3 == s_flat3


def test_clipped_masks_keep_the_original_counter():
    """A mask with none of the new fields is counted exactly as before (the lower-bound tests pin it)."""
    m = Mask("neighborhood", grid=(33, 40), win=(7, 13))
    s = T.explicit_tile_stats(m, 1320, 1320, 64, 128)
    tiles, full, lmax, lmin, rows, allowed = T.neighborhood_counts(np.array([33, 40]), np.array([3, 6]), 64, [128])
    assert (s.tiles, s.full_tiles, s.max_row_tiles, s.rows, s.allowed) == (tiles[0], full[0], lmax[0], rows, allowed)


# ---------------------------------------------------------------- numerics: reference vs executable form

NUMERIC = {
    "B1-H2-G7x9-W3x5-nd4x4/2x8": ((7, 9), {"window": [3, 5]}, (4, 4), (2, 8)),
    "B2-H2-G10x10-W5x4-D2x1-S1x2-nd2x8/4x4": ((10, 10), {"window": [5, 4], "dilation": [2, 1], "stride": [1, 2]},
                                              (2, 8), (4, 4)),
    "B1-H3-G257-W33-S4-causal-nd16/16": ((257,), {"window": [33], "stride": [4], "causal": [True]}, (16,), (16,)),
    "B1-H2-G3x5x7-W3x3x5-causalTFF-nd1x4x4/2x2x4": ((3, 5, 7), {"window": [3, 3, 5], "causal": [True, False, False]},
                                                     (1, 4, 4), (2, 2, 4)),
}


@pytest.mark.parametrize("tiling", ["nd", "flat"])
@pytest.mark.parametrize("case", list(NUMERIC.values()), ids=list(NUMERIC))
def test_tiled_executable_form_equals_the_reference(case, tiling):
    grid, params, qt, kt = case
    w = nbhd(grid, batch=2, heads=2, head_dim=8, **params)
    rng = np.random.default_rng(7)
    q, k, v = (rng.standard_normal((2, 2, w.seq_q, 8)) for _ in range(3))
    want = nb.reference(q, k, v, w)
    got, stats = nb.tiled(q, k, v, w, qt, kt, tiling)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # the replay's exact tile statistics are the counter's (closed form for boxes)
    mask = nb.nbhd_mask(w, qt, kt) if tiling == "nd" else nb.nbhd_mask(w)
    s = T.explicit_tile_stats(mask, w.seq_q, w.seq_kv, math.prod(qt), math.prod(kt))
    assert (stats["tiles_visited"], stats["tiles_full"], stats["elements_allowed"]) == (s.tiles, s.full_tiles, s.allowed)
    assert (max(stats["per_row_tiles"]), min(stats["per_row_tiles"]), len(stats["per_row_tiles"])) == \
        (s.max_row_tiles, s.min_row_tiles, s.rows)
    assert s.allowed == nb.allowed_pairs(w)


def test_window_of_the_whole_grid_is_dense_attention():
    w = nbhd((7, 9), heads=2, head_dim=8)  # window defaults to the grid (NATTEN's default)
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal((1, 2, 63, 8)) for _ in range(3))
    np.testing.assert_allclose(nb.tiled(q, k, v, w, (4, 4), (2, 8))[0], attention_reference(q, k, v),
                               rtol=1e-12, atol=1e-12)
    assert nb.element_mask(w).all()


# ---------------------------------------------------------------- golden counts

def test_golden_h100_2d_32x32_window_7x7_nd_and_flat():
    """grid 32 x 32, window 7 x 7 (shifted), 4 heads, head dim 64 on H100: NATTEN's Hopper tiles for
    head dim 64 are q (8, 8), kv (16, 8), so 64 x 128 tiles and 16 query x 8 key tiles per head.

    nd, per axis (union of the query block's windows -> key blocks):
      rows, tq 8 / tk 16: blocks 0..3 see keys [0,10] [5,18] [13,26] [21,31] -> 1, 2, 2, 1 = 6
      cols, tq 8 / tk 8:  the same key ranges over 8-key blocks          -> 2, 3, 3, 2 = 10
      tiles = 6 x 10 = 60; no 16-key block fits inside a 7-key window, so no full tile;
      max per query box 2 x 3 = 6, min 1 x 2 = 2
    flat: a query tile is 2 grid rows, a key tile 4 rows; rows 2i, 2i+1 see rows [2i-3, 2i+4]
      (shifted to [0, 6] / [25, 31] at the borders): 3 key tiles, 2 at tiles 0, 1, 14, 15 -> 44
    allowed = 1024 x 49 = 50176 (every query sees exactly 7 x 7 keys)
    """
    counts = {}
    for tiling in ("nd", "flat"):
        w = attnsim.attention("neighborhood", heads=4, seq=1024, head_dim=64,
                              params={"grid": [32, 32], "window": [7, 7], "tiling": tiling})
        r = attnsim.predict(H100, w)
        c = r.counts
        assert (c["query tiles"], c["key tiles"], c["dense tiles"], c["allowed pairs"]) == (16, 8, 128, 50176)
        assert r.useful_flops == 2 * 4 * 50176 * (64 + 64)
        # every tile computes 64 x 128 scores and outputs: 2 x 64 x 128 x (64 + 64) FLOPs per (head, tile)
        assert r.executed_flops == 4 * c["tiles (non-empty)"] * 2 * 64 * 128 * 128
        # small enough for L2: HBM reads Q, K, V and writes O once: 4 x 1024 x 64 x 2 B x 4 tensors
        assert r.traffic_bytes["HBM"] == 4 * 1024 * 64 * 2 * 4
        # L2 -> SM: Q and O once, K and V once per visited tile: 4 heads x tiles x 128 x (64 + 64) x 2 B
        assert r.traffic_bytes["L2"] == 2 * 4 * 1024 * 64 * 2 + 4 * c["tiles (non-empty)"] * 128 * 128 * 2
        counts[tiling] = c
    nd, flat = counts["nd"], counts["flat"]
    assert (nd["tiles (non-empty)"], nd["full tiles"], nd["max tiles per query tile"],
            nd["min tiles per query tile"]) == (60, 0, 6, 2)
    assert (flat["tiles (non-empty)"], flat["full tiles"], flat["max tiles per query tile"]) == (44, 0, 3)
    assert nd["speedup bound (tiles)"] == 128 / 60 and flat["speedup bound (tiles)"] == 128 / 44
    assert nd["wasted fraction"] == 1 - 50176 / (60 * 64 * 128)
    assert nd["speedup bound (elements)"] == 1024 * 1024 / 50176


def test_golden_1d_32k_window_2048_stride_256_is_fully_block_sparse():
    """NATTEN's profiler docs: on a 32K sequence with window 2048, stride 256 is the smallest stride
    giving a fully block-sparse mask at Hopper's 128 x 128 tiles. With stride 256 each group's leader
    is 256 g + 128 and its window starts at 256 g - 896 = 128 (2 g - 7): 16 aligned full key tiles for
    each of the 256 query tiles. With stride 128 the window starts at 128 g - 960, misaligned."""
    s256 = attnsim.predict(H100, nbhd((32768,), heads=1, head_dim=128, window=[2048], stride=[256])).counts
    assert (s256["tiles (non-empty)"], s256["full tiles"], s256["wasted fraction"]) == (256 * 16, 256 * 16, 0.0)
    assert s256["speedup bound (tiles)"] == 16.0
    s128 = attnsim.predict(H100, nbhd((32768,), heads=1, head_dim=128, window=[2048], stride=[128])).counts
    assert s128["wasted fraction"] > 0
    # stride 1: 8 query tiles at each border see the 16 tiles of [0, 2047] (or the last 2048 keys),
    # every other query tile spans 17 key tiles: 2 x 8 x 16 + 240 x 17
    s1 = attnsim.predict(H100, nbhd((32768,), heads=1, head_dim=128, window=[2048])).counts
    assert s1["tiles (non-empty)"] == 2 * 8 * 16 + 240 * 17


# ---------------------------------------------------------------- the plan

def test_plan_structure_and_default_tiles(a100):
    w = nbhd((48, 40), heads=8, head_dim=128, window=[13, 13])
    p = plan(H100, w)
    assert len(p.ops) == 1 and p.ops[0].mapping.name == "flash3"
    assert (p.ops[0].mapping.block_m, p.ops[0].mapping.block_n) == (128, 128)  # Hopper FNA (16, 8) / (16, 8)
    assert p.ops[0].workload.mask.q_tile == (16, 8)
    assert default_tiles(a100, w, 2) == ((8, 8), (8, 8))  # CUTLASS 2.x FNA default
    assert plan(a100, w).ops[0].mapping.name == "flash2"
    assert default_tiles(attnsim.load_arch("fusemax_like"), w, 3) == ((4, 8, 8), (4, 8, 8))
    assert default_tiles(H100, nbhd((64,), head_dim=64), 1) == ((64,), (128,))
    perm = plan(H100, nbhd((48, 40), heads=8, head_dim=128, window=[13, 13], token_permute=True))
    assert [op.name for op in perm.ops] == ["token permute Q", "token permute K", "token permute V",
                                            "neighborhood attention", "token unpermute O"]
    assert len(plan(H100, nbhd((4096,), heads=8, head_dim=128, window=[129], token_permute=True)).ops) == 1


@pytest.mark.parametrize("arch", ["h100_sxm5_80gb", "a100_sxm4_80gb", "fusemax_like"])
def test_useful_flops_equal_the_cascade(arch):
    w = nbhd((13, 20), heads=4, head_dim=64, window=[5, 7], dilation=[2, 1], stride=[1, 3])
    r = attnsim.predict(arch, w)
    assert r.useful_flops == w.cascade.ops(nb.extents(w), nb.allowed_pairs(w))["mma"]
    assert r.counts["allowed pairs"] == nb.element_mask(w).sum()


@pytest.mark.parametrize("arch", ["h100_sxm5_80gb", "a100_sxm4_80gb", "fusemax_like"])
@pytest.mark.parametrize("tiling", ["nd", "flat"])
def test_window_of_the_whole_grid_predicts_dense(arch, tiling):
    """window = grid (shifted) is dense attention: at the same kernel mapping the prediction is the dense one."""
    w = attnsim.attention("neighborhood", batch=2, heads=8, seq=64 * 64, head_dim=128,
                          params={"grid": [64, 64], "tiling": tiling})
    r = attnsim.predict(arch, w)
    op = plan(attnsim.load_arch(arch), w).ops[0]
    dense = attnsim.predict(arch, attnsim.attention("softmax", batch=2, heads=8, seq=64 * 64, head_dim=128), op.mapping)
    assert r.latency_s == dense.latency_s
    assert (r.useful_flops, r.executed_flops) == (dense.useful_flops, dense.executed_flops)
    assert r.counts["speedup bound (tiles)"] == 1.0 and r.counts["wasted fraction"] == 0.0


@pytest.mark.parametrize("params", [{"window": [9, 9]}, {"window": [9, 9], "tiling": "flat"},
                                    {"window": [11, 7], "dilation": [2, 2], "stride": [3, 1]}],
                         ids=["nd", "flat", "dilated-strided"])
def test_latency_at_or_above_speed_of_light_and_more_bandwidth_never_slower(params):
    w = nbhd((40, 36), batch=2, heads=16, head_dim=128, **params)
    r = attnsim.predict(H100, w)
    view = plan(H100, w).ops[0].workload
    assert r.latency_s >= speed_of_light(H100, view, r.counts["allowed pairs"])["max"] * (1 - 1e-12)
    for level in ("HBM", "L2", "SMEM"):
        lv = H100.level(level)
        faster = H100.with_level(level, bandwidth_bytes_per_s=lv.bandwidth_bytes_per_s * 2)
        assert attnsim.predict(faster, w).latency_s <= r.latency_s * (1 + 1e-12)


def test_nd_mask_in_the_mapper_counts_the_box_layout():
    """The mapper's statistics (model.lower_bounds) of an nd-tiled mask are those of its box order."""
    from attnsim.model.lower_bounds import block_stats_many
    m = _mask((13, 20), (5, 7), (), (), (), "shift", (4, 8), (8, 4))
    w = attnsim.attention("softmax", heads=1, seq=260, head_dim=16).with_changes(mask=m)
    got = block_stats_many(w, 32, (32, 16))
    s = T.box_tile_stats(m)
    assert (got[0][0], got[1][0], got[3][0], got[5][0]) == (s.tiles, s.max_row_tiles, s.allowed, s.full_tiles)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("params,key", [
    ({"grid": [30, 30], "window": [5, 5]}, "params.grid"),  # 900 tokens, seq 1024
    ({"grid": [32, 32], "window": [5]}, "params.window"),
    ({"grid": [32, 32], "window": [5, 5], "stride": [6, 1]}, "params.stride"),
    ({"grid": [32, 32], "window": [17, 5], "dilation": [2, 1]}, "params.window"),
    ({"grid": [32, 32], "window": [4, 5], "border": "clip"}, "params.window"),
    ({"grid": [32, 32], "window": [5, 5], "causal": [True]}, "params.causal"),
    ({"grid": [32, 32], "window": [5, 5], "q_tile": [16, 0]}, "params.q_tile"),
], ids=["grid-tokens", "window-axes", "stride-gt-window", "window-x-dilation", "clip-even", "causal-axes", "tile-0"])
def test_bad_params_name_the_key(params, key):
    with pytest.raises(WorkloadError) as e:
        attnsim.attention("neighborhood", heads=2, seq=1024, head_dim=64, params=params)
    assert any(p.key == key for p in e.value.problems), str(e.value)


def test_a_mapping_with_other_tiles_than_the_boxes_is_an_error():
    w = nbhd((32, 32), heads=2, head_dim=128, window=[7, 7])
    m = default_mapping("flash3", H100, w).with_changes(block_m=64)
    with pytest.raises(MappingError, match="q_tile"):
        attnsim.predict(H100, w, m)
    # under flat tiling a mapping's own tiles are simply used
    assert attnsim.predict(H100, nbhd((32, 32), heads=2, head_dim=128, window=[7, 7], tiling="flat"), m).latency_s > 0


def test_mask_fields_are_checked_for_softmax_workloads():
    w = attnsim.attention("softmax", heads=1, seq=260, head_dim=16)
    with pytest.raises(WorkloadError, match="stride"):
        w.with_changes(mask=_mask((13, 20), (5, 7), (), (6, 1), (), "shift"))
    bad_tiles = dataclasses.replace(_mask((13, 20), (5, 7), (), (), (), "shift"), q_tile=(4, 4))
    with pytest.raises(WorkloadError, match="kv_tile"):
        w.with_changes(mask=bad_tiles)


def test_docstring_pictures():
    """The family docstring's 9 x 9 pictures, from the mask itself."""
    def keys(q, **kw):
        row = neighborhood_mask((9, 9), (3, 3), **kw)[q[0] * 9 + q[1]].reshape(9, 9)
        return sorted(zip(*np.nonzero(row)))
    assert keys((4, 4), dilation=(2, 2)) == [(r, c) for r in (2, 4, 6) for c in (2, 4, 6)]
    assert keys((3, 3), stride=(3, 3)) == [(r, c) for r in (3, 4, 5) for c in (3, 4, 5)]
    assert keys((0, 0)) == [(r, c) for r in (0, 1, 2) for c in (0, 1, 2)]


# ---------------------------------------------------------------- the stated claims (docs/families/neighborhood.md)

def test_claim_2d_quarter_density_speedup_on_h100():
    """docs/families/neighborhood.md: 2D neighborhood attention, 128 x 128 grid, window 63 x 63
    (density 3969 / 16384 = 0.2422), 24 heads, head dim 128, bf16, on h100_sxm5_80gb: predicted
    3.34x over dense FlashAttention-3 with nd tiles (16, 8) / (16, 8) (tile bound 3.35x) and 1.99x with
    flat 128 x 128 tiles (tile bound 2.03x); element-level bound 4.13x."""
    dense = attnsim.predict(H100, attnsim.attention("softmax", heads=24, seq=16384, head_dim=128))
    got = {}
    for tiling in ("nd", "flat"):
        w = attnsim.attention("neighborhood", heads=24, seq=16384, head_dim=128,
                              params={"grid": [128, 128], "window": [63, 63], "tiling": tiling})
        r = attnsim.predict(H100, w)
        got[tiling] = (dense.latency_s / r.latency_s, r.counts)
    assert got["nd"][1]["density"] == 3969 / 16384
    assert got["nd"][0] == pytest.approx(3.34, abs=0.005) and got["flat"][0] == pytest.approx(1.99, abs=0.005)
    assert got["nd"][1]["speedup bound (tiles)"] == pytest.approx(3.35, abs=0.005)
    assert got["flat"][1]["speedup bound (tiles)"] == pytest.approx(2.03, abs=0.005)
    assert got["nd"][1]["speedup bound (elements)"] == 16384 / 3969
    # below each bound, and nd tiles waste less than flat ones (0.189 vs 0.508 of the computed elements)
    for tiling in ("nd", "flat"):
        assert got[tiling][0] <= got[tiling][1]["speedup bound (tiles)"]
    assert got["nd"][1]["wasted fraction"] == pytest.approx(0.1893, abs=5e-5)
    assert got["flat"][1]["wasted fraction"] == pytest.approx(0.5078, abs=5e-5)


@pytest.mark.parametrize("name,ms", [("neighborhood_2d_128x128_w63", 1.461), ("neighborhood_flux_256x256_w80_s16", 7.515),
                                     ("neighborhood_hunyuan_30x48x80_w18x24x24", 44.43)])
def test_workload_presets_load_and_predict(name, ms):
    """The example workloads (their predicted kernel times are quoted in the docs beside NATTEN's
    measured H100 times: 7.914 ms for the FLUX GNA case, 79.043 ms for the Hunyuan NA case)."""
    w = attnsim.load_workload(name)
    assert w.family == "neighborhood"
    assert attnsim.predict(H100, w).latency_s * 1e3 == pytest.approx(ms, rel=1e-3)
