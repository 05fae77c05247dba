"""Content-based sparse families: topk_blocks, routing_clusters, head_mix.

References against their executable cascades on non-power-of-two sizes, the routed masks' exact
tile counts against the model's, golden plan counts derived beside each expected value, the
degenerate settings (density 1, one cluster, all heads full / all windowed) against the dense
predictions, and properties.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import attnsim
from attnsim.errors import MappingError, WorkloadError
from attnsim.mapping.kernel import KernelMapping
from attnsim.model import gpu_kernel as K
from attnsim.model.analytical import predict as predict_attention
from attnsim.model.families import plan_for
from attnsim.model.plan import AttentionOp, KernelOp, kernel_cost
from attnsim.workload.families import sparse as S
from attnsim.workload.masks import causal_mask, full_mask, window_mask
from attnsim.workload.reference import attention_reference, flash_decode_split_kv, flash_forward_tiled
from attnsim.workload.spec import load_workload

FUSEMAX = attnsim.load_arch("fusemax_like")
H100 = attnsim.load_arch("h100_sxm5_80gb")
A100 = attnsim.load_arch("a100_sxm4_80gb")
ARCHS = [pytest.param(H100, id="h100"), pytest.param(A100, id="a100"), pytest.param(FUSEMAX, id="fusemax")]
PROPS = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def qkv(B, H, Hkv, M, N, D, F, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((B, H, M, D)), rng.standard_normal((B, Hkv, N, D)),
            rng.standard_normal((B, Hkv, N, F)))


def base(M, N, causal):
    return causal_mask(M, N) if causal else full_mask(M, N)


def attention_cost(arch, w, mapping=None):
    """The plan's attention kernel (the last AttentionOp) costed alone."""
    op = [o for o in plan_for(arch, w, mapping).ops if isinstance(o, AttentionOp)][-1]
    return op, kernel_cost(arch, op)


def same_cost(a, b):
    """A KernelCost of a plan's attention kernel equals a dense prediction, field by field."""
    assert a.latency_s == b.latency_s
    assert a.hbm_bytes == b.traffic_bytes["HBM" if "HBM" in b.traffic_bytes else "DRAM"]
    assert a.mma_flops == b.executed_flops and a.useful_flops == b.useful_flops
    assert a.bound == b.bound


def kernels_useful_flops(arch, plan):
    """The useful FLOPs the costed kernels report (the attention kernel's from the model's own
    mask count at its real tile), summed over launches."""
    return sum(kernel_cost(arch, op).useful_flops * op.count for op in plan.ops)


def with_hbm_bandwidth(arch, factor):
    lv = arch.levels[0]
    return arch.with_level(lv.name, bandwidth_bytes_per_s=lv.bandwidth_bytes_per_s * factor)


# ============================================================================ topk_blocks

