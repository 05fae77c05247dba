"""Tiled FlashAttention, split-KV decode and unfused attention agree with the dense reference."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim.workload.masks import (
    block_sparse_from_density,
    block_sparse_mask,
    causal_mask,
    expand_block_grid,
    full_mask,
    neighborhood_2d_mask,
    neighborhood_3d_mask,
    window_mask,
)
from attnsim.workload.reference import (
    attention_reference,
    flash_decode_split_kv,
    flash_forward_tiled,
    unfused_reference,
)

TOL = dict(rtol=1e-10, atol=1e-12)


def make_qkv(B, H, Hkv, M, N, D, F, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((B, H, M, D)).astype(dtype)
    k = rng.standard_normal((B, Hkv, N, D)).astype(dtype)
    v = rng.standard_normal((B, Hkv, N, F)).astype(dtype)
    return q, k, v


def naive_attention(q, k, v, mask, scale):
    """Row-by-row loops, straight from the definition (independent of the vectorised code)."""
    B, H, M, D = q.shape
    Hkv, N, F = k.shape[1], k.shape[2], v.shape[3]
    G = H // Hkv
    o = np.zeros((B, H, M, F))
    for b in range(B):
        for h in range(H):
            mk = mask if mask.ndim == 2 else mask[h]
            for m in range(M):
                keys = [n for n in range(N) if mk[m, n]]
                if not keys:
                    continue
                s = [scale * float(q[b, h, m] @ k[b, h // G, n]) for n in keys]
                mx = max(s)
                w = [math.exp(x - mx) for x in s]
                o[b, h, m] = sum(wi * v[b, h // G, n] for wi, n in zip(w, keys)) / sum(w)
    return o


# id -> (B, H, Hkv, M, N, mask)
CASES = {
    "full-B2-H6-G3-M100-N257": (2, 6, 2, 100, 257, full_mask(100, 257)),
    "causal-B1-H6-G3-M63-N257": (1, 6, 2, 63, 257, causal_mask(63, 257)),
    "causal-B2-H4-MQA-M100-N100": (2, 4, 1, 100, 100, causal_mask(100, 100)),
    "causal-B1-H3-MHA-M100-N63": (1, 3, 3, 100, 63, causal_mask(100, 63)),  # first 37 rows empty
    "window-B1-H6-G3-M100-N100-W17": (1, 6, 2, 100, 100, window_mask(100, 100, 17)),
    "window-sink-B2-H6-G3-M63-N257-W33-S5": (2, 6, 2, 63, 257, window_mask(63, 257, 33, sink=5)),
    "window-noncausal-B1-H4-MQA-M100-N100-W9": (1, 4, 1, 100, 100, window_mask(100, 100, 9, causal=False)),
    "blocksparse-B1-H6-G3-M100-N257": (
        1, 6, 2, 100, 257,
        expand_block_grid(block_sparse_from_density(100, 257, 16, 32, 0.4, causal=True), 100, 257, 16, 32, causal=True),
    ),
    "blocksparse-list-B1-H2-M63-N100": (
        1, 2, 2, 63, 100, block_sparse_mask(63, 100, 20, 30, [[0, 3], [], [1], [2, 3]]),  # empty query block
    ),
    "nbhd2d-B1-H6-G3-G9x11-W5x3": (1, 6, 2, 99, 99, neighborhood_2d_mask(9, 11, 5, 3)),
    "nbhd3d-B1-H4-MQA-G3x5x7-W3x3x5": (1, 4, 1, 105, 105, neighborhood_3d_mask(3, 5, 7, 3, 3, 5)),
}
BLOCKS = [(16, 16), (17, 33), (64, 7), (100, 257)]
BLOCK_IDS = [f"Br{a}-Bc{b}" for a, b in BLOCKS]


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
@pytest.mark.parametrize("block_m,block_n", BLOCKS, ids=BLOCK_IDS)
def test_flash_tiled_equals_reference(case, block_m, block_n):
    B, H, Hkv, M, N, mask = CASES[case]
    q, k, v = make_qkv(B, H, Hkv, M, N, D=24, F=40)
    ref = attention_reference(q, k, v, mask)
    o, stats = flash_forward_tiled(q, k, v, mask, block_m, block_n)
    assert o.shape == (B, H, M, 40) and o.dtype == np.float64
    np.testing.assert_allclose(o, ref, **TOL)
    assert stats["elements_allowed"] == mask.sum()
    assert stats["tiles_visited"] == stats["tiles_full"] + stats["tiles_partial"] == sum(stats["per_row_tiles"])
    assert len(stats["per_row_tiles"]) == math.ceil(M / block_m)


@pytest.mark.parametrize(
    "B,H,Hkv,M,N,mask",
    [
        (2, 6, 2, 7, 9, causal_mask(7, 9)),
        (1, 4, 1, 9, 7, causal_mask(9, 7)),
        (1, 6, 3, 8, 13, window_mask(8, 13, 4, sink=2)),
        (1, 3, 3, 5, 6, block_sparse_mask(5, 6, 2, 3, [[0], [], [0, 1]])),
    ],
    ids=["causal-B2-H6-G3-M7-N9", "causal-B1-H4-MQA-M9-N7", "window-sink-B1-H6-G2-M8-N13", "blocksparse-B1-H3-M5-N6"],
)
def test_reference_equals_naive_loops(B, H, Hkv, M, N, mask):
    q, k, v = make_qkv(B, H, Hkv, M, N, D=5, F=3, seed=1)
    np.testing.assert_allclose(attention_reference(q, k, v, mask), naive_attention(q, k, v, mask, 1 / math.sqrt(5)), **TOL)
    np.testing.assert_allclose(attention_reference(q, k, v, mask, scale=0.3), naive_attention(q, k, v, mask, 0.3), **TOL)


def test_gqa_head_mapping_uses_h_div_g():
    """Query head h must read KV head h // G: make KV heads distinguishable through V."""
    B, H, Hkv, M, N = 1, 6, 2, 3, 5
    q, k, v = make_qkv(B, H, Hkv, M, N, D=4, F=2)
    v[:, 0], v[:, 1] = 1.0, 2.0  # constant V per KV head -> output equals that constant
    o = attention_reference(q, k, v)
    np.testing.assert_allclose(o[0, :, 0, 0], [1, 1, 1, 2, 2, 2], **TOL)
    o_t, _ = flash_forward_tiled(q, k, v, None, 2, 2)
    np.testing.assert_allclose(o_t, o, **TOL)


