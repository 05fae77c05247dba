"""Plans of the content-based sparse families (``attnsim.workload.families.sparse``).

    topk_blocks       pool Q, K (stream) -> score pooled blocks + top-k (GEMM) -> block-sparse
                      attention at the routing tile (block_m = block_q, block_n = block_k)
    routing_clusters  assign queries, keys to centroids (GEMMs) [-> k-means iterations] ->
                      gather by cluster (stream) -> attention within clusters, the clusters
                      folded into the batch -> merge + scatter back (stream)
    head_mix          one attention kernel whose CTAs differ in length by head (full heads
                      visit every causal tile, streaming heads the sink and window tiles)

``mapping`` (``attnsim.predict``): None -> the arch's default attention kernel (FA3-style on
Hopper, FA2 elsewhere, flash-decoding for seq_q <= 16; for topk_blocks at the routing tile);
an algorithm name -> that kernel; a KernelMapping / SpatialMapping -> the attention kernel as
given (topk_blocks requires its tile to be the routing block). The other kernels keep their
fixed shapes (``common.gemm_op`` / ``common.stream_op``).
"""
from __future__ import annotations

import math
from dataclasses import replace

from attnsim.errors import MappingError, Problem
from attnsim.mapping.kernel import KernelMapping
from attnsim.mapping.spatial import SpatialMapping
from attnsim.model import gpu_kernel as K
from attnsim.model.analytical import DECODE_MAX_QUERIES
from attnsim.model.families.common import (attention_mapping, attention_op, default_algorithm, gemm_op, softmax_view,
                                           stream_op)
from attnsim.model.plan import AttentionOp, Plan
from attnsim.workload.families.sparse import cached_keys, full_kv_heads, routing_groups, routing_new_keys, topk_rows
from attnsim.workload.spec import Mask
from attnsim.workload.tiles import TileStats

INDEX_BYTES = 4  # int32 block / cluster indices
MMA_EDGE = 16  # a GPU kernel tile edge is a multiple of the MMA tile edge (check_mapping)
# FA3's warp-specialized forward kernel: one producer warpgroup plus one consumer warpgroup per
# 64 query rows (wgmma's M edge), so kNWarps = 4 x (kBlockM / 64 + 1) (flash-attention hopper/)
WGMMA_ROWS = 64


def _attention_flops(w, allowed_per_bh: float) -> float:
    """Useful FLOPs of softmax attention on w: QK^T and PV over the allowed pairs."""
    return 2.0 * w.batch * w.heads * allowed_per_bh * (w.head_dim + w.value_dim)


# ------------------------------------------------------------------------------ topk_blocks


