"""Selective state spaces: Mamba's selective scan (`mamba_scan`, Gu & Dao 2023) and Mamba-2's
chunked state-space duality (`mamba2_ssd`, Dao & Gu 2024).

How the shape fields are read (both families scan a whole sequence, so seq_q == seq_kv = L):

    field       mamba_scan                          mamba2_ssd
    batch       B                                   B
    seq_q/kv    L (must be equal)                   L (must be equal)
    heads       with head_dim: D_inner channels     H heads
                = heads x head_dim (e.g. heads=1,
                head_dim=expand x d_model)
    head_dim    (see heads)                         P, the head dim
    kv_heads    must equal heads                    must equal heads (B and C are shared by
                                                    groups of heads: the `ngroups` parameter)
    value_dim   must equal head_dim                 must equal head_dim
    mask        full or causal (the recurrence is causal either way); no window / sparse masks

mamba_scan (per channel d, state size N):
    h_t = exp(delta_t A) h_{t-1} + delta_t B_t x_t     h [N], A [D_inner, N], B_t, C_t [N]
    y_t = C_t . h_t + D x_t
mamba2_ssd (per head, scalar A per head, state [P, N]):
    h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T         x_t [P], B_t, C_t [N] (shared by a group)
    y_t = h_t C_t + D x_t

The chunked form of mamba2_ssd (chunk length Q), as mamba_ssm's five Triton kernels compute it:

    cs   = cumsum over each chunk of dt * A                              (_chunk_cumsum)
    CB   = C_i . B_j for i, j in one chunk                                (_bmm_chunk)
    S_c  = sum_{j in c} exp(cs_last - cs_j) dt_j x_j B_j^T              (_chunk_state)
    H_c  = exp(cs_last(c-1)) H_{c-1} + S_{c-1},  H_0 = 0                 (_state_passing)
    y_i  = sum_{j<=i} CB_ij exp(cs_i - cs_j) dt_j x_j                    (_chunk_scan: diagonal
           + exp(cs_i) H_c C_i + D x_i                                    block, state, skip)

                 chunk 0          chunk 1          chunk 2
    y (diag)   [\\\\\\\\\\\\]    [\\\\\\\\\\\\]    [\\\\\\\\\\\\]     quadratic (masked CB) inside a chunk
    states          S_0 ---------> H_1 -----------> H_2           recurrence across chunks
"""
from __future__ import annotations

import math

import numpy as np

from attnsim.spec.schema import Field
from attnsim.workload.cascade import Cascade, Einsum
from attnsim.workload.families import Family

# Chunk lengths selective_scan_fwd_cuda instantiates (kNThreads x kNItems: 32x4, 32x8, 32x16,
# 64x16, 128x16), picked by sequence length (state-spaces/mamba
# csrc/selective_scan/selective_scan_fwd_kernel.cuh, selective_scan_fwd_cuda).
SCAN_CHUNKS = (128, 256, 512, 1024, 2048)

MAMBA_SCAN_PARAMS = (
    Field("d_state", "int", required=False, default=16, min=1,
          help="N, state size per channel (Mamba's default 16)"),
    Field("kernel", "enum", required=False, default="fused", choices=("fused", "materialized"),
          help="fused: mamba_ssm's selective-scan kernel, the state stays on chip; "
               "materialized: discretize, scan and contract as three kernels with h [B, L, D_inner, N] in HBM"),
    Field("scan_chunk", "int", required=False, default=0, min=0,
          help="tokens per chunk of the fused kernel (128, 256, 512, 1024 or 2048); 0 = as the kernel picks by length"),
)

MAMBA2_PARAMS = (
    Field("d_state", "int", required=False, default=128, min=1,
          help="N, state size per head (Mamba2's default 128)"),
    Field("ngroups", "int", required=False, default=1, min=1,
          help="groups of heads sharing B and C (Mamba2's default 1)"),
    Field("chunk", "int", required=False, default=256, min=1,
          help="Q, chunk length (Mamba2's default chunk_size 256)"),
    Field("final_state", "bool", required=False, default=True,
          help="also produce the final state, as mamba_ssm's forward does (every chunk's state is "
               "computed and passed); false: only the work the outputs y need"),
)


# ---------------------------------------------------------------------------- references (float64)