def test_per_head_masks():
    B, H, Hkv, M, N = 2, 6, 2, 63, 100
    masks = np.stack([causal_mask(M, N), window_mask(M, N, 9), full_mask(M, N),
                      window_mask(M, N, 20, sink=3), causal_mask(M, N), window_mask(M, N, 5, causal=False)])
    q, k, v = make_qkv(B, H, Hkv, M, N, D=16, F=16)
    ref = attention_reference(q, k, v, masks)
    for h in range(H):  # each head equals the single-mask reference for its own mask
        np.testing.assert_allclose(ref[:, h], attention_reference(q, k, v, masks[h])[:, h], **TOL)
    o, stats = flash_forward_tiled(q, k, v, masks, 17, 33)
    np.testing.assert_allclose(o, ref, **TOL)
    assert stats["elements_allowed"] == masks.sum()  # summed over heads
    singles = [flash_forward_tiled(q, k, v, masks[h], 17, 33)[1] for h in range(H)]
    assert stats["tiles_visited"] == sum(s["tiles_visited"] for s in singles)
    assert stats["per_row_tiles"] == [sum(r) for r in zip(*(s["per_row_tiles"] for s in singles))]
    np.testing.assert_allclose(flash_decode_split_kv(q, k, v, 3, masks), ref, **TOL)


def test_empty_rows_are_zero_everywhere():
    M, N = 100, 63  # causal, M > N: rows 0..36 see no key
    mask = causal_mask(M, N)
    q, k, v = make_qkv(1, 6, 2, M, N, D=8, F=8)
    outs = [
        attention_reference(q, k, v, mask),
        flash_forward_tiled(q, k, v, mask, 16, 16)[0],
        flash_decode_split_kv(q, k, v, 4, mask),
        unfused_reference(q, k, v, mask)[0],
    ]
    for o in outs:
        assert np.isfinite(o).all()
        assert not o[:, :, :37].any() and o[:, :, 37:].any(axis=-1).all()


def test_large_logits_are_stable():
    """Online softmax must not overflow when scores are ~1e3 (exp would be inf without max-subtraction)."""
    q, k, v = make_qkv(1, 6, 2, 63, 100, D=16, F=8)
    mask = window_mask(63, 100, 20, sink=2)
    ref = attention_reference(q, k, v, mask, scale=100.0)
    assert np.isfinite(ref).all()
    np.testing.assert_allclose(flash_forward_tiled(q, k, v, mask, 16, 7, scale=100.0)[0], ref, **TOL)
    np.testing.assert_allclose(flash_decode_split_kv(q, k, v, 7, mask, scale=100.0), ref, **TOL)


