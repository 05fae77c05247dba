r"""Linear attention: chunked causal linear attention with feature maps (Lightning Attention-2,
TransNormer / TransNormerLLM, Based, Hedgehog), gated linear attention (GLA) and the recurrent
decode step. Numpy references (float64), the cascades, and each cascade's executable form.

Shape (the Workload fields, read directly):
    B batch, H query heads, U = kv_heads (K, V and GLA's gates belong to the KV head, shared by
    G = H / U query heads; so does the state), N = seq_q = seq_kv (chunked forms), D head_dim
    (q, k before the feature map), E the feature dim after it, F value_dim.
Layouts: q [B, H, N, E], k [B, U, N, E], v [B, U, N, F], o [B, H, N, F], state [B, U, E, F];
query head h reads KV head h // G.

Causal linear attention, constant decay lambda (1 = none; TransNormerLLM / Lightning):
    recurrent   S_t = lambda S_{t-1} + phi(k_t)^T v_t        o_t = phi(q_t) S_t
    quadratic   O = (phi(Q) phi(K)^T (.) M) V                M[i, j] = lambda^(i-j), j <= i
    chunked     chunk c holds L positions; S_c is the state entering it:
                O_c     = (Q_c K_c^T (.) M_L) V_c + Lambda_q (Q_c S_c)     Lambda_q[i] = lambda^(i+1)
                S_{c+1} = lambda^L S_c + K_c^T (Lambda_k V_c)              Lambda_k[j] = lambda^(L-1-j)

        keys ->   chunk 0    chunk 1    chunk 2 (partial)
                +---------+---------+-----+
      chunk 0   |\        |         |     |     intra: one C x C causal tile per chunk (the
                | \  A    |         |     |     diagonal blocks, j <= i inside the chunk)
                +---------+---------+-----+
      chunk 1   |  Q_1 S_1|\        |     |     inter: every earlier chunk, through the
                |  (state)| \  A    |     |     carried state S (E x F per KV head)
                +---------+---------+-----+

Feature maps phi (feature dim E):
    identity   phi(x) = x                                           E = D
    taylor2    phi(x) = [1, z, vec(z z^T) / sqrt(2)], z = x W (W [D, r] when r != D)
               (Based, Arora et al. 2024: phi(q) . phi(k) = 1 + q.k + (q.k)^2 / 2)   E = 1 + r + r^2
    hedgehog   phi(x) = [softmax(x W), softmax(-x W)], W [D, r]  (Zhang et al. 2024)   E = 2 r

Gated linear attention (Yang et al. 2024, GLA), per-key-channel data-dependent decay:
    S_t = diag(alpha_t) S_{t-1} + k_t^T v_t,   o_t = q_t S_t,   log alpha_t <= 0, G = cumsum log alpha
    A[i, j] = sum_e q_ie k_je exp(G_ie - G_je)   (j <= i);   O = A V
    Chunked with secondary sub-chunks: off-diagonal sub-blocks of A are matrix products of gated
    Q and K (exponents relative to the row sub-chunk's first position), diagonal sub-blocks are
    elementwise (the gate ratio depends on both i and j), the state carries across chunks.
"""
from __future__ import annotations

import math

import numpy as np

from attnsim.spec.schema import Field
from attnsim.workload.cascade import Cascade, Einsum
from attnsim.workload.families import Family

FEATURE_MAPS = ("identity", "taylor2", "hedgehog")
KERNELS = ("fla_chunk", "lightning_fused")
MIN_TILE = 16  # smallest tl.dot edge (Triton) and the m16 MMA row count




def next_pow2(x: int) -> int:
    return 1 << max(0, int(x) - 1).bit_length()


def feature_dim(kind: str, head_dim: int, r: int) -> int:
    """E: the key/query dim the state is built on, after the feature map."""
    if kind == "identity":
        return head_dim
    if kind == "taylor2":
        return 1 + r + r * r
    return 2 * r


def projects(kind: str, head_dim: int, r: int) -> bool:
    """Whether the feature map starts with a D x r projection (taylor2 skips it when r == D)."""
    return kind == "hedgehog" or (kind == "taylor2" and r != head_dim)