# (B, H, Hkv, M, N, D, F, block_q, block_k)
TOPK_SHAPES = [pytest.param(2, 4, 2, 100, 257, 16, 8, 32, 48, id="B2-H4-Hkv2-M100-N257-bq32-bk48"),
               pytest.param(1, 3, 1, 257, 100, 8, 8, 64, 32, id="B1-H3-Hkv1-M257-N100-bq64-bk32"),
               pytest.param(1, 2, 2, 63, 63, 8, 16, 16, 16, id="B1-H2-M63-N63-bq16-bk16")]


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("density", [0.2, 0.5, 1.0])
@pytest.mark.parametrize("B,H,Hkv,M,N,D,F,bq,bk", TOPK_SHAPES)
def test_topk_reference_equals_routed_tiled_form(B, H, Hkv, M, N, D, F, bq, bk, density, causal):
    q, k, v = qkv(B, H, Hkv, M, N, D, F)
    mask = S.topk_route_reference(q, k, density, bq, bk, causal)
    grid = S.topk_route(q, k, density, bq, bk, causal)
    expanded = grid[:, :, (np.arange(M) // bq)[:, None], (np.arange(N) // bk)[None, :]] & base(M, N, causal)
    np.testing.assert_array_equal(expanded, mask)  # the vectorized routing picks the same blocks
    want = S.topk_blocks_reference(q, k, v, density, bq, bk, causal)
    got, _ = S.topk_blocks_tiled(q, k, v, density, bq, bk, causal)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


# (M, N, block_q, block_k): non-powers of two, ragged edges, M > N
TILE_CASES = [(100, 257, 32, 48), (257, 100, 64, 32), (300, 300, 64, 64), (200, 320, 48, 64), (129, 65, 64, 16)]


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("density", [0.1, 0.37, 0.75, 1.0])
@pytest.mark.parametrize("M,N,bq,bk", TILE_CASES, ids=[f"M{m}-N{n}-bq{a}-bk{b}" for m, n, a, b in TILE_CASES])
def test_topk_routed_tile_stats_equal_model_counts(M, N, bq, bk, density, causal):
    """The routed mask replayed tile by tile visits exactly the model's tiles (and full tiles).
    Allowed pairs: exact when the last key block is not ragged; otherwise the model counts the
    kept full blocks nearest the diagonal, which includes the ragged last one, so a routed mask
    has at least as many pairs and at most (bk - ragged width) more per row of each query block
    that keeps it."""
    B, H, Hkv = 1, 2, 1
    q, k, v = qkv(B, H, Hkv, M, N, 8, 8, seed=M + N)
    _, st = S.topk_blocks_tiled(q, k, v, density, bq, bk, causal)
    tot, _, _, full, rows, allowed = K.mask_tile_stats(K.MK_BLOCK, M, N, bq, bk, 0, 0, density, causal)
    assert st["tiles_visited"] == B * H * tot
    assert st["tiles_full"] == B * H * full
    workload_rows = S.topk_rows(M, N, bq, bk, density, causal)
    assert workload_rows["allowed"].sum() == allowed  # two independent counts of the cascade's pairs
    assert workload_rows["keep"].sum() == tot
    if N % bk == 0:
        assert st["elements_allowed"] == B * H * allowed
    else:
        slack = sum(min(bq, M - i * bq) * (bk - N % bk) for i in range(rows)
                    if workload_rows["full"][i] == -(-N // bk) and workload_rows["keep"][i] > 0)
        assert B * H * allowed <= st["elements_allowed"] <= B * H * (allowed + slack)


def test_topk_golden_plan_counts():
    """B=2, H=8, Hkv=2, M=N=1000, D=F=64, causal, density 0.25, 64 x 64 blocks, on H100.

    16 query blocks (the last holds rows 960..999) and 16 key blocks. Query block i has i+1
    candidates (the diagonal one partial) and keeps k_i = max(1, floor(0.25 (i+1) + 0.5)):
    1 x5, 2 x4, 3 x4, 4 x3 -> 37 kept blocks per (b, h), 21 of them full.
    Allowed pairs per (b, h): diagonal blocks 15 x 64*65/2 + 40*41/2 = 31200 + 820; kept full
    blocks sum_{i<15} (k_i - 1) = 33 - 15 = 18 of 64 x 64 and 3 of 40 x 64 in the last:
    73728 + 7680 -> 113428.
    Top-k compares per (b, h): sum c_i ceil(log2(k_i + 1)) = 15*1 + 30*2 + 46*2 + 45*3 = 302.
    """
    w = attnsim.attention("topk_blocks", batch=2, heads=8, kv_heads=2, seq=1000, head_dim=64, causal=True)
    plan = plan_for(H100, w)
    assert [op.name for op in plan.ops] == ["pool Q, K over blocks", "score blocks + top-k", "block-sparse attention"]
    pool, score, attn = plan.ops
    assert (attn.mapping.block_m, attn.mapping.block_n) == (64, 64)
    assert attn.mapping.name == "flash3" and attn.workload.mask.kind == "block_sparse"
    assert attn.mapping.warps == 8  # FA3: a producer warpgroup + one 64-row consumer warpgroup
    # pool: read Q 2*8*1000*64*2 + K 2*2*1000*64*2, write Qp 2*8*16*64*2 + Kp 2*2*16*64*2
    assert pool.hbm_bytes == 2_048_000 + 512_000 + 32_768 + 8_192
    assert pool.vector_ops == 2 * 8 * (1000 + 16) * 64 + 2 * 2 * (1000 + 16) * 64
    # score: 16 GEMMs of 16 x 16 x 64; read Qp, Kp; write 37 int32 indices per (b, h)
    assert score.gemms[0].flops == 2 * 16 * 16 * 16 * 64
    assert score.hbm_bytes == 32_768 + 8_192 + 16 * 37 * 4
    assert score.vector_ops == 16 * 302
    r = attnsim.predict(H100, w)
    assert r.counts["kept key blocks per (b,h)"] == 37
    assert r.counts["block-sparse attention: tile visits"] == 16 * 37
    assert r.counts["block-sparse attention: allowed (m,n) pairs per (b,h)"] == 113_428
    assert plan.useful_flops == 2 * 16 * 16 * 16 * 64 + 2 * 16 * 113_428 * (64 + 64)
    assert r.counts["kernels"] == 3


# (shape kwargs, params) for the FLOP identity: prefill, decode, GQA, ragged
TOPK_CASES = [
    pytest.param(dict(batch=2, heads=8, kv_heads=2, seq=1000, head_dim=64, causal=True), {}, id="causal-M1000"),
    pytest.param(dict(batch=1, heads=4, seq_q=700, seq_kv=900, head_dim=128), {"density": 0.4, "block_k": 128},
                 id="full-M700-N900-bk128"),
    pytest.param(dict(batch=1, heads=32, kv_heads=8, seq_q=1, seq_kv=32768, head_dim=128), {"density": 0.1},
                 id="decode-gqa4-N32768"),
    pytest.param(dict(batch=3, heads=4, seq_q=333, seq_kv=1200, head_dim=64, causal=True),
                 {"density": 0.3, "block_q": 128, "block_k": 64}, id="chunked-prefill-M333-N1200"),
]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("shape,params", TOPK_CASES)
def test_topk_useful_flops_equal_cascade(arch, shape, params):
    w = attnsim.attention("topk_blocks", params=params, **shape)
    plan = plan_for(arch, w)
    ops = w.cascade.ops(S.extents(w), S.allowed_pairs(w))
    assert plan.useful_flops == ops["mma"]
    prepass = [op for op in plan.ops if isinstance(op, KernelOp)]
    attention_vector = sum(w.cascade.step(s).ops_per_point for s in ("X", "Es", "L")) * \
        w.batch * w.heads * S.allowed_pairs(w)
    assert sum(op.vector_ops for op in prepass) == ops["vector"] - attention_vector
    assert kernels_useful_flops(arch, plan) == plan.useful_flops


def test_topk_decode_pools_only_the_new_keys():
    """A decode step (seq_q = 1, seq_kv = N) extends the KV cache by one key: it pools that key
    into the last block (reading and rewriting that block's running mean) and reads every other
    pooled block from the cache: 32 heads, 8 KV heads, N = 32768, D = 128 -> 512 key blocks."""
    w = attnsim.attention("topk_blocks", heads=32, kv_heads=8, seq_q=1, seq_kv=32768, head_dim=128)
    pool, score, attn = plan_for(H100, w).ops
    q, k_new, kp_block = 32 * 128 * 2, 8 * 1 * 128 * 2, 8 * 1 * 128 * 2
    qp = 32 * 1 * 128 * 2
    assert pool.hbm_bytes == q + k_new + kp_block + qp + kp_block
    assert score.gemms[0].n == 512 and score.hbm_bytes == qp + 8 * 512 * 128 * 2 + 32 * 128 * 4  # keep 0.25 x 512
    assert attn.mapping.style == "split_kv" and attn.mapping.block_n == 64


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("shape", [dict(seq=1000, causal=True), dict(seq_q=700, seq_kv=900),
                                   dict(seq_q=1, seq_kv=5000, kv_heads=2)], ids=["causal", "full", "decode"])
def test_topk_density_one_is_dense(arch, shape):
    """Numerics equal dense attention; the attention kernel's prediction equals the dense one at
    the same tile; the plan adds exactly the two pre-pass kernels."""
    B, H = 1, 4
    w = attnsim.attention("topk_blocks", batch=B, heads=H, head_dim=64, params={"density": 1.0}, **shape)
    op, cost = attention_cost(arch, w)
    dense = attnsim.attention("softmax", batch=B, heads=H, head_dim=64, **shape)
    same_cost(cost, predict_attention(arch, dense, op.mapping))
    assert [o.name for o in plan_for(arch, w).ops] == ["pool Q, K over blocks", "score blocks + top-k",
                                                       "block-sparse attention"]
    q, k, v = qkv(1, 2, 2, 100, 257, 16, 16)
    for causal in (False, True):
        np.testing.assert_allclose(S.topk_blocks_reference(q, k, v, 1.0, 32, 48, causal),
                                   attention_reference(q, k, v, base(100, 257, causal)), rtol=0, atol=1e-12)


@PROPS
@given(seq_q=st.integers(64, 3000), extra=st.integers(0, 3000), causal=st.booleans(),
       d1=st.floats(0.05, 1.0), d2=st.floats(0.05, 1.0), block=st.sampled_from([64, 128]))
def test_topk_more_density_never_faster(seq_q, extra, causal, d1, d2, block):
    lo, hi = sorted((d1, d2))
    times = []
    for d in (lo, hi):
        w = attnsim.attention("topk_blocks", heads=8, seq_q=seq_q, seq_kv=seq_q + extra, head_dim=128,
                              causal=causal, params={"density": d, "block_q": block, "block_k": block})
        times.append(attention_cost(H100, w)[1].latency_s)
    assert times[0] <= times[1] * (1 + 1e-12)


def test_topk_spatial_mapping_is_fused_at_the_routing_tile():
    w = attnsim.attention("topk_blocks", heads=4, seq=2000, head_dim=64, causal=True, params={"block_q": 128})
    op, cost = attention_cost(FUSEMAX, w)
    assert (op.mapping.style, op.mapping.block_m, op.mapping.block_n) == ("fused", 128, 64)
    r = attnsim.predict(FUSEMAX, w)
    assert r.model == "spatial-analytical (plan)" and r.latency_s > cost.latency_s > 0


def test_topk_mapping_must_be_the_routing_tile():
    w = attnsim.attention("topk_blocks", heads=4, seq=2000, head_dim=64, causal=True)
    with pytest.raises(MappingError, match="routing block"):
        attnsim.predict(H100, w, KernelMapping(block_m=128, block_n=128))
    assert attnsim.predict(H100, w, KernelMapping(block_m=64, block_n=64)).latency_s > 0
    narrow = attnsim.attention("topk_blocks", heads=4, seq=2000, head_dim=64, params={"block_q": 32})
    assert plan_for(H100, narrow).ops[-1].mapping.name == "flash2"  # wgmma needs 64-row warpgroups
    with pytest.raises(MappingError, match="block_q=32"):
        attnsim.predict(H100, narrow, "flash3")
    bad = attnsim.attention("topk_blocks", heads=4, seq=2000, head_dim=64, params={"block_k": 24})
    with pytest.raises(MappingError, match="block_k=24"):
        attnsim.predict(H100, bad)
    assert attnsim.predict(FUSEMAX, bad).latency_s > 0  # a spatial array has no 16-wide MMA tile


# ============================================================================ routing_clusters

# (B, H, Hkv, M, N, D, F, C)
ROUTING_SHAPES = [pytest.param(2, 4, 2, 100, 257, 16, 8, 7, id="B2-H4-Hkv2-M100-N257-C7"),
                  pytest.param(1, 3, 3, 63, 63, 8, 8, 5, id="B1-H3-M63-N63-C5"),
                  pytest.param(1, 2, 1, 1, 300, 16, 16, 9, id="decode-B1-H2-Hkv1-N300-C9")]


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("top,iters", [(1, 0), (2, 0), (1, 3), (3, 2)],
                         ids=["t1-given", "t2-given", "t1-it3", "t3-it2"])
@pytest.mark.parametrize("B,H,Hkv,M,N,D,F,C", ROUTING_SHAPES)
def test_routing_reference_equals_sorted_per_cluster_form(B, H, Hkv, M, N, D, F, C, top, iters, causal):
    q, k, v = qkv(B, H, Hkv, M, N, D, F, seed=C)
    centroids = np.random.default_rng(1).standard_normal((Hkv, C, D))
    want = S.routing_clusters_reference(q, k, v, centroids, top, iters, causal)
    got, pairs = S.routing_clusters_sorted(q, k, v, centroids, top, iters, causal)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert pairs == S.routing_mask_reference(q, k, centroids, top, iters, causal).sum()  # no pair twice, none lost


def test_kmeans_moves_centroids_to_member_means():
    k = np.array([[[[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0]]]])  # [1, 1, 4, 2]
    cen = S.kmeans_keys(k, np.array([[[1.0, 0.1], [0.1, 1.0]]]), iters=1)
    np.testing.assert_array_equal(cen[0, 0], [[2.0, 0.0], [0.0, 3.0]])


def test_routing_golden_plan_counts():
    """B=1, H=4, Hkv=2, M=N=1024, D=F=64, C=8, top 1, centroids given, causal, on H100.

    Balanced clusters: 8 groups of 1024/8 = 128 queries x 128 keys per (b, h), causal within a
    group: 128*129/2 = 8256 pairs, 66048 per (b, h); the attention kernel sees batch 1*8.
    assign queries 2*4*1024*8*64 = 4194304 FLOP, keys 2*2*1024*8*64 = 2097152 FLOP.
    gather: read Q 4*1024*64*2 = 524288, K+V 2*1024*128*2 = 524288, indices (4096 + 2048)*4
    = 24576; write Q once (top 1) and K, V: 1048576. merge: read and write O: 2 x 524288.
    """
    w = attnsim.attention("routing_clusters", heads=4, kv_heads=2, seq=1024, head_dim=64, causal=True,
                          params={"clusters": 8})
    plan = plan_for(H100, w)
    assert [op.name for op in plan.ops] == ["assign queries", "assign keys", "gather by cluster",
                                            "attention within clusters", "merge + scatter back"]
    aq, ak, gather, attn, merge = plan.ops
    view = attn.workload
    assert (view.batch, view.heads, view.kv_heads, view.seq_q, view.seq_kv, view.mask.kind) == (8, 4, 2, 128, 128,
                                                                                                "causal")
    assert aq.gemms[0].flops == 4_194_304 and ak.gemms[0].flops == 2_097_152
    assert gather.hbm_bytes == 524_288 + 524_288 + 24_576 + 1_048_576
    assert merge.hbm_bytes == 2 * 524_288
    r = attnsim.predict(H100, w)
    assert r.counts["attention within clusters: allowed (m,n) pairs per (b,h)"] == 8256
    assert plan.useful_flops == 4_194_304 + 2_097_152 + 2 * 8 * 4 * 8256 * 128
    assert S.routing_allowed_pairs(w) == 66_048


ROUTING_CASES = [
    pytest.param(dict(heads=4, kv_heads=2, seq=1024, head_dim=64, causal=True), {"clusters": 8}, id="causal-C8"),
    pytest.param(dict(batch=2, heads=8, seq_q=1000, seq_kv=1000, head_dim=128), {"clusters": 24, "top_clusters": 3,
                                                                                 "iters": 2}, id="full-C24-t3-it2"),
    pytest.param(dict(heads=32, kv_heads=8, seq_q=1, seq_kv=32768, head_dim=128), {"clusters": 256, "top_clusters": 4},
                 id="decode-C256-t4"),
    pytest.param(dict(heads=32, kv_heads=8, seq_q=1, seq_kv=32768, head_dim=128), {"clusters": 256, "iters": 1},
                 id="decode-C256-it1"),
]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("shape,params", ROUTING_CASES)
def test_routing_useful_flops_equal_cascade(arch, shape, params):
    w = attnsim.attention("routing_clusters", params=params, **shape)
    plan = plan_for(arch, w)
    ops = w.cascade.ops(S.extents(w), S.allowed_pairs(w))
    assert plan.useful_flops == ops["mma"]
    routing = [op for op in plan.ops if op.name in ("assign queries", "assign keys", "k-means iteration")]
    attention_vector = 3 * w.batch * w.heads * S.allowed_pairs(w)  # max, scale-subtract, sum per pair
    assert sum(op.vector_ops * op.count for op in routing) == ops["vector"] - attention_vector
    assert kernels_useful_flops(arch, plan) == plan.useful_flops


def test_routing_decode_with_given_centroids_touches_only_the_new_key():
    """Decode, centroids given: the one new key is assigned and inserted into the cluster-sorted
    cache; the query attends top_clusters groups of ceil(N / C) keys."""
    w = attnsim.attention("routing_clusters", heads=32, kv_heads=8, seq_q=1, seq_kv=32768, head_dim=128,
                          params={"clusters": 256, "top_clusters": 4})
    plan = plan_for(H100, w)
    ak, gather, attn = plan.ops[1], plan.ops[2], plan.ops[3]
    assert ak.gemms[0].m == 1
    assert (attn.workload.batch, attn.workload.seq_q, attn.workload.seq_kv) == (4, 1, 128)
    assert attn.mapping.style == "split_kv"
    assert gather.hbm_bytes == (32 * 128 * 2 + 8 * 256 * 2 + (32 * 4 + 8) * 4) + (32 * 128 * 2 * 4 + 8 * 256 * 2)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("shape", [dict(seq=1000, causal=True), dict(seq_q=700, seq_kv=900),
                                   dict(seq_q=1, seq_kv=5000, kv_heads=2)], ids=["causal", "full", "decode"])
def test_routing_one_cluster_is_dense(arch, shape):
    w = attnsim.attention("routing_clusters", heads=4, head_dim=64, params={"clusters": 1}, **shape)
    op, cost = attention_cost(arch, w)
    dense = attnsim.attention("softmax", heads=4, head_dim=64, **shape)
    assert op.workload == dataclasses.replace(dense, name="")
    same_cost(cost, predict_attention(arch, dense, op.mapping))
    q, k, v = qkv(2, 4, 2, 100, 257, 16, 8)
    centroids = np.random.default_rng(3).standard_normal((2, 1, 16))
    for causal in (False, True):
        np.testing.assert_allclose(S.routing_clusters_reference(q, k, v, centroids, 1, 2, causal),
                                   attention_reference(q, k, v, base(100, 257, causal)), rtol=0, atol=1e-12)


# ============================================================================ head_mix

# (B, H, Hkv, M, N, D, F, full KV heads, window, sink)
MIX_SHAPES = [pytest.param(2, 4, 2, 100, 257, 16, 8, 1, 37, 5, id="B2-H4-Hkv2-M100-N257-full1-w37-s5"),
              pytest.param(1, 6, 3, 257, 257, 8, 8, 2, 100, 0, id="B1-H6-Hkv3-M257-N257-full2-w100"),
              pytest.param(1, 3, 3, 63, 300, 8, 16, 0, 7, 70, id="B1-H3-M63-N300-full0-w7-s70")]


@pytest.mark.parametrize("bq,bk", [(32, 48), (64, 64)])
@pytest.mark.parametrize("B,H,Hkv,M,N,D,F,n_full,window,sink", MIX_SHAPES)
def test_head_mix_reference_equals_tiled_and_tile_stats_equal_model(B, H, Hkv, M, N, D, F, n_full, window, sink,
                                                                     bq, bk):
    q, k, v = qkv(B, H, Hkv, M, N, D, F)
    mask = S.head_mix_mask(H, Hkv, M, N, n_full, window, sink)
    want = S.head_mix_reference(q, k, v, n_full, window, sink)
    got, st = flash_forward_tiled(q, k, v, mask, bq, bk)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    w = attnsim.attention("head_mix", batch=B, heads=H, kv_heads=Hkv, seq_q=M, seq_kv=N, head_dim=D, value_dim=F,
                          causal=True, params={"full_heads": float(n_full) if n_full else 0.0, "window": window,
                                               "sink": sink})
    from attnsim.model.families.sparse import head_mix_stats
    model = head_mix_stats(w, n_full)(bq, bk)  # per head, averaged over the heads
    assert st["tiles_visited"] == H * model.tiles  # flash_forward_tiled sums an [H, M, N] mask over heads
    assert st["tiles_full"] == H * model.full_tiles
    assert st["elements_allowed"] == H * model.allowed == mask.sum()
    G = H // Hkv
    per_head = [flash_forward_tiled(q[:, h:h + 1], k[:, h // G:h // G + 1], v[:, h // G:h // G + 1], mask[h], bq,
                                    bk)[1]["per_row_tiles"] for h in range(H)]
    assert model.max_row_tiles == max(max(r) for r in per_head)  # the longest CTA of any head
    assert model.min_row_tiles == min(min(r) for r in per_head)
    assert S.head_mix_allowed_pairs(w) == model.allowed


def test_head_mix_decode_split_kv_equals_reference():
    q, k, v = qkv(2, 8, 4, 1, 1000, 16, 16)
    mask = S.head_mix_mask(8, 4, 1, 1000, 2, 100, 4)
    for splits in (1, 3, 7):
        np.testing.assert_allclose(flash_decode_split_kv(q, k, v, splits, mask),
                                   S.head_mix_reference(q, k, v, 2, 100, 4), rtol=0, atol=1e-12)


def test_head_mix_decode_golden_hbm_bytes():
    """Decode, B=1, H=32, Hkv=8, N=32768, D=128, half the KV heads full, window 256, sink 64, H100.

    flash-decoding packs the 4 query heads of a KV head into a CTA (key tiles of 128): a full
    head visits 32768/128 = 256 tiles, a streaming head the sink tile 0 and the window keys
    32512..32767 = tiles 254, 255: 3 tiles. Visits = 8 KV heads x (4*256 + 4*3)/8 = 1036 tiles
    of 128 x (128 + 128) x 2 B = 65536 B. That is under the 8 x 32768 x 256 x 2 B of all K/V, so
    HBM = Q 32*128*2 + 1036 x 65536 + O 32*128*2 (written by the combine kernel). Dense attention
    visits 8 x 256 = 2048 tiles: 8192 + 2048 x 65536 + 8192.
    """
    w = attnsim.attention("head_mix", heads=32, kv_heads=8, seq_q=1, seq_kv=32768, head_dim=128)
    r = attnsim.predict(H100, w)
    assert r.counts["mixed-head attention: tile visits"] == 1036
    assert r.traffic_bytes["HBM"] == 8192 + 1036 * 65536 + 8192
    dense = attnsim.predict(H100, attnsim.attention("softmax", heads=32, kv_heads=8, seq_q=1, seq_kv=32768,
                                                    head_dim=128))
    assert dense.traffic_bytes["HBM"] == 8192 + 2048 * 65536 + 8192
    assert r.latency_s < dense.latency_s


MIX_CASES = [dict(seq=2000, causal=True, kv_heads=4), dict(seq_q=1, seq_kv=20000, kv_heads=2),
             dict(seq_q=1, seq_kv=20000, kv_heads=2, causal=True)]
MIX_IDS = ["causal-prefill", "decode", "decode-causal"]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("shape", MIX_CASES, ids=MIX_IDS)
def test_head_mix_degenerate_settings(arch, shape):
    """All KV heads full equals dense (causal) attention; none full equals window=W, sink=S."""
    full = attnsim.attention("head_mix", heads=8, head_dim=128, params={"full_heads": float(shape["kv_heads"])},
                             **shape)
    op, cost = attention_cost(arch, full)
    same_cost(cost, predict_attention(arch, attnsim.attention("softmax", heads=8, head_dim=128, **shape), op.mapping))
    stream = attnsim.attention("head_mix", heads=8, head_dim=128, params={"full_heads": 0.0, "window": 300, "sink": 4},
                               **shape)
    op, cost = attention_cost(arch, stream)
    shape_w = {k: v for k, v in shape.items() if k != "causal"}
    window = attnsim.attention("softmax", heads=8, head_dim=128, window=300, sink=4, **shape_w)
    same_cost(cost, predict_attention(arch, window, op.mapping))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("seq", [1000, 2049], ids=["N1000", "N2049"])
def test_a_window_wider_than_the_sequence_equals_causal(arch, seq):
    """Streaming heads whose window (no sinks) covers the whole sequence see every causal key:
    the mixed-head kernel then costs exactly causal attention, and so does a softmax window."""
    causal = attnsim.attention("softmax", heads=8, kv_heads=4, head_dim=128, seq=seq, causal=True)
    for window in (seq, seq + 123):
        w = attnsim.attention("head_mix", heads=8, kv_heads=4, head_dim=128, seq=seq, causal=True,
                              params={"full_heads": 0.0, "window": window, "sink": 0})
        op, cost = attention_cost(arch, w)
        same_cost(cost, predict_attention(arch, causal, op.mapping))
        wide = attnsim.attention("softmax", heads=8, kv_heads=4, head_dim=128, seq=seq, window=window)
        assert predict_attention(arch, wide, op.mapping).latency_s == predict_attention(arch, causal,
                                                                                        op.mapping).latency_s
    q, k, v = qkv(1, 8, 4, seq, seq, 16, 16)
    np.testing.assert_allclose(attention_reference(q, k, v, window_mask(seq, seq, seq + 5)),
                               attention_reference(q, k, v, causal_mask(seq, seq)), rtol=0, atol=0)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("shape", MIX_CASES, ids=MIX_IDS)
def test_head_mix_useful_flops_equal_cascade(arch, shape):
    w = attnsim.attention("head_mix", heads=8, head_dim=128, params={"full_heads": 0.25}, **shape)
    plan = plan_for(arch, w)
    assert len(plan.ops) == 1
    # the cascade averages the allowed pairs over heads (a float); the plan sums them exactly
    assert plan.useful_flops == pytest.approx(w.cascade.ops(S.extents(w), S.allowed_pairs(w))["mma"], rel=1e-12)
    assert kernels_useful_flops(arch, plan) == pytest.approx(plan.useful_flops, rel=1e-12)


def test_head_mix_full_heads_fraction_and_count():
    w = attnsim.attention("head_mix", heads=32, kv_heads=8, seq=512, head_dim=64, causal=True,
                          params={"full_heads": 0.3})
    assert S.full_kv_heads(w) == 2  # floor(0.3 x 8 + 0.5)
    w = attnsim.attention("head_mix", heads=32, kv_heads=8, seq=512, head_dim=64, causal=True,
                          params={"full_heads": 3})
    assert S.full_kv_heads(w) == 3


# ============================================================================ all three

FAMILY_CASES = [
    pytest.param("topk_blocks", dict(seq=4000, causal=True), {"density": 0.2}, id="topk-causal"),
    pytest.param("topk_blocks", dict(seq_q=1, seq_kv=30000, kv_heads=2), {}, id="topk-decode"),
    pytest.param("routing_clusters", dict(seq=4000, causal=True), {"clusters": 16}, id="routing-causal"),
    pytest.param("routing_clusters", dict(seq_q=1, seq_kv=30000, kv_heads=2), {"clusters": 128, "iters": 1},
                 id="routing-decode-it1"),
    pytest.param("head_mix", dict(seq=4000, causal=True, kv_heads=4), {}, id="headmix-causal"),
    pytest.param("head_mix", dict(seq_q=1, seq_kv=30000, kv_heads=2), {}, id="headmix-decode"),
]


def compulsory_bytes(w):
    """Q read and O written once, plus the K (and V) the family must touch: topk pools the new
    keys' K; routing assigns and moves the new keys' K and V; head_mix reads at least the keys
    an average row sees (``bounds.compulsory_dram_bytes``)."""
    from attnsim.model.bounds import compulsory_dram_bytes
    eb = w.dtype_bytes
    qo = w.batch * w.heads * w.seq_q * (w.head_dim + w.value_dim) * eb
    if w.family == "head_mix":
        return compulsory_dram_bytes(w, S.head_mix_allowed_pairs(w))
    if w.family == "topk_blocks":
        return qo + w.batch * w.kv_heads * (w.seq_kv - S.cached_keys(w)) * w.head_dim * eb
    return qo + w.batch * w.kv_heads * S.routing_new_keys(w) * (w.head_dim + w.value_dim) * eb


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("family,shape,params", FAMILY_CASES)
def test_latency_at_or_above_speed_of_light(arch, family, shape, params):
    w = attnsim.attention(family, heads=8, head_dim=128, params=params, **shape)
    r = attnsim.predict(arch, w)
    peak = max(arch.matrix_flops_per_cycle(i, w.dtype) for i, t in arch.compute.matrix_flops_per_cycle.items()
               if w.dtype in t) * arch.clock_hz * arch.compute.instances
    bound = max(r.useful_flops / peak, compulsory_bytes(w) / arch.levels[0].bandwidth_bytes_per_s)
    assert r.latency_s >= bound * (1 - 1e-12)
    assert r.traffic_bytes[arch.levels[0].name] >= compulsory_bytes(w) * (1 - 1e-12)


@PROPS
@given(case=st.sampled_from([(f, s, p) for f, s, p in
                             [c.values for c in FAMILY_CASES]]), factor=st.floats(1.0, 8.0),
       arch=st.sampled_from([H100, A100, FUSEMAX]))
def test_more_hbm_bandwidth_never_slower(case, factor, arch):
    family, shape, params = case
    w = attnsim.attention(family, heads=8, head_dim=128, params=params, **shape)
    slow = attnsim.predict(arch, w).latency_s
    fast = attnsim.predict(with_hbm_bandwidth(arch, factor), w).latency_s
    assert fast <= slow * (1 + 1e-12)


# ============================================================================ input and files


@pytest.mark.parametrize("family,params,shape,key", [
    ("topk_blocks", {"density": 0.0}, dict(seq=256), "density"),
    ("topk_blocks", {"block_q": 0}, dict(seq=256), "block_q"),
    ("topk_blocks", {}, dict(seq=256, window=64), "mask.kind"),
    ("topk_blocks", {"densty": 0.5}, dict(seq=256), "densty"),
    ("routing_clusters", {"clusters": 4, "top_clusters": 5}, dict(seq=256), "top_clusters"),
    ("routing_clusters", {"clusters": 300}, dict(seq=256), "clusters"),
    ("routing_clusters", {"iters": -1}, dict(seq=256), "iters"),
    ("head_mix", {"full_heads": 2.5}, dict(seq=256, causal=True, kv_heads=4), "full_heads"),
    ("head_mix", {"full_heads": 9}, dict(seq=256, causal=True, kv_heads=8), "full_heads"),
    ("head_mix", {}, dict(seq=256), "mask.kind"),
    ("head_mix", {"window": 0}, dict(seq=256, causal=True), "window"),
], ids=["topk-density0", "topk-block0", "topk-window-mask", "topk-typo", "routing-top-gt-C", "routing-C-gt-N",
        "routing-iters-neg", "mix-fractional-count", "mix-count-gt-Hkv", "mix-full-prefill", "mix-window0"])
def test_bad_parameters_name_the_key(family, params, shape, key):
    with pytest.raises(WorkloadError) as e:
        attnsim.attention(family, heads=8, head_dim=64, params=params, **shape)
    assert key in str(e.value)


@pytest.mark.parametrize("name", ["topk_llama3_8b_prefill_32k", "routing_clusters_prefill_8k",
                                  "head_mix_duo_llama3_8b_decode_128k"])
def test_example_workloads_load_and_predict(name):
    w = load_workload(name)
    for arch in (H100, FUSEMAX):
        r = attnsim.predict(arch, w)
        assert r.latency_s > 0 and math.isfinite(r.latency_s)
        assert len(r.kernels) == len(plan_for(arch, w).ops)
