"""KV-cache compression for decoding: one step of `seq_q` query positions (1 by default) against
a cache of `seq_kv` tokens, every query seeing the whole (compressed) cache (mask full).

    kv_budget         keep `budget` tokens per head (SnapKV: top tokens by the attention of an
                      observation window, pooled; CAKE: budgets per layer; AdaKV: per head)
    kv_channel_prune  keep a fraction of the key channels (ThinK), queries pruned the same,
                      V untouched; the `recent` newest tokens keep every channel
    kv_quant          K and V stored as int2 / int4 / int8 (KIVI: fp16 scale and zero per group
                      of `group` elements, K per channel, V per token) or fp8 (vLLM: one scale
                      per tensor), dequantized inside the attention kernel
    paged_decode      K/V in pages of `page` tokens found through a block table (vLLM)
    mla_decode        DeepSeek-V2/V3 multi-head latent attention with the up-projections
                      absorbed: MQA over a latent cache of kv_lora_rank + rope_dim channels

Layouts (as attnsim.workload.reference): q [B, H, M, D], k [B, Hkv, N, D], v [B, Hkv, N, F].
Each family has its numpy reference (float64, obvious) and an executable form of its cascade
(tile by tile, as the kernels run it) that the tests compare with it.
"""
from __future__ import annotations

import math

import numpy as np

from attnsim.spec.schema import Field
from attnsim.workload.cascade import Cascade, Einsum, softmax_attention_cascade
from attnsim.workload.families import Family
from attnsim.workload.reference import attention_reference, flash_decode_split_kv

# ---------------------------------------------------------------------------- constants of named methods

SNAPKV_CAPACITY = 2048  # SnapKV's max_capacity_prompt default (init_snapkv, snapkv_utils.py): tokens kept per head
SNAPKV_WINDOW = 32  # its observation window (window_size default in init_snapkv)
SNAPKV_POOL = 5  # its avg-pool kernel over the window's attention (kernel_size default in init_snapkv)
# torch.topk's single-block radix select (aten SortingRadixSelect.cuh, RADIX_BITS = 2): 16 passes
# over a row of 32-bit scores, one compare-and-count per score per pass
TOPK_RADIX_PASSES = 16
THINK_KEEP = 0.6  # ThinK prunes 40% of the key channels (pruning_ratio 0.4 in its LongBench scripts)
THINK_RECENT = 32  # and leaves the newest 32 tokens unpruned (recent_size 32)
THINK_OBS = 32  # query rows that score the channels (q_states[..., -32:, :] in key_pruner_query_driven)
CHANNEL_ALIGN = 8  # a pruned K row is stored in whole 16-byte vectors: channels rounded up to 8 (bf16)
KIVI_GROUP = 32  # KIVI's group size (group_size 32 in its example.py)
SCALE_ZERO_BYTES = 4  # KIVI stores an fp16 scale and an fp16 zero (the group minimum) per group
QUANT_BITS = {"int2": 2, "int4": 4, "int8": 8, "fp8": 8}
# Vector ops to dequantize one element. Integer formats: KIVI's bgemv kernels
# (quant/csrc/gemv_cuda.cu) mask the field out of a packed 32-bit word, convert it to float,
# FMA it with the scale and zero, and shift the word: 4 ops. fp8: vLLM's fp8 KV cache
# (scaled_convert in csrc/quantization/fp8) converts to float and multiplies by the scale: 2 ops.
DEQUANT_OPS = {"int2": 4.0, "int4": 4.0, "int8": 4.0, "fp8": 2.0}
FP8_E4M3_MAX = 448.0
VLLM_BLOCK_SIZE = 16  # vLLM's default KV-cache block (CacheConfig.DEFAULT_BLOCK_SIZE)
DSV3_KV_LORA_RANK = 512  # DeepSeek-V3 config.json: kv_lora_rank 512, qk_rope_head_dim 64
DSV3_ROPE_DIM = 64
FLOAT_DTYPES = ("fp16", "bf16", "fp32")
KV_DTYPES = ("int2", "int4", "int8", "fp8") + FLOAT_DTYPES
DTYPE_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4}

# ---------------------------------------------------------------------------- parameter tables

