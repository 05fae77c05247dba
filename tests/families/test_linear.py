"""linear_chunked, gla_chunked, linear_decode: references vs executable forms, cascade vs plan,
golden counts with their derivations, properties, degenerate settings, bad input, the crossover."""
import dataclasses
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import attnsim
from attnsim.errors import MappingError, WorkloadError
from attnsim.model.families import linear as plans
from attnsim.workload.families import linear as L

H100 = attnsim.load_arch("h100_sxm5_80gb")
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
TOL = dict(rtol=1e-10, atol=1e-10)


def qkv(b, h, u, n, e, f, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((b, h, n, e)), rng.standard_normal((b, u, n, e)) / math.sqrt(e),
            rng.standard_normal((b, u, n, f)))


def log_gates(b, u, n, e, seed=1):
    """log sigmoid of shifted normals: alpha in (0, 1), mostly close to 1 (as GLA's gates)."""
    x = np.random.default_rng(seed).standard_normal((b, u, n, e)) + 3.0
    return -np.log1p(np.exp(-x))


def workload(family="linear_chunked", params=None, **shape):
    kw = dict(batch=2, heads=4, seq=256, head_dim=64, causal=True)
    if family == "linear_decode":
        kw = dict(batch=2, heads=4, seq_q=1, seq_kv=1000, head_dim=64)
    kw.update(shape)
    return attnsim.attention(family, params=params or {}, **kw)



CHUNKED = [  # (B, H, U, N, E, F, chunk, decay)
    (2, 4, 2, 100, 8, 6, 16, 1.0),
    (1, 2, 2, 257, 16, 8, 64, 0.97),
    (2, 3, 1, 63, 5, 7, 16, 0.9),
    (1, 2, 2, 100, 8, 8, 100, 0.95),  # one chunk: the quadratic form itself
]


@pytest.mark.parametrize("b,h,u,n,e,f,chunk,decay", CHUNKED,
                         ids=[f"B{c[0]}-H{c[1]}-U{c[2]}-N{c[3]}-E{c[4]}-F{c[5]}-C{c[6]}-decay{c[7]}" for c in CHUNKED])
def test_linear_chunked_equals_quadratic_and_recurrent(b, h, u, n, e, f, chunk, decay):
    q, k, v = qkv(b, h, u, n, e, f)
    ref = L.linear_attention_reference(q, k, v, decay)
    rec, s_rec = L.linear_attention_recurrent(q, k, v, decay)
    out, s_out = L.linear_chunked_forward(q, k, v, chunk, decay)
    np.testing.assert_allclose(rec, ref, **TOL)
    np.testing.assert_allclose(out, ref, **TOL)
    np.testing.assert_allclose(s_out, s_rec, **TOL)


def test_degenerate_chunk_equal_to_sequence_is_the_quadratic_form():
    q, k, v = qkv(2, 4, 4, 100, 8, 8, seed=3)
    o, _ = L.linear_chunked_forward(q, k, v, chunk=100, decay=0.9)
    dense = np.einsum("bhie,bhje->bhij", q, k) * L.decay_mask(100, 0.9)
    np.testing.assert_allclose(o, dense @ v, **TOL)


def test_taylor2_map_is_the_second_order_taylor_kernel():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((5, 6)), rng.standard_normal((7, 6))
    s = x @ y.T
    fx, fy = L.feature_map(x, "taylor2"), L.feature_map(y, "taylor2")
    assert fx.shape == (5, 1 + 6 + 36)
    np.testing.assert_allclose(fx @ fy.T, 1 + s + s * s / 2, **TOL)


def test_hedgehog_map_is_two_softmaxes():
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((9, 8)), rng.standard_normal((8, 4))
    phi = L.feature_map(x, "hedgehog", w)
    assert phi.shape == (9, 8) and (phi > 0).all()
    np.testing.assert_allclose(phi[:, :4].sum(-1), 1.0, **TOL)
    np.testing.assert_allclose(phi[:, 4:].sum(-1), 1.0, **TOL)


