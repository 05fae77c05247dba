"""The numba GPU simulator agrees exactly with its slow Python twin, and its tile lists with the mask.

Integer counts are compared with ==: cycles of every CTA, busy cycles of every server, every
busy period, bytes per level, L2 hits and misses.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import attnsim
from attnsim.mapping.kernel import KernelMapping
from attnsim.model import gpu_kernel as K
from attnsim.sim import gpu
from attnsim.sim import gpu_kernels as G
from attnsim.sim.gpu_reference import tile_lists_ref

A = attnsim.attention


def few_sms(arch, n):
    return replace(arch, gpu=replace(arch.gpu, sm_count=n))


def small_l2(arch, nbytes):
    return arch.with_level("L2", capacity_bytes=nbytes)


def every_tile(arch, kernel):
    """The arch with a kernel that computes masked tiles too (efficiency.kernels.*.skip_masked_tiles)."""
    eff = replace(arch.efficiency, kernels={**arch.efficiency.kernels, kernel: {"skip_masked_tiles": False}})
    return replace(arch, efficiency=eff)


FA3_64 = KernelMapping(block_m=64, block_n=64, warps=4, stages=2, instr="wgmma", softmax_overlap=True)
FA2_64 = KernelMapping(block_m=64, block_n=64, warps=4, stages=2)


def cases(h100, a100):
    h4, a3 = few_sms(h100, 4), few_sms(a100, 3)
    return {
        "fa3-full-N1000-s2-k1": (h4, A("softmax", batch=1, heads=2, seq=1000, head_dim=128), "flash3"),
        "fa3-full-s1-k1": (h4, A("softmax", batch=1, heads=2, seq=700, head_dim=128),
                           attnsim.KernelMapping(block_m=128, block_n=128, warps=12, stages=1, instr="wgmma",
                                                 softmax_overlap=True)),
        "fa2-causal-k2": (h4, A("softmax", batch=1, heads=2, seq=1000, head_dim=128, causal=True), "flash2"),
        "fa2-causal-s1-k6": (a3, A("softmax", batch=1, heads=3, seq=700, head_dim=64, causal=True),
                             FA2_64.with_changes(stages=1)),
        "fa2-window-sink-M300-N1000": (a3, A("softmax", batch=1, heads=3, seq_q=300, seq_kv=1000, head_dim=64,
                                             window=200, sink=4), FA2_64),
        "fa2-causal-M1000-N300-empty-rows": (a3, A("softmax", batch=1, heads=2, seq_q=1000, seq_kv=300,
                                                   head_dim=64, causal=True), FA2_64),
        "fa3-causal-k5": (h4, A("softmax", batch=1, heads=4, seq=900, head_dim=64, causal=True), FA3_64),
        "fa3-blocksparse-s3": (h4, A("softmax", batch=1, heads=4, seq=900, head_dim=64, causal=True, density=0.5),
                               FA3_64.with_changes(stages=3, launch_order="longest_first")),
        "decode-gqa-split": (h4, A("softmax", batch=2, heads=8, kv_heads=2, seq_q=1, seq_kv=3000, head_dim=128),
                             "flash_decode"),
        "split-prefill-tiny-l2-writebacks": (small_l2(a3, 96 * 1024),
                                             A("softmax", batch=1, heads=4, seq=520, head_dim=64, causal=True),
                                             FA2_64.with_changes(style="split_kv", split_kv=3,
                                                                 launch_order="head_fastest")),
        "fa2-every-tile-causal": (every_tile(a3, "flash2"), A("softmax", batch=1, heads=2, seq=600, head_dim=64,
                                                            causal=True), "flash2"),
        "fa3-full-latency800-k1": (h4, A("softmax", batch=1, heads=2, seq=1000, head_dim=128), "flash3", 800),
        "fa2-causal-latency600-k6": (a3, A("softmax", batch=1, heads=3, seq=700, head_dim=64, causal=True),
                                     FA2_64.with_changes(stages=1), 600),
    }


@pytest.fixture(scope="module")
def all_cases(h100, a100):
    return cases(h100, a100)


@pytest.mark.parametrize("name", list(cases(attnsim.load_arch("h100_sxm5_80gb"),
                                            attnsim.load_arch("a100_sxm4_80gb"))))
def test_kernel_equals_twin(all_cases, name):
    arch, w, m, *latency = all_cases[name]
    inp = gpu.prepare(arch, w, m, load_latency_cycles=latency[0] if latency else 0)
    k = gpu.run_kernel(inp, timeline=True)
    r = gpu.run_reference(inp)
    assert k["stats"][G.S_TL_DROPPED] == 0
    assert k["stats"] == r["stats"]
    assert k["cta_start"].tolist() == r["cta_start"]
    assert k["cta_end"].tolist() == r["cta_end"]
    assert k["cta_slot"].tolist() == r["cta_slot"]
    assert k["busy"].tolist() == r["busy"]
    assert k["busy_main"].tolist() == r["busy_main"]
    assert sorted(zip(*(a.tolist() for a in k["periods"]))) == sorted(r["periods"])


def test_twin_cases_cover_both_event_modes(all_cases):
    """k = 1 serves a CTA's compute ops at once; k > 1 runs every op through the heap: both are twinned."""
    ks = {gpu.prepare(*all_cases[n][:3]).ctas_per_sm for n in all_cases}
    assert 1 in ks and max(ks) >= 4


