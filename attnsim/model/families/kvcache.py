"""Plans of the KV-cache compression families: the decode kernels a serving stack launches.

    kv_budget         decode over the compressed cache: one flash-decoding call per distinct
                      budget (heads or layers sharing a budget run in one launch); with
                      include_compression, SnapKV's one-time pass (scores GEMM, softmax + window
                      sum, pool + top-k, gather) per layer
    kv_channel_prune  decode over the pruned keys (head dim D' = kept channels rounded up to 8;
                      the kernel computes at its compiled head dim), decode over the `recent`
                      full keys, and a merge of the two partial outputs
    kv_quant          one dequantizing flash-decoding call: K/V bytes at the stored format,
                      dequantization ops added to each key tile's vector work
    paged_decode      flash-decoding over pages (flash_attn_with_kvcache with a block table,
                      as attnsim's vLLM validation models it): each key tile reads its int32
                      block-table entries
    mla_decode        q absorption GEMM (q_nope x W_UK), FlashMLA over the latent cache (MQA,
                      head dim 576 / value dim 512), output absorption GEMM (o_lat x W_UV)

``mapping`` (attnsim.predict's third argument) applies to the family's decode kernel: None for
the defaults, an algorithm name, a KernelMapping (GPU) or a SpatialMapping (spatial array); the
plan sets the KV-cache fields of a GPU mapping (kv_bytes, dequant_ops, shared_kv,
paged_block_table) from the family's parameters.
"""
from __future__ import annotations

import math
from collections import Counter

from attnsim.arch import Arch
from attnsim.errors import MappingError, Problem
from attnsim.mapping.kernel import KernelMapping, flash_mla_mapping
from attnsim.model.families.common import attention_mapping, gemm_op, softmax_view, stream_op
from attnsim.model.plan import AttentionOp, Gemm, KernelOp, Plan
from attnsim.workload.families import kvcache as F
from attnsim.workload.spec import Workload

LSE_BYTES = 4  # fp32 log-sum-exp per query row
INDEX_BYTES = 8  # torch.topk returns int64 indices


def _decode_flops(view: Workload, count: int = 1) -> float:
    """2 FLOP per (b, h, m, n) and channel of QK^T (D) and PV (F): the call's useful matrix work."""
    return 2.0 * view.batch * view.heads * view.seq_q * view.seq_kv * (view.head_dim + view.value_dim) * count


def _label(ops) -> str:
    return " + ".join(f"{op.name} [{op.mapping.label() if hasattr(op.mapping, 'label') else 'kernel'}]"
                      if isinstance(op, AttentionOp) else op.name for op in ops)


def _gpu(arch: Arch) -> bool:
    return arch.kind == "gpu"


# ---------------------------------------------------------------------------- kv_budget


def budget_groups(w: Workload) -> list[tuple[int, int, int]]:
    """(budget, selecting heads with it, layers) per decode launch: heads of one layer that share
    a budget run in one launch; layers that share a budget are identical launches."""
    if w.param("layer_budgets"):
        return [(b, F.selection_heads(w), n) for b, n in sorted(Counter(w.param("layer_budgets")).items())]
    return [(b, n, 1) for b, n in sorted(Counter(F.head_budgets(w)).items())]


def _budget_view(w: Workload, budget: int, sel: int) -> Workload:
    per = 1 if w.param("per_query_head") else w.group  # query heads reading one selection
    return softmax_view(w, heads=sel * per, kv_heads=sel, seq_kv=budget)


def _compression_ops(arch, w: Workload, kept_rows: int, layers: int) -> list:
    """SnapKV's pass over one layer (snapkv_utils.update_kv), count = layers; kept_rows is the
    layer's kept (sequence, selecting head, token) triples."""
    B, H, N, D, W, eb = w.batch, w.heads, w.seq_kv, w.head_dim, w.param("window"), w.dtype_bytes
    S = F.selection_heads(w)
    # every query head's window against its (repeat_kv-expanded) keys; scores written at the dtype
    scores = gemm_op("snapkv scores (window x cache)", B * H, W, N, D, w.dtype, eb, layers=layers, arch=arch)
    s_bytes = B * H * W * N * eb
    soft = stream_op("snapkv softmax + window sum", s_bytes, B * H * N * 4, exps=B * H * W * N,
                     vector_ops=5.0 * B * H * W * N, layers=layers)
    group_sum = 0.0 if w.param("per_query_head") else float(B * H * N)
    select = stream_op("snapkv pool + top-k", B * H * N * 4, (kept_rows - B * S * W) * INDEX_BYTES,
                       vector_ops=group_sum + B * S * N * (w.param("pool") + F.TOPK_RADIX_PASSES), layers=layers)
    kv = kept_rows * (w.head_dim + w.value_dim) * eb  # the kept rows, read and written once
    gather = stream_op("snapkv gather (compressed cache)", kv, kv, layers=layers)
    return [scores, soft, select, gather]


