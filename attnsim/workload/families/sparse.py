"""Content-based sparse attention: top-k block routing, clustering-based routing, per-head mixes.

    topk_blocks       BiFormer, HiP, SeerAttention: mean-pool Q over query blocks and K over key
                      blocks, score the pooled blocks, keep the `density` best of each query
                      block's candidate key blocks, then block-sparse attention over them
    routing_clusters  Routing Transformer, Squeezed Attention: assign queries and keys to
                      centroids; a query attends to the keys of its `top_clusters` clusters
    head_mix          DuoAttention, RazorAttention, MoA: some KV heads keep full (causal)
                      attention, the others see `sink` first keys plus a `window` of recent keys

Layouts as ``attnsim.workload.reference``: q [B, H, M, D], k [B, Hkv, N, D], v [B, Hkv, N, F];
query head h reads KV head h // G. Each family has an obvious float64 reference (``*_reference``)
and an executable form of its cascade (routed / sorted / tiled) that tests hold equal to it.
"""
from __future__ import annotations

import math

import numpy as np

from attnsim.spec.schema import Field
from attnsim.workload.cascade import Cascade, Einsum, softmax_attention_cascade
from attnsim.workload.families import Family
from attnsim.workload.masks import causal_mask, full_mask, window_mask
from attnsim.workload.reference import attention_reference, flash_forward_tiled


def _base_mask(M: int, N: int, causal: bool) -> np.ndarray:
    return causal_mask(M, N) if causal else full_mask(M, N)


def cached_keys(w) -> int:
    """Keys whose routing summaries come from a cache. When seq_q < seq_kv the call extends a KV
    cache by its seq_q tokens (the last seq_q keys, where the bottom-right aligned masks put
    them); the earlier keys' pooled blocks (SeerAttention-R's and Quest's block summaries) and
    cluster assignments (a cluster-sorted cache, as Squeezed Attention keeps) were made by
    earlier calls. 0 when seq_q >= seq_kv: every key is summarized by this call."""
    return max(0, w.seq_kv - w.seq_q)


def _needs_full_or_causal(w, family: str) -> list:
    if w.mask.kind not in ("full", "causal"):
        return [("mask.kind", f"{family} routes on a full or causal mask, got {w.mask.kind!r}")]
    return []


# ============================================================================== topk_blocks

TOPK_PARAMS = (
    Field("density", "fraction", required=False, default=0.25,
          help="fraction of each query block's candidate key blocks that it keeps"),
    # 64 x 64 routing blocks: SeerAttention's AttnGate default (seerattn_gate_block_size=64 in
    # microsoft/SeerAttention seer_attn/llama/configuration_llama_seerattn.py)
    Field("block_q", "int", required=False, default=64, min=1, help="query positions per routing block"),
    Field("block_k", "int", required=False, default=64, min=1, help="keys per routing block"),
)


def keep_count(candidates: int, density: float) -> int:
    """Key blocks a query block keeps: max(1, floor(density x candidates + 0.5)), at most all of
    them; none when it has no candidate (the attention model counts kept tiles the same way)."""
    if candidates == 0:
        return 0
    return min(candidates, max(1, math.floor(density * candidates + 0.5)))