def _routing_kernel(arch, view, mapping, bq: int, bk: int) -> tuple:
    """(mapping, tile) of the attention kernel: the default kernel, or the one given, at the routing
    block (a decode step keeps the default query rows, which hold its one query block). An
    FA3-style kernel gets the warps of its block_m; block_q not a multiple of 64 rows takes the
    FA2-style kernel instead. Refuses a tile the kernel cannot have or that differs."""
    decode = view.seq_q <= DECODE_MAX_QUERIES
    tile = {"block_n": bk} if decode else {"block_m": bq, "block_n": bk}
    if mapping is None and arch.kind == "gpu" and default_algorithm(arch, view) == "flash3":
        mapping = "flash3" if bq % WGMMA_ROWS == 0 else "flash2"
    extra = {}
    if mapping == "flash3" and not decode:
        if bq % WGMMA_ROWS:
            raise MappingError(Problem(f"an FA3-style tile holds whole {WGMMA_ROWS}-row consumer warpgroups; "
                                       f"got block_q={bq}", key="params.block_q", hint="use flash2, or 64 / 128"))
        extra = {"warps": 4 * (bq // WGMMA_ROWS + 1)}
    if arch.kind == "gpu":
        for key, v in (("params.block_k", bk),) + ((("params.block_q", bq),) if not decode else ()):
            if v % MMA_EDGE:
                raise MappingError(Problem(f"the routing block is the kernel tile, a multiple of {MMA_EDGE} on a "
                                           f"GPU; got {key.split('.')[1]}={v}", key=key, hint="use 64 or 128"))
    if isinstance(mapping, (KernelMapping, SpatialMapping)):
        got = {k: getattr(mapping, k) for k in tile}
        if got != tile:
            raise MappingError(Problem(f"a block-sparse kernel's tile must be the routing block {tile}; the "
                                       f"mapping has {got}", key="mapping",
                                       hint="give the routing tile, or no mapping"))
    return mapping, {**tile, **extra}


def topk_plan(arch, w, mapping=None) -> Plan:
    density, bq, bk = w.param("density"), w.param("block_q"), w.param("block_k")
    causal = w.mask.is_causal
    B, H, Hkv, M, N, D = w.batch, w.heads, w.kv_heads, w.seq_q, w.seq_kv, w.head_dim
    eb = w.dtype_bytes
    nqb, nkb = -(-M // bq), -(-N // bk)
    rows = topk_rows(M, N, bq, bk, density, causal)
    view = softmax_view(w, mask=Mask("block_sparse", density=density, causal=causal))
    kernel, tile = _routing_kernel(arch, view, mapping, bq, bk)
    attn = attention_op("block-sparse attention", arch, view, kernel, **tile)
    qp, kp = B * H * nqb * D * eb, B * Hkv * nkb * D * eb  # pooled Q and K
    cached = cached_keys(w)  # earlier keys: their pooled blocks are read from a cache
    u, ju = N - cached, nkb - cached // bk  # keys pooled, key blocks (re)written by this call
    kp_new = B * Hkv * ju * D * eb
    # read Q, the new keys' K (and the running sums of the cached blocks they extend); write the means;
    # one add per element, one scale per mean
    pool = stream_op("pool Q, K over blocks", B * H * M * D * eb + B * Hkv * u * D * eb + (kp_new if cached else 0),
                     qp + kp_new, vector_ops=B * H * (M + nqb) * D + B * Hkv * (u + ju) * D)
    kept = int(rows["keep"].sum())
    score = gemm_op("score blocks + top-k", B * H, nqb, nkb, D, w.dtype, eb, arch=arch, a_bytes=qp,
                    b_bytes=kp,
                    c_bytes=B * H * kept * INDEX_BYTES)  # the scores stay on chip; kept block indices out
    score = replace(score, vector_ops=B * H * float(rows["compares"].sum()))
    allowed = K.mask_tile_stats(K.MK_BLOCK, M, N, bq, bk, 0, 0, density, causal)[5]  # the kernel's count
    return Plan("topk_blocks", (pool, score, attn), useful_flops=score.useful_flops + _attention_flops(w, allowed),
                mapping=f"pool + score/top-k + {_label(attn)}",
                counts={"candidate key blocks per (b,h)": float(rows["candidates"].sum()),
                        "kept key blocks per (b,h)": float(kept),
                        "top-k compares per (b,h)": float(rows["compares"].sum())},
                notes=("routing blocks = kernel tiles; partial (diagonal) blocks always kept",
                       "scores computed for every block pair (causal ones masked after the GEMM)",
                       "top-k costed as candidates x ceil(log2(k + 1)) compares"))


def _label(op: AttentionOp) -> str:
    m = op.mapping
    return f"{op.name} {m.label()} {m.block_m}x{m.block_n}"


# ------------------------------------------------------------------------------ routing_clusters


def routing_plan(arch, w, mapping=None) -> Plan:
    C, t, iters = w.param("clusters"), w.param("top_clusters"), w.param("iters")
    causal = w.mask.is_causal
    B, H, Hkv, M, N, D, F = w.batch, w.heads, w.kv_heads, w.seq_q, w.seq_kv, w.head_dim, w.value_dim
    eb = w.dtype_bytes
    groups, qg, kg = routing_groups(w)
    view = softmax_view(w, batch=B * groups, seq_q=qg, seq_kv=kg, mask=Mask("causal" if causal else "full"))
    attn = attention_op("attention within clusters", arch, view, mapping)
    u = routing_new_keys(w)  # keys assigned (and sorted into the cluster-sorted cache) by this call
    q_bytes, kv_new = B * H * M * D * eb, B * Hkv * u * (D + F) * eb
    cen = Hkv * C * D * eb if iters == 0 else B * Hkv * C * D * 4  # given centroids, or fp32 online ones
    ops = []
    if iters:  # one kernel per iteration: assign each key, atomically add it into its centroid's sum
        it = gemm_op("k-means iteration", B * Hkv, N, C, D, w.dtype, eb, arch=arch, a_bytes=B * Hkv * N * D * eb,
                     b_bytes=cen, c_bytes=cen, layers=iters)
        ops.append(replace(it, vector_ops=B * Hkv * (N * C + N * D + C * D)))  # argmax, sums, means
    aq = gemm_op("assign queries", B * H, M, C, D, w.dtype, eb, arch=arch, a_bytes=q_bytes, b_bytes=cen,
                 c_bytes=B * H * M * t * INDEX_BYTES)
    ak = gemm_op("assign keys", B * Hkv, u, C, D, w.dtype, eb, arch=arch, a_bytes=B * Hkv * u * D * eb,
                 b_bytes=cen, c_bytes=B * Hkv * u * INDEX_BYTES)
    ops += [replace(aq, vector_ops=B * H * M * C * math.ceil(math.log2(t + 1))),  # top-t over C
            replace(ak, vector_ops=B * Hkv * u * C)]  # argmax over C
    index_bytes = (B * H * M * t + B * Hkv * u) * INDEX_BYTES
    # counting sort by cluster: a histogram increment and a scatter per token; Q is copied t times,
    # the new keys and values move into the cluster-sorted cache
    gather = stream_op("gather by cluster", q_bytes + kv_new + index_bytes, q_bytes * t + kv_new,
                       vector_ops=2.0 * (B * H * M * t + B * Hkv * u))
    pairs = B * H * M * t  # (query, cluster) partial outputs
    merge = stream_op("merge + scatter back",
                      pairs * F * eb + (pairs * 4 if t > 1 else 0), B * H * M * F * eb,  # + fp32 lse when t > 1
                      exps=pairs if t > 1 else 0.0, vector_ops=pairs * (F + 2) if t > 1 else 0.0)
    ops += [gather, attn, merge]
    kind = K.MK_CAUSAL if causal else K.MK_FULL
    allowed = K.mask_tile_stats(kind, qg, kg, qg, kg, 0, 0, 1.0, causal)[5]  # per (cluster group, head)
    gemm_flops = sum(op.useful_flops * op.count for op in ops if not isinstance(op, AttentionOp))
    return Plan("routing_clusters", tuple(ops), useful_flops=gemm_flops + _attention_flops(view, allowed),
                mapping=f"assign + gather + {_label(attn)} + merge",
                counts={"cluster groups per (b,h)": float(groups), "queries per group": float(qg),
                        "keys per group": float(kg)},
                notes=("balanced clusters: each holds ceil(N / C) keys (Routing Transformer's equal-size clusters)",
                       "clusters folded into the batch of the attention kernel",
                       "a decode step's queries of one KV head's group route to the same clusters"))


# ------------------------------------------------------------------------------ head_mix


def _head_kind_stats(w, bp: int, bc: int) -> tuple:
    """mask_tile_stats of a full head (the workload's causal / full mask) and of a streaming head
    (a causal window + sinks) at query tiles of bp rows and key tiles of bc keys."""
    full_kind = K.MK_CAUSAL if w.mask.kind == "causal" else K.MK_FULL
    return (K.mask_tile_stats(full_kind, w.seq_q, w.seq_kv, bp, bc, 0, 0, 1.0, False),
            K.mask_tile_stats(K.MK_WINDOW, w.seq_q, w.seq_kv, bp, bc, w.param("window"), w.param("sink"), 1.0, True))


def head_mix_stats(w, n_full: int):
    """(rows per query tile, keys per key tile) -> TileStats per (b, head group) averaged over the
    KV heads (fractional averages): n_full heads with the workload's causal / full mask, the rest
    a causal window + sinks. Max / min tiles per row are over all heads."""
    Hkv = w.kv_heads

    def stats(bp: int, bc: int) -> TileStats:
        kinds = [(n, s) for n, s in zip((n_full, Hkv - n_full), _head_kind_stats(w, bp, bc)) if n > 0]

        def avg(i):
            return sum(n * s[i] for n, s in kinds) / Hkv
        return TileStats(tiles=avg(0), full_tiles=avg(3), max_row_tiles=max(s[1] for _, s in kinds),
                         min_row_tiles=min(s[2] for _, s in kinds), rows=kinds[0][1][4], allowed=avg(5),
                         cols=-(-w.seq_kv // bc))
    return stats


def head_mix_plan(arch, w, mapping=None) -> Plan:
    n_full = full_kv_heads(w)
    view = softmax_view(w)
    stats = head_mix_stats(w, n_full)
    attn = AttentionOp("mixed-head attention", view, attention_mapping(arch, view, mapping), tile_stats=stats)
    a_full, a_stream = (s[5] for s in _head_kind_stats(w, w.seq_q, w.seq_kv))  # allowed pairs per head
    total = n_full * a_full + (w.kv_heads - n_full) * a_stream  # summed over the KV heads
    useful = 2.0 * w.batch * w.group * total * (w.head_dim + w.value_dim)
    return Plan("head_mix", (attn,), useful_flops=useful, mapping=_label(attn),
                counts={"full KV heads": float(n_full), "streaming KV heads": float(w.kv_heads - n_full)},
                notes=("one launch: CTAs of full and streaming heads differ in length",
                       "heads typed per KV head (DuoAttention's GQA patterns)"))


PLANS = {"topk_blocks": topk_plan, "routing_clusters": routing_plan, "head_mix": head_mix_plan}
