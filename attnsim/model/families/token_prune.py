"""Plan of token_prune: attention at the full length, the pruning pass, attention at the kept length.

    AttentionOp  attention (full length)   count = prune_layer          (absent when 0)
    KernelOp     prune: score              probe attention or similarity, scores [B, N] fp32
    KernelOp     prune: top-k              radix select of the kept prunable tokens per sequence
    KernelOp     prune: gather             kept hidden states copied into a compact [B, K, hidden]
    AttentionOp  attention (pruned)        count = layers - prune_layer

With keep = 1 the pass is skipped and the plan is one AttentionOp with count = layers. The
attention calls are costed by the attention models exactly as ``attnsim.predict`` costs a softmax
workload; ``mapping`` (None, an algorithm name, a KernelMapping or a SpatialMapping) applies to
both attention calls. Only attention and the pass are costed (no MLPs, no projections).

The score kernel (score=attention) is one fused two-pass kernel per (b, head, probe tile, key
block): pass 1 streams its keys for each probe row's max and sum of exp, the per-block statistics
are combined, pass 2 streams the keys again and accumulates the normalized probabilities into the
per-key score with fp32 atomics; no [probes, N] map reaches HBM. (Frameworks that ask for
attention weights materialize that map: for a few probes the difference is small; for
probes = seq this plan is the efficient kernel, not the eager one.)
Probe products thinner than an MMA tile (probes < 16) run on the vector units, as decode kernels do.
"""
from __future__ import annotations

import math

from attnsim.mapping.kernel import flash_splits_heuristic
from attnsim.model.families.common import attention_op, softmax_view, stream_op
from attnsim.model.plan import DTYPE_BYTES, INSTR_TILE, Gemm, KernelOp, Plan
from attnsim.workload.families import token_prune as fam

F32, IDX = 4, 8  # fp32 scores; int64 indices (torch.topk)
SCORE_TILE = (64, 64)  # probe rows x keys per step of the score kernel (FlashAttention-2-like tile)
SIM_ROWS = 128  # tokens per CTA of the similarity kernel
# torch.topk's radix select (aten/src/ATen/native/cuda/SortingRadixSelect.cuh): 2 bits of the
# 32-bit key per pass, up to 16 passes for float32; each pass counts 2^2 digit bins per element.
RADIX_BITS, KEY_BITS = 2, 32
THIN = INSTR_TILE["mma_sync"][0]  # fewer probe rows than the smallest MMA m-tile: vector units


def key_splits(arch, w) -> int:
    """Key blocks per (b, head, probe tile) of the score kernel, picked as flash-attention picks
    its split-KV count (``flash_splits_heuristic``, with 2 x SMs slots as flash-attn calls it)."""
    if arch.kind != "gpu":
        return 1
    ctas = w.batch * w.heads * math.ceil(w.param("probes") / SCORE_TILE[0])
    return flash_splits_heuristic(ctas, 2 * arch.gpu.sm_count, math.ceil(w.seq_kv / SCORE_TILE[1]))


def score_attention(arch, w) -> KernelOp:
    e = DTYPE_BYTES[w.dtype]
    b, h, hkv, n, d, p = w.batch, w.heads, w.kv_heads, w.seq_kv, w.head_dim, w.param("probes")
    tiles = math.ceil(p / SCORE_TILE[0])
    splits = key_splits(arch, w)
    macs = b * h * p * n * d  # one pass of probe . key products
    gemms = (Gemm(b * h, p, n, d), Gemm(b * h, p, n, d)) if p >= THIN else ()
    k_read = b * hkv * n * d * e  # read K once from HBM (its query heads share it through L2)
    stats = 2 * b * h * p * splits * 2 * F32  # per-split (max, sum) written and read back
    return KernelOp("prune: score (probe attention)", ctas=b * h * tiles * splits, gemms=gemms,
                    exps=2 * b * h * p * n,  # exp in both passes
                    vector_ops=6 * b * h * p * n + (0 if gemms else 2 * macs),  # + probe FMAs when thin
                    hbm_bytes=k_read + b * h * p * d * e + b * n * F32,  # K, probe queries; write scores
                    l2_bytes=(2 * b * h * tiles * n * d * e + b * h * p * d * e * splits  # K twice, queries
                              + b * h * tiles * n * F32 + stats),  # score atomics, split statistics
                    warps=4, dtype=w.dtype)


def score_similarity(w) -> KernelOp:
    e = DTYPE_BYTES[w.dtype]
    b, n, p, t, hid = w.batch, w.seq_q, w.param("probes"), fam.prunable(w), fam.hidden_width(w)
    gemms = (Gemm(b, t, p, hid),) if p >= THIN else ()
    return KernelOp("prune: score (cosine similarity)", ctas=b * math.ceil(t / SIM_ROWS), gemms=gemms,
                    exps=b * (t + p),  # one rsqrt per norm
                    vector_ops=b * (t + p) * hid + 2 * b * t * p + (0 if gemms else b * t * p * hid),
                    hbm_bytes=b * (t + p) * hid * e + b * t * F32,  # read states and references; write scores
                    warps=4, dtype=w.dtype)


def topk(w) -> KernelOp:
    b, t, k = w.batch, fam.prunable(w), fam.kept_prunable(w)
    passes = KEY_BITS // RADIX_BITS
    per_elem = 2 ** RADIX_BITS + 3  # one ballot per digit bin; convert, pattern test, bitfield
    return KernelOp("prune: top-k (radix select)", ctas=b,  # one block per sequence
                    vector_ops=b * t * passes * per_elem,
                    hbm_bytes=b * t * F32 + b * k * (F32 + IDX),  # read scores; write values, indices
                    l2_bytes=b * t * F32 * passes + b * k * (F32 + IDX), warps=4, dtype=w.dtype)


def gather(w) -> KernelOp:
    e = DTYPE_BYTES[w.dtype]
    rows = w.batch * fam.kept_tokens(w)
    return stream_op("prune: gather kept tokens", read_bytes=rows * fam.hidden_width(w) * e + rows * IDX,
                     write_bytes=rows * fam.hidden_width(w) * e)


def pass_ops(arch, w) -> tuple:
    score = score_attention(arch, w) if w.param("score") == "attention" else score_similarity(w)
    return score, topk(w), gather(w)


def plan(arch, w, mapping=None) -> Plan:
    layers, pl = w.param("layers"), w.param("prune_layer")
    full = softmax_view(w)
    if not fam.prunes(w):
        ops = (attention_op("attention", arch, full, mapping, count=layers),)
        label = f"{layers} x attention (keep = 1: no pass)"
    else:
        k = fam.kept_tokens(w)
        pruned = softmax_view(w, seq_q=k, seq_kv=k)
        before = (attention_op("attention (full length)", arch, full, mapping, count=pl),) if pl else ()
        ops = before + pass_ops(arch, w) + (attention_op("attention (pruned)", arch, pruned, mapping, count=layers - pl),)
        label = f"{pl} x attention N={w.seq_q}, prune ({w.param('score')}), {layers - pl} x attention N={k}"
    return Plan(w.family, ops, fam.cascade_ops(w)["mma"], label,
                counts={"kept tokens": float(fam.kept_tokens(w) if fam.prunes(w) else w.seq_q),
                        "tokens before the pass": float(w.seq_q)},
                notes=("attention and the pruning pass only: the MLPs and projections are not costed",))


PLANS = {"token_prune": plan}