def mamba_scan_reference(x, delta, A, B, C, D, return_state: bool = False):
    """The selective scan, one position at a time.

    x, delta [Bt, L, Dn]; A [Dn, N]; B, C [Bt, L, N]; D [Dn] -> y [Bt, L, Dn] (and h [Bt, Dn, N])."""
    x, delta, A, B, C, D = (np.asarray(a, dtype=np.float64) for a in (x, delta, A, B, C, D))
    bt, length, dn = x.shape
    h = np.zeros((bt, dn, A.shape[1]))  # [Bt, Dn, N]
    y = np.zeros_like(x)
    for t in range(length):
        da = np.exp(delta[:, t, :, None] * A)  # [Bt, Dn, N]
        dbx = (delta[:, t] * x[:, t])[:, :, None] * B[:, t, None, :]  # [Bt, Dn, N]
        h = da * h + dbx
        y[:, t] = np.einsum("bdn,bn->bd", h, C[:, t]) + D * x[:, t]
    return (y, h) if return_state else y


def mamba2_reference(x, dt, A, B, C, D, return_state: bool = False):
    """The Mamba-2 recurrence, one position at a time.

    x [Bt, L, H, P]; dt [Bt, L, H] (> 0, after softplus); A [H]; B, C [Bt, L, G, N]; D [H]
    -> y [Bt, L, H, P] (and h [Bt, H, P, N])."""
    x, dt, A, B, C, D = (np.asarray(a, dtype=np.float64) for a in (x, dt, A, B, C, D))
    bt, length, heads, p = x.shape
    grp = _head_group(heads, B.shape[2])
    h = np.zeros((bt, heads, p, B.shape[3]))  # [Bt, H, P, N]
    y = np.zeros_like(x)
    for t in range(length):
        bh, ch = B[:, t, grp], C[:, t, grp]  # [Bt, H, N]
        da = np.exp(dt[:, t] * A)  # [Bt, H]
        h = da[:, :, None, None] * h + (dt[:, t, :, None] * x[:, t])[..., None] * bh[:, :, None, :]
        y[:, t] = np.einsum("bhpn,bhn->bhp", h, ch) + D[:, None] * x[:, t]
    return (y, h) if return_state else y


def _head_group(heads: int, ngroups: int) -> np.ndarray:
    """Group of each head: heads h*H/G .. (h+1)*H/G - 1 share B and C (mamba_ssm's layout)."""
    return np.arange(heads) // (heads // ngroups)


# ---------------------------------------------------------------------------- executable cascades


def mamba_scan_chunked(x, delta, A, B, C, D, chunk: int, return_state: bool = False):
    """The fused kernel's order of work: chunks of `chunk` positions; inside a chunk an inclusive
    parallel scan (Hillis-Steele, log2(chunk) combine steps) of the affine maps h -> a h + b with
    (a, b) = (exp(delta A), delta B x), seeded with the state carried from the previous chunk.

    The combine (earlier map first):  (a1, b1) o (a2, b2) = (a1 a2, a2 b1 + b2)."""
    x, delta, A, B, C, D = (np.asarray(a, dtype=np.float64) for a in (x, delta, A, B, C, D))
    bt, length, dn = x.shape
    h = np.zeros((bt, dn, A.shape[1]))  # carried state [Bt, Dn, N]
    y = np.zeros_like(x)
    for s in range(0, length, chunk):
        e = min(s + chunk, length)
        a = np.exp(delta[:, s:e, :, None] * A)  # [Bt, T, Dn, N]
        b = (delta[:, s:e] * x[:, s:e])[..., None] * B[:, s:e, None, :]  # [Bt, T, Dn, N]
        b[:, 0] = a[:, 0] * h + b[:, 0]  # fold the carried state into the first map
        step = 1
        while step < e - s:
            a_new, b_new = a.copy(), b.copy()
            b_new[:, step:] = a[:, step:] * b[:, :-step] + b[:, step:]
            a_new[:, step:] = a[:, :-step] * a[:, step:]
            a, b, step = a_new, b_new, 2 * step
        y[:, s:e] = np.einsum("btdn,btn->btd", b, C[:, s:e]) + D * x[:, s:e]  # b now holds h_t
        h = b[:, -1]
    return (y, h) if return_state else y


