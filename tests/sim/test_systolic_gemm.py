"""The systolic GEMM simulator: numba kernel == register-level twin (exactly), golden cases with
their derivations, structural counts, the DRAM model, input errors, and the analytical formula."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnsim.errors import SpecError
from attnsim.model.spatial import systolic_gemm_cycles
from attnsim.sim.spatial import _block_words, simulate_gemm
from attnsim.sim.systolic_reference import gemm_reference

DATAFLOWS = ("os", "ws", "is")
# (R, C, M, N, K): odd, degenerate and multi-fold shapes
SMALL = [(4, 4, 7, 13, 5), (3, 5, 1, 1, 1), (2, 3, 5, 4, 7), (4, 2, 9, 3, 2), (5, 3, 6, 11, 4), (1, 1, 3, 2, 4),
         (3, 3, 3, 3, 3), (2, 2, 1, 7, 5)]


def _caps(mode: dict, df, R, C, m, n, k, wb):
    """Buffer sizes from a mode per buffer: None (unlimited), 'resident' (exactly the whole
    operand) or 'tight' (exactly two fold blocks: the smallest double buffer)."""
    total = {"ifmap": m * k, "filter": k * n, "ofmap": m * n}
    block = _block_words(df, R, C, m, n, k)
    caps = {}
    for b, how in mode.items():
        if how == "resident":
            caps[b] = total[b] * wb
        elif how == "tight":
            caps[b] = min(total[b], 2 * block[b]) * wb
    return caps or None


def _assert_same(g, ref):
    ours = dict(compute_cycles=g.compute_cycles, cycles=g.cycles, stall_cycles=g.stall_cycles, folds=g.folds,
                fold_cycles=g.fold_cycles, macs=g.macs, mapped=g.mapped_pe_folds,
                sram_ifmap=g.sram_reads["ifmap"], sram_filter=g.sram_reads["filter"],
                sram_ofmap=g.sram_writes["ofmap"], peak_ifmap=g.sram_peak_words_per_cycle["ifmap"],
                peak_filter=g.sram_peak_words_per_cycle["filter"], peak_ofmap=g.sram_peak_words_per_cycle["ofmap"],
                dram_ifmap=g.dram_reads["ifmap"], dram_filter=g.dram_reads["filter"],
                dram_ofmap=g.dram_writes["ofmap"], dram_busy=g.dram_busy_cycles)
    assert ours == ref


MEMORY = [({}, None), ({}, 3.5), ({"ifmap": "tight", "filter": "tight", "ofmap": "tight"}, 2.0),
          ({"ifmap": "resident", "filter": "tight", "ofmap": "resident"}, 1.0),
          ({"ifmap": "tight", "filter": "resident", "ofmap": "tight"}, 7.25)]


@pytest.mark.parametrize("df", DATAFLOWS)
@pytest.mark.parametrize("shape", SMALL, ids=lambda s: "R{}C{}-M{}N{}K{}".format(*s))
@pytest.mark.parametrize("mem", MEMORY, ids=["unlimited", "bw3.5", "tight-bw2", "mixed-bw1", "mixed-bw7.25"])
def test_kernel_equals_register_level_twin(df, shape, mem):
    R, C, m, n, k = shape
    mode, bw = mem
    caps = _caps(mode, df, R, C, m, n, k, 2)
    g = simulate_gemm(R, C, df, m, n, k, sram_bytes=caps, dram_bytes_per_cycle=bw)
    c = caps or {}
    ref = gemm_reference(df, R, C, m, n, k, 2, c.get("ifmap", -1), c.get("filter", -1), c.get("ofmap", -1),
                         bw or 0.0)
    _assert_same(g, ref)


mode_st = st.sampled_from([None, "resident", "tight"])


@settings(max_examples=40, deadline=None)
@given(df=st.sampled_from(DATAFLOWS), R=st.integers(1, 5), C=st.integers(1, 5), m=st.integers(1, 11),
       n=st.integers(1, 11), k=st.integers(1, 11), wb=st.integers(1, 4),
       modes=st.tuples(mode_st, mode_st, mode_st), bw=st.one_of(st.none(), st.floats(0.25, 64.0)))
def test_kernel_equals_twin_hypothesis(df, R, C, m, n, k, wb, modes, bw):
    mode = {b: md for b, md in zip(("ifmap", "filter", "ofmap"), modes) if md}
    caps = _caps(mode, df, R, C, m, n, k, wb)
    g = simulate_gemm(R, C, df, m, n, k, sram_bytes=caps, dram_bytes_per_cycle=bw, word_bytes=wb)
    c = caps or {}
    ref = gemm_reference(df, R, C, m, n, k, wb, c.get("ifmap", -1), c.get("filter", -1), c.get("ofmap", -1),
                         bw or 0.0, seed=R * 7 + m)
    _assert_same(g, ref)


# ---- golden cases, each with its derivation ----

def test_golden_os_4x4_7x13x5():
    # folds = ceil(M/R) x ceil(N/C) = 2 x 4 = 8; L = K + R + C - 2 = 5 + 4 + 4 - 2 = 11
    g = simulate_gemm(4, 4, "os", 7, 13, 5)
    assert (g.folds, g.fold_cycles, g.compute_cycles, g.cycles) == (8, 11, 88, 88)
    assert g.macs == 7 * 13 * 5
    assert g.mapped_pe_folds == 7 * 13  # sum of ru x cu over the folds tiles the 7 x 13 output once
    assert g.mapping_efficiency == 91 / (8 * 16)
    assert g.utilization == 455 / (88 * 16)


def test_golden_ws_128x128_512_cubed():
    # folds = ceil(K/R) x ceil(N/C) = 4 x 4 = 16; L = 2R + C + M - 2 = 256 + 128 + 512 - 2 = 894
    g = simulate_gemm(128, 128, "ws", 512, 512, 512)
    assert (g.folds, g.fold_cycles, g.compute_cycles) == (16, 894, 14304)


def test_golden_is_decode():
    # is: stationary ifmap block K x M: folds = ceil(K/R) x ceil(M/C) = 8 x 1; L = 2R + C + N - 2 = 16+8+62
    g = simulate_gemm(8, 8, "is", 1, 64, 64)
    assert (g.folds, g.fold_cycles, g.compute_cycles) == (8, 86, 688)
    assert g.mapping_efficiency == 1 / 8  # one of 8 columns mapped: M = 1


def test_golden_dram_first_fill_and_last_drain():
    # 2x2 os, M = N = K = 2, 2 B words, 1 B/cycle: one fold of L = 2 + 2 + 2 - 2 = 4 cycles.
    # fill: ifmap 2x2x2 B + filter 2x2x2 B = 16 B -> 16 cycles; fold 16..20; write 8 B -> 28.
    g = simulate_gemm(2, 2, "os", 2, 2, 2, dram_bytes_per_cycle=1)
    assert (g.compute_cycles, g.cycles, g.stall_cycles, g.dram_busy_cycles) == (4, 28, 24, 24)


def test_golden_dram_prefetch_overlaps_the_fold():
    # 2x2 os, M=4 N=2 K=2, 1 B words, 2 B/cycle. Folds fr = 0, 1 (L = 4 each).
    # fold 0 needs ifmap rows 0-1 (4 B) + filter (4 B): 4 cycles, starts at 4;
    # at 4 it asks for ifmap rows 2-3 (4 B): arrive 6. Fold 0 ends 8; its outputs (4 B) 8 -> 10.
    # fold 1 starts max(8, 6) = 8, ends 12; outputs 12 -> 14.  cycles 14 = compute 8 + stall 6.
    g = simulate_gemm(2, 2, "os", 4, 2, 2, dram_bytes_per_cycle=2, word_bytes=1)
    assert (g.compute_cycles, g.cycles, g.stall_cycles) == (8, 14, 6)
    assert g.dram_reads == {"ifmap": 8, "filter": 4} and g.dram_writes == {"ofmap": 8}


# ---- structure ----

@pytest.mark.parametrize("df", DATAFLOWS)
@pytest.mark.parametrize("shape", SMALL + [(32, 32, 100, 64, 300), (128, 128, 1, 4096, 128)])
def test_counts_follow_the_fold_structure(df, shape):
    R, C, m, n, k = shape
    g = simulate_gemm(R, C, df, m, n, k)
    fold = {"os": (math.ceil(m / R), math.ceil(n / C)), "ws": (math.ceil(k / R), math.ceil(n / C)),
            "is": (math.ceil(k / R), math.ceil(m / C))}[df]
    fr, fc = fold
    assert g.folds == fr * fc
    assert g.macs == m * n * k
    # each operand word is read once per fold that needs it; outputs leave once per row fold
    expect = {"os": (m * k * fc, k * n * fr, m * n), "ws": (m * k * fc, k * n, m * n * fr),
              "is": (m * k, k * n * fc, m * n * fr)}[df]
    assert (g.sram_reads["ifmap"], g.sram_reads["filter"], g.sram_writes["ofmap"]) == expect
    assert max(g.sram_peak_words_per_cycle.values()) <= max(R, C)  # one word per edge lane per cycle
    # unlimited buffers: compulsory DRAM traffic only, no stall
    assert g.dram_reads == {"ifmap": m * k * 2, "filter": k * n * 2} and g.dram_writes == {"ofmap": m * n * 2}
    assert g.stall_cycles == 0 and g.cycles == g.compute_cycles


@settings(max_examples=60, deadline=None)
@given(df=st.sampled_from(DATAFLOWS), R=st.integers(1, 64), C=st.integers(1, 64), m=st.integers(1, 300),
       n=st.integers(1, 300), k=st.integers(1, 300), bw=st.floats(0.5, 512), scale=st.floats(1.0, 8.0))
def test_memory_properties(df, R, C, m, n, k, bw, scale):
    caps = {b: 2 * w * 2 for b, w in _block_words(df, R, C, m, n, k).items()}  # the smallest double buffers
    slow = simulate_gemm(R, C, df, m, n, k, sram_bytes=caps, dram_bytes_per_cycle=bw)
    fast = simulate_gemm(R, C, df, m, n, k, sram_bytes=caps, dram_bytes_per_cycle=bw * scale)
    big = simulate_gemm(R, C, df, m, n, k, sram_bytes={b: v * scale for b, v in caps.items()},
                        dram_bytes_per_cycle=bw)
    assert fast.cycles <= slow.cycles  # more bandwidth is never slower
    traffic = sum(slow.dram_reads.values()) + sum(slow.dram_writes.values())
    assert sum(big.dram_reads.values()) + sum(big.dram_writes.values()) <= traffic  # bigger buffers: no more
    assert slow.dram_reads["ifmap"] >= m * k * 2 and slow.dram_reads["filter"] >= k * n * 2  # compulsory
    assert slow.dram_writes["ofmap"] == m * n * 2
    assert slow.cycles >= max(slow.compute_cycles, slow.dram_busy_cycles)
    assert slow.dram_busy_cycles >= traffic / bw  # each transfer takes ceil(bytes / bw) cycles


# ---- input errors ----

def test_errors_list_every_problem():
    with pytest.raises(SpecError) as e:
        simulate_gemm(0, 4, "wss", -1, 2.5, True)
    text = str(e.value)
    assert "5 problems" in text
    for key in ("rows", "dataflow", "m:", "n:", "k:"):
        assert key in text
    assert "did you mean 'ws'" in text


def test_unknown_buffer_and_bad_sizes():
    with pytest.raises(SpecError, match="unknown buffer 'ifmp'.*did you mean 'ifmap'"):
        simulate_gemm(4, 4, "ws", 8, 8, 8, sram_bytes={"ifmp": 1024})
    with pytest.raises(SpecError, match="sram_bytes.filter"):
        simulate_gemm(4, 4, "ws", 8, 8, 8, sram_bytes={"filter": "12 parsecs"})
    with pytest.raises(SpecError, match="dram_bytes_per_cycle"):
        simulate_gemm(4, 4, "ws", 8, 8, 8, dram_bytes_per_cycle=0)


def test_buffer_too_small_says_how_big():
    # ws 128x128, M = 4096, K = 384: the ifmap (3 MiB) does not fit; its fold block is
    # M x 128 words = 1 MiB, so double buffering needs 2 MiB
    with pytest.raises(SpecError, match=r"give at least 2097152 B"):
        simulate_gemm(128, 128, "ws", 4096, 256, 384, sram_bytes={"ifmap": "512 KiB"})
    ok = simulate_gemm(128, 128, "ws", 4096, 256, 384, sram_bytes={"ifmap": "2 MiB"})
    assert ok.folds == 3 * 2
    assert ok.dram_reads["ifmap"] == 6 * 2**20  # a 1 MiB block per fold: twice the 3 MiB compulsory
    resident = simulate_gemm(128, 128, "ws", 4096, 256, 384, sram_bytes={"ifmap": "3 MiB"})
    assert resident.dram_reads["ifmap"] == 3 * 2**20


# ---- the analytical model ----

@pytest.mark.parametrize("df", DATAFLOWS)
@pytest.mark.parametrize("shape", SMALL + [(256, 256, 8065, 256, 128), (128, 128, 1, 4096, 128)])
def test_analytical_systolic_gemm_cycles_agrees(df, shape):
    """attnsim.model.spatial.systolic_gemm_cycles vs the simulator (unlimited buffers).

    All three dataflows agree exactly. (The analytical os fold once charged 2R + C + K - 2, R more
    than the simulator and SCALE-Sim: an output-stationary fold has no stationary operand to
    load, so a fold is K + R + C - 2 cycles.)
    """
    R, C, m, n, k = shape
    g = simulate_gemm(R, C, df, m, n, k)
    theirs = systolic_gemm_cycles(m, n, k, R, C, df)
    assert theirs == g.compute_cycles