BUDGET_PARAMS = (
    Field("budget", "int", required=False, min=1,
          help=f"tokens kept per head (default: SnapKV's {SNAPKV_CAPACITY}, or the cache if shorter)"),
    Field("budget_fraction", "fraction", required=False, help="tokens kept per head as a fraction of seq_kv"),
    Field("head_budgets", "list", required=False, default=(),
          help="tokens kept by each KV head (each query head with per_query_head), e.g. [512, 2048, ...]"),
    Field("layer_budgets", "list", required=False, default=(),
          help="tokens kept per head in each layer (CAKE); the step then covers every listed layer"),
    Field("window", "int", required=False, default=SNAPKV_WINDOW, min=1,
          help="SnapKV observation window: the last prompt queries that score the cache"),
    Field("pool", "int", required=False, default=SNAPKV_POOL, min=1, help="odd avg-pool kernel over the scores"),
    Field("per_query_head", "bool", required=False, default=False,
          help="select per query head (SnapKV's code, cache grows to H heads) instead of per KV head"),
    Field("include_compression", "bool", required=False, default=False,
          help="add the one-time compression pass (scores, pool, top-k, gather) to the step"),
)
CHANNEL_PARAMS = (
    Field("key_channels", "fraction", required=False, default=THINK_KEEP,
          help="fraction of the D key (and query) channels kept"),
    Field("recent", "int", required=False, default=THINK_RECENT, min=0,
          help="newest tokens whose keys keep every channel"),
)
QUANT_PARAMS = (
    Field("kv_dtype", "enum", required=False, default="int4", choices=KV_DTYPES, help="stored K/V format"),
    Field("group", "int", required=False, default=KIVI_GROUP, min=1,
          help="elements per fp16 scale + zero (integer formats; fp8 has one scale per tensor)"),
    Field("dequant_ops", "float", required=False, min=0,
          help="vector ops per dequantized element (default: the format's instruction count)"),
)
PAGED_PARAMS = (Field("page", "int", required=False, default=VLLM_BLOCK_SIZE, min=1, help="tokens per KV page"),)
MLA_PARAMS = (
    Field("kv_lora_rank", "int", required=False, default=DSV3_KV_LORA_RANK, min=1,
          help="latent channels cached per token (c_KV)"),
    Field("rope_dim", "int", required=False, default=DSV3_ROPE_DIM, min=0,
          help="decoupled RoPE key channels cached per token, shared by every head"),
)

# ---------------------------------------------------------------------------- derived sizes


def _decode_problems(w) -> list:
    if w.mask.kind != "full":
        return [("mask", f"{w.family} decodes against the whole cache: expected mask 'full', got {w.mask.kind!r}")]
    return []


def selection_heads(w) -> int:
    """Heads that select their own tokens: the KV heads, or the query heads (per_query_head)."""
    return w.heads if w.param("per_query_head") else w.kv_heads


def uniform_budget(w) -> int:
    """The budget every head keeps when no per-head or per-layer list is given."""
    if w.param("budget") is not None:
        return w.param("budget")
    if w.param("budget_fraction") is not None:
        return max(1, math.floor(w.param("budget_fraction") * w.seq_kv + 0.5))
    return min(SNAPKV_CAPACITY, w.seq_kv)


def head_budgets(w) -> tuple[int, ...]:
    """Tokens kept by each selecting head of one layer (KV heads, or query heads)."""
    given = w.param("head_budgets")
    return tuple(given) if given else (uniform_budget(w),) * selection_heads(w)


def layer_budgets(w) -> tuple[int, ...]:
    """Tokens kept per head in each layer the step covers (one layer unless layer_budgets)."""
    given = w.param("layer_budgets")
    return tuple(given) if given else (None,)


def kept_pairs(w) -> int:
    """T: kept (layer, selecting head, token) triples, the rank the compressed decode runs over."""
    if w.param("layer_budgets"):
        return sum(b * selection_heads(w) for b in layer_budgets(w))
    return sum(head_budgets(w))


def _int_list(w, key, n_expected, what) -> list:
    vals = w.param(key)
    if not vals:
        return []
    probs = []
    if len(vals) != n_expected:
        probs.append((f"params.{key}", f"expected {n_expected} budgets (one per {what}), got {len(vals)}"))
    bad = [b for b in vals if isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= w.seq_kv]
    if bad:
        probs.append((f"params.{key}", f"expected integers in [1, seq_kv={w.seq_kv}], got {bad[:4]}"))
    return probs


def _check_budget(w) -> list:
    probs = _decode_problems(w)
    b, frac = w.param("budget"), w.param("budget_fraction")
    lists = [k for k in ("head_budgets", "layer_budgets") if w.param(k)]
    if b is not None and frac is not None:
        probs.append(("params.budget", f"give budget or budget_fraction, not both (got {b} and {frac})"))
    if lists and (b is not None or frac is not None):
        probs.append((f"params.{lists[0]}", f"{lists[0]} replaces budget / budget_fraction; give one of them"))
    if len(lists) == 2:
        probs.append(("params.layer_budgets", "give head_budgets (one layer) or layer_budgets (uniform heads "
                                              "per layer), not both"))
    if b is not None and b > w.seq_kv:
        probs.append(("params.budget", f"a budget of {b} tokens exceeds the cache (seq_kv={w.seq_kv})"))
    sel = w.heads if w.param("per_query_head") else w.kv_heads
    probs += _int_list(w, "head_budgets", sel, "query head" if w.param("per_query_head") else "KV head")
    probs += _int_list(w, "layer_budgets", len(w.param("layer_budgets")), "layer")
    if w.param("pool") % 2 == 0:
        probs.append(("params.pool", f"expected an odd pooling kernel (it keeps the length, padding "
                                     f"pool // 2 each side), got {w.param('pool')}"))
    if not probs and w.param("include_compression"):
        smallest = min(w.param("layer_budgets") or head_budgets(w))
        if smallest < w.param("window"):
            probs.append(("params.window", f"SnapKV keeps the observation window: every budget must be at least "
                                           f"window={w.param('window')}, the smallest is {smallest}"))
    return probs