def budget_plan(arch: Arch, w: Workload, mapping=None) -> Plan:
    ops, flops = [], 0.0
    for budget, sel, layers in budget_groups(w):
        view = _budget_view(w, budget, sel)
        name = f"decode, budget {budget}" + (f", {sel} heads" if not w.param("layer_budgets") else "")
        ops.append(AttentionOp(name, view, attention_mapping(arch, view, mapping), layers))
        flops += _decode_flops(view, layers)
    if w.param("include_compression"):
        for budget, sel, layers in budget_groups(w) if w.param("layer_budgets") else [(None, None, 1)]:
            kept = w.batch * (budget * F.selection_heads(w) if budget else sum(F.head_budgets(w)))
            comp = _compression_ops(arch, w, kept, layers)
            ops.extend(comp)
            flops += sum(op.useful_flops * op.count for op in comp)
    counts = {"kept (layer, head, token) triples per sequence": float(F.kept_pairs(w)),
              "cache tokens per head": float(w.seq_kv)}
    notes = ("heads with different budgets run as separate launches (one per distinct budget)",) \
        if len(budget_groups(w)) > 1 and not w.param("layer_budgets") else ()
    return Plan(w.family, tuple(ops), flops, _label(ops), counts, notes)


# ---------------------------------------------------------------------------- kv_channel_prune


def channel_plan(arch: Arch, w: Workload, mapping=None) -> Plan:
    kept, stored, P = F.kept_key_channels(w), F.stored_key_channels(w), F.pruned_tokens(w)
    R = w.seq_kv - P
    B, H, M, D, Fv = w.batch, w.heads, w.seq_q, w.head_dim, w.value_dim
    flops = 2.0 * B * H * M * (P * kept + R * D) + 2.0 * B * H * M * w.seq_kv * Fv
    counts = {"kept key channels": float(kept), "stored key channels": float(stored),
              "pruned tokens": float(P), "recent full tokens": float(R)}
    if kept == D or P == 0:  # nothing pruned (or every token recent): one plain call
        view = softmax_view(w)
        ops = (AttentionOp("decode", view, attention_mapping(arch, view, mapping)),)
        return Plan(w.family, ops, flops, _label(ops), counts)
    pruned = softmax_view(w, seq_kv=P, head_dim=stored, value_dim=Fv)
    ops = [AttentionOp(f"decode, pruned keys (D'={stored})", pruned, attention_mapping(arch, pruned, mapping))]
    if R:
        recent = softmax_view(w, seq_kv=R)
        plain = None if isinstance(mapping, KernelMapping) or mapping is None else mapping
        ops.append(AttentionOp("decode, recent full keys", recent, attention_mapping(arch, recent, plain)))
        eb = w.dtype_bytes
        part = B * H * M * (Fv * eb + LSE_BYTES)  # one partial output and its log-sum-exp
        ops.append(stream_op("merge the two partial outputs", 2 * part, B * H * M * Fv * eb,
                             exps=2.0 * B * H * M, vector_ops=B * H * M * (3.0 * Fv + 4)))
    return Plan(w.family, tuple(ops), flops, _label(ops), counts,
                (f"K stored at D'={stored} channels; the kernel computes QK^T at its compiled head dim",))


# ---------------------------------------------------------------------------- kv_quant


def spatial_decode_op(name: str, arch: Arch, view: Workload, m, k_bytes: float, v_bytes: float,
                      dequant_ops: float = 0.0) -> KernelOp:
    """The spatial model's fused mapping (attnsim.model.spatial.predict_spatial, style 'fused')
    as a KernelOp whose K/V are read at k_bytes / v_bytes per element and dequantized with
    dequant_ops per element of every tile streamed: per (b, h) ceil(M / bm) x ceil(N / bn)
    tiles, each a (bm x bn, reduction D) and a (bm x F, reduction bn) GEMM on the 2D array and
    its softmax on the 1D array, pipelined; DRAM reads Q, the cache (again per query block when
    a head's cache overflows half the global buffer) and writes O. With k_bytes = v_bytes = the
    dtype and no dequantization it equals predict_spatial (tests check it)."""
    if m.style != "fused":
        raise MappingError(Problem(f"{view.family}: a quantized or shared K/V cache on a spatial array is "
                                   f"modelled for the fused style; got {m.style!r}", key="mapping"))
    B, H, M, N, D, Fv, eb = view.batch, view.heads, view.seq_q, view.seq_kv, view.head_dim, view.value_dim, \
        view.dtype_bytes
    bm, bn = min(m.block_m, M), min(m.block_n, N)
    rows = math.ceil(M / bm)
    tiles = view.batch * view.heads * rows * math.ceil(N / bn)
    row_bytes = D * k_bytes + Fv * v_bytes
    refetch = 1 if N * row_bytes <= arch.levels[1].capacity_bytes / 2 else rows
    dram = B * H * M * D * eb + B * view.kv_heads * N * row_bytes * refetch + B * H * M * Fv * eb
    return KernelOp(name, ctas=tiles, gemms=(Gemm(tiles, bm, bn, D), Gemm(tiles, bm, Fv, bn)),
                    exps=tiles * (bm * bn + bm),
                    vector_ops=tiles * (4.0 * bm * bn + bm * Fv + dequant_ops * bn * (D + Fv)),
                    hbm_bytes=dram, overlap=True, dtype=view.dtype)


