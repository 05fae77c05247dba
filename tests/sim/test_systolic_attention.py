"""Cycle-level attention on fusemax_like: the schedule kernel == its twin, tiles == the mask's,
busy/utilization counts exact, schedule ordering, and agreement with the analytical model
(within 2% on regular cases; every larger gap tied to a named effect)."""
import math

import numpy as np
import pytest

import attnsim
from attnsim.errors import MappingError, SpecError
from attnsim.mapping.spatial import SpatialMapping as SM
from attnsim.model import gpu_kernel as GK
from attnsim.sim import systolic_kernels as K
from attnsim.sim.spatial import _row_blocks, simulate_attention, simulate_gemm
from attnsim.sim.systolic_reference import two_array_schedule_reference

TOL = 0.02  # regular cases: full tiles, >= 32 tiles per pipeline; gaps are fill/drain and rounding


def _w(seq, heads=2, **kw):
    return attnsim.attention("softmax", batch=1, heads=heads, seq=seq, head_dim=128, **kw)


def _cycles(r):
    return r.counts["cycles"]


# ---- the schedule kernel and its twin ----

@pytest.mark.parametrize("seed", range(40))
def test_schedule_kernel_equals_twin(seed):
    rng = np.random.default_rng(seed)
    n2 = int(rng.integers(1, 9))
    n1 = int(rng.integers(0, n2 + 1))
    after = np.sort(rng.integers(0, n2, n1))
    wait = -np.ones(n2, np.int64)
    last = -1
    for y in range(n1):  # job x may wait for softmax y only after y's QK, in increasing order
        x = int(after[y]) + 1 + int(rng.integers(0, 2))
        if x < n2 and y > last and wait[x] < y:
            wait[x], last = y, y
    inb = rng.integers(0, 400, n2)
    args = [np.asarray(v, np.int64) for v in (rng.integers(0, 60, n2), inb, inb * (rng.random(n2) < 0.5),
                                              rng.integers(0, 300, n2) * (rng.random(n2) < 0.4), wait,
                                              rng.integers(0, 90, n1), after)]
    heads = int(rng.integers(1, 5))
    group = int(rng.choice([g for g in range(1, heads + 1) if heads % g == 0]))
    bw = float(rng.choice([0.0, 1.0, 3.7, 50.0]))
    o = K.two_array_schedule(heads, group, *args, bw)
    ref = two_array_schedule_reference(heads, group, *args, bw)
    assert ref == dict(total=o[K.S_TOTAL], busy_2d=o[K.S_BUSY_2D], busy_1d=o[K.S_BUSY_1D],
                       dram_busy=o[K.S_DRAM_BUSY], idle_2d_dram=o[K.S_IDLE_2D_DRAM],
                       idle_2d_1d=o[K.S_IDLE_2D_1D], tail=o[K.S_TAIL])


# ---- tiles: the same as the analytical model's closed form ----

@pytest.mark.parametrize("M,N,bm,bn,kw", [
    (1000, 1000, 128, 96, dict(causal=True)), (700, 1300, 64, 100, dict(causal=True)),
    (1300, 700, 64, 100, dict(causal=True)), (900, 900, 50, 70, dict(window=200)),
    (900, 900, 50, 70, dict(window=200, sink=130)), (900, 900, 50, 70, dict(window=200, sink=30)),
    (63, 1000, 16, 256, {})])
def test_row_blocks_match_mask_tile_stats(M, N, bm, bn, kw):
    w = attnsim.attention("softmax", batch=1, heads=1, seq_q=M, seq_kv=N, head_dim=64, **kw)
    code = {"full": GK.MK_FULL, "causal": GK.MK_CAUSAL, "window": GK.MK_WINDOW}[w.mask.kind]
    blocks = _row_blocks(w, bm, bn)
    for i, (tm, ts) in enumerate(blocks):
        r0 = i * bm
        cnt, _ = GK.row_tiles(code, r0, r0 + tm - 1, M, N, bn, w.mask.window, w.mask.sink)
        assert len(ts) == cnt
        assert sum(tn for _, tn in ts) <= N and all(0 < tn <= bn for _, tn in ts)
    assert sum(tm for tm, _ in blocks) == M


# ---- exact counts ----