def topk_rows(M: int, N: int, bq: int, bk: int, density: float, causal: bool) -> dict:
    """Per query block i (rows r0..r1), arrays [ceil(M/bq)]:

    candidates  key blocks holding a key some row of the block may see (all, unless causal)
    full        candidates every row sees completely (causal: blocks 0..full-1)
    keep        keep_count(candidates, density): the partial blocks first, then full ones
    allowed     allowed (m, n) pairs in the kept blocks, the full ones counted at the width
                of the blocks nearest the diagonal (data-independent: only the ragged last key
                block, when it is a full candidate, can make a routed mask differ from this)
    compares    candidates x ceil(log2(keep + 1)): the top-k selection's compare ops

    Computed row by row from the positions (O(M) work), not from an [M, N] mask.
    """
    nqb, nkb = -(-M // bq), -(-N // bk)
    off = N - M
    out = {key: np.zeros(nqb, dtype=np.int64) for key in ("candidates", "full", "keep", "allowed", "compares")}
    last_w = N - (nkb - 1) * bk  # keys in the last (ragged) key block
    for i in range(nqb):
        r0, r1 = i * bq, min(M, (i + 1) * bq) - 1
        rows = np.arange(r0, r1 + 1)
        if causal:
            hi_last, hi_first = r1 + off, r0 + off  # the last key the last / first row sees
            cand = 0 if hi_last < 0 else min(hi_last, N - 1) // bk + 1
            full = 0 if hi_first < 0 else nkb if hi_first >= N - 1 else (hi_first + 1) // bk
        else:
            cand = full = nkb
        keep = keep_count(cand, density)
        kept_partial = min(keep, cand - full)
        allowed = 0
        for j in range(full, full + kept_partial):  # row m sees keys n <= m + off of block j
            c0 = j * bk
            allowed += int(np.clip(rows + off - c0 + 1, 0, min(N, c0 + bk) - c0).sum())
        kept_full = keep - kept_partial
        if kept_full:  # blocks full-1, full-2, ...: all bk wide but the last key block
            allowed += len(rows) * (kept_full * bk - (bk - last_w if full == nkb else 0))
        out["candidates"][i], out["full"][i], out["keep"][i] = cand, full, keep
        out["allowed"][i] = allowed
        out["compares"][i] = cand * math.ceil(math.log2(keep + 1))
    return out


def _topk_args(w) -> tuple:
    return w.param("density"), w.param("block_q"), w.param("block_k"), w.mask.is_causal


def topk_extents(w) -> dict:
    """Ranks of the topk_blocks cascade: the softmax ranks, r (KV heads), i / j (query / key
    blocks), u / ju (keys this call pools / key blocks it updates: ``cached_keys``) and s
    (selection compare ops per (b, h))."""
    density, bq, bk, causal = _topk_args(w)
    rows = topk_rows(w.seq_q, w.seq_kv, bq, bk, density, causal)
    nkb, cached = -(-w.seq_kv // bk), cached_keys(w)
    return {**w.extents(), "r": w.kv_heads, "i": -(-w.seq_q // bq), "j": nkb, "u": w.seq_kv - cached,
            "ju": nkb - cached // bk, "s": int(rows["compares"].sum())}


def topk_cascade(w) -> Cascade:
    """Pool, score, select, then softmax attention over the kept blocks.

    Qs[b,h,i,d] = sum_{m in block i} Q[b,h,m,d]       1 add per (m,d)                  (vector)
    Qp[b,h,i,d] = Qs / |block i|                       1 op per (i,d)                   (vector)
    Ks, Kp      the same for the u keys K[b,r,n,d] this call pools, into its ju key
                blocks (the others' means are cached: ``cached_keys``)                  (vector)
    A[b,h,i,j]  = Qp[b,h,i,d] * Kp[b,h/g,j,d]          2 FLOP per (i,j,d): every block pair,
                                                       causal ones masked after the GEMM (mma)
    I[b,h,i,:]  = top-k_j A over the candidates        ceil(log2(k_i+1)) compares per
                                                       candidate; s = their sum per (b,h)  (vector)
    S ... O     softmax attention over the (m, n) pairs of the kept blocks (masked steps)
    """
    return Cascade((
        Einsum("Qs", "Qs[b,h,i,d] = sum_m Q[b,h,m,d]", "vector", ("b", "h", "m", "d"), 1, False),
        Einsum("Qp", "Qp[b,h,i,d] = Qs[b,h,i,d] / |block i|", "vector", ("b", "h", "i", "d"), 1, False),
        Einsum("Ks", "Ks[b,r,j,d] += K[b,r,n,d] (new keys)", "vector", ("b", "r", "u", "d"), 1, False),
        Einsum("Kp", "Kp[b,r,j,d] = Ks[b,r,j,d] / |block j|", "vector", ("b", "r", "ju", "d"), 1, False),
        Einsum("A", "A[b,h,i,j] = Qp[b,h,i,d] * Kp[b,h/g,j,d]", "mma", ("b", "h", "i", "j", "d"), 2, False),
        Einsum("I", "I[b,h,i,:] = top-k_j A[b,h,i,j]", "vector", ("b", "h", "s"), 1, False),
    ) + softmax_attention_cascade().steps)


def topk_allowed_pairs(w) -> int:
    """Allowed (m, n) pairs per (b, h) of the routed mask (``topk_rows``)."""
    density, bq, bk, causal = _topk_args(w)
    return int(topk_rows(w.seq_q, w.seq_kv, bq, bk, density, causal)["allowed"].sum())


def _block_means(x: np.ndarray, block: int) -> np.ndarray:
    """[..., L, D] -> [..., ceil(L/block), D]: the mean of each block of positions (the last ragged)."""
    L = x.shape[-2]
    return np.stack([x[..., s:s + block, :].mean(axis=-2) for s in range(0, L, block)], axis=-2)


def topk_route_reference(q, k, density, block_q, block_k, causal=False) -> np.ndarray:
    """The routed element mask [B, H, M, N], block by block.

    For query block i and head h: pooled means qp_i, kp_j; the candidate key blocks (some
    allowed element); the partial candidates (some element masked by causality) are kept
    first, lowest key index first, then the full ones with the highest scores qp_i . kp_j
    (ties: lower index), keep_count(candidates, density) blocks in all. Within the kept blocks
    the causal mask still applies.
    """
    q, k = np.asarray(q, dtype=np.float64), np.asarray(k, dtype=np.float64)
    B, H, M, _ = q.shape
    G, N = H // k.shape[1], k.shape[2]
    base = _base_mask(M, N, causal)
    mask = np.zeros((B, H, M, N), dtype=bool)
    for b in range(B):
        for h in range(H):
            qp, kp = _block_means(q[b, h], block_q), _block_means(k[b, h // G], block_k)  # [nqb, D], [nkb, D]
            for i, r0 in enumerate(range(0, M, block_q)):
                rows = base[r0:r0 + block_q]
                blocks = [(j, rows[:, c0:c0 + block_k]) for j, c0 in enumerate(range(0, N, block_k))]
                partial = [j for j, t in blocks if t.any() and not t.all()]
                full = [j for j, t in blocks if t.all()]
                kk = keep_count(len(partial) + len(full), density)
                by_score = sorted(full, key=lambda j: (-float(qp[i] @ kp[j]), j))
                for j in (partial + by_score)[:kk]:
                    mask[b, h, r0:r0 + block_q, j * block_k:(j + 1) * block_k] = rows[:, j * block_k:(j + 1) * block_k]
    return mask


def topk_blocks_reference(q, k, v, density, block_q, block_k, causal=False, scale=None) -> np.ndarray:
    """Top-k block routing, then dense masked attention over the routed mask.  # o [B, H, M, F]"""
    mask = topk_route_reference(q, k, density, block_q, block_k, causal)
    return np.concatenate([attention_reference(q[b:b + 1], k[b:b + 1], v[b:b + 1], mask[b], scale)
                           for b in range(q.shape[0])])


def topk_route(q, k, density, block_q, block_k, causal=False) -> np.ndarray:
    """The cascade's routing steps, vectorized: the kept-block grid [B, H, ceil(M/bq), ceil(N/bk)].

    Qp, Kp by segment sums (np.add.reduceat) over blocks; A = Qp Kp^T for every block pair; each
    row's blocks ranked by (partial first, then score descending, then index) with np.lexsort;
    the first keep_count(candidates) of the ranking are kept."""
    q, k = np.asarray(q, dtype=np.float64), np.asarray(k, dtype=np.float64)
    B, H, M, _ = q.shape
    G, N = H // k.shape[1], k.shape[2]
    qs, ks = np.arange(0, M, block_q), np.arange(0, N, block_k)
    qn, kn = np.diff(np.append(qs, M)), np.diff(np.append(ks, N))  # block sizes
    qp = np.add.reduceat(q, qs, axis=2) / qn[:, None]  # [B, H, nqb, D]
    kp = np.repeat(np.add.reduceat(k, ks, axis=2) / kn[:, None], G, axis=1)  # [B, H, nkb, D]
    a = np.einsum("bhid,bhjd->bhij", qp, kp)  # [B, H, nqb, nkb]
    per_tile = np.add.reduceat(np.add.reduceat(_base_mask(M, N, causal).astype(np.int64), qs, 0), ks, 1)
    sizes = qn[:, None] * kn[None, :]
    cand, full = per_tile > 0, per_tile == sizes  # [nqb, nkb]
    kind = np.where(cand & ~full, 0, np.where(full, 1, 2))  # partial, full, not a candidate
    sec = np.where(kind == 1, -a, 0.0)  # partial blocks: by index only
    idx = np.broadcast_to(np.arange(len(ks)), a.shape)
    order = np.lexsort((idx, sec, np.broadcast_to(kind, a.shape)))  # [B, H, nqb, nkb]
    rank = np.argsort(order, axis=-1)
    keep = np.array([keep_count(int(c), density) for c in cand.sum(axis=1)])  # [nqb]
    return rank < keep[:, None]


def topk_blocks_tiled(q, k, v, density, block_q, block_k, causal=False, scale=None):
    """The executable cascade: route (``topk_route``), then FlashAttention tile by tile over the
    routed mask at block_q x block_k tiles. Returns (o [B, H, M, F], stats summed over B and H)."""
    B, H, M, _ = q.shape
    N = k.shape[2]
    grid = topk_route(q, k, density, block_q, block_k, causal)
    qb, kb = np.arange(M) // block_q, np.arange(N) // block_k
    mask = grid[:, :, qb[:, None], kb[None, :]] & _base_mask(M, N, causal)  # [B, H, M, N]
    outs, total = [], {}
    for b in range(B):
        o, st = flash_forward_tiled(q[b:b + 1], k[b:b + 1], v[b:b + 1], mask[b], block_q, block_k, scale)
        outs.append(o)
        for key, val in st.items():
            if key != "per_row_tiles":
                total[key] = total.get(key, 0) + val
    return np.concatenate(outs), total


def _check_topk(w) -> list:
    return _needs_full_or_causal(w, "topk_blocks")


# ============================================================================== routing_clusters

ROUTING_PARAMS = (
    Field("clusters", "int", required=False, default=64, min=1, help="C: centroids per KV head"),
    Field("top_clusters", "int", required=False, default=1, min=1, help="clusters each query attends"),
    Field("iters", "int", required=False, default=0, min=0,
          help="k-means iterations on the keys done online; 0 = centroids given (as Squeezed Attention's "
               "offline centroids)"),
)


def routing_groups(w) -> tuple[int, int, int]:
    """(groups, queries per group, keys per group) per (b, h) under balanced clusters.

    Each cluster holds ceil(N / C) keys (Routing Transformer makes clusters equal: each
    centroid takes its N / C nearest tokens). The M x t (query, cluster) pairs fill
    min(C, M t) cluster groups of ceil(M t / groups) queries: prefill C groups of M t / C
    queries, a decode step (M t < C) t groups of one query."""
    M, N = w.seq_q, w.seq_kv
    C, t = w.param("clusters"), w.param("top_clusters")
    groups = min(C, M * t)
    return groups, -(-M * t // groups), -(-N // C)


def _pairs(M: int, N: int, causal: bool) -> int:
    """Allowed pairs of an M x N full or (bottom-right aligned) causal mask, row by row."""
    if not causal:
        return M * N
    return int(np.clip(np.arange(M) + (N - M) + 1, 0, N).sum())


def routing_allowed_pairs(w) -> int:
    """Allowed (m, n) pairs per (b, h) under balanced clusters: groups x pairs of one group
    (causal within a group: queries and keys sorted by position inside their cluster)."""
    groups, qg, kg = routing_groups(w)
    return groups * _pairs(qg, kg, w.mask.is_causal)


def routing_new_keys(w) -> int:
    """Keys this call assigns to clusters: all of them when it runs k-means (assignments change),
    else those not already in the cluster-sorted cache (``cached_keys``)."""
    return w.seq_kv if w.param("iters") else w.seq_kv - cached_keys(w)


def routing_extents(w) -> dict:
    """The softmax ranks, r (KV heads), c (clusters) and u (keys assigned by this call)."""
    return {**w.extents(), "r": w.kv_heads, "c": w.param("clusters"), "u": routing_new_keys(w)}


def routing_cascade(w) -> Cascade:
    """Assign, (cluster), then softmax attention within clusters.

    Sq[b,h,m,c] = Q[b,h,m,d] * Cen[b,h/g,c,d]          2 FLOP per (m,c,d)            (mma)
    Tq[b,h,m,:] = top-t_c Sq[b,h,m,c]                  ceil(log2(t+1)) per (m,c)     (vector)
    Kk, Kc, Ks, Cen   k-means, iters times over all N keys: scores Kk = K Cen^T (2 FLOP per
                (n,c,d), mma), argmax Kc (1 per (n,c)), member sums Ks (1 per (n,d)),
                means Cen = Ks / |c| (1 per (c,d))                                   (vector)
    Sk[b,r,u,c] = K[b,r,u,d] * Cen[b,r,c,d]            2 FLOP per (u,c,d): the u keys this
                                                       call assigns (``routing_new_keys``) (mma)
    Ak[b,r,u]   = argmax_c Sk[b,r,u,c]                 1 per (u,c)                   (vector)
    S ... O     softmax attention over the pairs (m, n) with Ak[n] in Tq[m] (masked steps;
                the count assumes balanced clusters, ``routing_allowed_pairs``)
    """
    t, it = w.param("top_clusters"), w.param("iters")
    return Cascade((
        Einsum("Sq", "Sq[b,h,m,c] = Q[b,h,m,d] * Cen[b,h/g,c,d]", "mma", ("b", "h", "m", "c", "d"), 2, False),
        Einsum("Tq", "Tq[b,h,m,:] = top-t_c Sq[b,h,m,c]", "vector", ("b", "h", "m", "c"),
               math.ceil(math.log2(t + 1)), False),
        Einsum("Kk", "Kk[b,r,n,c] = K[b,r,n,d] * Cen[b,r,c,d]  (x iters)", "mma", ("b", "r", "n", "c", "d"),
               2 * it, False),
        Einsum("Kc", "Kc[b,r,n] = argmax_c Kk[b,r,n,c]  (x iters)", "vector", ("b", "r", "n", "c"), it, False),
        Einsum("Ks", "Ks[b,r,c,d] = sum_{n in c} K[b,r,n,d]  (x iters)", "vector", ("b", "r", "n", "d"), it, False),
        Einsum("Cen", "Cen[b,r,c,d] = Ks[b,r,c,d] / |c|  (x iters)", "vector", ("b", "r", "c", "d"), it, False),
        Einsum("Sk", "Sk[b,r,u,c] = K[b,r,u,d] * Cen[b,r,c,d]", "mma", ("b", "r", "u", "c", "d"), 2, False),
        Einsum("Ak", "Ak[b,r,u] = argmax_c Sk[b,r,u,c]", "vector", ("b", "r", "u", "c"), 1, False),
    ) + softmax_attention_cascade().steps)


def kmeans_keys(k, centroids, iters: int) -> np.ndarray:
    """Centroids [B, Hkv, C, D] after `iters` Lloyd iterations on the keys of each (b, KV head),
    from `centroids` [Hkv, C, D]: assign each key to the centroid of largest dot product, move
    each centroid to the mean of its keys (a cluster left without keys keeps its centroid)."""
    k = np.asarray(k, dtype=np.float64)
    B, Hkv = k.shape[:2]
    out = np.repeat(np.asarray(centroids, dtype=np.float64)[None], B, axis=0)
    for b in range(B):
        for r in range(Hkv):
            for _ in range(iters):
                assign = np.argmax(k[b, r] @ out[b, r].T, axis=1)  # [N]
                for c in range(out.shape[2]):
                    members = k[b, r][assign == c]
                    if len(members):
                        out[b, r, c] = members.mean(axis=0)
    return out


def routing_mask_reference(q, k, centroids, top_clusters=1, iters=0, causal=False) -> np.ndarray:
    """[B, H, M, N]: query m of head h sees key n iff n's cluster (argmax over the centroids of
    KV head h // G) is among m's top_clusters clusters (largest dot products; ties: lower index);
    causal masks still apply."""
    q, k = np.asarray(q, dtype=np.float64), np.asarray(k, dtype=np.float64)
    B, H, M, _ = q.shape
    G, N = H // k.shape[1], k.shape[2]
    cen = kmeans_keys(k, centroids, iters)  # [B, Hkv, C, D]
    base = _base_mask(M, N, causal)
    mask = np.zeros((B, H, M, N), dtype=bool)
    for b in range(B):
        for h in range(H):
            c = cen[b, h // G]
            key_cluster = np.argmax(k[b, h // G] @ c.T, axis=1)  # [N]
            for m in range(M):
                top = np.argsort(-(q[b, h, m] @ c.T), kind="stable")[:top_clusters]
                mask[b, h, m] = np.isin(key_cluster, top) & base[m]
    return mask


def routing_clusters_reference(q, k, v, centroids, top_clusters=1, iters=0, causal=False, scale=None):
    """Cluster routing, then dense masked attention.  # o [B, H, M, F]"""
    mask = routing_mask_reference(q, k, centroids, top_clusters, iters, causal)
    return np.concatenate([attention_reference(q[b:b + 1], k[b:b + 1], v[b:b + 1], mask[b], scale)
                           for b in range(q.shape[0])])


def routing_clusters_sorted(q, k, v, centroids, top_clusters=1, iters=0, causal=False, scale=None):
    """The executable cascade: assign, gather each cluster's queries and keys (sorted by
    position), attend within the cluster, then merge a query's top_clusters partial outputs by
    their log-sum-exps (the clusters' key sets are disjoint, so the merge is exact).

    Returns (o [B, H, M, F], pairs): pairs = sum over clusters of |queries| x |keys| allowed.
    """
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    B, H, M, D = q.shape
    G, N, F = H // k.shape[1], k.shape[2], v.shape[-1]
    sc, off = (1.0 / math.sqrt(D) if scale is None else float(scale)), N - M
    cen = kmeans_keys(k, centroids, iters)  # [B, Hkv, C, D]
    cen_h = np.repeat(cen, G, axis=1)  # [B, H, C, D]
    key_cluster = np.argmax(np.einsum("brnd,brcd->brnc", k, cen), axis=-1)  # [B, Hkv, N]
    top = np.argsort(-np.einsum("bhmd,bhcd->bhmc", q, cen_h), axis=-1, kind="stable")[..., :top_clusters]
    o = np.zeros((B, H, M, F))
    pairs = 0
    for b in range(B):
        for h in range(H):
            run_m = np.full(M, -np.inf)  # running log-sum-exp max, sum and output of each query
            run_l = np.zeros(M)
            acc = np.zeros((M, F))
            for c in range(cen.shape[2]):
                qi = np.nonzero((top[b, h] == c).any(axis=-1))[0]  # gather: the cluster's queries
                kj = np.nonzero(key_cluster[b, h // G] == c)[0]  # and keys, in position order
                if not len(qi) or not len(kj):
                    continue
                ok = kj[None, :] <= qi[:, None] + off if causal else np.ones((len(qi), len(kj)), dtype=bool)
                pairs += int(ok.sum())
                s = np.where(ok, q[b, h, qi] @ k[b, h // G, kj].T * sc, -np.inf)  # [|qi|, |kj|]
                mx = s.max(axis=1)
                seen = np.isfinite(mx)
                qi, s, mx = qi[seen], s[seen], mx[seen]
                p = np.exp(s - mx[:, None])
                lse = mx + np.log(p.sum(axis=1))
                o_c = p @ v[b, h // G, kj] / p.sum(axis=1)[:, None]  # normalized partial output
                new = np.maximum(run_m[qi], lse)
                a_old, a_new = np.exp(run_m[qi] - new), np.exp(lse - new)
                acc[qi] = acc[qi] * a_old[:, None] + o_c * a_new[:, None]
                run_l[qi] = run_l[qi] * a_old + a_new
                run_m[qi] = new
            o[b, h] = np.divide(acc, run_l[:, None], out=np.zeros_like(acc), where=run_l[:, None] > 0)
    return o, pairs


def _check_routing(w) -> list:
    probs = _needs_full_or_causal(w, "routing_clusters")
    C, t = w.param("clusters"), w.param("top_clusters")
    if t > C:
        probs.append(("params.top_clusters", f"top_clusters ({t}) cannot exceed clusters ({C})"))
    if C > w.seq_kv:
        probs.append(("params.clusters", f"clusters ({C}) cannot exceed seq_kv ({w.seq_kv}): a cluster "
                                         "would hold no key"))
    return probs


# ============================================================================== head_mix

HEAD_MIX_PARAMS = (
    # DuoAttention's quick start sparsifies to half retrieval heads (sparsity=0.5), its 50% GQA setting
    Field("full_heads", "float", required=False, default=0.5, min=0,
          help="KV heads with full attention: a fraction of the KV heads when below 1 (0.5 = half), "
               "else a whole number of KV heads (1 = one head)"),
    # DuoAttention streaming heads: --recent_size 256, --sink_size 64 (mit-han-lab/duo-attention
    # duo_attn/utils.py defaults; its Llama-3-8B pattern uses sink 128)
    Field("window", "int", required=False, default=256, min=1, help="recent keys a streaming head sees"),
    Field("sink", "int", required=False, default=64, min=0, help="first keys a streaming head sees"),
)


def full_kv_heads(w) -> int:
    """KV heads that keep full attention (DuoAttention decides per KV head, as its GQA patterns
    do): floor(fraction x Hkv + 0.5) for a fraction, else the count. Heads 0..n-1 are full."""
    v = w.param("full_heads")
    return math.floor(v * w.kv_heads + 0.5) if v < 1 else int(v)


def head_mix_mask(H: int, Hkv: int, M: int, N: int, n_full: int, window: int, sink: int) -> np.ndarray:
    """[H, M, N]: query heads of KV heads 0..n_full-1 causal, the others a causal sliding window of
    `window` recent keys plus `sink` first keys (``masks.window_mask``)."""
    G = H // Hkv
    full, stream = causal_mask(M, N), window_mask(M, N, window, sink, causal=True)
    return np.stack([full if h // G < n_full else stream for h in range(H)])


def head_mix_reference(q, k, v, n_full, window, sink, scale=None) -> np.ndarray:
    """Dense attention with one mask per head.  # o [B, H, M, F]"""
    H, Hkv, M, N = q.shape[1], k.shape[1], q.shape[2], k.shape[2]
    return attention_reference(q, k, v, head_mix_mask(H, Hkv, M, N, n_full, window, sink), scale)


def _row_keys(M: int, N: int, window: int | None, sink: int = 0) -> np.ndarray:
    """Keys each query row sees, [M]: causal (window None) or a causal window + sinks."""
    p = np.arange(M) + (N - M)
    hi = np.minimum(p, N - 1)
    if window is None:
        return np.where(p >= 0, hi + 1, 0)
    lo = np.maximum(0, p - window + 1)
    return np.where(p >= 0, hi - lo + 1 + np.minimum(sink, lo), 0)


def head_mix_allowed_pairs(w) -> float:
    """Allowed (m, n) pairs per (b, h), averaged over the heads (Cascade.ops' convention)."""
    n_full = full_kv_heads(w)
    full = int(_row_keys(w.seq_q, w.seq_kv, None).sum())
    stream = int(_row_keys(w.seq_q, w.seq_kv, w.param("window"), w.param("sink")).sum())
    return (n_full * full + (w.kv_heads - n_full) * stream) / w.kv_heads


def _check_head_mix(w) -> list:
    probs = []
    if not (w.mask.kind == "causal" or (w.mask.kind == "full" and w.seq_q == 1)):
        probs.append(("mask.kind", f"head_mix needs a causal mask (its streaming heads are causal sliding "
                                   f"windows), or seq_q = 1; got {w.mask.kind!r} with seq_q={w.seq_q}"))
    v = w.param("full_heads")
    if v >= 1 and (v != int(v) or v > w.kv_heads):
        probs.append(("params.full_heads", f"expected a fraction below 1 or a whole number of KV heads "
                                           f"0..{w.kv_heads}, got {v:g}"))
    return probs


def extents(w) -> dict:
    """The rank extents of w's cascade (each family's own ranks)."""
    return {"topk_blocks": topk_extents, "routing_clusters": routing_extents,
            "head_mix": lambda x: x.extents()}[w.family](w)


def allowed_pairs(w):
    """Allowed (m, n) pairs per (b, h) of the masked steps of w's cascade."""
    return {"topk_blocks": topk_allowed_pairs, "routing_clusters": routing_allowed_pairs,
            "head_mix": head_mix_allowed_pairs}[w.family](w)


FAMILIES = {
    "topk_blocks": Family("topk_blocks", "top-k block routing on pooled blocks (BiFormer, HiP, SeerAttention)",
                          TOPK_PARAMS, topk_cascade, _check_topk),
    "routing_clusters": Family("routing_clusters",
                               "clustering-based routing (Routing Transformer, Squeezed Attention)",
                               ROUTING_PARAMS, routing_cascade, _check_routing),
    "head_mix": Family("head_mix", "some KV heads full, the others sink + recent window (DuoAttention, "
                                   "RazorAttention, MoA)", HEAD_MIX_PARAMS, lambda w: softmax_attention_cascade(),
                       _check_head_mix),
}
