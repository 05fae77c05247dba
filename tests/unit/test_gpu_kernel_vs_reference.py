"""The numba kernel's closed forms equal their brute-force twins in ``attnsim.model.gpu_reference``.

Counts are integers held in floats, so kernel and reference must agree exactly (==).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim.model import gpu_kernel as K
from attnsim.model.gpu_reference import (allowed_in_rows_ref, fused_counts_ref, greedy_makespan_ref,
                                         mask_tile_stats_ref, row_tiles_ref, sum_clamped_ref)

SHAPES = [(63, 100), (100, 63), (256, 256), (257, 1000), (1, 300)]
TILES = [(16, 16), (64, 32), (128, 64), (48, 80)]
WINDOWS = [1, 7, 64, 300, 5000]
SINKS = [0, 4, 70]
DENSITIES = [0.1, 0.37, 1.0]

# (label, kind, window, sink, density, causal)
BASE_MASKS = ([("full", K.MK_FULL, 0, 0, 1.0, False), ("causal", K.MK_CAUSAL, 0, 0, 1.0, True)]
              + [(f"window{w}-sink{s}", K.MK_WINDOW, w, s, 1.0, True) for w in WINDOWS for s in SINKS])
BLOCK_MASKS = [(f"block-{'causal' if c else 'full'}-d{d}", K.MK_BLOCK, 0, 0, d, c)
               for c in (True, False) for d in DENSITIES]


def cases(masks):
    out = []
    for label, kind, window, sink, density, causal in masks:
        for m_len, n_len in SHAPES:
            for bp, bc in TILES:
                out.append(pytest.param(kind, m_len, n_len, bp, bc, window, sink, density, causal,
                                        id=f"{label}-M{m_len}-N{n_len}-bp{bp}-bc{bc}"))
    return out


# ----------------------------------------------------------------------------- sum_clamped


def sum_clamped_grid(equal_bounds):
    r = range(-4, 5)
    for a in r:
        for b in r:  # includes a > b (empty sum)
            for c in r:
                for lo in r:
                    for hi in ([lo] if equal_bounds else range(lo + 1, 5)):
                        yield a, b, c, lo, hi


def test_sum_clamped_matches_loop():
    for a, b, c, lo, hi in sum_clamped_grid(equal_bounds=False):
        got, want = K.sum_clamped(a, b, c, lo, hi), sum_clamped_ref(a, b, c, lo, hi)
        assert got == want, (a, b, c, lo, hi, got, want)


def test_sum_clamped_lo_equals_hi():
    """Equal bounds: every value clamps to lo (a bug once counted m + c == lo == hi twice)."""
    for a, b, c, lo, hi in sum_clamped_grid(equal_bounds=True):
        got, want = K.sum_clamped(a, b, c, lo, hi), sum_clamped_ref(a, b, c, lo, hi)
        assert got == want, (a, b, c, lo, hi, got, want)


# ----------------------------------------------------------------------------- per-row stats


def check_rows(kind, m_len, n_len, bc, window, sink, r0, r1):
    got = K.row_tiles(kind, r0, r1, m_len, n_len, bc, window, sink)
    want = row_tiles_ref(kind, r0, r1, m_len, n_len, bc, window, sink)
    assert tuple(got) == tuple(want), ("row_tiles (non-empty, full)", r0, r1, got, want)
    got = K.allowed_in_rows(kind, r0, r1, m_len, n_len, window, sink)
    want = allowed_in_rows_ref(kind, r0, r1, m_len, n_len, window, sink)
    assert got == want, ("allowed_in_rows", r0, r1, got, want)


def check_stats(kind, m_len, n_len, bp, bc, window, sink, density, causal):
    got = K.mask_tile_stats(kind, m_len, n_len, bp, bc, window, sink, density, causal)
    want = mask_tile_stats_ref(kind, m_len, n_len, bp, bc, window, sink, density, causal)
    names = ("sum", "max", "min", "full", "rows", "allowed")
    for name, g, w in zip(names, got, want):
        assert g == w, (name, got, want)


@pytest.mark.parametrize("kind,m_len,n_len,bp,bc,window,sink,density,causal", cases(BASE_MASKS))
def test_row_tiles_and_allowed_per_query_tile(kind, m_len, n_len, bp, bc, window, sink, density, causal):
    for r0 in range(0, m_len, bp):
        check_rows(kind, m_len, n_len, bc, window, sink, r0, min(m_len, r0 + bp) - 1)


@pytest.mark.parametrize("kind,m_len,n_len,bp,bc,window,sink,density,causal", cases(BASE_MASKS + BLOCK_MASKS))
def test_mask_tile_stats(kind, m_len, n_len, bp, bc, window, sink, density, causal):
    check_stats(kind, m_len, n_len, bp, bc, window, sink, density, causal)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), kind=st.sampled_from([K.MK_FULL, K.MK_CAUSAL, K.MK_WINDOW, K.MK_BLOCK]),
       m_len=st.integers(1, 300), n_len=st.integers(1, 300), bp=st.integers(4, 80), bc=st.integers(4, 80),
       window=st.integers(1, 320), sink=st.integers(0, 80), density=st.floats(0.0, 1.0), causal=st.booleans())
def test_row_stats_random(data, kind, m_len, n_len, bp, bc, window, sink, density, causal):
    """Random sizes and tiles; the row-level functions also on arbitrary row ranges r0..r1."""
    check_stats(kind, m_len, n_len, bp, bc, window, sink, density, causal)
    if kind != K.MK_BLOCK:
        r0 = data.draw(st.integers(0, m_len - 1), label="r0")
        r1 = data.draw(st.integers(r0, m_len - 1), label="r1")
        check_rows(kind, m_len, n_len, bc, window, sink, r0, r1)


# ----------------------------------------------------------------------------- makespan


@pytest.mark.parametrize("sms", [1, 3, 7])
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("c", [1.0, 2.5])
def test_uniform_makespan_matches_simulation(sms, k, c):
    for n in range(0, 301):
        got = K.uniform_makespan(n, c, sms, k)
        want = greedy_makespan_ref([c] * n, sms, k)
        assert got == want, (n, c, sms, k, got, want)


def test_greedy_makespan_ref_small_pictures():
    # 2 SMs x 2 slots: 5 CTAs = one full wave (2 deep, 2c) + 1 CTA alone (c)
    assert greedy_makespan_ref([1.0] * 5, 2, 2) == 3.0
    # 7 CTAs on 3 SMs x 3 slots: one partial wave, 3 / 2 / 2 per SM
    assert greedy_makespan_ref([2.0] * 7, 3, 3) == 6.0
    with pytest.raises(ValueError):
        greedy_makespan_ref([1.0, 2.0], 1, 1)


# ----------------------------------------------------------------------------- fused grid counts

# (B, H, Hkv, M, N, D, mask kwargs, KernelMapping kwargs)
FUSED = [
    pytest.param(1, 4, 4, 100, 63, 64, {}, {}, id="full-M100-N63"),
    pytest.param(2, 8, 8, 257, 1000, 128, {"causal": True}, {}, id="causal-M257-N1000"),
    pytest.param(1, 8, 2, 300, 300, 128, {"causal": True}, {"q_heads_per_cta": 4}, id="causal-gqa4"),
    pytest.param(2, 8, 2, 257, 1000, 128, {"causal": True}, {"q_heads_per_cta": 2, "split_kv": 3,
                                                             "style": "split_kv"}, id="causal-gqa2-split3"),
    pytest.param(1, 4, 1, 1, 1000, 128, {"causal": True}, {"q_heads_per_cta": 4, "split_kv": 3,
                                                           "style": "split_kv"}, id="decode-gqa4-split3"),
    pytest.param(1, 4, 4, 512, 700, 64, {"window": 100, "sink": 4}, {"block_n": 32}, id="window100-sink4"),
    pytest.param(1, 6, 3, 333, 333, 64, {"window": 7, "sink": 70}, {"q_heads_per_cta": 2, "split_kv": 3,
                                                                     "style": "split_kv"},
                 id="window7-sink70-gqa2-split3"),
    pytest.param(1, 4, 4, 63, 100, 64, {"density": 0.37, "causal": True}, {"block_n": 32}, id="block-causal-d0.37"),
    pytest.param(2, 4, 2, 400, 257, 64, {"density": 0.1}, {"q_heads_per_cta": 2, "split_kv": 3,
                                                           "style": "split_kv"}, id="block-full-d0.1-split3"),
    pytest.param(1, 2, 2, 1000, 100, 128, {"causal": True}, {"block_m": 64, "block_n": 16, "split_kv": 3,
                                                             "style": "split_kv"}, id="causal-M1000-N100-split3"),
]


@pytest.mark.parametrize("B,H,Hkv,M,N,D,mask_kw,map_kw", FUSED)
def test_fused_grid_counts(B, H, Hkv, M, N, D, mask_kw, map_kw):
    from attnsim.arch import load_arch
    from attnsim.mapping.kernel import KernelMapping
    from attnsim.model.lower import lower_gpu
    from attnsim.workload.spec import attention

    w = attention(batch=B, heads=H, kv_heads=Hkv, seq_q=M, seq_kv=N, head_dim=D, **mask_kw)
    m = KernelMapping(**map_kw)
    row = lower_gpu(load_arch("h100_sxm5_80gb"), w, m)
    out = K.evaluate_points(row[None, :])[0]
    assert out[K.O_STATUS] == K.ST_OK
    mk = w.mask
    kind = {"full": K.MK_FULL, "causal": K.MK_CAUSAL, "window": K.MK_WINDOW, "block_sparse": K.MK_BLOCK}[mk.kind]
    bp = m.block_m // m.q_heads_per_cta  # a CTA's block_m rows = bp query positions x qpc heads
    n_ctas, visits, _, _ = fused_counts_ref(B, H, Hkv, M, N, D, D, bp, m.block_n, m.q_heads_per_cta,
                                            m.split_kv, kind, mk.window, mk.sink, mk.density, mk.causal)
    assert out[K.O_N_CTAS] == n_ctas
    assert out[K.O_TILES] == visits
    allowed = mask_tile_stats_ref(kind, M, N, bp, m.block_n, mk.window, mk.sink, mk.density, mk.causal)[5]
    assert out[K.O_ALLOWED] == allowed


def test_fused_counts_ref_small_picture():
    # causal 4x4 positions, 2x2 tiles -> query tiles see 1 and 2 key tiles; split 2 -> chunks of 1 tile
    assert fused_counts_ref(1, 1, 1, 4, 4, 8, 8, 2, 2, 1, 2, K.MK_CAUSAL, 0, 0, 1.0, True) == (4, 3, 1, 0)
    # GQA: 4 heads on 2 KV heads, 2 per CTA -> 2 head groups, each 2 query tiles of full 2-tile rows
    assert fused_counts_ref(1, 4, 2, 4, 4, 8, 8, 2, 2, 2, 1, K.MK_FULL, 0, 0, 1.0, False) == (4, 8, 2, 2)