@pytest.mark.parametrize("kind,r", [("taylor2", 3), ("taylor2", 8), ("hedgehog", 5)], ids=lambda x: str(x))
def test_chunked_with_feature_map_equals_quadratic(kind, r):
    rng = np.random.default_rng(6)
    q, k, v = qkv(1, 2, 1, 100, 8, 4)
    proj = None if (kind == "taylor2" and r == 8) else rng.standard_normal((8, r)) / math.sqrt(8)
    pq, pk = L.feature_map(q, kind, proj), L.feature_map(k, kind, proj)
    assert pq.shape[-1] == L.feature_dim(kind, 8, r)
    o, _ = L.linear_chunked_forward(pq, pk, v, 16, 0.98)
    np.testing.assert_allclose(o, L.linear_attention_reference(pq, pk, v, 0.98), **TOL)


@pytest.mark.parametrize("n,decay,kind", [(63, 1.0, "identity"), (100, 0.95, "identity"), (64, 0.9, "taylor2")],
                         ids=["N63-nodecay", "N100-decay0.95", "N64-taylor2"])
def test_decode_after_n_tokens_equals_chunked_last_row(n, decay, kind):
    rng = np.random.default_rng(7)
    q, k, v = qkv(2, 4, 2, n + 1, 6, 5, seed=8)
    proj = rng.standard_normal((6, 3)) if kind == "taylor2" else None
    q, k = L.feature_map(q, kind, proj), L.feature_map(k, kind, proj)
    _, state = L.linear_chunked_forward(q[:, :, :n], k[:, :, :n], v[:, :, :n], 16, decay)  # absorb n tokens
    o_dec, _ = L.linear_decode_step(state, q[:, :, n], k[:, :, n], v[:, :, n], decay)
    o_all, _ = L.linear_chunked_forward(q, k, v, 16, decay)
    np.testing.assert_allclose(o_dec, o_all[:, :, n], **TOL)


GLA = [(2, 4, 2, 100, 8, 6, 32, 16), (1, 2, 2, 257, 8, 8, 64, 16), (1, 3, 3, 63, 5, 4, 16, 16),
       (1, 2, 1, 130, 6, 6, 64, 32)]


@pytest.mark.parametrize("b,h,u,n,e,f,chunk,sub", GLA,
                         ids=[f"B{c[0]}-H{c[1]}-U{c[2]}-N{c[3]}-E{c[4]}-C{c[6]}-BC{c[7]}" for c in GLA])
def test_gla_chunked_equals_quadratic_and_recurrent(b, h, u, n, e, f, chunk, sub):
    q, k, v = qkv(b, h, u, n, e, f)
    g = log_gates(b, u, n, e)
    ref = L.gla_reference(q, k, v, g)
    rec, s_rec = L.gla_recurrent(q, k, v, g)
    out, s_out = L.gla_chunked_forward(q, k, v, g, chunk, sub)
    np.testing.assert_allclose(rec, ref, **TOL)
    np.testing.assert_allclose(out, ref, **TOL)
    np.testing.assert_allclose(s_out, s_rec, **TOL)


def test_gla_with_constant_gates_is_linear_attention_with_decay():
    q, k, v = qkv(1, 2, 2, 100, 8, 6)
    g = np.full(k.shape, math.log(0.93))
    o_gla, _ = L.gla_chunked_forward(q, k, v, g, 32, 16)
    o_lin, _ = L.linear_chunked_forward(q, k, v, 32, 0.93)
    np.testing.assert_allclose(o_gla, o_lin, **TOL)



PLAN_CASES = [
    ("linear_chunked", {}, {}),
    ("linear_chunked", {"decay": 0.9, "chunk": 32}, {"seq": 1000}),
    ("linear_chunked", {"feature_map": "taylor2", "feature_dim": 16}, {"kv_heads": 2}),
    ("linear_chunked", {"feature_map": "hedgehog", "feature_dim": 32, "final_state": True}, {"seq": 300}),
    ("linear_chunked", {"kernel": "lightning_fused", "decay": 0.8}, {"seq": 257 + 63}),
    ("gla_chunked", {}, {"seq": 1000}),
    ("gla_chunked", {"chunk": 32, "subchunk": 16, "final_state": True}, {"kv_heads": 1}),
    ("linear_decode", {}, {}),
    ("linear_decode", {"decay": 0.95, "feature_map": "taylor2"}, {"kv_heads": 2}),
]


