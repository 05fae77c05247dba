"""Off-chip traffic lower bounds: exact agreement with a brute-force twin, the properties a
bound must have, hand-derived golden values, and the key property: no mapper point beats the
bound of its schedule class at its capacity."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import attnsim
from attnsim.errors import MappingError
from attnsim.mapping.spatial_search import evaluate_space
from attnsim.model.lower_bounds import (SCHEDULES, STYLE_SCHEDULE, compulsory_bytes, offchip_traffic_bound,
                                        plot_ski_slope, row_visible_keys, ski_slope)
from attnsim.workload.masks import causal_mask, full_mask, window_mask

HUGE = 2.0 ** 60


def element_mask(w) -> np.ndarray:
    m, n = w.seq_q, w.seq_kv
    if w.mask.kind == "full":
        return full_mask(m, n)
    if w.mask.kind == "causal":
        return causal_mask(m, n)
    return window_mask(m, n, w.mask.window, w.mask.sink, causal=True)


# ---------------------------------------------------------------- the brute-force twin

def naive_bounds(w, capacities) -> dict[str, list[float]]:
    """Every schedule of the stated class enumerated in plain loops from the element mask:
    every g | G, every bp in 1..M, every bn in 1..N; no monotonicity shortcut."""
    mask = element_mask(w)
    G, M, N, D, F, e = w.group, w.seq_q, w.seq_kv, w.head_dim, w.value_dim, w.dtype_bytes
    st_ = (F + 2) * 4
    W = mask.sum(axis=1)
    nvis = int(mask.any(axis=0).sum())
    A = int(mask.sum())

    def blocks(bp):
        return [mask[i:i + bp].any(axis=0).sum() for i in range(0, M, bp)]

    vis = {bp: sum(blocks(bp)) for bp in range(1, M + 1)}
    wmax = {bp: max(blocks(bp)) for bp in range(1, M + 1)}
    gs = [g for g in range(1, G + 1) if G % g == 0]
    Q, O, Kv, Vv = G * M * D * e, G * M * F * e, nvis * D * e, nvis * F * e
    comp = Q + O + Kv + Vv

    def least(options, c):
        fit = [cost for fp, cost in options if fp <= c]
        return min(fit) if fit else math.inf

    def L(bn):
        return [-(-int(x) // bn) for x in W]

    qk = [(g * bp * D * e + D * e + 4, Q + (G // g) * vis[bp] * D * e) for g in gs for bp in range(1, M + 1)]
    qk += [(bn * D * e + D * e + 4, Kv + G * sum(max(1, x) for x in L(bn)) * D * e) for bn in range(1, N + 1)]
    pv = [(g * bp * F * 4 + F * e + e, (G // g) * vis[bp] * F * e + O) for g in gs for bp in range(1, M + 1)]
    pv += [(bn * F * e + F * 4 + e, Vv + G * sum(2 * max(0, x - 1) for x in L(bn)) * F * 4 + O)
           for bn in range(1, N + 1)]
    row = max(D * e, 4 * F) + 8
    rf = [(g * bp * (row + 4 * wmax[bp]) + (D + F) * e, Q + O + (G // g) * vis[bp] * (D + F) * e)
          for g in gs for bp in range(1, M + 1)]
    rf.append((Kv + Vv + row + 4 * wmax[1], comp))
    ff = [(g * bp * (D * e + st_) + (D + F) * e + 4, Q + O + (G // g) * vis[bp] * (D + F) * e)
          for g in gs for bp in range(1, M + 1)]
    ff += [(bn * (D + F) * e + D * e + st_ + 4,
            Kv + Vv + G * sum(max(1, x) * D * e + 2 * max(0, x - 1) * st_ for x in L(bn)) + O)
           for bn in range(1, N + 1)]
    ff += [(Kv + Vv + D * e + st_ + 4, comp), (G * M * (D * e + st_) + (D + F) * e + 4, comp)]
    s_bytes = G * A * e
    out = {s: [] for s in SCHEDULES}
    for c in capacities:
        r = 1 if wmax[1] * e <= c else 2
        unf = least(qk, c) + least(pv, c) + (3 + r) * s_bytes
        if c - s_bytes > 0:
            unf = min(unf, least(qk, c - s_bytes) + least(pv, c - s_bytes))
        fus = min(unf, least(rf, c))
        full = min(fus, least(ff, c))
        groups = w.batch * w.kv_heads
        out["unfused"].append(unf * groups)
        out["fused"].append(fus * groups)
        out["fully_fused"].append(full * groups)
    return out


@st.composite
def small_workloads(draw, max_len=24):
    kv = draw(st.sampled_from([1, 2]))
    g = draw(st.sampled_from([1, 2, 4]))
    m, n = draw(st.integers(1, max_len)), draw(st.integers(1, max_len))
    kind = draw(st.sampled_from(["full", "causal", "window"]))
    extra = {}
    if kind == "causal":
        extra["causal"] = True
    elif kind == "window":
        extra.update(window=draw(st.integers(1, n)), sink=draw(st.integers(0, 3)))
    return attnsim.attention("softmax", batch=draw(st.integers(1, 2)), heads=kv * g, kv_heads=kv, seq_q=m, seq_kv=n,
                             head_dim=draw(st.sampled_from([8, 16, 32])), value_dim=draw(st.sampled_from([8, 24])),
                             dtype=draw(st.sampled_from(["bf16", "fp8", "fp32"])), **extra)


CAPS = [0.0, 40, 100, 300, 700, 1500, 3000, 6000, 12000, 30000, 80000, 250000, 1e6, 1e7, HUGE]


@settings(max_examples=60, deadline=None)
@given(small_workloads())
def test_bounds_equal_the_brute_force_twin(w):
    want = naive_bounds(w, CAPS)
    for s in SCHEDULES:
        assert offchip_traffic_bound(w, np.array(CAPS), s).tolist() == want[s], s


@pytest.mark.parametrize("m,n,window,sink", [(17, 17, 0, 0), (10, 30, 0, 0), (30, 10, 0, 0), (40, 40, 7, 0),
                                             (25, 60, 9, 3), (60, 25, 4, 2)])
def test_row_visible_keys_equal_the_element_mask(m, n, window, sink):
    kw = dict(window=window, sink=sink) if window else dict(causal=True)
    w = attnsim.attention("softmax", heads=1, seq_q=m, seq_kv=n, head_dim=16, **kw)
    assert row_visible_keys(w).tolist() == element_mask(w).sum(axis=1).tolist()


# ---------------------------------------------------------------- properties

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_workloads(max_len=200), st.lists(st.floats(1, 1e9), min_size=2, max_size=12))
def test_monotone_ordered_and_compulsory_at_huge_capacity(w, caps):
    caps = np.sort(np.array(caps + [HUGE]))
    comp = compulsory_bytes(w)
    b = {s: offchip_traffic_bound(w, caps, s) for s in SCHEDULES}
    for s in SCHEDULES:
        assert (b[s][:-1] >= b[s][1:]).all(), s  # never rises with capacity (inf where nothing fits)
        assert (b[s] >= comp).all() and b[s][-1] == comp, s
    assert (b["unfused"] >= b["fused"]).all() and (b["fused"] >= b["fully_fused"]).all()


def test_golden_full_mask_query_blocks():
    """B = H = 1, M = N = 1024, D = F = 64, bf16, C = 64 KiB = 65536 B.
    Query-stationary online softmax: a row holds Q (64 x 2 = 128 B) and its fp32 state
    ((64 + 2) x 4 = 264 B): 392 B; one streamed K/V row (256 B) and a score (4 B) leave room
    for floor((65536 - 260) / 392) = 166 rows -> ceil(1024 / 166) = 7 query blocks, each
    streaming all of K and V (1024 x 128 x 2 = 256 KiB):
        |Q| + |O| + 7 x 256 KiB = 128 KiB + 128 KiB + 1792 KiB = 2,097,152 B.
    K/V-stationary does worse: 254 keys per block -> 5 key blocks -> every row read 5 times
    and its state spilled 4 times each way: 256 KiB + 1024 x (5 x 128 + 8 x 264) + 128 KiB."""
    w = attnsim.attention("softmax", batch=1, heads=1, seq=1024, head_dim=64)
    assert offchip_traffic_bound(w, 65536, "fully_fused") == 2_097_152
    assert 256 * 1024 + 1024 * (5 * 128 + 8 * 264) + 128 * 1024 > 2_097_152


def test_golden_unfused_plateau_llama3_8b():
    """Llama-3-8B prefill 8k at C = 8 MiB: K fits whole beside one Q row (8192 x 256 B = 2 MiB),
    so QK^T reads Q and K once; V likewise for PV; a row of S (16 KiB) fits, so S is read once:
    per group |Q| + |K| + |V| + |O| + 4 x G x A x 2 B with A = 8192 x 8193 / 2 allowed pairs."""
    w = attnsim.load_workload("llama3_8b_prefill_8k")
    a = 8192 * 8193 // 2
    want = compulsory_bytes(w) + 8 * 4 * 4 * a * 2
    assert offchip_traffic_bound(w, 8 * 2**20, "unfused") == want
    # fully fused: K/V of a group (4 MiB) plus one row's Q and state fit in 8 MiB -> compulsory
    assert offchip_traffic_bound(w, 8 * 2**20, "fully_fused") == compulsory_bytes(w)
    # and at 64 KiB a capacity-limited slope, far above compulsory
    assert offchip_traffic_bound(w, 64 * 2**10, "fully_fused") > 30 * compulsory_bytes(w)


def test_nothing_fits_is_infinite_and_bad_inputs():
    w = attnsim.attention("softmax", heads=2, seq=64, head_dim=64, causal=True)
    assert math.isinf(offchip_traffic_bound(w, 10, "fully_fused"))
    with pytest.raises(MappingError, match="did you mean 'fused'"):
        offchip_traffic_bound(w, 1e6, "fusd")
    nb = attnsim.attention("softmax", heads=2, seq=64, head_dim=64, grid=(8, 8), win=(3, 3))
    with pytest.raises(MappingError, match="interval masks"):
        offchip_traffic_bound(nb, 1e6)


# ---------------------------------------------------------------- the key property

def _assert_mapper_above_bound(arch, w, cap):
    a = arch.with_level(arch.levels[1].name, capacity_bytes=cap)
    ev = evaluate_space(a, w)
    styles = np.array(["unfused", "row_fused", "fused"])[ev.points.style]
    checked = 0
    for style, sched in STYLE_SCHEDULE.items():
        dram = ev.cols["dram"][styles == style]
        if len(dram):
            bound = offchip_traffic_bound(w, cap, sched)
            assert dram.min() >= bound, (style, cap, dram.min(), bound)
            checked += len(dram)
    return checked


@pytest.mark.parametrize("cap_kib", [64, 512, 4096, 8192, 65536])
def test_mapper_never_beats_the_bound_llama3_8b(cap_kib):
    fusemax = attnsim.load_arch("fusemax_like")
    assert _assert_mapper_above_bound(fusemax, attnsim.load_workload("llama3_8b_prefill_8k"), cap_kib * 1024) > 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_workloads(max_len=300), st.floats(200, 4e6), st.sampled_from([4, 8, 16]),
       st.sampled_from(["ws", "os", "is"]))
def test_mapper_never_beats_the_bound(w, cap, dim, dataflow):
    base = attnsim.load_arch("fusemax_like")
    arch = replace(base, array=replace(base.array, rows=dim, cols=dim, dataflow=dataflow))
    _assert_mapper_above_bound(arch, w, cap)


# ---------------------------------------------------------------- the ski slope

def test_ski_slope_table_and_plot(tmp_path):
    w = attnsim.attention("softmax", heads=8, kv_heads=2, seq=2048, head_dim=64, causal=True)
    caps = [2.0 ** k for k in range(14, 24)]
    df = ski_slope(w, caps, arch="fusemax_like")
    assert list(df.columns[:4]) == ["capacity_bytes", "schedule", "bound_bytes", "compulsory_bytes"]
    assert len(df) == 3 * len(caps) and set(df.schedule) == set(SCHEDULES)
    ok = df.mapper_bytes.notna()
    assert ok.any()
    assert (df.mapper_bytes[ok] >= df.bound_bytes[ok]).all()
    assert (df.mapper_min_bytes[ok] <= df.mapper_bytes[ok]).all()
    big = df[(df.capacity_bytes == caps[-1]) & (df.schedule == "fully_fused")].iloc[0]
    assert big.mapper_min_bytes == big.bound_bytes == big.compulsory_bytes  # the mapper meets the bound
    bounds_only = ski_slope(w, caps, arch="h100_sxm5_80gb")
    assert "mapper_bytes" not in bounds_only and (bounds_only.bound_bytes == df.bound_bytes).all()
    path = plot_ski_slope(df, tmp_path / "ski.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- neighborhood statistics

@pytest.mark.parametrize("grid,win", [((300,), (21,)), ((33, 40), (7, 13)), ((7, 9, 11), (3, 5, 4)),
                                      ((5, 6, 7), (9, 9, 9)), ((4, 50), (1, 1))])
def test_neighborhood_stats_equal_the_element_by_element_twin(grid, win):
    """The run-based counter (all key tiles at once; what explicit_tile_stats and the bounds use)
    agrees exactly with workload.tiles' element-by-element twin."""
    from attnsim.model.lower_bounds import block_stats_many
    from attnsim.workload.tiles import neighborhood_counts_reference
    n = int(np.prod(grid))
    w = attnsim.attention("softmax", heads=1, seq=n, head_dim=16, grid=grid, win=win)
    shape = np.array(grid, dtype=np.int64)
    half = np.array([x // 2 for x in win], dtype=np.int64)
    # the element mask, from workload.masks' own definition of a clipped neighborhood (which takes
    # odd windows: an even win reaches win // 2 each side, as the odd win + 1 does)
    from attnsim.workload.masks import _neighborhood_nd
    elements = _neighborhood_nd(grid, [2 * h + 1 for h in half], [f"a{i}" for i in range(len(grid))])
    bns = (1, 7, 16, 64, 100, n)
    for bp in (1, 5, 16, 64, n):
        got = block_stats_many(w, bp, bns)
        for j, bn in enumerate(bns):
            tiles, full, allowed = neighborhood_counts_reference(shape, half, bp, bn)
            want = (tiles.sum(), tiles.max(), len(tiles), allowed, len(tiles), full.sum(), tiles.min())
            assert tuple(float(x[j]) for x in got) == tuple(float(x) for x in want), (bp, bn)
            assert (tiles.tolist(), full.tolist(), allowed) == _element_tile_counts(elements, bp, bn), (bp, bn)


def _element_tile_counts(mask, bp, bn):
    """Per query tile, non-empty and full key tiles, and allowed pairs, straight from a bool mask."""
    tiles, full = [], []
    for r0 in range(0, mask.shape[0], bp):
        blocks = [mask[r0:r0 + bp, c0:c0 + bn] for c0 in range(0, mask.shape[1], bn)]
        tiles.append(sum(bool(b.any()) for b in blocks))
        full.append(sum(bool(b.all()) for b in blocks))
    return tiles, full, int(mask.sum())