def mamba2_ssd_chunked(x, dt, A, B, C, D, chunk: int, return_state: bool = False):
    """Mamba-2's chunked SSD in the order of mamba_ssm's kernels (cumsum, CB, chunk states,
    state passing, chunk scan). The sequence is padded to whole chunks with dt = x = B = C = 0,
    which adds nothing (decay exp(0) = 1, contributions 0)."""
    x, dt, A, B, C, D = (np.asarray(a, dtype=np.float64) for a in (x, dt, A, B, C, D))
    bt, length, heads, p = x.shape
    g, n = B.shape[2], B.shape[3]
    q = chunk
    nc = math.ceil(length / q)
    pad = nc * q - length

    def chunks(a):  # [Bt, L, ...] -> [Bt, C, Q, ...]
        a = np.concatenate([a, np.zeros((bt, pad) + a.shape[2:])], axis=1)
        return a.reshape((bt, nc, q) + a.shape[2:])

    xc, dtc, bc, cc = chunks(x), chunks(dt), chunks(B), chunks(C)
    grp = _head_group(heads, g)
    cs = np.cumsum(dtc * A, axis=2)  # _chunk_cumsum: [Bt, C, Q, H]
    cb = np.einsum("bcign,bcjgn->bcgij", cc, bc)  # _bmm_chunk: [Bt, C, G, Q, Q]
    decay_end = np.exp(cs[:, :, -1:, :] - cs)  # [Bt, C, Q, H]
    states = np.einsum("bcjhn,bcjh,bcjhp->bchpn", bc[:, :, :, grp], decay_end * dtc, xc)  # _chunk_state
    prev = np.zeros((bt, nc + 1, heads, p, n))  # _state_passing: state entering chunk c
    for c in range(nc):
        prev[:, c + 1] = np.exp(cs[:, c, -1])[:, :, None, None] * prev[:, c] + states[:, c]
    tril = np.tril(np.ones((q, q), dtype=bool))
    seg = np.where(tril[None, None, :, :, None], cs[:, :, :, None, :] - cs[:, :, None, :, :], -np.inf)
    lmat = np.exp(seg)  # [Bt, C, Qi, Qj, H], 0 above the diagonal
    y = np.einsum("bchij,bcijh,bcjh,bcjhp->bcihp", cb[:, :, grp], lmat, dtc, xc)  # diagonal blocks
    y += np.einsum("bcihn,bchpn,bcih->bcihp", cc[:, :, :, grp], prev[:, :nc], np.exp(cs))  # incoming state
    y += D[:, None] * xc
    y = y.reshape(bt, nc * q, heads, p)[:, :length]
    return (y, prev[:, nc]) if return_state else y


# ---------------------------------------------------------------------------- shapes and cascades


def channels(w) -> int:
    """mamba_scan's D_inner: heads x head_dim channels."""
    return w.heads * w.head_dim


def scan_chunk(w) -> int:
    """Tokens per chunk of the fused selective-scan kernel (the kernel's own choice when 0)."""
    given = w.param("scan_chunk")
    if given:
        return given
    for c in SCAN_CHUNKS:
        if w.seq_q <= c:
            return c
    return SCAN_CHUNKS[-1]


def mamba_scan_extents(w) -> dict[str, int]:
    """b batch, t positions L, d channels D_inner, n state N."""
    return {"b": w.batch, "t": w.seq_q, "d": channels(w), "n": w.param("d_state")}


def mamba_scan_cascade(w) -> Cascade:
    """The math of the selective scan (no in/out projections, no convolution, no z gate).

    dA[b,t,d,n]  = exp(delta[b,t,d] * A[d,n])          1 mul + 1 exp per (b,t,d,n)
    u[b,t,d]     = delta[b,t,d] * x[b,t,d]             1 mul per (b,t,d)
    dBx[b,t,d,n] = u[b,t,d] * B[b,t,n]                 1 mul per (b,t,d,n)
    h[b,t,d,n]   = dA * h[b,t-1,d,n] + dBx             1 FMA per (b,t,d,n)   (carried state)
    y[b,t,d]     = sum_n C[b,t,n] h[b,t,d,n] + D x     1 FMA per (b,t,d,n) + 1 per (b,t,d)
    No matrix products: the scan is elementwise work on the vector and exp units."""
    return Cascade((
        Einsum("dA", "dA[b,t,d,n] = exp(delta[b,t,d] * A[d,n])", "exp", ("b", "t", "d", "n"), 1, False),
        Einsum("dAm", "(delta * A: one mul per element)", "vector", ("b", "t", "d", "n"), 1, False),
        Einsum("u", "u[b,t,d] = delta[b,t,d] * x[b,t,d]", "vector", ("b", "t", "d"), 1, False),
        Einsum("dBx", "dBx[b,t,d,n] = u[b,t,d] * B[b,t,n]", "vector", ("b", "t", "d", "n"), 1, False),
        Einsum("h", "h[b,t,d,n] = dA[b,t,d,n] * h[b,t-1,d,n] + dBx[b,t,d,n]", "vector", ("b", "t", "d", "n"), 1, False),
        Einsum("y", "y[b,t,d] = sum_n C[b,t,n] * h[b,t,d,n]", "vector", ("b", "t", "d", "n"), 1, False),
        Einsum("yD", "y[b,t,d] += D[d] * x[b,t,d]", "vector", ("b", "t", "d"), 1, False),
    ))