def kept_key_channels(w) -> int:
    """ThinK keeps D - int(D * pruning ratio) channels (key_pruner_query_driven)."""
    d = w.head_dim
    return d - int(d * (1.0 - w.param("key_channels")) + 1e-9)


def stored_key_channels(w) -> int:
    """Channels of a stored pruned K row: the kept ones rounded up to whole 16-byte vectors."""
    return -(-kept_key_channels(w) // CHANNEL_ALIGN) * CHANNEL_ALIGN


def pruned_tokens(w) -> int:
    """Cache tokens whose keys are pruned: all but the `recent` newest."""
    return max(0, w.seq_kv - w.param("recent"))


def _check_channels(w) -> list:
    probs = _decode_problems(w)
    if w.param("recent") > w.seq_kv:
        probs.append(("params.recent", f"{w.param('recent')} recent tokens exceed the cache (seq_kv={w.seq_kv})"))
    return probs


def kv_element_bytes(w) -> float:
    """Bytes per stored K/V element, scales and zeros included: bits / 8 + 4 bytes per group."""
    dt = w.param("kv_dtype")
    if dt in FLOAT_DTYPES:
        return float(DTYPE_BYTES[dt])
    if dt == "fp8":
        return 1.0  # one scale per tensor (vLLM k_scale / v_scale): nothing per element
    return QUANT_BITS[dt] / 8 + SCALE_ZERO_BYTES / w.param("group")


def dequant_ops(w) -> float:
    dt = w.param("kv_dtype")
    if dt in FLOAT_DTYPES:
        return 0.0
    return DEQUANT_OPS[dt] if w.param("dequant_ops") is None else w.param("dequant_ops")


def is_quantized(w) -> bool:
    return w.param("kv_dtype") not in FLOAT_DTYPES


def _check_quant(w) -> list:
    probs = _decode_problems(w)
    dt = w.param("kv_dtype")
    if dt in FLOAT_DTYPES and dt != w.dtype:
        probs.append(("params.kv_dtype", f"a {dt} cache with {w.dtype} compute is a dtype conversion, not a "
                                         f"quantized cache; use kv_dtype {w.dtype} (no quantization) or one of "
                                         f"{[d for d in KV_DTYPES if d not in FLOAT_DTYPES]}"))
    if dt in FLOAT_DTYPES and w.param("dequant_ops"):
        probs.append(("params.dequant_ops", f"an unquantized ({dt}) cache has nothing to dequantize"))
    return probs


def _check_paged(w) -> list:
    probs = _decode_problems(w)
    if w.kv_page not in (0, w.param("page")):
        probs.append(("kv_page", f"paged_decode sets the page from params.page ({w.param('page')}); the "
                                 f"workload's kv_page is {w.kv_page}"))
    return probs


def mla_qk_dim(w) -> int:
    """Channels of one cached latent token and of an absorbed query: kv_lora_rank + rope_dim."""
    return w.param("kv_lora_rank") + w.param("rope_dim")


def _check_mla(w) -> list:
    probs = _decode_problems(w)
    if w.kv_heads not in (1, w.heads):
        probs.append(("kv_heads", f"MLA up-projects one latent cache to every head: kv_heads is 1 (the absorbed "
                                  f"MQA view) or heads={w.heads} (the naive view), got {w.kv_heads}"))
    return probs


# ---------------------------------------------------------------------------- cascades and their extents


def _softmax_steps(ranks, name_suffix=""):
    """max, exp, scale-subtract and sum of an online softmax over the ranks given."""
    return (Einsum("X" + name_suffix, "X = max over the keys of S", "vector", ranks, 1, False),
            Einsum("E" + name_suffix, "E = exp(S*scale - X)", "exp", ranks, 1, False),
            Einsum("Es" + name_suffix, "(scale and subtract: one FMA per element)", "vector", ranks, 1, False),
            Einsum("L" + name_suffix, "L = sum over the keys of E", "vector", ranks, 1, False))


def budget_cascade(w) -> Cascade:
    """Decode over the compressed cache, t = kept (layer, head, token) triples:

    S[b,g,m,t]  = Q[b,h(t),m,d] * Kc[b,t,d]         2 FLOP per (b,g,m,t,d)   (mma)
    softmax over t                                   (vector, exp)
    O[b,h,m,f]  = P[b,g,m,t] * Vc[b,t,f]            2 FLOP per (b,g,m,t,f)   (mma)

    g: query heads per selecting head (G, or 1 with per_query_head). With include_compression,
    SnapKV's one-time pass per layer l (s: selecting heads, w: window queries, n: cache tokens):

    Sw[l,b,h,w,n] = Qw[l,b,h,w,d] * K[l,b,h/g,n,d]   2 FLOP per point     (mma)
    Pw = softmax_n(Sw), A[l,b,h,n] = sum_w Pw        exp + 4 vector ops per (l,b,h,w,n)
    As[l,b,s,n] = sum over the heads of a selection  1 op per (l,b,h,n)   (per KV head only)
    Ap = avgpool_pool(As); top-k                     pool + TOPK_RADIX_PASSES ops per (l,b,s,n)
    """
    dec = ("b", "g", "m", "t")
    steps = (Einsum("S", "S[b,g,m,t] = Q[b,h(t),m,d] * Kc[b,t,d]", "mma", dec + ("d",), 2, False),
             *_softmax_steps(dec),
             Einsum("O", "O[b,h(t),m,f] = E[b,g,m,t] * Vc[b,t,f] / L", "mma", dec + ("f",), 2, False))
    if not w.param("include_compression"):
        return Cascade(steps)
    win = ("l", "b", "h", "w", "n")
    comp = [Einsum("Sw", "Sw[l,b,h,w,n] = Qw[l,b,h,w,d] * K[l,b,h/g,n,d]", "mma", win + ("d",), 2, False),
            Einsum("Pw", "Pw = softmax_n(Sw): exp", "exp", win, 1, False),
            Einsum("Pv", "Pw: max, subtract, sum, normalize; A = sum_w Pw", "vector", win, 5, False)]
    if not w.param("per_query_head"):
        comp.append(Einsum("As", "As[l,b,s,n] = sum over the query heads of KV head s of A", "vector",
                           ("l", "b", "h", "n"), 1, False))
    comp.append(Einsum("Ap", "Ap = avgpool(As); idx = topk(Ap)", "vector", ("l", "b", "s", "n"),
                       w.param("pool") + TOPK_RADIX_PASSES, False))
    return Cascade(steps + tuple(comp))


def channel_cascade(w) -> Cascade:
    """ThinK decode: pruned keys (p tokens, e kept channels) and recent full keys (r tokens):

    Sp[b,h,m,p] = Q'[b,h,m,e] * K'[b,h/g,p,e]       2 FLOP per (b,h,m,p,e)   (mma)
    Sr[b,h,m,r] = Q[b,h,m,d]  * K[b,h/g,r,d]        2 FLOP per (b,h,m,r,d)   (mma)
    softmax over n = p + r; O[b,h,m,f] = P * V[b,h/g,n,f]   2 FLOP per (b,h,m,n,f)
    """
    sm = ("b", "h", "m", "n")
    return Cascade((Einsum("Sp", "Sp[b,h,m,p] = Q'[b,h,m,e] * K'[b,h/g,p,e]", "mma", ("b", "h", "m", "p", "e"), 2,
                           False),
                    Einsum("Sr", "Sr[b,h,m,r] = Q[b,h,m,d] * K[b,h/g,r,d]", "mma", ("b", "h", "m", "r", "d"), 2,
                           False),
                    *_softmax_steps(sm),
                    Einsum("O", "O[b,h,m,f] = E[b,h,m,n] * V[b,h/g,n,f] / L", "mma", sm + ("f",), 2, False)))


def quant_cascade(w) -> Cascade:
    """Dequantize every loaded K/V element, then softmax attention:

    Kd[b,k,n,c] = scale * Kq + zero     dequant_ops per (b,k,n,c), k: KV heads, c: D + F  (vector)
    then the softmax cascade (S, X, E, Es, L, O).
    """
    deq = Einsum("Kd", "Kd[b,k,n,c] = scale[b,k,grp(n,c)] * Kq[b,k,n,c] + zero[b,k,grp(n,c)]", "vector",
                 ("b", "k", "n", "c"), dequant_ops(w), False)
    return Cascade((deq,) + softmax_attention_cascade().steps)


def mla_cascade(w) -> Cascade:
    """Absorbed MLA decode (e: nope dim = head_dim, c: kv_lora_rank, r: rope_dim, v: value_dim):

    Qa[b,h,m,c] = Qn[b,h,m,e] * Wuk[h,e,c]          2 FLOP per (b,h,m,e,c)   (mma)
    S[b,h,m,n]  = Qa[b,h,m,c] * C[b,n,c]            2 FLOP per (b,h,m,n,c)   (mma)
                + Qr[b,h,m,r] * Kr[b,n,r]           2 FLOP per (b,h,m,n,r)   (mma)
    softmax over n
    Ol[b,h,m,c] = P[b,h,m,n] * C[b,n,c]             2 FLOP per (b,h,m,n,c)   (mma)
    O[b,h,m,v]  = Ol[b,h,m,c] * Wuv[h,c,v]          2 FLOP per (b,h,m,c,v)   (mma)
    """
    sm = ("b", "h", "m", "n")
    return Cascade((Einsum("Qa", "Qa[b,h,m,c] = Qn[b,h,m,e] * Wuk[h,e,c]", "mma", ("b", "h", "m", "e", "c"), 2, False),
                    Einsum("Sc", "S[b,h,m,n] = Qa[b,h,m,c] * C[b,n,c]", "mma", sm + ("c",), 2, False),
                    Einsum("Sr", "S[b,h,m,n] += Qr[b,h,m,r] * Kr[b,n,r]", "mma", sm + ("r",), 2, False),
                    *_softmax_steps(sm),
                    Einsum("Ol", "Ol[b,h,m,c] = E[b,h,m,n] * C[b,n,c] / L", "mma", sm + ("c",), 2, False),
                    Einsum("O", "O[b,h,m,v] = Ol[b,h,m,c] * Wuv[h,c,v]", "mma", ("b", "h", "m", "c", "v"), 2,
                           False)))


def extents(w) -> dict[str, int]:
    """The extents of the family's cascade ranks (the softmax ranks plus the family's own)."""
    e = w.extents()
    if w.family == "kv_budget":
        e.update(g=1 if w.param("per_query_head") else w.group, t=kept_pairs(w), l=len(layer_budgets(w)),
                 w=w.param("window"), s=selection_heads(w))
    elif w.family == "kv_channel_prune":
        e.update(p=pruned_tokens(w), r=w.seq_kv - pruned_tokens(w), e=kept_key_channels(w))
    elif w.family == "kv_quant":
        e.update(k=w.kv_heads, c=w.head_dim + w.value_dim)
    elif w.family == "mla_decode":
        e.update(e=w.head_dim, c=w.param("kv_lora_rank"), r=w.param("rope_dim"), v=w.value_dim)
    return e


# ---------------------------------------------------------------------------- numerics: shared pieces


def masked_attention(q, k, v, keep, scale=None):
    """Softmax attention where query head h of batch b sees the keys keep[b, h] allows.

    q [B, H, M, D], k [B, Hkv, N, D], v [B, Hkv, N, F], keep [B, H, N] bool.  # o [B, H, M, F]"""
    B, H, M, D = q.shape
    G = H // k.shape[1]
    sc = 1.0 / math.sqrt(D) if scale is None else scale
    kk, vv = np.repeat(k, G, axis=1), np.repeat(v, G, axis=1)  # [B, H, N, *]
    s = np.einsum("bhmd,bhnd->bhmn", q, kk) * sc
    s = np.where(keep[:, :, None, :], s, -np.inf)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    return np.einsum("bhmn,bhnf->bhmf", p / p.sum(axis=-1, keepdims=True), vv)


class TileState:
    """Online-softmax state of query rows q [..., M, D] over key tiles, FlashAttention-style."""

    def __init__(self, q, f, scale):
        self.q, self.scale = q, scale
        self.m = np.full(q.shape[:-1] + (1,), -np.inf)  # [..., M, 1] running max
        self.l = np.zeros(q.shape[:-1] + (1,))  # [..., M, 1] running sum
        self.acc = np.zeros(q.shape[:-1] + (f,))  # [..., M, F] unnormalised output

    def add(self, k_tile, v_tile, q=None):
        """One key tile: k_tile [..., Bc, D'], v_tile [..., Bc, F] (q overrides the query rows)."""
        s = np.einsum("...md,...nd->...mn", self.q if q is None else q, k_tile) * self.scale
        m_new = np.maximum(self.m, s.max(axis=-1, keepdims=True))
        p = np.exp(s - m_new)
        alpha = np.exp(self.m - m_new)
        self.l = alpha * self.l + p.sum(axis=-1, keepdims=True)
        self.acc = alpha * self.acc + np.einsum("...mn,...nf->...mf", p, v_tile)
        self.m = m_new

    def merge(self, other: "TileState") -> None:
        """Fold in the state of another key range (the split-KV combine)."""
        m_new = np.maximum(self.m, other.m)
        a, b = np.exp(self.m - m_new), np.exp(other.m - m_new)
        self.l = a * self.l + b * other.l
        self.acc = a * self.acc + b * other.acc
        self.m = m_new

    def output(self):
        return self.acc / self.l


# ---------------------------------------------------------------------------- kv_budget (SnapKV, CAKE)


def snapkv_keep(q_obs, k, budgets, pool=SNAPKV_POOL, per_query_head=False):
    """SnapKV's selection (snapkv_utils.SnapKVCluster.update_kv): which cache tokens each
    selecting head keeps.

    q_obs [B, H, W, D]: the last W prompt queries (the observation window, aligned with the last
    W keys); k [B, Hkv, N, D]; budgets: tokens kept per selecting head (KV heads, or query heads
    with per_query_head), each >= W. Scores: the window's causal softmax attention summed over
    the window queries (summed over the G query heads of a KV head when selecting per KV head),
    avg-pooled (kernel `pool`, zero padding pool // 2, divisor pool), over the N - W older
    tokens; each head keeps its top (budget - W) of them plus the window.  # keep [B, S, N] bool
    """
    B, H, W, D = q_obs.shape
    Hkv, N = k.shape[1], k.shape[2]
    G = H // Hkv
    s = np.einsum("bhwd,bhnd->bhwn", q_obs, np.repeat(k, G, axis=1)) / math.sqrt(D)  # [B, H, W, N]
    causal = np.arange(N)[None, :] <= (N - W + np.arange(W))[:, None]  # window query i sees keys <= N-W+i
    s = np.where(causal, s, -np.inf)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    a = p[..., :N - W].sum(axis=2)  # [B, H, N-W]
    if not per_query_head:
        a = a.reshape(B, Hkv, G, N - W).sum(axis=2)  # [B, Hkv, N-W]
    half = pool // 2
    padded = np.pad(a, ((0, 0), (0, 0), (half, half)))
    pooled = sum(padded[..., i:i + N - W] for i in range(pool)) / pool  # [B, S, N-W]
    keep = np.zeros(pooled.shape[:2] + (N,), dtype=bool)
    keep[..., N - W:] = True
    for h, budget in enumerate(budgets):
        top = np.argsort(-pooled[:, h], axis=-1, kind="stable")[:, :budget - W]  # [B, budget-W]
        np.put_along_axis(keep[:, h], top, True, axis=-1)
    return keep


def expand_keep(keep, heads):
    """[B, S, N] per selecting head -> [B, H, N] per query head (query head h uses head h // G)."""
    return np.repeat(keep, heads // keep.shape[1], axis=1)


def budget_reference(q, k, v, keep):
    """Decode over the kept tokens: attention over the full cache with the others masked out."""
    return masked_attention(q, k, v, expand_keep(keep, q.shape[1]))


def budget_executable(q, k, v, keep, block_n, num_splits):
    """The compressed-cache decode as it runs: gather each selecting head's kept tokens into a
    contiguous (varlen) cache, then flash-decoding (split-KV + combine) per head.  # o [B, H, M, F]"""
    B, H, M, D = q.shape
    S = keep.shape[1]
    per = H // S  # query heads reading one selecting head's tokens
    kv_of = k.shape[1] / S  # selecting heads per KV head (1, or 1/G with per_query_head)
    o = np.zeros((B, H, M, v.shape[-1]))
    for b in range(B):
        for s in range(S):
            kv = int(s * kv_of)
            idx = np.flatnonzero(keep[b, s])  # the compressed cache of head s, in token order
            kc, vc = k[b, kv, idx][None, None], v[b, kv, idx][None, None]  # [1, 1, T, D], [1, 1, T, F]
            qs = q[b, s * per:(s + 1) * per][None]  # [1, per, M, D]
            o[b, s * per:(s + 1) * per] = flash_decode_split_kv(qs, kc, vc, num_splits)[0]
    return o


# ---------------------------------------------------------------------------- kv_channel_prune (ThinK)


def think_channels(q_obs, k, kept):
    """ThinK's key-channel selection (key_pruner_query_driven): channel score = mean over the
    observation queries of q^2 (summed over the G query heads of a KV head) x mean over the keys
    of k^2; each KV head keeps its `kept` highest-scoring channels.  # idx [B, Hkv, kept], sorted"""
    B, H = q_obs.shape[:2]
    Hkv, D = k.shape[1], k.shape[3]
    q_obs = q_obs[:, :, -THINK_OBS:]  # [B, H, <=32, D]
    qn = (q_obs ** 2).mean(axis=2).reshape(B, Hkv, H // Hkv, D).sum(axis=2)  # [B, Hkv, D]
    score = qn * (k ** 2).mean(axis=2)  # [B, Hkv, D]
    idx = np.argsort(-score, axis=-1, kind="stable")[..., :kept]
    return np.sort(idx, axis=-1)


def channel_prune_reference(q, k, v, idx, recent):
    """Decode with pruned keys: the dropped channels of the keys older than the `recent` newest
    are zero (the same as dropping them from the query and the key).  # o [B, H, M, F]"""
    N = k.shape[2]
    keepc = np.zeros(k.shape[:2] + (k.shape[3],), dtype=bool)
    np.put_along_axis(keepc, idx, True, axis=-1)
    kp = k.copy()
    kp[:, :, :N - recent] *= keepc[:, :, None, :]
    return attention_reference(q, kp, v)


def channel_prune_executable(q, k, v, idx, recent, block_n):
    """As the kernels run it: the pruned keys stored as [N - recent, D'] rows (kept channels,
    zero-padded to whole 16-byte vectors), the query gathered the same; one tiled pass over them
    and one over the recent full keys, then the split-KV combine.  # o [B, H, M, F]"""
    B, H, M, D = q.shape
    Hkv, N = k.shape[1], k.shape[2]
    G = H // Hkv
    kept = idx.shape[-1]
    dp = -(-kept // CHANNEL_ALIGN) * CHANNEL_ALIGN
    o = np.zeros((B, H, M, v.shape[-1]))
    for b in range(B):
        for h in range(Hkv):
            kc = np.zeros((N - recent, dp))  # [P, D'] stored pruned keys
            kc[:, :kept] = k[b, h, :N - recent][:, idx[b, h]]
            qh = q[b, h * G:(h + 1) * G]  # [G, M, D]
            qc = np.zeros((G, M, dp))
            qc[..., :kept] = qh[..., idx[b, h]]
            pruned, full = TileState(qc, v.shape[-1], 1 / math.sqrt(D)), TileState(qh, v.shape[-1], 1 / math.sqrt(D))
            for j0 in range(0, N - recent, block_n):
                j1 = min(j0 + block_n, N - recent)
                pruned.add(kc[j0:j1], v[b, h, j0:j1])
            for j0 in range(N - recent, N, block_n):
                j1 = min(j0 + block_n, N)
                full.add(k[b, h, j0:j1], v[b, h, j0:j1])
            if recent and N - recent:
                pruned.merge(full)
            o[b, h * G:(h + 1) * G] = (pruned if N - recent else full).output()
    return o


# ---------------------------------------------------------------------------- kv_quant (KIVI, vLLM fp8)


def quantize_groups(x, bits, group, axis):
    """KIVI's asymmetric quantization: groups of `group` consecutive elements along `axis` (the
    last one may be shorter), scale = (max - min) / (2^bits - 1), zero = min,
    q = round((x - zero) / scale).  Returns (q ints, scale, zero), scale and zero broadcast to
    x's shape (one value per group, repeated)."""
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    n = x.shape[-1]
    scale, zero = np.empty_like(x), np.empty_like(x)
    levels = 2 ** bits - 1
    for g0 in range(0, n, group):
        seg = x[..., g0:g0 + group]
        lo, hi = seg.min(axis=-1, keepdims=True), seg.max(axis=-1, keepdims=True)
        s = np.where(hi > lo, (hi - lo) / levels, 1.0)  # a constant group: any scale is exact
        scale[..., g0:g0 + group], zero[..., g0:g0 + group] = s, lo
    q = np.clip(np.round((x - zero) / scale), 0, levels)
    return tuple(np.moveaxis(a, -1, axis) for a in (q, scale, zero))


def round_fp8_e4m3(y):
    """Round to the nearest float8 e4m3 value (3 mantissa bits, exponent >= -6, max 448)."""
    y = np.clip(np.asarray(y, dtype=np.float64), -FP8_E4M3_MAX, FP8_E4M3_MAX)
    mag = np.abs(y)
    exp = np.floor(np.log2(np.where(mag > 0, mag, 1.0)))
    step = 2.0 ** (np.maximum(exp, -6) - 3)  # normal spacing; subnormals share the 2^-9 step
    return np.round(y / step) * step


def quantize_kv(k, v, kv_dtype, group):
    """The stored cache: {'k', 'v'} each (codes, scale, zero) with scale/zero broadcast to the
    element shape. K per channel (groups along the tokens), V per token (groups along the
    channels), as KIVI; fp8 has one scale per tensor (amax / 448) and no zero, as vLLM."""
    if kv_dtype == "fp8":
        out = {}
        for name, x in (("k", k), ("v", v)):
            s = np.abs(x).max() / FP8_E4M3_MAX
            out[name] = (round_fp8_e4m3(x / s), np.full(x.shape, s), np.zeros(x.shape))
        return out
    bits = QUANT_BITS[kv_dtype]
    return {"k": quantize_groups(k, bits, group, axis=2), "v": quantize_groups(v, bits, group, axis=3)}


def dequantize(codes, scale, zero):
    return codes * scale + zero


def quant_reference(q, stored):
    """Attention over the dequantized cache (dense, float64).  # o [B, H, M, F]"""
    return attention_reference(q, dequantize(*stored["k"]), dequantize(*stored["v"]))


def quant_executable(q, stored, block_n):
    """A dequantizing flash-decode kernel: each key tile's codes are dequantized as they are
    loaded (scale and zero of their groups), then the online softmax.  # o [B, H, M, F]"""
    kq, ks, kz = stored["k"]
    vq, vs, vz = stored["v"]
    B, H, M, D = q.shape
    Hkv, N = kq.shape[1], kq.shape[2]
    G = H // Hkv
    qg = q.reshape(B, Hkv, G, M, D)  # the G query heads of a KV head share each loaded tile
    st = TileState(qg, vq.shape[-1], 1 / math.sqrt(D))
    for j0 in range(0, N, block_n):
        j1 = min(j0 + block_n, N)
        kt = kq[:, :, j0:j1] * ks[:, :, j0:j1] + kz[:, :, j0:j1]  # [B, Hkv, Bc, D] dequantized
        vt = vq[:, :, j0:j1] * vs[:, :, j0:j1] + vz[:, :, j0:j1]  # [B, Hkv, Bc, F]
        st.add(kt[:, :, None], vt[:, :, None])
    return st.output().reshape(B, H, M, -1)


# ---------------------------------------------------------------------------- paged_decode (vLLM)


def page_cache(k, v, page, rng):
    """Scatter a contiguous cache into a shuffled pool of pages; returns (pool_k [P, page, Hkv, D],
    pool_v [P, page, Hkv, F], block_table [B, ceil(N / page)] int32). The last page of each
    sequence is partly filled (its tail slots hold garbage, never read)."""
    B, Hkv, N, D = k.shape
    n_pages = -(-N // page)
    order = rng.permutation(B * n_pages).astype(np.int32)
    table = order.reshape(B, n_pages)
    pool_k = rng.standard_normal((B * n_pages, page, Hkv, D)) * 1e3  # garbage in unused slots
    pool_v = rng.standard_normal((B * n_pages, page, Hkv, v.shape[-1])) * 1e3
    for b in range(B):
        for i in range(n_pages):
            t0, t1 = i * page, min((i + 1) * page, N)
            pool_k[table[b, i], :t1 - t0] = k[b, :, t0:t1].transpose(1, 0, 2)
            pool_v[table[b, i], :t1 - t0] = v[b, :, t0:t1].transpose(1, 0, 2)
    return pool_k, pool_v, table


def paged_executable(q, pool_k, pool_v, table, seq_kv, block_n):
    """Paged decode: each key tile's rows are gathered page by page through the block table (one
    int32 entry per page), rows past seq_kv never read.  # o [B, H, M, F]"""
    B, H, M, D = q.shape
    page, Hkv = pool_k.shape[1], pool_k.shape[2]
    G = H // Hkv
    o = np.zeros((B, H, M, pool_v.shape[-1]))
    for b in range(B):
        st = TileState(q[b].reshape(Hkv, G, M, D), pool_v.shape[-1], 1 / math.sqrt(D))
        for j0 in range(0, seq_kv, block_n):
            keys = np.arange(j0, min(j0 + block_n, seq_kv))
            pages, slots = table[b, keys // page], keys % page
            kt = pool_k[pages, slots].transpose(1, 0, 2)  # [Hkv, Bc, D]
            vt = pool_v[pages, slots].transpose(1, 0, 2)
            st.add(kt[:, None], vt[:, None])
        o[b] = st.output().reshape(H, M, -1)
    return o


# ---------------------------------------------------------------------------- mla_decode (DeepSeek-V2/V3)


def mla_naive_reference(q_nope, q_pe, c_kv, k_pe, w_uk, w_uv, scale):
    """MLA the naive way: up-project the latent cache to per-head keys and values, then MHA.

    q_nope [B, H, M, E], q_pe [B, H, M, R], c_kv [B, N, C] latent cache, k_pe [B, N, R] the
    shared RoPE key, w_uk [H, E, C], w_uv [H, V, C]; scale = 1/sqrt(E + R) as DeepSeek uses.
        k[b,h,n] = [W_UK[h] c[b,n], k_pe[b,n]],  v[b,h,n] = W_UV[h] c[b,n]
    """
    k_nope = np.einsum("hec,bnc->bhne", w_uk, c_kv)  # [B, H, N, E]
    k = np.concatenate([k_nope, np.broadcast_to(k_pe[:, None], k_nope.shape[:3] + (k_pe.shape[-1],))], axis=-1)
    v = np.einsum("hvc,bnc->bhnv", w_uv, c_kv)  # [B, H, N, V]
    q = np.concatenate([q_nope, q_pe], axis=-1)  # [B, H, M, E+R]
    return attention_reference(q, k, v, scale=scale)


def mla_absorbed_executable(q_nope, q_pe, c_kv, k_pe, w_uk, w_uv, scale, num_splits):
    """MLA with W_UK absorbed into the query and W_UV into the output: MQA over the latent cache
    (one KV head of C + R channels, V = its first C channels), run as flash-decoding.
        q_lat[b,h,m] = q_nope[b,h,m] W_UK[h]          [B, H, M, C]
        o_lat        = attention(q_lat ++ q_pe, c ++ k_pe, c)   (MQA)
        o[b,h,m]     = W_UV[h] o_lat[b,h,m]           [B, H, M, V]
    """
    q_lat = np.einsum("bhme,hec->bhmc", q_nope, w_uk)
    q = np.concatenate([q_lat, q_pe], axis=-1)  # [B, H, M, C+R]
    kv = np.concatenate([c_kv, k_pe], axis=-1)[:, None]  # [B, 1, N, C+R]
    o_lat = flash_decode_split_kv(q, kv, c_kv[:, None], num_splits, scale=scale)  # [B, H, M, C]
    return np.einsum("bhmc,hvc->bhmv", o_lat, w_uv)


# ---------------------------------------------------------------------------- registry

FAMILIES = {
    "kv_budget": Family("kv_budget", "decode over a token-budgeted cache (SnapKV per head, CAKE per layer)",
                        BUDGET_PARAMS, budget_cascade, _check_budget, decode=True),
    "kv_channel_prune": Family("kv_channel_prune", "decode with pruned key channels (ThinK)", CHANNEL_PARAMS,
                               channel_cascade, _check_channels, decode=True),
    "kv_quant": Family("kv_quant", "decode over an int2/int4/int8/fp8 KV cache, dequantized in the kernel "
                                   "(KIVI, vLLM fp8)", QUANT_PARAMS, quant_cascade, _check_quant, decode=True),
    "paged_decode": Family("paged_decode", "decode over a paged KV cache with a block table (vLLM)", PAGED_PARAMS,
                           lambda w: softmax_attention_cascade(), _check_paged, decode=True),
    "mla_decode": Family("mla_decode", "multi-head latent attention decode, absorbed projections (DeepSeek-V2/V3)",
                         MLA_PARAMS, mla_cascade, _check_mla, decode=True),
}
