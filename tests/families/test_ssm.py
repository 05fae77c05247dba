"""mamba_scan and mamba2_ssd: references against the executable cascades, degenerate settings,
golden plan counts (each with its derivation), properties and bad input."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import attnsim
from attnsim.errors import MappingError, WorkloadError
from attnsim.model.families import plan_for
from attnsim.workload.families import ssm

H100 = attnsim.load_arch("h100_sxm5_80gb")
SPATIAL = ("fusemax_like", "tpu_like_128x128")
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
RTOL = 1e-12  # float64 throughout: the two orders of summation agree to rounding


def scan_inputs(rng, bt, length, dn, n):
    x = rng.standard_normal((bt, length, dn))
    delta = rng.uniform(0.01, 0.5, (bt, length, dn))
    a = -rng.uniform(0.1, 2.0, (dn, n))
    b, c = rng.standard_normal((bt, length, n)), rng.standard_normal((bt, length, n))
    return x, delta, a, b, c, rng.standard_normal(dn)


def ssd_inputs(rng, bt, length, h, p, n, g):
    x = rng.standard_normal((bt, length, h, p))
    dt = rng.uniform(0.01, 0.5, (bt, length, h))
    a = -rng.uniform(0.1, 2.0, h)
    b, c = rng.standard_normal((bt, length, g, n)), rng.standard_normal((bt, length, g, n))
    return x, dt, a, b, c, rng.standard_normal(h)


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=RTOL * np.abs(b).max())


def scan_w(batch=1, channels=256, seq=1000, **params):
    return attnsim.attention("mamba_scan", batch=batch, heads=channels // 64, head_dim=64, seq=seq, causal=True,
                             params=params)


def ssd_w(batch=1, heads=8, head_dim=64, seq=1000, **params):
    return attnsim.attention("mamba2_ssd", batch=batch, heads=heads, head_dim=head_dim, seq=seq, causal=True,
                             params=params)


# ---------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("bt,length,dn,n,chunk", [(2, 100, 5, 3, 16), (1, 257, 3, 4, 64), (1, 63, 2, 1, 128),
                                                  (2, 257, 3, 16, 100)],
                         ids=["B2-L100-D5-N3-T16", "B1-L257-D3-N4-T64", "B1-L63-D2-N1-T128", "B2-L257-D3-N16-T100"])
def test_chunked_scan_equals_sequential(bt, length, dn, n, chunk):
    args = scan_inputs(np.random.default_rng(length + n), bt, length, dn, n)
    y0, h0 = ssm.mamba_scan_reference(*args, return_state=True)
    y1, h1 = ssm.mamba_scan_chunked(*args, chunk=chunk, return_state=True)
    close(y1, y0)
    close(h1, h0)


@pytest.mark.parametrize("bt,length,h,p,n,g,q", [(2, 100, 4, 3, 5, 2, 16), (1, 257, 2, 4, 3, 1, 64),
                                                 (1, 63, 3, 2, 2, 3, 63), (1, 257, 2, 2, 2, 1, 1),
                                                 (2, 100, 6, 3, 4, 3, 256)],
                         ids=["B2-L100-H4-G2-Q16", "B1-L257-H2-G1-Q64", "B1-L63-H3-G3-Q63", "B1-L257-Q1",
                              "B2-L100-Q256-one-chunk"])
def test_chunked_ssd_equals_recurrence(bt, length, h, p, n, g, q):
    args = ssd_inputs(np.random.default_rng(length + q), bt, length, h, p, n, g)
    y0, h0 = ssm.mamba2_reference(*args, return_state=True)
    y1, h1 = ssm.mamba2_ssd_chunked(*args, chunk=q, return_state=True)
    close(y1, y0)
    close(h1, h0)


def test_scan_without_decay_is_a_cumulative_sum():
    """A = 0: exp(delta A) = 1, so h_t = cumsum_s<=t delta_s B_s x_s and y_t = C_t . h_t + D x_t."""
    x, delta, a, b, c, d = scan_inputs(np.random.default_rng(1), 2, 257, 3, 4)
    a = np.zeros_like(a)
    h = np.cumsum((delta * x)[..., None] * b[:, :, None, :], axis=1)  # [B, L, Dn, N]
    want = np.einsum("bldn,bln->bld", h, c) + d * x
    close(ssm.mamba_scan_reference(x, delta, a, b, c, d), want)
    close(ssm.mamba_scan_chunked(x, delta, a, b, c, d, chunk=64), want)


def sma_quadratic(x, dt, a, b, c, d):
    """The SSD 'attention' form over the whole sequence: y = (L o C B^T) (dt x) + D x with
    L[i, j] = exp(cs_i - cs_j) for j <= i, cs = cumsum(dt A); written independently of ssm.py."""
    bt, length, h, p = x.shape
    grp = np.arange(h) // (h // b.shape[2])
    cs = np.cumsum(dt * a, axis=1)  # [B, L, H]
    tril = np.tril(np.ones((length, length), dtype=bool))
    seg = np.where(tril[None, :, :, None], cs[:, :, None, :] - cs[:, None, :, :], -np.inf)  # [B, i, j, H]
    scores = np.einsum("bihn,bjhn->bijh", c[:, :, grp], b[:, :, grp]) * np.exp(seg)
    return np.einsum("bijh,bjh,bjhp->bihp", scores, dt, x) + d[:, None] * x


def test_one_chunk_is_the_quadratic_form():
    args = ssd_inputs(np.random.default_rng(2), 2, 100, 4, 3, 5, 2)
    want = sma_quadratic(*args)
    close(ssm.mamba2_ssd_chunked(*args, chunk=100), want)
    close(ssm.mamba2_reference(*args), want)


def test_no_decay_is_causal_linear_attention():
    """A = 0: y_i = sum_{j<=i} (C_i . B_j) (dt_j x_j) + D x_i, linear attention with q = C, k = B,
    v = dt x (the causal mask without decay)."""
    x, dt, a, b, c, d = ssd_inputs(np.random.default_rng(3), 2, 257, 4, 3, 5, 2)
    a = np.zeros_like(a)
    grp = np.arange(4) // 2
    q, k, v = c[:, :, grp], b[:, :, grp], dt[..., None] * x  # [B, L, H, N], [B, L, H, N], [B, L, H, P]
    s = np.einsum("bihn,bjhn->bhij", q, k) * np.tril(np.ones((257, 257)))
    want = np.einsum("bhij,bjhp->bihp", s, v) + d[:, None] * x
    close(ssm.mamba2_ssd_chunked(x, dt, a, b, c, d, chunk=64), want)
    close(ssm.mamba2_reference(x, dt, a, b, c, d), want)


# ---------------------------------------------------------------------------- plans: structure


def names(plan):
    return [op.name for op in plan.ops]


def test_one_chunk_plan_has_no_state_passing_work():
    w = ssd_w(seq=256, chunk=256, final_state=False)
    p = plan_for(H100, w)
    assert names(p) == ["_chunk_cumsum_fwd", "_bmm_chunk_fwd", "_chunk_scan_fwd"]
    scan = p.ops[-1]
    # only the diagonal block's GEMMs: 8 row tiles of 32, keys 32, 64, ..., 256, no K = 128 state GEMM
    assert [g.k for g in scan.gemms] == [32 * (i + 1) for i in range(8)]
    ext = ssm.mamba2_extents(w)
    assert (ext["r"], ext["k"], ext["s"]) == (0, 0, 0)


def test_mamba_ssm_launch_keeps_state_kernels_for_one_chunk():
    """final_state (mamba_ssm's forward): chunk_state and state_passing still run for one chunk."""
    p = plan_for(H100, ssd_w(seq=256, chunk=256))
    assert names(p) == ["_chunk_cumsum_fwd", "_chunk_state_fwd", "_state_passing_fwd", "_bmm_chunk_fwd",
                        "_chunk_scan_fwd"]


def test_mamba_scan_has_no_matrix_work():
    """The selective scan is elementwise: no GEMM anywhere, useful FLOPs 0 (projections excluded)."""
    for kernel in ("fused", "materialized"):
        w = scan_w(kernel=kernel)
        p = plan_for(H100, w)
        assert all(not op.gemms for op in p.ops)
        assert p.useful_flops == ssm.cascade_ops(w)["mma"] == 0.0


@pytest.mark.parametrize("final", [True, False], ids=["final-state", "outputs-only"])
def test_ssd_useful_flops_are_the_cascade_mma(final):
    """B=1, L=1000, H=8, P=64, N=128, G=1, Q=256: C = 4 chunks, the last of 232.
    w = 3 x 256*257/2 + 232*233/2 = 98688 + 27028 = 125716 causal pairs inside chunks
    CB 2*G*N*w, diagonal 2*H*P*w, chunk states 2*H*P*N*r, state term 2*H*P*N*s with
    r = 1000 (final) or 768, s = 1000 - 256 = 744."""
    w = ssd_w(final_state=final)
    r, s, pairs = (1000 if final else 768), 744, 125716
    want = 2 * 1 * 128 * pairs + 2 * 8 * 64 * pairs + 2 * 8 * 64 * 128 * (r + s)
    p = plan_for(H100, w)
    assert p.useful_flops == ssm.cascade_ops(w)["mma"] == want
    assert attnsim.predict(H100, w).useful_flops == want


# ---------------------------------------------------------------------------- golden counts


def test_golden_fused_scan():
    """B=2, L=1000, D_inner=256 (4 x 64), N=16, bf16 (2 B).
    chunk: L <= 1024 -> 64 threads x 16 items = 1024, 1 chunk; grid 2 x 256 = 512 CTAs of 2 warps.
    HBM: u, delta 2*2*1000*256*2 = 2048000; B, C 2*2*1000*16*2 = 128000; A 256*16*4 = 16384;
         D, bias 2*256*4 = 2048; y 2*1000*256*2 = 1024000; prefixes 2*256*1*16*8 = 65536 -> 3283968
    L2: + B, C for the other 255 channels: 128000 * 255 = 32640000 -> 35923968
    exps: 2*1000*256*16 = 8192000 exp2 + 2*2*1000*256 = 1024000 softplus -> 9216000
    vector: combines per item (2*16 - 1 + 5 + 1)/16 = 2.3125, per state 3 + 2*2.3125 = 7.625
            8192000 * 7.625 + 4 * 512000 = 62464000 + 2048000 = 64512000"""
    op, = plan_for(H100, scan_w(batch=2)).ops
    assert (op.name, op.ctas, op.warps) == ("selective_scan_fwd", 512, 2)
    assert op.hbm_bytes == 3283968
    assert op.l2_bytes == 35923968
    assert op.exps == 9216000
    assert op.vector_ops == 64512000


def test_golden_materialized_scan_and_traffic_ratio():
    """Same shape, kernel=materialized: per (b, l, d, n) point (8192000 of them) the plan moves
    dA, dBu written (8 B), read with h written (12 B), h read (4 B) = 24 B in fp32; per token
    (512000 (b, l, d)) delta, u in, u again and y: 2*2 + 2 + 2 = 8 B; B and C 64000 each + A.
    HBM = 24*8192000 + 8*512000 + 2*64000 + 16384 = 196608000 + 4096000 + 128000 + 16384 = 200848384,
    61x the fused kernel's 3283968 (about 4N: 24 B per state point against 6 B per token)."""
    ops = plan_for(H100, scan_w(batch=2, kernel="materialized")).ops
    assert [op.name for op in ops] == ["discretize (dA, dBu to HBM)", "scan over L (h to HBM)",
                                       "contract y = C h + D u"]
    assert ops[1].ctas == 2 * 256 * 16 / 128
    total = sum(op.hbm_bytes for op in ops)
    assert total == 200848384
    assert total / 3283968 == pytest.approx(61.16, abs=0.01)


def test_golden_ssd_kernels():
    """B=1, L=1000, H=8, P=64, N=128, G=1, Q=256, bf16; C = 4 chunks, last 232; final_state.
    _chunk_cumsum: grid 1 x 4 x ceil(8/16) = 4 CTAs; HBM dt 1000*8*2 = 16000, A and bias 64,
        dt_out and dA_cumsum 2 * 8*4*256 * 4 = 65536 -> 81600
    _chunk_state: P/64 x N/128 = 1 tile; 4 x 8 = 32 CTAs; GEMMs (8*3) x 64 x 128 x 256 and
        8 x 64 x 128 x 256 (232 rounded up to the 32-step loop: 256);
        HBM x 1000*8*64*2 = 1024000, B 1000*128*2 = 256000, dt and dA 8*1000*8 = 64000,
        fp32 states 4*8*64*128*4 = 1048576 -> 2392576
    _state_passing: P*N/512 = 16 blocks x 8 heads = 128 CTAs, 4 steps; HBM states 4*8*8192*4 =
        1048576, dA last 8*4*4 = 128, written states 4*8*8192*2 = 524288, final 8*8192*4 = 262144
        -> 1835136
    _bmm_chunk: (256/64)^2 x 4 chunks = 64 CTAs; GEMM 4 x 256 x 256 x 128; HBM C, B 2*256000,
        CB 4*256*256*4 = 1048576 -> 1560576
    _chunk_scan: 8 row tiles x 1 P tile x 4 chunks x 8 heads = 256 CTAs"""
    w = ssd_w()
    cumsum, state, passing, bmm, scan = plan_for(H100, w).ops
    assert (cumsum.ctas, cumsum.hbm_bytes) == (4, 81600)
    assert state.ctas == 32
    assert [(g.count, g.m, g.n, g.k) for g in state.gemms] == [(24, 64, 128, 256), (8, 64, 128, 256)]
    assert state.hbm_bytes == 2392576
    assert (passing.ctas, passing.hbm_bytes, passing.vector_ops) == (128, 1835136, 8 * 8192 * 4)
    assert (bmm.ctas, bmm.hbm_bytes) == (64, 1560576)
    assert [(g.count, g.m, g.n, g.k) for g in bmm.gemms] == [(4, 256, 256, 128)]
    assert scan.ctas == 256


def test_golden_ssd_chunk_scan_diagonal_keys():
    """The causal loop of _chunk_scan_fwd: row tile i of 32 rows visits min(32 (i + 1), limit)
    keys in 32-steps. A full chunk of 256: 32, 64, ..., 256. The last chunk of 232 (L = 1000):
    tiles 0-6 visit 32..224, tile 7 visits min(256, 232) = 232 -> 256 (the 32-step loop), and
    the state GEMM (K = N = 128) runs for all 4 chunks (final_state)."""
    scan = plan_for(H100, ssd_w()).ops[-1]
    ks = [(g.count, g.k) for g in scan.gemms]
    full = [(8 * 3, 32 * (i + 1)) for i in range(8)]
    last = [(8, 32 * (i + 1)) for i in range(8)]
    assert ks == full + last + [(8 * 4, 128)]


# ---------------------------------------------------------------------------- spatial and examples


@pytest.mark.parametrize("arch", SPATIAL)
@pytest.mark.parametrize("family,params", [("mamba_scan", {}), ("mamba_scan", {"kernel": "materialized"}),
                                           ("mamba2_ssd", {}), ("mamba2_ssd", {"final_state": False})],
                         ids=["scan-fused", "scan-materialized", "ssd", "ssd-outputs-only"])
def test_spatial_archs_cost_the_plan(arch, family, params):
    w = scan_w(**params) if family == "mamba_scan" else ssd_w(**params)
    r = attnsim.predict(arch, w)
    assert r.latency_s > 0 and r.model == "spatial-analytical (plan)"
    assert r.useful_flops == ssm.cascade_ops(w)["mma"]


def test_spatial_ssd_keeps_the_state_on_chip():
    """One pass: DRAM sees x, y (2*1000*8*64*2 = 2048000), dt (16000), B, C (512000), A, D (64)
    and the fp32 final state (8*64*128*4 = 262144), nothing per chunk."""
    op, = plan_for(attnsim.load_arch("fusemax_like"), ssd_w()).ops
    assert op.hbm_bytes == 2048000 + 16000 + 512000 + 64 + 262144


@pytest.mark.parametrize("name", ["mamba_2p8b_scan_2k", "mamba2_2p7b_ssd_8k"])
def test_example_workloads(name):
    w = attnsim.load_workload(name)
    assert w.family in ("mamba_scan", "mamba2_ssd")
    assert attnsim.predict(H100, w).latency_s > 0


# ---------------------------------------------------------------------------- properties


@st.composite
def scan_cases(draw):
    return attnsim.attention("mamba_scan", batch=draw(st.integers(1, 4)), heads=draw(st.integers(1, 8)),
                             head_dim=draw(st.sampled_from([64, 128, 640])), seq=draw(st.integers(1, 5000)),
                             causal=True, params={"d_state": draw(st.integers(1, 64)),
                                                  "kernel": draw(st.sampled_from(["fused", "materialized"]))})


@st.composite
def ssd_cases(draw):
    g = draw(st.sampled_from([1, 2, 8]))
    return attnsim.attention("mamba2_ssd", batch=draw(st.integers(1, 4)), heads=g * draw(st.integers(1, 8)),
                             head_dim=draw(st.sampled_from([32, 64, 128])), seq=draw(st.integers(1, 9000)),
                             causal=True, params={"d_state": draw(st.sampled_from([16, 64, 128, 200])), "ngroups": g,
                                                  "chunk": draw(st.sampled_from([64, 100, 256])),
                                                  "final_state": draw(st.booleans())})


def compulsory_bytes(w):
    """Inputs read and outputs written once."""
    e = w.dtype_bytes
    if w.family == "mamba_scan":
        return 3 * w.batch * w.seq_q * ssm.channels(w) * e + 2 * w.batch * w.seq_q * w.param("d_state") * e
    g, n = w.param("ngroups"), w.param("d_state")
    return w.batch * w.seq_q * (2 * w.heads * w.head_dim + w.heads + 2 * g * n) * e


def spatial_state_bytes(w):
    """The running state a spatial mapping keeps on chip (fp32)."""
    if w.family == "mamba_scan":
        return 0 if w.param("kernel") == "materialized" else w.batch * ssm.channels(w) * w.param("d_state") * 4
    return w.batch * w.heads * w.head_dim * w.param("d_state") * 4


def speed_of_light(arch, w):
    peak = max(per[w.dtype] for per in arch.compute.matrix_flops_per_cycle.values() if w.dtype in per)
    rate = arch.clock_hz * arch.compute.instances
    ops = ssm.cascade_ops(w)
    return max(ops["mma"] / (peak * rate), ops["exp"] / (arch.compute.exp_per_cycle * rate),
               compulsory_bytes(w) / arch.levels[0].bandwidth_bytes_per_s)


@SETTINGS
@given(st.one_of(scan_cases(), ssd_cases()), st.sampled_from(["h100_sxm5_80gb", "a100_sxm4_80gb", "fusemax_like"]))
def test_latency_at_or_above_speed_of_light(w, arch_name):
    arch = attnsim.load_arch(arch_name)
    if arch.kind == "spatial" and spatial_state_bytes(w) > arch.levels[1].capacity_bytes:
        with pytest.raises(MappingError, match="does not fit"):
            attnsim.predict(arch, w)
        return
    assert attnsim.predict(arch, w).latency_s >= speed_of_light(arch, w) * (1 - 1e-12)


@SETTINGS
@given(st.one_of(scan_cases(), ssd_cases()), st.sampled_from(["HBM", "L2"]), st.floats(1.0, 8.0))
def test_more_bandwidth_never_slower(w, level, factor):
    lv = H100.level(level)
    faster = H100.with_level(level, bandwidth_bytes_per_s=lv.bandwidth_bytes_per_s * factor)
    assert attnsim.predict(faster, w).latency_s <= attnsim.predict(H100, w).latency_s * (1 + 1e-12)


@SETTINGS
@given(scan_cases())
def test_materialized_never_moves_less_than_fused(w):
    fused = plan_for(H100, w.with_changes(params=w.params.of({**w.params.as_dict(), "kernel": "fused"})))
    mat = plan_for(H100, w.with_changes(params=w.params.of({**w.params.as_dict(), "kernel": "materialized"})))
    assert sum(op.hbm_bytes for op in mat.ops) >= sum(op.hbm_bytes for op in fused.ops)


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("family,kw,key", [
    ("mamba_scan", dict(seq_q=1, seq_kv=100), "seq_q"),
    ("mamba_scan", dict(seq=100, window=16), "mask.kind"),
    ("mamba_scan", dict(seq=100, kv_heads=1), "kv_heads"),
    ("mamba_scan", dict(seq=100, params={"scan_chunk": 300}), "params.scan_chunk"),
    ("mamba_scan", dict(seq=100, params={"dstate": 16}), "params.dstate"),
    ("mamba2_ssd", dict(seq=100, heads=6, params={"ngroups": 4}), "params.ngroups"),
    ("mamba2_ssd", dict(seq=100, value_dim=32), "value_dim"),
    ("mamba2_ssd", dict(seq=100, params={"chunk": 0}), "params.chunk"),
], ids=["decode-step", "window-mask", "kv-heads", "scan-chunk", "misspelt", "ngroups", "value-dim", "chunk-0"])
def test_bad_input_names_the_key(family, kw, key):
    kw = {"heads": 4, "head_dim": 64, **kw}
    with pytest.raises(WorkloadError) as e:
        attnsim.attention(family, **kw)
    assert any(p.key == key for p in e.value.problems), str(e.value)


def test_fused_scan_state_limit_and_mapping_are_errors():
    with pytest.raises(MappingError, match="MAX_DSTATE"):
        attnsim.predict(H100, scan_w(d_state=300))
    assert attnsim.predict(H100, scan_w(d_state=300, kernel="materialized")).latency_s > 0
    with pytest.raises(MappingError, match="mapping must be None"):
        attnsim.predict(H100, ssd_w(), "flash2")


def test_scan_chunk_follows_the_kernel():
    """selective_scan_fwd_cuda: L <= 128 -> 128, <= 256 -> 256, <= 512 -> 512, <= 1024 -> 1024, else 2048."""
    got = [ssm.scan_chunk(scan_w(seq=s)) for s in (1, 128, 129, 256, 257, 1000, 1025, 100000)]
    assert got == [128, 128, 256, 256, 512, 1024, 2048, 2048]
    assert math.isclose(plan_for(H100, scan_w(seq=100, scan_chunk=2048)).ops[0].warps, 4)