def test_float32_inputs_are_computed_in_float64():
    q, k, v = make_qkv(1, 6, 2, 63, 100, D=16, F=8, dtype=np.float32)
    mask = causal_mask(63, 100)
    ref = attention_reference(q, k, v, mask)
    assert ref.dtype == np.float64
    np.testing.assert_allclose(flash_forward_tiled(q, k, v, mask, 16, 16)[0], ref, **TOL)


# ----------------------------------------------------------------------------- tile statistics


def test_causal_tile_counts_256_by_64():
    # 4 query tiles; query tile i visits key tiles 0..i -> 1 + 2 + 3 + 4 = 10 tiles.
    # The 4 diagonal tiles are partial (upper triangle masked); the 6 below are full.
    q, k, v = make_qkv(1, 1, 1, 256, 256, D=4, F=4)
    _, stats = flash_forward_tiled(q, k, v, causal_mask(256, 256), 64, 64)
    assert stats["tiles_visited"] == 10
    assert stats["tiles_partial"] == 4
    assert stats["tiles_full"] == 6
    assert stats["per_row_tiles"] == [1, 2, 3, 4]
    assert stats["elements_allowed"] == 256 * 257 // 2


def test_full_and_ragged_tile_counts():
    q, k, v = make_qkv(1, 2, 1, 100, 257, D=4, F=4)
    _, st_full = flash_forward_tiled(q, k, v, None, 32, 64)
    # ceil(100/32) = 4 query tiles x ceil(257/64) = 5 key tiles, all full (ragged edges count as full)
    assert (st_full["tiles_visited"], st_full["tiles_full"], st_full["tiles_partial"]) == (20, 20, 0)
    assert st_full["elements_allowed"] == 100 * 257
    # window of 1 (diagonal only), M=N=100, 32x32 tiles: only the 4 diagonal tiles are visited,
    # all partial, including the ragged last 4x4 tile (4 of its 16 elements allowed)
    q, k, v = make_qkv(1, 1, 1, 100, 100, D=4, F=4)
    _, st_diag = flash_forward_tiled(q, k, v, window_mask(100, 100, 1), 32, 32)
    assert (st_diag["tiles_visited"], st_diag["tiles_partial"], st_diag["tiles_full"]) == (4, 4, 0)
    assert st_diag["per_row_tiles"] == [1, 1, 1, 1]


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_stats_match_block_structure(case):
    B, H, Hkv, M, N, mask = CASES[case]
    bm, bn = 17, 33
    q, k, v = make_qkv(1, 1, 1, M, N, D=2, F=2)
    _, stats = flash_forward_tiled(q, k, v, mask, bm, bn)
    tiles = [[mask[i:i + bm, j:j + bn] for j in range(0, N, bn)] for i in range(0, M, bm)]
    assert stats["elements_allowed"] == mask.sum()
    assert stats["per_row_tiles"] == [sum(t.any() for t in row) for row in tiles]
    assert stats["tiles_full"] == sum(t.all() for row in tiles for t in row)
    assert stats["tiles_partial"] == sum(t.any() and not t.all() for row in tiles for t in row)


# ----------------------------------------------------------------------------- split-KV decode


@pytest.mark.parametrize("num_splits", [1, 3, 7, 300], ids=["S1", "S3", "S7", "S300-gtN"])
@pytest.mark.parametrize(
    "B,H,Hkv,M,N,maskfn",
    [
        (2, 6, 2, 1, 257, None),
        (1, 4, 1, 1, 100, lambda M, N: window_mask(M, N, 33, sink=4)),
        (2, 6, 2, 3, 257, lambda M, N: causal_mask(M, N)),
        (1, 6, 3, 100, 63, lambda M, N: causal_mask(M, N)),
        (1, 2, 2, 1, 5, None),
    ],
    ids=["decode-B2-H6-G3-N257", "decode-window-sink-B1-H4-MQA-N100", "spec3-causal-B2-H6-G3-M3-N257",
         "causal-B1-H6-G2-M100-N63", "decode-B1-H2-N5"],
)
def test_split_kv_decode_equals_reference(B, H, Hkv, M, N, maskfn, num_splits):
    mask = None if maskfn is None else maskfn(M, N)
    q, k, v = make_qkv(B, H, Hkv, M, N, D=32, F=24)
    o = flash_decode_split_kv(q, k, v, num_splits, mask)
    assert o.shape == (B, H, M, 24)
    np.testing.assert_allclose(o, attention_reference(q, k, v, mask), **TOL)