@pytest.mark.parametrize("family,params,shape", PLAN_CASES, ids=lambda x: str(x) if not isinstance(x, dict) else
                         ",".join(f"{k}={v}" for k, v in x.items()) or "defaults")
def test_plan_useful_flops_equal_cascade_mma(family, params, shape):
    w = workload(family, params, **shape)
    plan = plans.PLANS[family](H100, w)
    assert plan.useful_flops == w.cascade.ops(L.extents(w))["mma"] > 0
    r = attnsim.predict(H100, w)
    assert r.useful_flops == plan.useful_flops
    if family != "linear_decode":  # executed tiles cover at least the math (decode runs on the ALUs)
        assert r.executed_flops >= r.useful_flops


def _pairs_by_enumeration(n, c, bc):
    """Twin of extents(): walk every (i, j) pair and every position."""
    p = x = y = wk = z = 0
    for i in range(n):
        ci, si = i // c, (i % c) // bc
        z += si > 0
        for j in range(i + 1):
            if j // c == ci:
                p += 1
                sj = (j % c) // bc
                x += sj < si
                y += sj == si
    for j in range(n):  # key j, gated once per later row sub-chunk with valid rows in its chunk
        c0 = (j // c) * c
        rows = min(c, n - c0)
        wk += max(0, -(-rows // bc) - 1 - (j - c0) // bc)
    return p, x, y, wk, z


@pytest.mark.parametrize("n,c,bc", [(100, 32, 16), (257, 64, 16), (63, 16, 16), (130, 64, 32)],
                         ids=["N100-C32-BC16", "N257-C64-BC16", "N63-C16-BC16", "N130-C64-BC32"])
def test_extents_pair_counts_match_enumeration(n, c, bc):
    w = workload("gla_chunked", {"chunk": c, "subchunk": bc, "final_state": False}, seq=n)
    ext = L.extents(w)
    assert (ext["p"], ext["x"], ext["y"], ext["wk"], ext["z"]) == _pairs_by_enumeration(n, c, bc)
    last = n - (-(-n // c) - 1) * c
    assert ext["q"] == n - min(c, n) and ext["s"] == n - last


def test_cascade_mma_closed_form():
    # B=2, H=4, U=2, N=256, D=E=F=64, chunk 64: p = 4 chunks x 64*65/2 = 8320 pairs; q = s = 192.
    # mma = B*H*(2 p E + 2 p F + 2 q E F) + B*U*(2 s E F)
    #     = 8*(1064960 + 1064960 + 1572864) + 4*1572864 = 29622272 + 6291456 = 35913728
    w = workload(kv_heads=2)
    assert w.cascade.ops(L.extents(w))["mma"] == 35913728




def _kernels(w, arch=H100):
    return {op.name: op for op in plans.PLANS[w.family](arch, w).ops}


def test_golden_fla_chunk():
    # B=2, H=U=4, N=256, D=E=F=128, bf16, chunk 64 -> NC = 4 chunks, 3 absorbed into states,
    # BK = BV = 64 -> nk = nv = 2.
    w = workload(head_dim=128)
    k = _kernels(w)
    assert list(k) == ["chunk_fwd_h", "chunk_fwd_o"]
    h, o = k["chunk_fwd_h"], k["chunk_fwd_o"]
    # chunk_fwd_h: grid nk x nv x B*U = 2*2*8 = 32 CTAs; each absorbs 3 chunks with a 64x64x64 GEMM
    assert h.ctas == 32
    assert [(g.count, g.m, g.n, g.k) for g in h.gemms] == [(96, 64, 64, 64)]
    # HBM: K and V of the 192 absorbed positions: 2 * (8 * 192 * 128 * 2 B) = 786432;
    # 3 states per (b, u) in bf16: 8 * 3 * 128 * 128 * 2 B = 786432
    assert h.hbm_bytes == 786432 + 786432
    # chunk_fwd_o: grid nv x NC x B*H = 2*4*8 = 64 CTAs
    assert o.ctas == 64
    # Q S: 2 V blocks x 3 chunks x 8 heads x 2 K blocks = 96; Q K^T: 64 CTAs x 2 K blocks = 128
    # (the whole 64x64 tile, half masked); A V: 64, all 64x64x64
    assert [(g.count, g.m, g.n, g.k) for g in o.gemms] == [(96, 64, 64, 64), (128, 64, 64, 64), (64, 64, 64, 64)]
    # HBM: Q, K, V, O 8 * 256 * 128 * 2 B = 524288 each; the 3 states per head read back: 786432
    assert o.hbm_bytes == 4 * 524288 + 786432
    # executed = (96 + 96 + 128 + 64) x 2*64^3 = 201326592 >= useful (closed form as above, U = 4):
    # 8*(2*8320*128*2 + 2*192*128*128) + 8*(2*192*128*128) = 134742016
    r = attnsim.predict(H100, w)
    assert r.executed_flops == 201326592 and r.useful_flops == 134742016


def test_golden_degenerate_chunk_equal_to_sequence_carries_no_state():
    # N = chunk = 256: one chunk, nothing carried: no chunk_fwd_h, no Q S product, no state bytes.
    w = workload(params={"chunk": 256}, head_dim=128)
    k = _kernels(w)
    assert list(k) == ["chunk_fwd_o"]
    o = k["chunk_fwd_o"]
    # grid 2 V blocks x 1 chunk x 8 heads = 16 CTAs; Q K^T 16 x 2 K blocks of 256x256x64; A V 16 of 256x64x256
    assert [(g.count, g.m, g.n, g.k) for g in o.gemms] == [(32, 256, 256, 64), (16, 256, 64, 256)]
    assert o.hbm_bytes == 4 * 524288  # Q, K, V, O only
    ext = L.extents(w)
    assert ext["q"] == ext["s"] == ext["t"] == 0
    # useful = the quadratic masked form: B*H * N(N+1)/2 * 2 (E + F) = 8 * 32896 * 512
    assert plans.useful_flops(w) == 8 * 32896 * 512


def test_golden_lightning_fused():
    # Lightning-2 _fwd_kernel: grid B*H x F/32 = 8 x 4 = 32 CTAs, state on chip; HBM = Q, K, V, O.
    w = workload(params={"kernel": "lightning_fused"}, head_dim=128)
    k = _kernels(w)
    assert list(k) == ["lightning_attn2_fwd"]
    op = k["lightning_attn2_fwd"]
    assert op.ctas == 32 and op.hbm_bytes == 4 * 524288
    # per CTA and block: QK^T 64x64x128, A V 64x32x64; Q kv 64x32x128 for blocks 1..3; K^T V 128x32x64 for 0..2
    assert [(g.count, g.m, g.n, g.k) for g in op.gemms] == [
        (128, 64, 64, 128), (128, 64, 32, 64), (96, 64, 32, 128), (96, 128, 32, 64)]


def test_golden_gla():
    # B=1, H=U=2, N=128, D=F=64, chunk 64, sub-chunk 16: NC = 2, 4 sub-chunks per chunk.
    w = workload("gla_chunked", batch=1, heads=2, seq=128, head_dim=64)
    k = _kernels(w)
    assert list(k) == ["chunk_local_cumsum", "chunk_fwd_h", "gla_fwd_A_sub_inter", "gla_fwd_A_sub_intra",
                       "chunk_gla_fwd_o"]
    # sub_inter: 4*3/2 = 6 off-diagonal sub-blocks per chunk x 2 chunks x 2 heads = 24 CTAs, one 16x16x64
    # dot each, on mma.sync (16 rows: no wgmma)
    inter = k["gla_fwd_A_sub_inter"]
    assert inter.ctas == 24 and inter.instr == "mma_sync"
    assert [(g.count, g.m, g.n, g.k) for g in inter.gemms] == [(24, 16, 16, 64)]
    # sub_intra: 8 diagonal sub-blocks per head; every position is a key column of one of them:
    # exps = 2 heads x 128 columns x 16 rows x 64 features
    intra = k["gla_fwd_A_sub_intra"]
    assert intra.ctas == 16 and intra.gemms == () and intra.exps == 2 * 128 * 16 * 64
    # cumsum: read g (bf16), write G (fp32): 2 * 128 * 64 * (2 + 4) B
    assert k["chunk_local_cumsum"].hbm_bytes == 2 * 128 * 64 * 6
    # output kernel reads A whole: 2 heads x 2 chunks x 64 x 64 fp32
    out = k["chunk_gla_fwd_o"]
    q = 2 * 128 * 64 * 2
    assert out.hbm_bytes == q + 2 * 128 * 64 * 4 + 2 * 1 * 64 * 64 * 2 + q + 2 * 2 * 64 * 64 * 4 + q


def test_golden_decode():
    # B=4, H=8, U=2 (GQA 4:1), E=F=128, BV=32: grid B x U x F/32 = 32 CTAs, no tensor cores.
    w = workload("linear_decode", batch=4, heads=8, kv_heads=2, head_dim=128)
    (op,) = plans.PLANS["linear_decode"](H100, w).ops
    assert op.ctas == 32 and op.gemms == ()
    # per CTA 128 x 32 state elements: 1 FMA (update) + 2 per query head (multiply, sum) x 4 heads
    assert op.vector_ops == 32 * 128 * 32 * 9
    # fp32 state read + written: 2 * 4*2*128*128*4 B; q, o 4*8*128*2 B each; k, v 4*2*128*2 B each
    assert op.hbm_bytes == 2 * 524288 + 2 * 8192 + 2 * 2048
    # useful: update 2*4*2*128*128 + readout 2*4*8*128*128
    assert plans.useful_flops(w) == 262144 + 1048576
    r = attnsim.predict(H100, w)
    assert r.executed_flops == 0 and r.bound in ("hbm bandwidth", "launch overhead")




@st.composite
def linear_cases(draw):
    family = draw(st.sampled_from(["linear_chunked", "gla_chunked", "linear_decode"]))
    u = draw(st.sampled_from([1, 2, 4]))
    shape = dict(batch=draw(st.integers(1, 4)), heads=u * draw(st.sampled_from([1, 2])), kv_heads=u,
                 head_dim=draw(st.sampled_from([64, 128])))
    params = {}
    if family == "linear_decode":
        shape.update(seq_q=1, seq_kv=draw(st.integers(1, 100000)))
        params["decay"] = draw(st.sampled_from([1.0, 0.9]))
    else:
        shape.update(seq=draw(st.integers(16, 20000)), causal=True)
        params["chunk"] = draw(st.sampled_from([32, 64, 128]))
        params["final_state"] = draw(st.booleans())
    if family == "linear_chunked":
        params["decay"] = draw(st.sampled_from([1.0, 0.99]))
        params["kernel"] = draw(st.sampled_from(["fla_chunk", "lightning_fused"]))
    if family != "gla_chunked":
        params["feature_map"] = draw(st.sampled_from(["identity", "taylor2", "hedgehog"]))
    w = attnsim.attention(family, params=params, **shape)
    try:  # a state that outgrows shared memory is a MappingError (tested below), not a case here
        attnsim.predict(H100, w)
    except MappingError:
        assume(False)
    return w


def test_lightning_state_that_outgrows_shared_memory_is_a_clear_error():
    w = attnsim.attention("linear_chunked", seq=1024, heads=8, head_dim=128, causal=True,
                          params={"kernel": "lightning_fused", "feature_map": "taylor2", "feature_dim": 32})
    with pytest.raises(MappingError, match="KiB of shared memory per CTA; h100_sxm5_80gb allows 227.0 KiB"):
        attnsim.predict(H100, w)


def _compulsory_bytes(w):
    """Q, K, V read and O written once (input dtype); the decode state read and written in fp32."""
    n = 1 if w.family == "linear_decode" else w.seq_kv
    qkvo = w.batch * n * (w.heads * w.head_dim + w.kv_heads * (w.head_dim + w.value_dim) + w.heads * w.value_dim)
    state = 0
    if w.family == "linear_decode":
        e = L.feature_dim(w.param("feature_map"), w.head_dim, w.param("feature_dim"))
        state = 2 * w.batch * w.kv_heads * e * w.value_dim * 4
    return qkvo * w.dtype_bytes + state


@SETTINGS
@given(linear_cases())
def test_latency_at_or_above_speed_of_light(w):
    r = attnsim.predict(H100, w)
    peak = H100.matrix_flops_per_cycle("wgmma", "bf16") * H100.gpu.sm_count * H100.clock_hz
    bw = H100.level("HBM").bandwidth_bytes_per_s
    assert r.traffic_bytes["HBM"] >= _compulsory_bytes(w) * (1 - 1e-12)
    assert r.latency_s >= max(r.useful_flops / peak, _compulsory_bytes(w) / bw) * (1 - 1e-12)


@SETTINGS
@given(linear_cases(), st.sampled_from(["HBM", "L2"]), st.floats(1.0, 8.0))
def test_more_bandwidth_never_slower(w, level, factor):
    base = attnsim.predict(H100, w).latency_s
    lv = H100.level(level)
    faster = attnsim.predict(H100.with_level(level, bandwidth_bytes_per_s=lv.bandwidth_bytes_per_s * factor), w)
    assert faster.latency_s <= base * (1 + 1e-12)


@SETTINGS
@given(linear_cases())
def test_latency_is_the_sum_of_the_kernels(w):
    r = attnsim.predict(H100, w)
    assert r.latency_s == pytest.approx(sum(k["latency_s"] for k in r.kernels), rel=1e-12)
    assert r.occupancy["n_kernels"] == len(plans.PLANS[w.family](H100, w).ops)


def test_linear_chunked_time_grows_linearly_in_sequence():
    # Past a few waves the plan is bandwidth-bound and linear in N: twice the tokens, about twice the time.
    t = [attnsim.predict(H100, workload(batch=4, heads=32, seq=n, head_dim=128)).latency_s for n in (16384, 32768)]
    assert 1.9 < t[1] / t[0] < 2.1


def test_larger_feature_dim_costs_more():
    t = [attnsim.predict(H100, workload(params={"feature_map": "hedgehog", "feature_dim": r}, batch=4, heads=32,
                                        seq=8192, head_dim=128)).latency_s for r in (32, 64, 128)]
    assert t[0] < t[1] < t[2]




@pytest.mark.parametrize("arch", ["fusemax_like", "tpu_like_128x128"])
@pytest.mark.parametrize("family,params", [("linear_chunked", {}), ("linear_chunked", {"feature_map": "hedgehog"}),
                                           ("gla_chunked", {}), ("linear_decode", {"decay": 0.9})],
                         ids=["linear", "linear-hedgehog", "gla", "decode"])
def test_spatial_plan_runs(arch, family, params):
    a = attnsim.load_arch(arch)
    w = workload(family, params)
    r = attnsim.predict(a, w)
    plan = plans.PLANS[family](a, w)
    assert r.latency_s > 0 and r.model == "spatial-analytical (plan)"
    assert r.useful_flops == w.cascade.ops(L.extents(w))["mma"]
    # on the array each product is whole: no BK x BV split of E and F
    ext = L.extents(w)
    for op in plan.ops:
        for g in op.gemms:
            if op.name in ("chunk_fwd_h", "chunk_fwd_o"):
                assert {g.m, g.n, g.k} <= {L.effective_chunk(w), ext["e"], ext["f"]}
    assert r.executed_flops == sum(g.flops for op in plan.ops for g in op.gemms)


def test_spatial_larger_chunk_fills_the_array():
    a = attnsim.load_arch("fusemax_like")
    t = [attnsim.predict(a, workload(params={"chunk": c}, seq=4096, head_dim=128)).latency_s for c in (64, 256)]
    assert t[1] < t[0]




@pytest.mark.parametrize("family,kw,key", [
    ("linear_chunked", dict(causal=False), "mask"),
    ("linear_chunked", dict(window=128), "mask"),
    ("linear_chunked", dict(seq=None, seq_q=128, seq_kv=256), "seq_q"),
    ("linear_chunked", dict(params={"chunk": 48}), "params.chunk"),
    ("linear_chunked", dict(params={"block_k": 8}), "params.block_k"),
    ("gla_chunked", dict(params={"chunk": 32, "subchunk": 64}), "params.subchunk"),
    ("gla_chunked", dict(causal=False), "mask"),
    ("linear_decode", dict(seq_q=4), "seq_q"),
], ids=["full-mask", "window-mask", "seq_q!=seq_kv", "chunk-48", "block_k-8", "subchunk>chunk", "gla-full",
        "decode-4-queries"])
def test_bad_shapes_name_the_key(family, kw, key):
    params = kw.pop("params", {})
    with pytest.raises(WorkloadError) as e:
        workload(family, params, **kw)
    assert any(p.key == key for p in e.value.problems), str(e.value)


@pytest.mark.parametrize("params,needle", [({"decay": 0.0}, "fraction"), ({"decay": 1.5}, "fraction"),
                                           ({"feature_map": "tayl0r2"}, "taylor2"), ({"chunks": 64}, "chunk"),
                                           ({"kernel": "flash"}, "fla_chunk")],
                         ids=["decay-0", "decay-1.5", "typo-feature-map", "unknown-key", "unknown-kernel"])
def test_bad_params_are_errors(params, needle):
    with pytest.raises(WorkloadError) as e:
        workload("linear_chunked", params)
    assert needle in str(e.value)


def test_a_mapping_is_refused_with_the_params_to_use():
    with pytest.raises(MappingError) as e:
        attnsim.predict(H100, workload(), "flash2")
    assert e.value.problems[0].key == "mapping" and "block_k" in e.value.problems[0].hint


def test_workload_yaml_examples_load_and_predict():
    for name in ("linear_lightning_prefill_8k", "gla_prefill_4k", "linear_decode_state_4k"):
        w = attnsim.load_workload(name)
        assert w.family in plans.PLANS and attnsim.predict(H100, w).latency_s > 0



CROSSOVER = [  # (shape, params, the crossover sequence length the docs state on h100_sxm5_80gb)
    (dict(batch=4, heads=32, head_dim=128), {}, 1088),
    (dict(batch=1, heads=32, head_dim=128), {}, 1216),
    (dict(batch=4, heads=32, head_dim=128), {"feature_map": "taylor2", "feature_dim": 16}, 3008),
    (dict(batch=4, heads=32, head_dim=128), {"feature_map": "hedgehog", "feature_dim": 128}, 2880),
]


@pytest.mark.parametrize("shape,params,stated", CROSSOVER,
                         ids=["B4-H32-D128", "B1-H32-D128", "B4-taylor2-r16", "B4-hedgehog-f128"])
def test_stated_crossover_against_flash2(shape, params, stated):
    def times(n):
        s = dict(shape, seq=n, causal=True)
        return (attnsim.predict(H100, attnsim.attention("linear_chunked", params=params, **s)).latency_s,
                attnsim.predict(H100, attnsim.attention("softmax", **s), "flash2").latency_s)
    lin, fa2 = times(stated // 2)
    assert lin > fa2  # slower at half the stated crossover
    lin, fa2 = times(2 * stated)
    assert lin < fa2  # faster at twice it
    assert stated // 2 < plans.crossover_seq(H100, params, **shape) <= 2 * stated


def test_crossover_helper_rejects_a_range_without_one():
    with pytest.raises(ValueError):
        plans.crossover_seq(H100, {}, batch=4, heads=32, head_dim=128, lo=4096, hi=8192)


def test_kernel_op_instr_defaults_to_the_arch_best():
    # the shared KernelOp.instr field: None keeps the arch default (wgmma on H100), as before
    op = plans.fla_output_op(workload(), plans.dims(workload(), H100))
    assert op.instr is None
    thin = dataclasses.replace(op, instr="mma_sync")
    from attnsim.model.plan import kernel_cost
    assert "mma_sync" in kernel_cost(H100, thin).mapping and "wgmma" in kernel_cost(H100, op).mapping