def test_fused_2d_utilization_is_busy_over_total(fusemax):
    w, m = _w(4096, heads=3), SM("fused", 512, 256)
    r = simulate_attention(fusemax, w, m)
    qk, pv = simulate_gemm(256, 256, "ws", 512, 256, 128), simulate_gemm(256, 256, "ws", 512, 128, 256)
    tiles = 3 * (4096 // 512) * (4096 // 256)
    busy2 = tiles * (qk.compute_cycles + pv.compute_cycles)  # every tile's QK^T and PV, as simulated
    busy1 = tiles * max(math.ceil((512 * 256 + 512) / 256), math.ceil((4 * 512 * 256 + 512 * 128) / 256))
    assert r.counts["2D busy cycles"] == busy2 and r.counts["1D busy cycles"] == busy1
    assert r.utilization["2D array"] == busy2 / r.counts["cycles"]
    assert r.utilization["1D array"] == busy1 / r.counts["cycles"]
    assert r.utilization["2D array PEs"] == tiles * (qk.macs + pv.macs) / (r.counts["cycles"] * 256 * 256)
    assert r.executed_flops == 2 * 3 * 4096 * 4096 * (128 + 128)
    assert r.latency_s == r.counts["cycles"] / fusemax.clock_hz
    assert r.model == "spatial-cycle" and r.counts["tile visits"] == tiles
    # the pipeline: never shorter than either array's work, never longer than both in series
    assert max(busy2, busy1) <= r.counts["cycles"] <= busy2 + busy1 + r.counts["DRAM busy cycles"]


def test_fused_reads_each_operand_once_when_kv_fits(fusemax):
    # GQA: 8 query heads share 2 KV heads; a KV head's K and V (2 x 4096 x 128 x 2 B = 2 MiB) fit in
    # half the 8 MiB GLB, so DRAM traffic is compulsory: Q and O per query head, K/V per KV head.
    w = attnsim.attention("softmax", batch=1, heads=8, kv_heads=2, seq=4096, head_dim=128)
    r = simulate_attention(fusemax, w, SM("fused", 1024, 256))
    q_o = 8 * 4096 * 128 * 2 * 2
    kv = 2 * 4096 * 128 * 2 * 2
    assert r.traffic_bytes["DRAM"] == q_o + kv  # S and P never leave the chip
    un = simulate_attention(fusemax, w, "unfused")
    assert un.traffic_bytes["DRAM"] == 8 * (4096 * 128 * 2 * 4 + 4096 * 4096 * 2 * 4)  # S, P out and back


def test_less_dram_bandwidth_is_never_faster(fusemax):
    w = _w(2048)
    for style in ("fused", "row_fused", "unfused"):
        lat = [simulate_attention(fusemax.with_level("DRAM", bandwidth_bytes_per_s=bw), w, SM(style, 256, 256))
               .latency_s for bw in (2e12, 2e11, 2e10)]
        assert lat[0] <= lat[1] <= lat[2], style
    slow = simulate_attention(fusemax.with_level("DRAM", bandwidth_bytes_per_s=2e10), w, "unfused")
    assert slow.bound == "DRAM" and slow.counts["2D idle cycles waiting on DRAM"] > 0


# ---- schedule ordering ----

@pytest.mark.parametrize("seq", [8192, 16384])
def test_fused_is_fastest_for_long_sequences(fusemax, seq):
    w = _w(seq)
    fused = simulate_attention(fusemax, w, SM("fused", 2048, 256))
    row = simulate_attention(fusemax, w, SM("row_fused", int(fusemax.levels[1].capacity_bytes) // (4 * seq), 256))
    unfused = simulate_attention(fusemax, w, "unfused")
    assert fused.latency_s < unfused.latency_s < row.latency_s


def test_row_fused_loses_to_unfused_on_a_fast_dram_ws_array(fusemax):
    """Named effect, "WS fill/drain of GLB-limited row blocks": row_fused keeps a block_m x N fp32
    score block in the 8 MiB GLB, so at N = 8192 block_m <= 256; every weight-stationary fold then
    streams only 256 rows against 2R + C - 2 = 766 cycles of load and drain, while unfused streams
    all 8192 rows per fold. At 2 TB/s unfused's S/P round trips (8 B per score) never bind: the
    1D array takes 4/256 cycles per score, DRAM 8/2128. With DRAM at 100 GB/s (unfused memory
    bound, the FuseMax paper's premise) the expected order fused <= row_fused <= unfused holds."""
    w = _w(8192)
    row = simulate_attention(fusemax, w, SM("row_fused", 256, 256))
    unfused = simulate_attention(fusemax, w, "unfused")
    # per tile: QK^T (256 x 256, K = 128) and PV (256 x 128, K = 256) are one fold each: 2 x (766 + 256)
    assert row.counts["2D busy cycles"] == 2 * 32 * 32 * 2 * (766 + 256)
    # unfused: 32 folds of (766 + 8192) for QK^T and for PV, per head
    assert unfused.counts["2D busy cycles"] == 2 * 2 * 32 * (766 + 8192)
    assert row.latency_s > unfused.latency_s
    assert row.counts["1D busy cycles"] == unfused.counts["1D busy cycles"]  # the same softmax work
    slow = fusemax.with_level("DRAM", bandwidth_bytes_per_s=1e11)
    lat = [simulate_attention(slow, w, m).latency_s
           for m in (SM("fused", 2048, 256), SM("row_fused", 256, 256), "unfused")]
    assert lat[0] <= lat[1] <= lat[2]


def test_one_row_block_makes_row_fused_do_unfused_work(fusemax):
    # seq 1024: one 1024-row block fits (4 MiB of scores); row_fused then runs the same folds and the
    # same softmax as unfused, plus the first fill; fused beats both
    w = _w(1024)
    row = simulate_attention(fusemax, w, SM("row_fused", 1024, 256))
    unfused = simulate_attention(fusemax, w, "unfused")
    fused = simulate_attention(fusemax, w, SM("fused", 1024, 256))
    assert row.counts["2D busy cycles"] == unfused.counts["2D busy cycles"]
    assert row.counts["1D busy cycles"] == unfused.counts["1D busy cycles"]
    assert _cycles(row) - _cycles(unfused) <= row.counts["2D idle cycles waiting on DRAM"] + 200
    assert fused.latency_s < min(row.latency_s, unfused.latency_s)


# ---- agreement with the analytical model ----

@pytest.mark.parametrize("seq,heads,mapping,kw", [
    (4096, 4, SM("fused", 256, 256), {}),  # 2D-bound pipeline
    (8192, 2, SM("fused", 2048, 256), {}),  # 1D-bound pipeline
    (8192, 2, SM("fused", 1024, 256), dict(causal=True)),
    (4096, 4, "unfused", {}), (8192, 2, "unfused", dict(causal=True))],
    ids=["fused-2D-bound", "fused-1D-bound", "fused-causal", "unfused", "unfused-causal"])
def test_agrees_with_analytical_on_regular_cases(fusemax, seq, heads, mapping, kw):
    w = _w(seq, heads, **kw)
    sim, ana = simulate_attention(fusemax, w, mapping), attnsim.predict(fusemax, w, mapping)
    assert abs(sim.latency_s / ana.latency_s - 1) <= TOL


def test_row_fused_gap_is_the_online_rescale_it_does_not_need(fusemax):
    """Named effect: the analytical model charges row_fused the fused schedule's per-tile online
    rescale (bm*F vector ops, bm exps per tile); FLAT's row-wise softmax needs none. Without that
    term the two agree within TOL; with it the analytical model is F/(4*bn) = 12.5% slower on 1D."""
    w, m = _w(8192), SM("row_fused", 256, 256)
    sim, ana = simulate_attention(fusemax, w, m), attnsim.predict(fusemax, w, m)
    tiles = 2 * 32 * 32
    rescale = tiles * (256 * 128) / 256 / fusemax.clock_hz  # the vector ops term wins the max
    assert sim.latency_s < ana.latency_s
    assert abs(sim.latency_s / (ana.latency_s - rescale) - 1) <= TOL


def test_short_pipeline_pays_fill_and_drain(fusemax):
    """Named effect, "pipeline fill and drain": 8 tiles (2 heads x 4 key tiles). The analytical
    model charges tiles x max(2D, 1D); the pipeline also runs the first QK^T before any softmax
    and the last softmax and PV after the 2D array has nothing else to do."""
    w, m = _w(1024), SM("fused", 1024, 256)
    sim, ana = simulate_attention(fusemax, w, m), attnsim.predict(fusemax, w, m)
    qk = simulate_gemm(256, 256, "ws", 1024, 256, 128).compute_cycles
    pv = simulate_gemm(256, 256, "ws", 1024, 128, 256).compute_cycles
    sm = max(math.ceil((1024 * 256 + 1024) / 256), math.ceil((4 * 1024 * 256 + 1024 * 128) / 256))
    steady = 8 * max(qk + pv, sm)
    assert steady == round(ana.latency_s * fusemax.clock_hz)
    assert sim.latency_s / ana.latency_s - 1 > TOL
    assert qk + pv <= _cycles(sim) - steady <= qk + pv + sm + sim.counts["2D idle cycles waiting on DRAM"]


def test_default_query_blocks_are_equal(fusemax):
    """The default fused block_m splits the queries into equal blocks (the fp32 O state of up to
    8065 rows fits in half the GLB, so 8192 queries make two blocks of 4096, not 8065 + 127)."""
    w = _w(8192)
    sim, ana = simulate_attention(fusemax, w, None), attnsim.predict(fusemax, w, None)
    assert sim.occupancy["block_m"] == 4096
    assert abs(sim.latency_s / ana.latency_s - 1) <= TOL


def test_partial_query_tiles_are_charged_full_by_the_analytical_model(fusemax):
    """Named effect, "partial tile padding": with an explicit block_m of 8065, 8192 queries make one
    8065-row and one 127-row tile. The analytical model charges both as 8065 rows (about twice the
    work); the simulator keeps the true sizes and agrees within TOL with tiles x max(2D, 1D)
    evaluated at the true sizes."""
    w = _w(8192)
    m = SM("fused", 8065, 256)
    sim, ana = simulate_attention(fusemax, w, m), attnsim.predict(fusemax, w, m)
    assert sim.latency_s < 0.6 * ana.latency_s

    def per_tile(tm):
        qk = simulate_gemm(256, 256, "ws", tm, 256, 128).compute_cycles
        pv = simulate_gemm(256, 256, "ws", tm, 128, 256).compute_cycles
        return max(qk + pv, math.ceil((tm * 256 + tm) / 256), math.ceil((4 * tm * 256 + tm * 128) / 256))
    true_sizes = 2 * 32 * (per_tile(8065) + per_tile(127))
    assert abs(_cycles(sim) / true_sizes - 1) <= TOL


# ---- errors ----

def test_errors(fusemax):
    with pytest.raises(MappingError, match="GLB overflows"):
        simulate_attention(fusemax, _w(16384), SM("row_fused", 256, 256))
    with pytest.raises(MappingError, match="not 'block_sparse'"):
        simulate_attention(fusemax, attnsim.attention("softmax", seq=1024, density=0.5), "fused")
    with pytest.raises(SpecError, match="spatial"):
        simulate_attention("h100_sxm5_80gb", _w(1024), None)
    with pytest.raises(MappingError, match="positive integers"):
        simulate_attention(fusemax, _w(1024), SM("fused", 0, 256))


@pytest.mark.parametrize("style,kw", [("fused", dict(kv_heads=2)), ("row_fused", dict(kv_heads=4)),
                                      ("fused", dict(causal=True)), ("row_fused", dict(window=300, sink=40))])
def test_real_schedules_agree_with_the_twin(fusemax, monkeypatch, style, kw):
    # the job lists simulate_attention builds, at 20 GB/s so that DRAM stalls the pipeline
    seen = []

    def both(*args):
        o = real(*args)
        seen.append((dict(total=o[K.S_TOTAL], busy_2d=o[K.S_BUSY_2D], busy_1d=o[K.S_BUSY_1D],
                          dram_busy=o[K.S_DRAM_BUSY], idle_2d_dram=o[K.S_IDLE_2D_DRAM],
                          idle_2d_1d=o[K.S_IDLE_2D_1D], tail=o[K.S_TAIL]), two_array_schedule_reference(*args)))
        return o
    real = K.two_array_schedule
    monkeypatch.setattr(K, "two_array_schedule", both)
    slow = fusemax.with_level("DRAM", bandwidth_bytes_per_s=2e10)
    w = attnsim.attention("softmax", batch=2, heads=4, seq_q=700, seq_kv=1100, head_dim=64, **kw)
    r = simulate_attention(slow, w, SM(style, 200, 256))
    assert len(seen) == 1 and seen[0][0] == seen[0][1]
    assert r.counts["2D idle cycles waiting on DRAM"] > 0