def cascade_ops(w) -> dict[str, float]:
    """Operations per class of the family's cascade (no step is masked: allowed_pairs is unused)."""
    if w.family == "mamba_scan":
        return mamba_scan_cascade(w).ops(mamba_scan_extents(w), allowed_pairs=0)
    return mamba2_cascade(w).ops(mamba2_extents(w), allowed_pairs=0)


def ssd_chunking(w) -> tuple[int, int, int]:
    """(chunks C, chunk length Q, length of the last chunk)."""
    q = w.param("chunk")
    nc = math.ceil(w.seq_q / q)
    return nc, q, w.seq_q - (nc - 1) * q


def mamba2_extents(w) -> dict[str, int]:
    """Rank extents of the SSD cascade.

    b batch, h heads, g groups (ngroups, NOT the GQA group size), t positions L, p head dim P,
    n state N; derived ranks (counts, so that the ops are exact with a short last chunk):
    w  causal (i, j) pairs inside chunks: sum_c q_c (q_c + 1) / 2
    r  positions whose chunk state is computed (every chunk with final_state, else all but the last)
    k  chunk boundaries the state crosses (C with final_state, else C - 1)
    s  positions whose chunk has an incoming state (all but the first chunk)"""
    nc, q, last = ssd_chunking(w)
    pairs = (nc - 1) * q * (q + 1) // 2 + last * (last + 1) // 2
    final = w.param("final_state")
    return {"b": w.batch, "h": w.heads, "g": w.param("ngroups"), "t": w.seq_q, "p": w.head_dim,
            "n": w.param("d_state"), "w": pairs, "r": w.seq_q if final else (nc - 1) * q,
            "k": nc if final else nc - 1, "s": w.seq_q - min(q, w.seq_q)}


def mamba2_cascade(w) -> Cascade:
    """The math of chunked SSD (with the final state when final_state; no projections, conv or gate).

    cs[b,h,t]      = cumsum_chunk dt * A                    1 mul + 1 add per (b,h,t)
    CB[b,g,w]      = C[i,g,n] . B[j,g,n], j <= i in a chunk  2 FLOP per (b,g,w,n)       (mma)
    M[b,h,w]       = CB * exp(cs_i - cs_j) * dt_j            1 exp + 3 ops per (b,h,w)
    Yd[b,h,i,p]    = sum_j M[b,h,i,j] x[j,h,p]               2 FLOP per (b,h,w,p)       (mma)
    S[b,h,c,p,n]   = sum_j x[j,h,p] (B[j,n] e^(cs_end-cs_j) dt_j)  2 FLOP per (b,h,r,p,n) (mma)
                                                            + 1 exp per (b,h,r), 1 mul per (b,h,r,n)
    H[b,h,c,p,n]   = e^(cs_end) H[c-1] + S[c-1]             1 FMA per (b,h,k,p,n) + 1 exp per (b,h,k)
    Yo[b,h,i,p]    = e^(cs_i) sum_n C[i,n] H[c(i),p,n]       2 FLOP per (b,h,s,p,n)     (mma)
                                                            + 1 exp per (b,h,s), 1 mul per (b,h,s,p)
    y              = Yd + Yo + D x                          2 ops per (b,h,t,p)"""
    return Cascade((
        Einsum("cs", "cs[b,h,t] = cumsum_chunk(dt[b,t,h] * A[h])", "vector", ("b", "h", "t"), 2, False),
        Einsum("CB", "CB[b,g,i,j] = C[b,i,g,n] * B[b,j,g,n]  (j <= i, same chunk)", "mma", ("b", "g", "w", "n"), 2, False),
        Einsum("Lexp", "L[b,h,i,j] = exp(cs[b,h,i] - cs[b,h,j])", "exp", ("b", "h", "w"), 1, False),
        Einsum("M", "M[b,h,i,j] = CB[b,g,i,j] * L[b,h,i,j] * dt[b,j,h]  (sub, 2 mul)", "vector", ("b", "h", "w"), 3, False),
        Einsum("Yd", "Yd[b,i,h,p] = M[b,h,i,j] * x[b,j,h,p]", "mma", ("b", "h", "w", "p"), 2, False),
        Einsum("Sexp", "e[b,h,j] = exp(cs_end[b,h] - cs[b,h,j])", "exp", ("b", "h", "r"), 1, False),
        Einsum("Bs", "Bs[b,j,h,n] = B[b,j,g,n] * e[b,h,j] * dt[b,j,h]", "vector", ("b", "h", "r", "n"), 1, False),
        Einsum("S", "S[b,c,h,p,n] = x[b,j,h,p] * Bs[b,j,h,n]", "mma", ("b", "h", "r", "p", "n"), 2, False),
        Einsum("Hexp", "a[b,h,c] = exp(cs_end[b,h,c])", "exp", ("b", "h", "k"), 1, False),
        Einsum("H", "H[b,c,h,p,n] = a[b,h,c-1] * H[b,c-1,h,p,n] + S[b,c-1,h,p,n]", "vector", ("b", "h", "k", "p", "n"), 1, False),
        Einsum("Oexp", "o[b,h,i] = exp(cs[b,h,i])", "exp", ("b", "h", "s"), 1, False),
        Einsum("Yo", "Yo[b,i,h,p] = C[b,i,g,n] * H[b,c(i),h,p,n]", "mma", ("b", "h", "s", "p", "n"), 2, False),
        Einsum("Yos", "(Yo scaled by o: one mul)", "vector", ("b", "h", "s", "p"), 1, False),
        Einsum("y", "y[b,t,h,p] = Yd + Yo + D[h] * x[b,t,h,p]", "vector", ("b", "h", "t", "p"), 2, False),
    ))