def quant_plan(arch: Arch, w: Workload, mapping=None) -> Plan:
    view = softmax_view(w)
    kb, dq = F.kv_element_bytes(w), F.dequant_ops(w)
    counts = {"stored bytes per K/V element": kb, "dequant ops per element": dq}
    m = attention_mapping(arch, view, mapping)
    if not F.is_quantized(w):
        op = AttentionOp("decode", view, m)
    elif _gpu(arch):
        op = AttentionOp(f"dequantizing decode ({w.param('kv_dtype')})", view,
                         m.with_changes(kv_bytes=kb, dequant_ops=dq))
    else:
        op = spatial_decode_op(f"dequantizing decode ({w.param('kv_dtype')})", arch, view, m, kb, kb, dq)
    return Plan(w.family, (op,), _decode_flops(view), _label((op,)), counts)


# ---------------------------------------------------------------------------- paged_decode


def paged_plan(arch: Arch, w: Workload, mapping=None) -> Plan:
    page = w.param("page")
    view = softmax_view(w, kv_page=page)
    m = attention_mapping(arch, view, mapping)
    notes = ()
    if _gpu(arch):
        m = m.with_changes(paged_block_table=True)
    else:
        notes = ("a spatial array reads pages like a contiguous cache; block-table reads are not modelled",)
    pages = math.ceil(w.seq_kv / page)
    counts = {"pages per sequence": float(pages), "allocated tokens per sequence": float(pages * page),
              "unused slots in the last page": float(pages * page - w.seq_kv)}
    op = AttentionOp(f"paged decode (page {page})", view, m)
    return Plan(w.family, (op,), _decode_flops(view), _label((op,)), counts, notes)


# ---------------------------------------------------------------------------- mla_decode


def mla_view(w: Workload) -> Workload:
    """The absorbed attention call: MQA of H query heads over one latent head of
    kv_lora_rank + rope_dim channels, V = its first kv_lora_rank channels."""
    return softmax_view(w, kv_heads=1, head_dim=F.mla_qk_dim(w), value_dim=w.param("kv_lora_rank"))


def _mla_mapping(arch: Arch, view: Workload, mapping):
    if _gpu(arch) and (mapping is None or mapping == "flash_mla"):
        return flash_mla_mapping(arch, view)
    return attention_mapping(arch, view, None if mapping == "flash_mla" else mapping)


def mla_plan(arch: Arch, w: Workload, mapping=None) -> Plan:
    B, H, M, E, V, eb = w.batch, w.heads, w.seq_q, w.head_dim, w.value_dim, w.dtype_bytes
    C, R = w.param("kv_lora_rank"), w.param("rope_dim")
    view = mla_view(w)
    m = _mla_mapping(arch, view, mapping)
    # per head h: (B*M tokens x E) @ W_UK[h] (E x C), and (B*M x C) @ W_UV[h] (C x V); each weight read once
    q_abs = gemm_op("q absorb (q_nope x W_UK)", H, B * M, C, E, w.dtype, eb, arch=arch)
    o_abs = gemm_op("output absorb (o_lat x W_UV)", H, B * M, V, C, w.dtype, eb, arch=arch)
    if _gpu(arch):
        att = AttentionOp("latent MQA decode", view, m)
    else:  # V is read from the K rows (latent cache): no V bytes of its own
        att = spatial_decode_op("latent MQA decode", arch, view, m, eb, 0.0)
    ops = (q_abs, att, o_abs)
    flops = q_abs.useful_flops + _decode_flops(view) + o_abs.useful_flops
    counts = {"latent cache bytes per token": float((C + R) * eb),
              "naive MHA cache bytes per token": float(H * (E + R + V) * eb)}
    return Plan(w.family, ops, flops, _label(ops), counts)


PLANS = {"kv_budget": budget_plan, "kv_channel_prune": channel_plan, "kv_quant": quant_plan,
         "paged_decode": paged_plan, "mla_decode": mla_plan}