def effective_chunk(w) -> int:
    """The chunk the kernels run: FLA clips it to the sequence, BT = min(chunk, max(16, next_pow2(N)))."""
    return min(w.param("chunk"), max(MIN_TILE, next_pow2(w.seq_kv)))


def chunk_lengths(n: int, c: int) -> tuple[int, int, int]:
    """(number of chunks, length of the first, length of the last) for n positions in chunks of c."""
    nc = -(-n // c)
    return nc, min(c, n), n - (nc - 1) * c


def _sub_stats(length: int, bc: int) -> tuple[int, int, int, int]:
    """One chunk of `length` positions in sub-chunks of bc: (x, y, w, z) =
    (pairs in off-diagonal sub-blocks, causal pairs in diagonal sub-blocks,
     key positions x later row sub-chunks, row positions outside the first sub-chunk)."""
    ls = [min(bc, length - s) for s in range(0, length, bc)]
    x = (length * length - sum(l * l for l in ls)) // 2
    y = sum(l * (l + 1) // 2 for l in ls)
    w = sum(l * (len(ls) - 1 - j) for j, l in enumerate(ls))
    return x, y, w, length - ls[0]


def extents(w) -> dict[str, int]:
    """Rank extents of the linear families' cascades (counts per whole sequence where named so).

    b, h, u   batch, query heads, KV heads         d, e, f   head dim, feature dim, value dim
    r         feature-map projection dim           m, n      query / key positions (N; 1 for decode)
    p         (i, j) pairs inside a chunk with j <= i, summed over chunks
    q         query positions past the first chunk (they read a carried state)
    s         key positions absorbed into a carried state (the last chunk only with final_state)
    t         state updates that decay an earlier state (absorbed chunks after the first)
    x, y      GLA: pairs in off-diagonal sub-blocks; causal pairs in diagonal sub-blocks
    wk, z     GLA: key positions x later row sub-chunks (k-side gating); row positions outside a
              chunk's first sub-chunk (q-side gating)
    """
    r = w.param("feature_dim") if "feature_dim" in w.params else 0
    kind = w.param("feature_map") if "feature_map" in w.params else "identity"
    e = feature_dim(kind, w.head_dim, r)
    ext = {"b": w.batch, "h": w.heads, "u": w.kv_heads, "d": w.head_dim, "e": e, "f": w.value_dim,
           "r": r, "m": w.seq_q, "n": w.seq_kv}
    if w.family == "linear_decode":
        return ext
    n, c = w.seq_kv, effective_chunk(w)
    nc, first, last = chunk_lengths(n, c)
    absorbed = nc if w.param("final_state") else nc - 1
    ext.update(p=(nc - 1) * c * (c + 1) // 2 + last * (last + 1) // 2, q=n - first,
               s=(n if w.param("final_state") else n - last), t=max(absorbed - 1, 0))
    if w.family == "gla_chunked":
        bc = min(w.param("subchunk"), c)
        full, part = _sub_stats(c, bc), _sub_stats(last, bc)
        ext.update({k: (nc - 1) * a + b for k, a, b in zip(("x", "y", "wk", "z"), full, part)})
    return ext




def _group(q: np.ndarray, u: int) -> np.ndarray:
    """[B, H, ...] -> [B, U, G, ...]: query heads grouped by the KV head they read."""
    b, h = q.shape[:2]
    if h % u:
        raise ValueError(f"H={h} must be a multiple of U={u} (kv heads)")
    return np.asarray(q, dtype=np.float64).reshape(b, u, h // u, *q.shape[2:])


def _ungroup(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], x.shape[1] * x.shape[2], *x.shape[3:])


def feature_map(x: np.ndarray, kind: str, proj: np.ndarray | None = None) -> np.ndarray:
    """phi(x) along the last axis. ``proj`` [D, r]: hedgehog's map, taylor2's projection (or None)."""
    x = np.asarray(x, dtype=np.float64)
    if kind == "identity":
        return x
    z = x if proj is None else x @ proj  # [..., r]
    if kind == "taylor2":
        outer = (z[..., :, None] * z[..., None, :]).reshape(*z.shape[:-1], -1) / math.sqrt(2.0)
        return np.concatenate([np.ones(z.shape[:-1] + (1,)), z, outer], axis=-1)
    if kind == "hedgehog":
        def softmax(a):
            a = np.exp(a - a.max(axis=-1, keepdims=True))
            return a / a.sum(axis=-1, keepdims=True)
        return np.concatenate([softmax(z), softmax(-z)], axis=-1)
    raise ValueError(f"feature map {kind!r}; expected one of {FEATURE_MAPS}")


def decay_mask(n: int, decay: float) -> np.ndarray:
    """[n, n]: lambda^(i-j) where j <= i, else 0."""
    i = np.arange(n)
    diff = i[:, None] - i[None, :]
    return np.where(diff >= 0, float(decay) ** np.maximum(diff, 0), 0.0)


def _carried(q, k, v, state):
    """float64 operands of a form with a carried state: (q grouped by KV head [B, U, G, N, E], k, v,
    the state [B, U, E, F] (zeros, or a copy of the one given), an empty output [B, U, G, N, F])."""
    qg, k, v = _group(q, k.shape[1]), np.asarray(k, np.float64), np.asarray(v, np.float64)
    s = np.zeros(k.shape[:2] + (k.shape[3], v.shape[3])) if state is None else np.array(state, np.float64)
    return qg, k, v, s, np.empty(qg.shape[:4] + (v.shape[3],))


def linear_attention_reference(q, k, v, decay: float = 1.0) -> np.ndarray:
    """Quadratic masked form: O = (Q K^T (.) M) V (q, k already feature-mapped).  # o [B, H, N, F]"""
    qg = _group(q, k.shape[1])  # [B, U, G, N, E]
    a = np.einsum("bugie,buje->bugij", qg, np.asarray(k, np.float64)) * decay_mask(q.shape[2], decay)
    return _ungroup(np.einsum("bugij,bujf->bugif", a, np.asarray(v, np.float64)))


def linear_attention_recurrent(q, k, v, decay: float = 1.0, state=None):
    """Token by token: S = lambda S + k^T v; o = q S. Returns (o [B, H, N, F], final state [B, U, E, F])."""
    qg, k, v, s, o = _carried(q, k, v, state)
    for t in range(k.shape[2]):
        s = decay * s + k[:, :, t, :, None] * v[:, :, t, None, :]  # [B, U, E, F]
        o[:, :, :, t] = np.einsum("buge,buef->bugf", qg[:, :, :, t], s)
    return _ungroup(o), s


def linear_decode_step(state, q, k, v, decay: float = 1.0):
    """One decode token: S' = lambda S + k^T v; o = q S'. q [B, H, E], k [B, U, E], v [B, U, F],
    state [B, U, E, F]. Returns (o [B, H, F], S')."""
    k, v = np.asarray(k, np.float64), np.asarray(v, np.float64)
    s = decay * np.asarray(state, np.float64) + k[..., :, None] * v[..., None, :]
    return _ungroup(np.einsum("buge,buef->bugf", _group(q, k.shape[1]), s)), s


def linear_chunked_forward(q, k, v, chunk: int, decay: float = 1.0, state=None):
    """The linear_chunked cascade's executable form: intra-chunk masked tile + carried state.
    Returns (o [B, H, N, F], the state after the last chunk [B, U, E, F])."""
    qg, k, v, s, o = _carried(q, k, v, state)
    n = k.shape[2]
    for c0 in range(0, n, chunk):
        L = min(chunk, n - c0)
        qc, kc, vc = qg[:, :, :, c0:c0 + L], k[:, :, c0:c0 + L], v[:, :, c0:c0 + L]
        pos = np.arange(L)
        a = np.einsum("bugie,buje->bugij", qc, kc) * decay_mask(L, decay)  # [B, U, G, L, L]
        inter = np.einsum("bugie,buef->bugif", qc, s) * (decay ** (pos + 1))[:, None]  # Q_c S_c
        o[:, :, :, c0:c0 + L] = np.einsum("bugij,bujf->bugif", a, vc) + inter
        s = decay ** L * s + np.einsum("buje,bujf->buef", kc, vc * (decay ** (L - 1 - pos))[:, None])
    return _ungroup(o), s


def gla_reference(q, k, v, log_alpha) -> np.ndarray:
    """Quadratic GLA: A[i, j] = sum_e q_ie k_je exp(G_ie - G_je) (j <= i), O = A V.  # o [B, H, N, F]"""
    qg, k, v = _group(q, k.shape[1]), np.asarray(k, np.float64), np.asarray(v, np.float64)
    g = np.cumsum(np.asarray(log_alpha, np.float64), axis=2)  # [B, U, N, E]
    n = k.shape[2]
    causal = np.tril(np.ones((n, n), dtype=bool))
    ratio = np.where(causal[None, None, :, :, None],
                     np.exp(np.minimum(g[:, :, :, None, :] - g[:, :, None, :, :], 0.0)), 0.0)  # [B, U, N, N, E]
    a = np.einsum("bugie,buje,buije->bugij", qg, k, ratio)
    return _ungroup(np.einsum("bugij,bujf->bugif", a, v))


def gla_recurrent(q, k, v, log_alpha, state=None):
    """Token by token: S = diag(alpha_t) S + k^T v; o = q S. Returns (o, final state)."""
    qg, k, v, s, o = _carried(q, k, v, state)
    alpha = np.exp(np.asarray(log_alpha, np.float64))
    for t in range(k.shape[2]):
        s = alpha[:, :, t, :, None] * s + k[:, :, t, :, None] * v[:, :, t, None, :]
        o[:, :, :, t] = np.einsum("buge,buef->bugf", qg[:, :, :, t], s)
    return _ungroup(o), s


def gla_chunked_forward(q, k, v, log_alpha, chunk: int, subchunk: int, state=None):
    """The gla_chunked cascade's executable form (FLA's chunk_gla): gate cumsum per chunk, carried
    state, off-diagonal sub-blocks as gated matrix products, diagonal sub-blocks elementwise."""
    qg, k, v, s, o = _carried(q, k, v, state)
    la = np.asarray(log_alpha, np.float64)
    n = k.shape[2]
    for c0 in range(0, n, chunk):
        L = min(chunk, n - c0)
        qc, kc, vc = qg[:, :, :, c0:c0 + L], k[:, :, c0:c0 + L], v[:, :, c0:c0 + L]
        g = np.cumsum(la[:, :, c0:c0 + L], axis=2)  # [B, U, L, E] local cumsum
        a = np.zeros(qc.shape[:3] + (L, L))  # [B, U, G, L, L]
        for i0 in range(0, L, subchunk):
            i1 = min(i0 + subchunk, L)
            gn = g[:, :, i0]  # [B, U, E]: the row sub-chunk's first position
            qgat = qc[:, :, :, i0:i1] * np.exp(g[:, :, None, i0:i1] - gn[:, :, None, None])
            for j0 in range(0, i0, subchunk):  # off-diagonal: gated matrix product
                kgat = kc[:, :, j0:j0 + subchunk] * np.exp(gn[:, :, None] - g[:, :, j0:j0 + subchunk])
                a[..., i0:i1, j0:j0 + subchunk] = np.einsum("bugie,buje->bugij", qgat, kgat)
            ratio = np.exp(np.minimum(g[:, :, i0:i1, None] - g[:, :, None, i0:i1], 0.0))  # [B, U, l, l, E]
            diag = np.einsum("bugie,buje,buije->bugij", qc[:, :, :, i0:i1], kc[:, :, i0:i1], ratio)
            a[..., i0:i1, i0:i1] = np.tril(diag)
        inter = np.einsum("bugie,buef->bugif", qc * np.exp(g)[:, :, None], s)
        o[:, :, :, c0:c0 + L] = np.einsum("bugij,bujf->bugif", a, vc) + inter
        last = g[:, :, -1]  # [B, U, E]
        s = np.exp(last)[..., None] * s + np.einsum("buje,bujf->buef", kc * np.exp(last[:, :, None] - g), vc)
    return _ungroup(o), s




def _feature_steps(w, m: str, n: str) -> list[Einsum]:
    """The feature map's work on Q (positions m) and K (positions n)."""
    kind, r = w.param("feature_map"), w.param("feature_dim")
    steps: list[Einsum] = []
    for t, heads, pos in (("Q", "h", m), ("K", "u", n)):
        if projects(kind, w.head_dim, r):
            steps.append(Einsum(f"{t}p", f"Z{t}[b,{heads},{pos},r] = {t}[b,{heads},{pos},d] * W[d,r]", "mma",
                                ("b", heads, pos, "d", "r"), 2, False))
        if kind == "taylor2":  # z z^T / sqrt(2): a multiply and a scale per (r, r) element
            steps.append(Einsum(f"{t}2", f"phi{t}[b,{heads},{pos},r*r] = Z{t} (x) Z{t} / sqrt(2)", "vector",
                                ("b", heads, pos, "r", "r"), 2, False))
        elif kind == "hedgehog":  # softmax(z) and softmax(-z): max, subtract, sum, divide each
            steps.append(Einsum(f"{t}e", f"exp(+-Z{t} - max)", "exp", ("b", heads, pos, "r"), 2, False))
            steps.append(Einsum(f"{t}s", f"phi{t} = [softmax(Z{t}), softmax(-Z{t})]", "vector",
                                ("b", heads, pos, "r"), 8, False))
    return steps


def linear_chunked_cascade(w) -> Cascade:
    """linear_chunked: feature map, intra-chunk tile, inter-chunk readout, state carry (see module doc)."""
    decayed = w.param("decay") != 1.0
    steps = _feature_steps(w, "m", "n") if w.param("feature_map") != "identity" else []
    steps.append(Einsum("A", "A[b,h,c,i,j] = phiQ[b,h,c,i,e] * phiK[b,u,c,j,e]   (j <= i)", "mma",
                        ("b", "h", "p", "e"), 2, False))
    if decayed:
        steps += [Einsum("Mx", "M[i,j] = lambda^(i-j)", "exp", ("b", "h", "p"), 1, False),
                  Einsum("Am", "A[b,h,c,i,j] *= M[i,j]", "vector", ("b", "h", "p"), 1, False)]
    steps.append(Einsum("Oi", "O[b,h,c,i,f] = A[b,h,c,i,j] * V[b,u,c,j,f]", "mma", ("b", "h", "p", "f"), 2, False))
    steps.append(Einsum("Oq", "O[b,h,c,i,f] += phiQ[b,h,c,i,e] * S[b,u,c,e,f]   (c >= 1)", "mma",
                        ("b", "h", "q", "e", "f"), 2, False))
    if decayed:
        steps += [Einsum("Qx", "lambda^(i+1)", "exp", ("b", "h", "q"), 1, False),
                  Einsum("Oqm", "O[b,h,c,i,f] *= lambda^(i+1)   (the inter part)", "vector",
                         ("b", "h", "q", "f"), 1, False)]
    steps.append(Einsum("S", "S[b,u,c+1,e,f] = lambda^L S[b,u,c,e,f] + phiK[b,u,c,j,e] * (lambda^(L-1-j) V[b,u,c,j,f])",
                        "mma", ("b", "u", "s", "e", "f"), 2, False))
    if decayed:
        steps += [Einsum("Kx", "lambda^(L-1-j)", "exp", ("b", "u", "s"), 1, False),
                  Einsum("Vm", "V[b,u,c,j,f] *= lambda^(L-1-j)", "vector", ("b", "u", "s", "f"), 1, False),
                  Einsum("Sm", "S[b,u,c,e,f] *= lambda^L", "vector", ("b", "u", "t", "e", "f"), 1, False)]
    return Cascade(tuple(steps))


def gla_chunked_cascade(w) -> Cascade:
    """gla_chunked (FLA's chunk_gla): gate cumsum, gated state carry, gated inter readout, sub-chunked intra."""
    return Cascade((
        Einsum("Gc", "G[b,u,c,i,e] = cumsum_i log alpha[b,u,c,i,e]", "vector", ("b", "u", "n", "e"), 1, False),
        Einsum("Kx", "exp(G[b,u,c,L-1,e] - G[b,u,c,j,e])", "exp", ("b", "u", "s", "e"), 1, False),
        Einsum("Km", "Kg[b,u,c,j,e] = K * exp(...)   (subtract, multiply)", "vector", ("b", "u", "s", "e"), 2, False),
        Einsum("Sx", "exp(G[b,u,c,L-1,e])", "exp", ("b", "u", "t", "e"), 1, False),
        Einsum("Sm", "S[b,u,c,e,f] *= exp(G[b,u,c,L-1,e])", "vector", ("b", "u", "t", "e", "f"), 1, False),
        Einsum("S", "S[b,u,c+1,e,f] = ... + Kg[b,u,c,j,e] * V[b,u,c,j,f]", "mma", ("b", "u", "s", "e", "f"), 2, False),
        Einsum("Qx", "exp(G[b,u,c,i,e])", "exp", ("b", "u", "q", "e"), 1, False),
        Einsum("Qm", "Qg[b,h,c,i,e] = Q * exp(G)", "vector", ("b", "h", "q", "e"), 1, False),
        Einsum("Oq", "O[b,h,c,i,f] = Qg[b,h,c,i,e] * S[b,u,c,e,f]   (c >= 1)", "mma",
               ("b", "h", "q", "e", "f"), 2, False),
        Einsum("Aqx", "exp(G[i] - G[n_i])   (row sub-chunk start n_i)", "exp", ("b", "u", "z", "e"), 1, False),
        Einsum("Aqm", "Q * exp(...)   (subtract, multiply)", "vector", ("b", "h", "z", "e"), 2, False),
        Einsum("Akx", "exp(G[n_i] - G[j])   (per row sub-chunk)", "exp", ("b", "u", "wk", "e"), 1, False),
        Einsum("Akm", "K * exp(...)   (subtract, multiply)", "vector", ("b", "u", "wk", "e"), 2, False),
        Einsum("Ao", "A[b,h,c,i,j] = Qg[i,e] * Kg[j,e]   (off-diagonal sub-blocks)", "mma",
               ("b", "h", "x", "e"), 2, False),
        Einsum("Adx", "exp(G[i,e] - G[j,e])   (diagonal sub-blocks, j <= i)", "exp", ("b", "u", "y", "e"), 1, False),
        Einsum("Ads", "G[i,e] - G[j,e]", "vector", ("b", "u", "y", "e"), 1, False),
        Einsum("Ad", "A[b,h,c,i,j] = sum_e Q[i,e] K[j,e] exp(...)   (multiply, multiply, add)", "vector",
               ("b", "h", "y", "e"), 3, False),
        Einsum("Oi", "O[b,h,c,i,f] += A[b,h,c,i,j] * V[b,u,c,j,f]", "mma", ("b", "h", "p", "f"), 2, False),
    ))


def linear_decode_cascade(w) -> Cascade:
    """linear_decode: one token per sequence: S = lambda S + phi(k)^T v, o = phi(q) S (a rank-1
    update and a vector-matrix product; 2 FLOP per multiply-add whichever unit runs them)."""
    steps = _feature_steps(w, "m", "m") if w.param("feature_map") != "identity" else []  # the new token
    if w.param("decay") != 1.0:
        steps.append(Einsum("Sm", "S[b,u,e,f] *= lambda", "vector", ("b", "u", "e", "f"), 1, False))
    steps.append(Einsum("S", "S[b,u,e,f] += phiK[b,u,e] * V[b,u,f]", "mma", ("b", "u", "e", "f"), 2, False))
    steps.append(Einsum("O", "O[b,h,f] = phiQ[b,h,e] * S[b,u,e,f]", "mma", ("b", "h", "e", "f"), 2, False))
    return Cascade(tuple(steps))




def _pow2_problem(w, key: str, lo: int = MIN_TILE) -> list[tuple[str, str]]:
    v = w.param(key)
    if v < lo or v & (v - 1):
        return [(f"params.{key}", f"expected a power of two >= {lo} (a Triton tile edge), got {v}")]
    return []


def _check_chunked(w) -> list[tuple[str, str]]:
    probs = []
    if w.mask.kind != "causal":
        probs.append(("mask", f"{w.family} is causal linear attention: expected mask kind 'causal' "
                              f"(attention(..., causal=True)), got {w.mask.label()!r}"))
    if w.seq_q != w.seq_kv:
        probs.append(("seq_q", f"{w.family} needs seq_q == seq_kv (one sequence, chunked), "
                               f"got seq_q={w.seq_q}, seq_kv={w.seq_kv}"))
    for key in ("chunk", "block_k", "block_v"):
        probs += _pow2_problem(w, key)
    return probs


def _check_gla(w) -> list[tuple[str, str]]:
    probs = _check_chunked(w) + _pow2_problem(w, "subchunk")
    if not probs and w.param("subchunk") > w.param("chunk"):
        probs.append(("params.subchunk", f"expected subchunk <= chunk ({w.param('chunk')}), "
                                         f"got {w.param('subchunk')}"))
    return probs


def _check_decode(w) -> list[tuple[str, str]]:
    probs = []
    if w.seq_q != 1:
        probs.append(("seq_q", f"linear_decode is one token per sequence: expected seq_q = 1, got {w.seq_q} "
                               "(use linear_chunked for a prefill)"))
    if w.mask.kind not in ("full", "causal"):
        probs.append(("mask", f"linear_decode reads the whole cached state: expected mask 'full' or 'causal', "
                              f"got {w.mask.label()!r}"))
    return probs + _pow2_problem(w, "block_v")


_CHUNK = Field("chunk", "int", required=False, default=64, min=1,
               help="chunk length C (FLA chunk kernels and Lightning Attention-2 use 64)")
_BLOCK_K = Field("block_k", "int", required=False, default=64, min=1,
                 help="key/feature-dim block BK of the state and output kernels (64 is in FLA's autotune lists)")
_BLOCK_V = Field("block_v", "int", required=False, default=64, min=1,
                 help="value-dim block BV of the state and output kernels (64 is in FLA's autotune lists)")
_FINAL = Field("final_state", "bool", required=False, default=False,
               help="also absorb the last chunk and write the final state in fp32 (prefill before decode)")
_DECAY = Field("decay", "fraction", required=False, default=1.0,
               help="per-head constant decay lambda in (0, 1]; 1 = none (TransNormerLLM, Lightning Attention)")
_FMAP = Field("feature_map", "enum", required=False, default="identity", choices=FEATURE_MAPS,
              help="phi: identity, taylor2 (Based), hedgehog")
_FDIM = Field("feature_dim", "int", required=False, default=16, min=1,
              help="taylor2: projected dim r (Based uses 16), E = 1 + r + r^2; hedgehog: r, E = 2r")

FAMILIES = {
    "linear_chunked": Family(
        "linear_chunked",
        "chunked causal linear attention with decay and feature maps (Lightning-2, TransNormer, Based, Hedgehog)",
        (_CHUNK, _DECAY, _FMAP, _FDIM,
         Field("kernel", "enum", required=False, default="fla_chunk", choices=KERNELS,
               help="fla_chunk: FLA's chunk_fwd_h + chunk_fwd_o; lightning_fused: Lightning-2's one kernel"),
         _BLOCK_K, _BLOCK_V, _FINAL),
        linear_chunked_cascade, _check_chunked),
    "gla_chunked": Family(
        "gla_chunked", "gated linear attention, chunked with sub-chunks (Yang et al. 2024; FLA chunk_gla)",
        (_CHUNK, Field("subchunk", "int", required=False, default=16, min=1,
                       help="secondary chunk of the intra-chunk part (16, as the GLA paper and FLA)"),
         _BLOCK_K, _BLOCK_V, _FINAL),
        gla_chunked_cascade, _check_gla),
    "linear_decode": Family(
        "linear_decode", "recurrent decode step of linear attention: an fp32 state per KV head replaces the KV cache",
        (_DECAY, _FMAP, _FDIM,
         Field("block_v", "int", required=False, default=32, min=1,
               help="value-dim block per CTA (vLLM's linear-attention decode kernel uses 32)")),
        linear_decode_cascade, _check_decode, decode=True),
}
