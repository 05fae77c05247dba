"""Plans of the linear-attention families: the kernels FLA, Lightning Attention-2 and vLLM launch.

linear_chunked, kernel=fla_chunk (default): FLA's chunk mode (fla/ops/simple_gla/chunk.py, which
chunk_linear_attn and chunk_lightning_attn call), two kernels:
    chunk_fwd_h   grid ceil(E/BK) x ceil(F/BV) x B*U; each CTA walks the chunks in order, the state
                  block [BK, BV] in fp32 registers, S += K_c^T V_c per chunk (a BK x BV x C GEMM),
                  and stores the state entering every chunk to HBM in the input dtype
                  (fla/ops/common/chunk_h.py; states_in_fp32=False in the forward pass)
    chunk_fwd_o   grid ceil(F/BV) x NC x B*H, parallel over chunks: per BK block of E, Q_c S_c
                  (C x BV x BK) and Q_c K_c^T (C x C x BK, the whole tile, half of it masked later),
                  then the masked A V_c (C x BV x C) (fla/ops/common/chunk_o.py)
linear_chunked, kernel=lightning_fused: Lightning Attention-2's forward (OpenNLPLab/lightning-attention,
lightning_attn/ops/triton/lightning_attn2.py _fwd_kernel), one kernel, grid B*H x ceil(F/32): each
CTA walks all blocks of 64 with the state [E, 32] on chip; nothing but Q, K, V and O touch HBM.
gla_chunked: FLA's chunk_gla forward (fla/ops/gla/chunk.py): chunk_local_cumsum of the gates, chunk_fwd_h
with per-key-channel gates, the intra-chunk A from two kernels (off-diagonal sub-blocks as 16 x 16
GEMMs, diagonal sub-blocks elementwise, A kept in fp32 in HBM), then the output kernel.
linear_decode: vLLM's _linear_attn_decode_kernel (vllm/model_executor/layers/lightning_attn.py, the
MiniMax-Text-01 decode path): grid B x U x ceil(F/32), the fp32 state block read, updated and
written in place, the outputs on the fp32 ALUs (thin products: no tensor cores).
A feature map other than identity adds a kernel before them that writes phi(Q), phi(K).

Executed work follows those kernels' tiles: partial chunks and blocks run whole, A is computed
for the full C x C tile, gate exponentials are recomputed per V block. Two things those kernels
do whose result no output reads are left out, as a kernel specialised for the call would: chunk
0's zero state (stored and multiplied) and the last chunk's state update (kept with final_state).
So with one chunk there is no state kernel and no Q S product.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from attnsim.errors import MappingError, Problem
from attnsim.model.plan import Gemm, KernelOp, Plan
from attnsim.workload.families.linear import (
    MIN_TILE, chunk_lengths, effective_chunk, extents, feature_dim, next_pow2, projects)

WARPS = 4  # Triton's default num_warps; in every autotune list of the kernels above
STAGES = 2  # smallest num_stages in chunk_fwd_h's autotune list (shared memory per CTA: occupancy only)
O_STAGES = 3  # chunk_fwd_o: every autotune config uses num_stages=3
FEATURE_ROWS = 64  # Q/K rows per CTA of the feature-map kernel
LIGHTNING_BLOCK_MODEL = 32  # lightning_attn2.py: BLOCK_MODEL = min(next_pow2(e), 32)
CUMSUM_BS = 64  # largest BS of FLA's chunk_local_cumsum autotune list (channels per CTA)
FP32 = 4  # bytes: FLA's g cumsum, GLA's A, the final state; the decode state


@dataclass(frozen=True)
class Dims:
    """The shape as the kernels see it (one place for the tile arithmetic)."""

    b: int
    h: int
    u: int  # KV heads: the state, K, V and the gates belong to them
    n: int
    d: int
    e: int  # feature dim after phi
    f: int
    eb: int  # bytes per element of Q, K, V, O and the stored states
    c: int = 0  # chunk the kernels run
    nc: int = 0  # chunks
    last: int = 0  # length of the last chunk
    bk: int = 0
    bv: int = 0
    absorbed: int = 0  # chunks absorbed into a carried state

    @property
    def g(self) -> int:
        return self.h // self.u

    @property
    def nk(self) -> int:
        return -(-self.e // self.bk)

    @property
    def nv(self) -> int:
        return -(-self.f // self.bv)

    @property
    def stored(self) -> int:
        """States in the input dtype, one entering each chunk after the first."""
        return self.nc - 1


def _block(param: int, extent: int) -> int:
    """A Triton block edge for an extent: the param, clipped to the next power of two (>= 16)."""
    return min(param, max(MIN_TILE, next_pow2(extent)))


def dims(w, arch=None) -> Dims:
    """On a spatial array the BK x BV split (a GPU's register budget) is dropped: each product
    is one whole [C, E] x [E, F] (or [E, C] x [C, F]) GEMM on the array."""
    kind = w.param("feature_map") if "feature_map" in w.params else "identity"
    r = w.param("feature_dim") if "feature_dim" in w.params else 0
    base = dict(b=w.batch, h=w.heads, u=w.kv_heads, n=w.seq_kv, d=w.head_dim,
                e=feature_dim(kind, w.head_dim, r), f=w.value_dim, eb=w.dtype_bytes)
    if w.family == "linear_decode":
        return Dims(**base, bv=_block(w.param("block_v"), w.value_dim))
    c = effective_chunk(w)
    nc, _, last = chunk_lengths(w.seq_kv, c)
    spatial = arch is not None and arch.kind == "spatial"
    bk = base["e"] if spatial else _block(w.param("block_k"), base["e"])
    bv = w.value_dim if spatial else _block(w.param("block_v"), w.value_dim)
    return Dims(**base, c=c, nc=nc, last=last, bk=bk, bv=bv, absorbed=nc if w.param("final_state") else nc - 1)


def _no_mapping(w, mapping) -> None:
    if mapping is not None:
        raise MappingError(Problem(f"{w.family} is mapped by its parameters, not by a mapping; got {mapping!r}",
                                   key="mapping", hint="pass mapping=None and set params such as kernel, chunk, "
                                                       "block_k, block_v"))


def _gemms(*gemms: Gemm) -> tuple:
    """The products a kernel issues (a product counted zero times is not one)."""
    return tuple(g for g in gemms if g.count > 0)


def _mma_instr(arch, rows: int) -> str | None:
    """Triton issues wgmma only for 64-row tiles; a thinner dot runs as mma.sync."""
    if arch.kind == "gpu" and rows < 64 and "mma_sync" in arch.compute.matrix_flops_per_cycle:
        return "mma_sync"
    return None




def feature_map_op(w, s: Dims, tokens: int) -> KernelOp:
    """phi(Q), phi(K) for `tokens` positions: the projection, the expansion, and the write of phi."""
    kind, r = w.param("feature_map"), w.param("feature_dim")
    rows_q, rows_k = s.b * s.h * tokens, s.b * s.u * tokens
    rows = rows_q + rows_k
    proj = projects(kind, s.d, r)
    gemms, vec = (), 0.0
    if proj and tokens >= MIN_TILE:  # x W on the tensor cores, one [D, r] weight per head
        gemms = (Gemm(s.b * s.h, tokens, r, s.d), Gemm(s.b * s.u, tokens, r, s.d))
    elif proj:  # a decode token: a thin product, on the fp32 ALUs (one FMA per MAC)
        vec += rows * s.d * r
    if kind == "taylor2":
        vec += rows * 2 * r * r  # z z^T and / sqrt(2)
        exps = 0.0
    else:
        vec += rows * 8 * r  # max, subtract, sum, divide for softmax(z) and softmax(-z)
        exps = rows * 2 * r
    hbm = (rows * s.d * s.eb  # read Q and K
           + (s.h + s.u) * s.d * r * s.eb * proj  # read the weights once per head
           + rows * s.e * s.eb)  # write phi(Q), phi(K)
    ctas = math.ceil(tokens / FEATURE_ROWS) * s.b * (s.h + s.u)
    return KernelOp(f"feature_map ({kind})", ctas=ctas, gemms=gemms, exps=exps, vector_ops=vec, hbm_bytes=hbm,
                    smem_bytes_per_cta=(FEATURE_ROWS * s.d + s.d * r * proj) * s.eb, warps=WARPS, dtype=w.dtype)


def fla_state_op(w, s: Dims, gated: bool = False) -> KernelOp:
    """FLA chunk_fwd_h: the state entering each chunk, sequential over chunks, per KV head and block."""
    ctas = s.nk * s.nv * s.b * s.u
    steps = ctas * s.absorbed  # (CTA, absorbed chunk) pairs
    rows = s.n if w.param("final_state") else s.n - s.last  # key positions absorbed
    exps = vec = 0.0
    vec += ctas * s.stored * s.bk * s.bv  # fp32 -> input dtype on each store
    if gated:  # GLA: h *= exp(gk_last); k *= exp(gk_last - gk)
        exps += steps * (s.bk + s.bk * s.c)
        vec += steps * (s.bk * s.bv + 2 * s.bk * s.c)
    elif w.param("decay") != 1.0:  # h *= exp(g_last); v *= exp(g_last - g)
        exps += steps * (s.c + 1)
        vec += steps * (s.bk * s.bv + s.c * s.bv + s.c)
    k_bytes = s.b * s.u * rows * s.e * s.eb  # read K
    v_bytes = s.b * s.u * rows * s.f * s.eb  # read V
    g_bytes = s.b * s.u * rows * s.e * FP32 if gated else 0.0  # read the gate cumsum (fp32)
    states = s.b * s.u * s.stored * s.e * s.f * s.eb  # write the states, input dtype
    final = s.b * s.u * s.e * s.f * FP32 if w.param("final_state") else 0.0  # the final state, fp32
    hbm = k_bytes + v_bytes + g_bytes + states + final
    l2 = (k_bytes + g_bytes) * s.nv + v_bytes * s.nk + states + final  # each V block re-reads K (and g)
    smem = STAGES * (s.bk * s.c * (s.eb + FP32 * gated) + s.c * s.bv * s.eb)
    return KernelOp("chunk_fwd_h", ctas=ctas, gemms=(Gemm(steps, s.bk, s.bv, s.c),), exps=exps, vector_ops=vec,
                    hbm_bytes=hbm, l2_bytes=l2, smem_bytes_per_cta=smem, warps=WARPS, dtype=w.dtype)


def fla_output_op(w, s: Dims) -> KernelOp:
    """FLA chunk_fwd_o: per (V block, chunk, query head): Q S, Q K^T (whole tile), masked A V."""
    per_chunk = s.nv * s.b * s.h  # CTAs of one chunk index
    ctas = per_chunk * s.nc
    gemms = _gemms(Gemm(per_chunk * (s.nc - 1) * s.nk, s.c, s.bv, s.bk),  # Q_c S_c, chunks >= 1
                   Gemm(ctas * s.nk, s.c, s.c, s.bk),  # Q_c K_c^T
                   Gemm(ctas, s.c, s.bv, s.c))  # A V_c
    exps = 0.0
    vec = ctas * (2 * s.c * s.c + 3 * s.c * s.bv)  # mask and cast A; o = (QS + AV) * scale
    if w.param("decay") != 1.0:  # o *= exp(g); A *= exp(g_i - g_j)
        exps += ctas * (s.c + s.c * s.c)
        vec += ctas * (s.c * s.bv + 2 * s.c * s.c)
    q = s.b * s.h * s.n * s.e * s.eb  # read Q
    kq = s.b * s.h * s.n * s.e * s.eb  # K as the query heads read it (HBM: once per KV head)
    vq = s.b * s.h * s.n * s.f * s.eb  # V likewise
    st = s.b * s.h * s.stored * s.e * s.f * s.eb  # states likewise
    o = s.b * s.h * s.n * s.f * s.eb  # write O
    hbm = q + (kq + vq + st) / s.g + o
    l2 = (q + kq) * s.nv + vq + st + o  # each V block re-reads Q and K
    smem = O_STAGES * (2 * s.c * s.bk + s.bk * s.bv) * s.eb + s.c * s.bv * s.eb
    return KernelOp("chunk_fwd_o", ctas=ctas, gemms=gemms, exps=exps, vector_ops=vec, hbm_bytes=hbm, l2_bytes=l2,
                    smem_bytes_per_cta=smem, warps=WARPS, dtype=w.dtype)


def lightning_op(w, s: Dims) -> KernelOp:
    """Lightning Attention-2's _fwd_kernel: one CTA per (query head, 32 value columns) walks every
    block; the state never leaves the chip. Its dots take fp32 operands (TF32 on tensor cores)."""
    bm = min(next_pow2(s.f), LIGHTNING_BLOCK_MODEL)
    ctas = s.b * s.h * -(-s.f // bm)
    c, e = s.c, s.e
    gemms = _gemms(Gemm(ctas * s.nc, c, c, e),  # Q K^T
                   Gemm(ctas * s.nc, c, bm, c),  # (QK^T (.) M) V
                   Gemm(ctas * (s.nc - 1), c, bm, e),  # Q kv, blocks >= 1
                   Gemm(ctas * s.absorbed, e, bm, c))  # kv += K^T V
    vec = ctas * s.nc * (2 * c * e + c * bm) + ctas * (s.nc - 1) * c * bm  # loads to fp32; o_intra + o_inter
    exps = 0.0
    if w.param("decay") != 1.0:  # decay tables once per CTA; qk, o_inter, k and kv scaled per block
        exps = ctas * (c * c + 2 * c + 1)
        vec += ctas * (s.nc * c * c + (s.nc - 1) * c * bm + s.absorbed * (e * c + e * bm))
    q = s.b * s.h * s.n * e * s.eb
    kq = s.b * s.h * s.n * e * s.eb
    vq = s.b * s.h * s.n * s.f * s.eb
    o = s.b * s.h * s.n * s.f * s.eb
    hbm = q + (kq + vq) / s.g + o
    l2 = (q + kq) * (ctas / (s.b * s.h)) + vq + o  # every value block re-reads Q and K
    smem = (2 * c * e + c * bm) * FP32  # fp32 Q, K^T and V tiles
    return KernelOp("lightning_attn2_fwd", ctas=ctas, gemms=gemms, exps=exps, vector_ops=vec, hbm_bytes=hbm,
                    l2_bytes=l2, smem_bytes_per_cta=smem, warps=WARPS, dtype=w.dtype)


def gla_cumsum_op(w, s: Dims) -> KernelOp:
    """FLA chunk_local_cumsum: G = cumsum of the log gates inside each chunk, written in fp32."""
    elems = s.b * s.u * s.n * s.e
    return KernelOp("chunk_local_cumsum", ctas=s.nc * s.b * s.u * -(-s.e // CUMSUM_BS), vector_ops=elems,
                    hbm_bytes=elems * (s.eb + FP32), warps=WARPS)  # read g; write G in fp32


def _sub_blocks(s: Dims, bc: int) -> tuple[int, int]:
    """(off-diagonal sub-block pairs, diagonal sub-blocks) with valid rows, per (b, h)."""
    def per(length):
        m = -(-length // bc)
        return m * (m - 1) // 2, m
    full, part = per(s.c), per(s.last)
    return (s.nc - 1) * full[0] + part[0], (s.nc - 1) * full[1] + part[1]


def gla_intra_inter_op(arch, w, s: Dims, bc: int) -> KernelOp:
    """chunk_gla_fwd_A_kernel_intra_sub_inter: one CTA per off-diagonal sub-block (i > j) with valid
    rows; per BK block: q exp(g - gn), k exp(gn - gk) and a bc x bc x BK dot; A block stored fp32."""
    pairs, _ = _sub_blocks(s, bc)
    ctas = s.b * s.h * pairs
    tiles = ctas * s.nk
    tile_io = bc * s.bk * (s.eb + FP32)  # a [bc, BK] tile of q (or k) and of its gates
    hbm = (s.b * s.h * s.n * s.e * s.eb + s.b * s.u * s.n * s.e * (s.eb + FP32)  # Q; K and G once
           + ctas * bc * bc * FP32)  # write A's off-diagonal blocks
    l2 = tiles * (2 * tile_io + s.bk * FP32) + ctas * bc * bc * FP32
    return KernelOp("gla_fwd_A_sub_inter", ctas=ctas, gemms=(Gemm(tiles, bc, bc, s.bk),), exps=tiles * 2 * bc * s.bk,
                    vector_ops=tiles * 5 * bc * s.bk, hbm_bytes=hbm, l2_bytes=l2,
                    smem_bytes_per_cta=STAGES * 2 * tile_io, warps=WARPS, dtype=w.dtype, instr=_mma_instr(arch, bc))


def gla_intra_diag_op(w, s: Dims, bc: int) -> KernelOp:
    """chunk_gla_fwd_A_kernel_intra_sub_intra: one CTA per diagonal sub-block; for each key j of it,
    A[:, j] = sum_e q k_j exp(g - g_j) over the whole (padded) feature row: no tensor cores."""
    _, blocks = _sub_blocks(s, bc)
    ep = next_pow2(s.e)  # BK = next_pow2(K): the whole row in one tile
    cols = s.b * s.h * s.n  # every position is a key column of exactly one diagonal sub-block
    hbm = (s.b * s.h * s.n * s.e * s.eb + s.b * s.u * s.n * s.e * (s.eb + FP32)  # Q; K and G once
           + cols * bc * FP32)  # write A's diagonal blocks
    l2 = 2 * s.b * s.h * s.n * s.e * (s.eb + FP32) + cols * bc * FP32  # rows (q, g) and columns (k, gk)
    return KernelOp("gla_fwd_A_sub_intra", ctas=s.b * s.h * blocks, exps=cols * bc * ep,
                    vector_ops=cols * bc * (4 * ep + 2), hbm_bytes=hbm, l2_bytes=l2,
                    smem_bytes_per_cta=bc * ep * (s.eb + FP32), warps=WARPS, dtype=w.dtype)


def gla_output_op(w, s: Dims) -> KernelOp:
    """chunk_gla_fwd_kernel_o: per (V block, chunk, query head): (q exp(g)) S per BK block, then A V."""
    per_chunk = s.nv * s.b * s.h
    ctas = per_chunk * s.nc
    inter_tiles = per_chunk * (s.nc - 1) * s.nk
    gemms = _gemms(Gemm(inter_tiles, s.c, s.bv, s.bk), Gemm(ctas, s.c, s.bv, s.c))
    exps = inter_tiles * s.c * s.bk  # exp(g) per q element
    vec = inter_tiles * 2 * s.c * s.bk + ctas * 2 * s.c * s.c  # q * scale * exp(g); mask and cast A
    q = s.b * s.h * s.n * s.e * s.eb
    gq = s.b * s.h * s.n * s.e * FP32  # G as the query heads read it
    st = s.b * s.h * s.stored * s.e * s.f * s.eb
    vq = s.b * s.h * s.n * s.f * s.eb
    a = s.b * s.h * s.nc * s.c * s.c * FP32  # read A (the whole [C, C] block per chunk)
    o = s.b * s.h * s.n * s.f * s.eb
    hbm = q + (gq + st + vq) / s.g + a + o
    l2 = (q + gq + a) * s.nv + st + vq + o
    smem = STAGES * (s.c * s.bk * (s.eb + FP32) + s.bk * s.bv * s.eb) + s.c * s.bv * s.eb + s.c * s.c * FP32
    return KernelOp("chunk_gla_fwd_o", ctas=ctas, gemms=gemms, exps=exps, vector_ops=vec, hbm_bytes=hbm, l2_bytes=l2,
                    smem_bytes_per_cta=smem, warps=WARPS, dtype=w.dtype)


def decode_op(w, s: Dims) -> KernelOp:
    """vLLM _linear_attn_decode_kernel, per (sequence, KV head, BV block): S = lambda S + k^T v in
    place (fp32), then o = q S for the G query heads of the KV head, on the fp32 ALUs."""
    ctas = s.b * s.u * s.nv
    block = s.e * s.bv
    decayed = w.param("decay") != 1.0
    vec = ctas * block * ((2 if decayed else 1) + 2 * s.g)  # update (FMA; + outer when decayed); q S
    state = s.b * s.u * s.e * s.f * FP32
    q = s.b * s.h * s.e * s.eb
    k = s.b * s.u * s.e * s.eb
    v = s.b * s.u * s.f * s.eb
    o = s.b * s.h * s.f * s.eb
    hbm = 2 * state + q + k + v + o  # read and write the state; the token's q, k, v; o
    return KernelOp("linear_attn_decode", ctas=ctas, exps=ctas if decayed else 0.0, vector_ops=vec, hbm_bytes=hbm,
                    l2_bytes=hbm + (q + k) * (s.nv - 1), warps=WARPS, dtype=w.dtype)  # q, k per BV block




def _counts(s: Dims) -> dict:
    return {"chunk": float(s.c), "chunks": float(s.nc), "feature dim E": float(s.e),
            "states stored per KV head": float(s.stored)}


def plan_linear_chunked(arch, w, mapping=None) -> Plan:
    """Feature-map kernel (unless identity), then FLA's chunk_fwd_h + chunk_fwd_o, or Lightning-2's kernel."""
    _no_mapping(w, mapping)
    s = dims(w, arch)
    ops = [feature_map_op(w, s, s.n)] if w.param("feature_map") != "identity" else []
    notes = []
    if w.param("kernel") == "fla_chunk":
        if s.absorbed:
            ops.append(fla_state_op(w, s))
        ops.append(fla_output_op(w, s))
        label = f"fla_chunk C{s.c} BK{s.bk} BV{s.bv}"
    else:
        ops.append(lightning_op(w, s))
        label = f"lightning_fused C{s.c} BM{min(next_pow2(s.f), LIGHTNING_BLOCK_MODEL)}"
        notes.append("lightning_fused is a throughput bound: its fp32-operand (TF32) dots are costed at the "
                     f"{w.dtype} rate (the arch files list no TF32 rate) and one CTA's dependent chain over the "
                     "blocks is not modelled; docs/families/linear.md compares it with measured times")
    if s.e != s.d:
        notes.append(f"feature map {w.param('feature_map')}: the state is built on E = {s.e} features")
    return Plan(w.family, tuple(ops), useful_flops(w), label, _counts(s), tuple(notes))


def plan_gla_chunked(arch, w, mapping=None) -> Plan:
    """FLA chunk_gla forward: cumsum, chunk_fwd_h (gated), A off-diagonal and diagonal, output."""
    _no_mapping(w, mapping)
    s = dims(w, arch)
    bc = min(w.param("subchunk"), s.c)
    ops = [gla_cumsum_op(w, s)]
    if s.absorbed:
        ops.append(fla_state_op(w, s, gated=True))
    if _sub_blocks(s, bc)[0]:
        ops.append(gla_intra_inter_op(arch, w, s, bc))
    ops += [gla_intra_diag_op(w, s, bc), gla_output_op(w, s)]
    return Plan(w.family, tuple(ops), useful_flops(w), f"fla_chunk_gla C{s.c} BC{bc} BK{s.bk} BV{s.bv}",
                _counts(s), ("A (intra-chunk scores) round-trips through HBM in fp32, as FLA keeps it",))


def plan_linear_decode(arch, w, mapping=None) -> Plan:
    """The feature map of the new token (unless identity), then vLLM's linear-attention decode kernel."""
    _no_mapping(w, mapping)
    s = dims(w, arch)
    ops = [feature_map_op(w, s, 1)] if w.param("feature_map") != "identity" else []
    ops.append(decode_op(w, s))
    return Plan(w.family, tuple(ops), useful_flops(w), f"vllm_linear_decode BV{s.bv}",
                {"state bytes per sequence": float(s.u * s.e * s.f * FP32), "feature dim E": float(s.e)},
                ("executed tensor-core FLOPs are 0: the rank-1 update and q S run as fp32 FMAs",))


def useful_flops(w) -> float:
    """The FLOPs the math needs: the family cascade's matrix FLOPs at its extents."""
    return w.cascade.ops(extents(w))["mma"]


PLANS = {"linear_chunked": plan_linear_chunked, "gla_chunked": plan_gla_chunked,
         "linear_decode": plan_linear_decode}




def crossover_seq(arch, params: dict | None = None, *, batch: int, heads: int, head_dim: int,
                  family: str = "linear_chunked", baseline: str = "flash2", dtype: str = "bf16",
                  lo: int = 256, hi: int = 1 << 20, step: int = 64) -> int:
    """The shortest sequence N (a multiple of `step` in [lo, hi]) from which `family` with
    `params` is predicted faster than causal softmax attention under `baseline` on `arch`, same
    shape: faster at N and at N + step. (The baseline's time steps up every 128 query rows, its
    tile, so near the crossing the two alternate at single points; two points in a row do not.)
    Bisection: that test must turn true once between lo and hi. Below two chunks the linear plan
    is one launch, like the baseline, and can win on launch overhead alone: lo defaults to 256."""
    from attnsim.model.analytical import predict
    from attnsim.workload.spec import attention

    def faster(n):
        shape = dict(batch=batch, heads=heads, seq=n, head_dim=head_dim, dtype=dtype, causal=True)
        lin = predict(arch, attention(family, params=params, **shape)).latency_s
        return lin < predict(arch, attention("softmax", **shape), baseline).latency_s

    def held(i):
        return faster(i * step) and faster((i + 1) * step)

    a, b = lo // step, hi // step
    if held(a) or not held(b):
        raise ValueError(f"no single crossover in [{a * step}, {b * step}]: faster from lo: {held(a)}, "
                         f"from hi: {held(b)}")
    while b - a > 1:
        mid = (a + b) // 2
        a, b = (a, mid) if held(mid) else (mid, b)
    return b * step