# ---------------------------------------------------------------------------- checks


def _scan_shape_problems(w) -> list[tuple[str, str]]:
    probs = []
    if w.seq_q != w.seq_kv:
        probs.append(("seq_q", f"{w.family} scans a whole sequence: seq_q must equal seq_kv, got seq_q={w.seq_q}, "
                               f"seq_kv={w.seq_kv} (a one-token decode step is a state update, not modelled)"))
    if w.kv_heads != w.heads:
        probs.append(("kv_heads", f"{w.family} has no separate key/value heads: kv_heads must equal heads "
                                  f"({w.heads}), got {w.kv_heads}"))
    if w.value_dim != w.head_dim:
        probs.append(("value_dim", f"{w.family} has one channel width: value_dim must equal head_dim "
                                   f"({w.head_dim}), got {w.value_dim}"))
    if w.mask.kind not in ("full", "causal"):
        probs.append(("mask.kind", f"{w.family} is a causal recurrence: expected mask 'full' or 'causal', "
                                   f"got {w.mask.kind!r}"))
    if w.kv_page:
        probs.append(("kv_page", f"{w.family} keeps no KV cache: expected kv_page 0, got {w.kv_page}"))
    return probs


def _check_mamba_scan(w) -> list[tuple[str, str]]:
    probs = _scan_shape_problems(w)
    c = w.param("scan_chunk")
    if c and c not in SCAN_CHUNKS:
        probs.append(("params.scan_chunk", f"expected 0 (the kernel's choice) or one of the chunk lengths the "
                                           f"selective-scan kernel instantiates {list(SCAN_CHUNKS)}, got {c}"))
    return probs


def _check_mamba2(w) -> list[tuple[str, str]]:
    probs = _scan_shape_problems(w)
    g = w.param("ngroups")
    if w.heads % g:
        probs.append(("params.ngroups", f"heads ({w.heads}) must be a multiple of ngroups, got ngroups={g}"))
    return probs


FAMILIES = {
    "mamba_scan": Family("mamba_scan", "Mamba's selective scan (state N per channel; fused or HBM-materialized)",
                         MAMBA_SCAN_PARAMS, mamba_scan_cascade, _check_mamba_scan,
                         baseline=lambda w: None),  # its heads x head_dim are channels: no attention twin
    "mamba2_ssd": Family("mamba2_ssd", "Mamba-2's chunked state-space duality (scalar decay per head)",
                         MAMBA2_PARAMS, mamba2_cascade, _check_mamba2),
}