def test_tiny_l2_case_evicts_dirty_partials(all_cases):
    inp = gpu.prepare(*all_cases["split-prefill-tiny-l2-writebacks"][:3])
    st = gpu.run_kernel(inp)["stats"]
    assert st[G.S_WB_BYTES] > 0 and st[G.S_P_MISSES] > 0 and st[G.S_KV_MISSES] > 0


# ----------------------------------------------------------------------------- tile lists

SHAPES = [(63, 100), (100, 63), (256, 256), (257, 1000), (1, 300)]
MASKS = [(G.MK_FULL, 0, 0, 1.0, False), (G.MK_CAUSAL, 0, 0, 1.0, True), (G.MK_WINDOW, 7, 0, 1.0, True),
         (G.MK_WINDOW, 64, 70, 1.0, True), (G.MK_WINDOW, 300, 4, 1.0, True), (G.MK_BLOCK, 0, 0, 0.37, True),
         (G.MK_BLOCK, 0, 0, 0.1, False)]


@pytest.mark.parametrize("kind,window,sink,density,causal", MASKS)
@pytest.mark.parametrize("m_len,n_len", SHAPES)
@pytest.mark.parametrize("bp,bc,split", [(16, 16, 1), (64, 32, 3), (48, 80, 1)])
def test_tile_lists_equal_mask_twin(kind, window, sink, density, causal, m_len, n_len, bp, bc, split):
    ptr, tiles, partial = G.tile_lists(kind, m_len, n_len, bp, bc, window, sink, density, causal, split, False)
    ref = tile_lists_ref(kind, m_len, n_len, bp, bc, window, sink, density, causal, split, False)
    got = [list(zip(tiles[ptr[i]:ptr[i + 1]].tolist(), partial[ptr[i]:ptr[i + 1]].tolist()))
           for i in range(len(ptr) - 1)]
    assert got == ref


@pytest.mark.parametrize("kind,window,sink,density,causal", MASKS)
@pytest.mark.parametrize("m_len,n_len", SHAPES)
def test_tile_lists_count_what_the_analytical_model_counts(kind, window, sink, density, causal, m_len, n_len):
    """Per query tile: as many tiles (and full tiles) as gpu_kernel.row_tiles; in total, mask_tile_stats."""
    bp, bc = 64, 32
    ptr, tiles, partial = G.tile_lists(kind, m_len, n_len, bp, bc, window, sink, density, causal, 1, False)
    counts = np.diff(ptr)
    full = np.add.reduceat(1 - partial, ptr[:-1]) if len(partial) else np.zeros(len(counts))
    full = np.where(counts > 0, full, 0)
    tot, lmax, lmin, full_tot, rows, _ = K.mask_tile_stats(kind, m_len, n_len, bp, bc, window, sink, density, causal)
    assert (counts.sum(), counts.max(), counts.min(), full.sum(), len(counts)) == (tot, lmax, lmin, full_tot, rows)
    if kind != G.MK_BLOCK:
        for i in range(len(counts)):
            r0, r1 = i * bp, min(m_len, (i + 1) * bp) - 1
            assert (counts[i], full[i]) == K.row_tiles(kind, r0, r1, m_len, n_len, bc, window, sink)


def test_causal_grid_structure(h100):
    """B1 H16 N4096 causal, 128x128 tiles: 32 query tiles per head, row i visits i+1 key tiles,
    the diagonal tile partial; 512 CTAs of 32 different lengths; the key tiles are walked downward."""
    inp = gpu.prepare(h100, A("softmax", batch=1, heads=16, seq=4096, head_dim=128, causal=True), "flash3")
    lengths = inp.arrays["cta_hi"] - inp.arrays["cta_lo"]
    assert len(lengths) == 512 and len(set(lengths.tolist())) == 32
    assert lengths[:32].tolist() == list(range(32, 0, -1))  # longest_first: each head from the longest down
    lo, hi = inp.arrays["cta_lo"][0], inp.arrays["cta_hi"][0]
    assert inp.arrays["tile_j"][lo:hi].tolist() == list(range(31, -1, -1))
    assert inp.arrays["tile_partial"][lo:hi].tolist() == [1] + [0] * 31