def test_split_kv_chunks_that_are_fully_masked():
    # window 10 at the end of N=100: splits 0..5 of 7 see only masked keys -> lse = -inf, weight 0
    q, k, v = make_qkv(1, 6, 2, 1, 100, D=8, F=8)
    mask = window_mask(1, 100, 10)
    np.testing.assert_allclose(flash_decode_split_kv(q, k, v, 7, mask), attention_reference(q, k, v, mask), **TOL)


# ----------------------------------------------------------------------------- unfused


@pytest.mark.parametrize("case", ["causal-B1-H6-G3-M63-N257", "window-sink-B2-H6-G3-M63-N257-W33-S5",
                                  "causal-B1-H3-MHA-M100-N63"])
def test_unfused_intermediates(case):
    B, H, Hkv, M, N, mask = CASES[case]
    q, k, v = make_qkv(B, H, Hkv, M, N, D=16, F=8)
    o, inter = unfused_reference(q, k, v, mask)
    S, P = inter["S"], inter["P"]
    assert S.shape == P.shape == (B, H, M, N)
    np.testing.assert_allclose(o, attention_reference(q, k, v, mask), **TOL)
    G = H // Hkv
    np.testing.assert_allclose(S, np.einsum("bhmd,bhnd->bhmn", q, np.repeat(k, G, axis=1)) / 4.0, **TOL)
    assert not P[:, :, ~mask].any()  # masked probabilities are exactly 0
    rows = P.sum(-1)  # [B, H, M]: 1 for rows with a key, 0 for empty rows
    np.testing.assert_allclose(rows, np.broadcast_to(mask.any(-1), rows.shape).astype(float), **TOL)
    np.testing.assert_allclose(np.einsum("bhmn,bhnf->bhmf", P, np.repeat(v, G, axis=1)), o, **TOL)


# ----------------------------------------------------------------------------- property + errors


@settings(max_examples=25, deadline=None)
@given(
    M=st.integers(1, 40), N=st.integers(1, 40), G=st.sampled_from([1, 2, 3]),
    bm=st.integers(1, 45), bn=st.integers(1, 45), window=st.integers(1, 45),
    sink=st.integers(0, 5), causal=st.booleans(), splits=st.integers(1, 50), seed=st.integers(0, 2**16),
)
def test_property_tiled_and_split_match_reference(M, N, G, bm, bn, window, sink, causal, splits, seed):
    mask = window_mask(M, N, window, sink=sink, causal=causal)
    q, k, v = make_qkv(1, 2 * G, 2, M, N, D=3, F=2, seed=seed)
    ref = attention_reference(q, k, v, mask)
    o, stats = flash_forward_tiled(q, k, v, mask, bm, bn)
    np.testing.assert_allclose(o, ref, **TOL)
    assert stats["elements_allowed"] == mask.sum()
    np.testing.assert_allclose(flash_decode_split_kv(q, k, v, splits, mask), ref, **TOL)


@pytest.mark.parametrize(
    "call",
    [
        lambda q, k, v: attention_reference(q, k[:, :1, :, :3], v[:, :1]),  # D mismatch
        lambda q, k, v: attention_reference(q[:, :5], k, v),  # H=5 not a multiple of Hkv=2
        lambda q, k, v: attention_reference(q, k, v[:, :, :4]),  # N mismatch between k and v
        lambda q, k, v: attention_reference(q, k, v, np.ones((3, 5))),  # non-bool mask
        lambda q, k, v: attention_reference(q, k, v, np.ones((3, 6), dtype=bool)),  # wrong shape
        lambda q, k, v: flash_forward_tiled(q, k, v, None, 0, 4),
        lambda q, k, v: flash_decode_split_kv(q, k, v, 0),
    ],
    ids=["D-mismatch", "H-not-multiple", "N-mismatch", "mask-dtype", "mask-shape", "block0", "splits0"],
)
def test_bad_inputs_raise(call):
    q, k, v = make_qkv(1, 6, 2, 3, 5, D=4, F=2)
    with pytest.raises(ValueError):
        call(q, k, v)
