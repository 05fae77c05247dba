"""Obvious numpy references for attention, and a tile-by-tile FlashAttention replay.

Layouts (G query heads share one KV head; Hkv = H // G; query head h uses KV head h // G):
    q [B, H, M, D]    k [B, Hkv, N, D]    v [B, Hkv, N, F]    o [B, H, M, F]

A mask is bool, True = allowed: [M, N] (the same for every b, h) or [H, M, N] (one per
query head, e.g. head mixes). ``None`` means full attention. Rows that allow no key
produce an output row of zeros (not NaN) everywhere in this module.

All math is float64 and every function returns float64 outputs.
"""
from __future__ import annotations

import math

import numpy as np


def _shapes(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> tuple[int, ...]:
    """Check layouts; return (B, H, Hkv, G, M, N, D, F)."""
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"q, k, v must be 4-D, got {q.shape}, {k.shape}, {v.shape}")
    B, H, M, D = q.shape
    Bk, Hkv, N, Dk = k.shape
    Bv, Hv, Nv, F = v.shape
    if Bk != B or Bv != B:
        raise ValueError(f"batch mismatch: q {B}, k {Bk}, v {Bv}")
    if Dk != D:
        raise ValueError(f"head dim mismatch: q has D={D}, k has D={Dk}")
    if Hv != Hkv or Nv != N:
        raise ValueError(f"k {k.shape} and v {v.shape} must agree on Hkv and N")
    if Hkv < 1 or H % Hkv != 0:
        raise ValueError(f"H={H} must be a multiple of Hkv={Hkv} (GQA groups)")
    return B, H, Hkv, H // Hkv, M, N, D, F


def _expand_kv(x: np.ndarray, G: int) -> np.ndarray:
    """[B, Hkv, N, *] -> [B, H, N, *]: query head h reads KV head h // G."""
    return np.repeat(np.asarray(x, dtype=np.float64), G, axis=1)


def _mask3(mask: np.ndarray | None, H: int, M: int, N: int) -> np.ndarray:
    """Normalise a mask to [1 or H, M, N] bool."""
    if mask is None:
        return np.ones((1, M, N), dtype=bool)
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise ValueError(f"mask must be bool (True = allowed), got dtype {mask.dtype}")
    if mask.shape == (M, N):
        return mask[None]
    if mask.shape == (H, M, N):
        return mask
    raise ValueError(f"mask must have shape {(M, N)} or {(H, M, N)}, got {mask.shape}")


def _scale(scale: float | None, D: int) -> float:
    return 1.0 / math.sqrt(D) if scale is None else float(scale)


def _masked_softmax(s: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Row softmax of s over allowed entries; all-masked rows give all-zero rows."""
    s = np.where(mask, s, -np.inf)  # [B, H, M, N]
    m = s.max(axis=-1, keepdims=True)  # [B, H, M, 1]
    m = np.where(np.isneginf(m), 0.0, m)  # empty row: avoid -inf - -inf
    p = np.exp(s - m)  # [B, H, M, N], masked -> 0
    l = p.sum(axis=-1, keepdims=True)  # [B, H, M, 1]
    return np.divide(p, l, out=np.zeros_like(p), where=l > 0)


def attention_reference(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    mask: np.ndarray | None = None,
    scale: float | None = None,
) -> np.ndarray:
    """Dense masked softmax attention, float64: o = softmax(q k^T * scale, masked) v.

    scale defaults to 1/sqrt(D). Rows with no allowed key give zeros.  # o [B, H, M, F]
    """
    B, H, Hkv, G, M, N, D, F = _shapes(q, k, v)
    mask = _mask3(mask, H, M, N)[None]  # [1, 1|H, M, N]
    q = np.asarray(q, dtype=np.float64)
    k, v = _expand_kv(k, G), _expand_kv(v, G)  # [B, H, N, D], [B, H, N, F]
    s = np.einsum("bhmd,bhnd->bhmn", q, k) * _scale(scale, D)  # [B, H, M, N]
    p = _masked_softmax(s, mask)  # [B, H, M, N]
    return np.einsum("bhmn,bhnf->bhmf", p, v)  # [B, H, M, F]


def unfused_reference(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    mask: np.ndarray | None = None,
    scale: float | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The three-kernel (unfused) attention; returns (o, {"S": S, "P": P}).

    S = q k^T * scale   [B, H, M, N]  unmasked scores (written to memory by kernel 1)
    P = softmax(S)      [B, H, M, N]  masked entries are 0 (written by kernel 2)
    O = P v             [B, H, M, F]
    """
    B, H, Hkv, G, M, N, D, F = _shapes(q, k, v)
    mask = _mask3(mask, H, M, N)[None]  # [1, 1|H, M, N]
    q = np.asarray(q, dtype=np.float64)
    k, v = _expand_kv(k, G), _expand_kv(v, G)
    S = np.einsum("bhmd,bhnd->bhmn", q, k) * _scale(scale, D)  # kernel 1: write M*N
    P = _masked_softmax(S, mask)  # kernel 2: read M*N, write M*N
    O = np.einsum("bhmn,bhnf->bhmf", P, v)  # kernel 3: read M*N
    return O, {"S": S, "P": P}


def _flash_heads(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    mask: np.ndarray,
    block_m: int,
    block_n: int,
    scale: float,
) -> tuple[np.ndarray, dict]:
    """Online-softmax tiles for a stack of heads sharing one [M, N] mask.

    q [..., M, D], k [..., N, D], v [..., N, F] (leading dims broadcast as one batch).
    Returns o [..., M, F] and the tile counts for ONE head.
    """
    M, N = mask.shape
    Br, Bc = block_m, block_n
    D, F = q.shape[-1], v.shape[-1]
    o = np.zeros(q.shape[:-1] + (F,))  # [..., M, F]
    stats = dict(tiles_visited=0, tiles_full=0, tiles_partial=0, elements_allowed=0, per_row_tiles=[])
    for i0 in range(0, M, Br):
        i1 = min(i0 + Br, M)
        q_i = q[..., i0:i1, :]  # read Br*D elements of Q
        m_i = np.full(q_i.shape[:-1] + (1,), -np.inf)  # [..., Br, 1] running max
        l_i = np.zeros(q_i.shape[:-1] + (1,))  # [..., Br, 1] running sum
        acc = np.zeros(q_i.shape[:-1] + (F,))  # [..., Br, F] unnormalised output
        row_tiles = 0
        for j0 in range(0, N, Bc):
            j1 = min(j0 + Bc, N)
            tile = mask[i0:i1, j0:j1]  # [Br, Bc]
            n_ok = int(tile.sum())
            if n_ok == 0:
                continue  # empty tile: the kernel skips it, no K/V traffic
            row_tiles += 1
            stats["elements_allowed"] += n_ok
            stats["tiles_full" if n_ok == tile.size else "tiles_partial"] += 1
            k_j = k[..., j0:j1, :]  # read Bc*D elements of K
            v_j = v[..., j0:j1, :]  # read Bc*F elements of V
            s = np.einsum("...md,...nd->...mn", q_i, k_j) * scale  # [..., Br, Bc]  Br*Bc*D MACs
            s = np.where(tile, s, -np.inf)  # masked -> -inf
            m_new = np.maximum(m_i, s.max(axis=-1, keepdims=True))  # [..., Br, 1]
            m_safe = np.where(np.isneginf(m_new), 0.0, m_new)  # row empty so far: -inf - -inf guard
            p = np.exp(s - m_safe)  # [..., Br, Bc]
            alpha = np.exp(m_i - m_safe)  # [..., Br, 1] rescale of old state (0 when m_i = -inf)
            l_i = alpha * l_i + p.sum(axis=-1, keepdims=True)  # [..., Br, 1]
            acc = alpha * acc + np.einsum("...mn,...nf->...mf", p, v_j)  # [..., Br, F]  Br*Bc*F MACs
            m_i = m_new
        stats["per_row_tiles"].append(row_tiles)
        stats["tiles_visited"] += row_tiles
        # write Br*F elements of O; rows that saw no key stay 0
        o[..., i0:i1, :] = np.divide(acc, l_i, out=np.zeros_like(acc), where=l_i > 0)
    return o, stats


def flash_forward_tiled(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    mask: np.ndarray | None,
    block_m: int,
    block_n: int,
    scale: float | None = None,
) -> tuple[np.ndarray, dict]:
    """FlashAttention forward, replayed tile by tile with the online softmax.

    For each query tile i (block_m rows) and each key tile j (block_n keys) holding at
    least one allowed element (empty tiles are skipped, as kernels do):

        S     = Q_i K_j^T * scale, masked -> -inf
        m_new = max(m_i, rowmax(S))
        P     = exp(S - m_new)
        l_i   = exp(m_i - m_new) * l_i + rowsum(P)
        acc   = exp(m_i - m_new) * acc + P V_j
        m_i   = m_new
    and finally O_i = acc / l_i (0 for rows with no allowed key).

    Tiles over the grid, causal M=N=8, 4x4 tiles:   [P] = partial, [F] = full, [ ] = skipped
        [P][ ]
        [F][P]

    Returns (o [B, H, M, F] float64, stats). stats holds exact ints:
      tiles_visited   non-empty tiles, summed over query tiles
      tiles_full      tiles where every in-bounds element is allowed (ragged edge
                      tiles count as full when all their real elements are allowed)
      tiles_partial   non-empty tiles with at least one masked element
      elements_allowed  allowed (m, n) pairs
      per_row_tiles   list: non-empty tiles in each query-tile row
    With an [M, N] mask the counts are per (b, h). With an [H, M, N] mask they are
    summed over the H heads (per b), and per_row_tiles sums the heads element-wise;
    in both cases elements_allowed == mask.sum().
    """
    B, H, Hkv, G, M, N, D, F = _shapes(q, k, v)
    if int(block_m) < 1 or int(block_n) < 1:
        raise ValueError(f"block_m and block_n must be >= 1, got {block_m}, {block_n}")
    mask3 = _mask3(mask, H, M, N)  # [1|H, M, N]
    sc = _scale(scale, D)
    q = np.asarray(q, dtype=np.float64)
    k, v = _expand_kv(k, G), _expand_kv(v, G)  # [B, H, N, D], [B, H, N, F]
    if mask3.shape[0] == 1:
        return _flash_heads(q, k, v, mask3[0], block_m, block_n, sc)
    o = np.zeros((B, H, M, F))
    total: dict = {}
    for h in range(H):
        o[:, h], st = _flash_heads(q[:, h], k[:, h], v[:, h], mask3[h], block_m, block_n, sc)
        for key, val in st.items():
            if key == "per_row_tiles":
                total[key] = [a + b for a, b in zip(total.get(key, [0] * len(val)), val)]
            else:
                total[key] = total.get(key, 0) + val
    return o, total


def flash_decode_split_kv(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    num_splits: int,
    mask: np.ndarray | None = None,
    scale: float | None = None,
) -> np.ndarray:
    """Flash-decoding: split the keys into ``num_splits`` chunks, then combine.

    Chunk s covers keys [s*c, min((s+1)*c, N)) with c = ceil(N / num_splits), so the
    last chunks may be shorter or empty (e.g. num_splits > N). Each chunk yields a
    normalised partial output o_s and log-sum-exp lse_s (-inf when it has no allowed
    key); the combine pass is

        lse_max = max_s lse_s
        w_s     = exp(lse_s - lse_max)
        o       = sum_s w_s * o_s / sum_s w_s

        keys:  |--- split 0 ---|--- split 1 ---|-- split 2 --|
                 (o_0, lse_0)    (o_1, lse_1)    (o_2, lse_2)  ->  combine  ->  o

    Works for any M >= 1 (decode is usually M = 1).  # o [B, H, M, F]
    """
    B, H, Hkv, G, M, N, D, F = _shapes(q, k, v)
    if int(num_splits) < 1:
        raise ValueError(f"num_splits must be >= 1, got {num_splits}")
    mask = _mask3(mask, H, M, N)[None]  # [1, 1|H, M, N]
    q = np.asarray(q, dtype=np.float64)
    k, v = _expand_kv(k, G), _expand_kv(v, G)
    sc = _scale(scale, D)
    c = math.ceil(N / num_splits)
    o_parts, lse_parts = [], []
    for s_idx in range(num_splits):
        j0, j1 = min(s_idx * c, N), min((s_idx + 1) * c, N)
        s = np.einsum("bhmd,bhnd->bhmn", q, k[:, :, j0:j1]) * sc  # [B, H, M, c]
        s = np.where(mask[..., j0:j1], s, -np.inf)
        m = s.max(axis=-1, keepdims=True, initial=-np.inf)  # [B, H, M, 1]; empty chunk -> -inf
        m_safe = np.where(np.isneginf(m), 0.0, m)
        p = np.exp(s - m_safe)  # [B, H, M, c]
        l = p.sum(axis=-1, keepdims=True)  # [B, H, M, 1]
        acc = np.einsum("bhmn,bhnf->bhmf", p, v[:, :, j0:j1])  # [B, H, M, F]
        o_parts.append(np.divide(acc, l, out=np.zeros_like(acc), where=l > 0))
        with np.errstate(divide="ignore"):
            lse_parts.append(m_safe + np.log(l))  # log(0) = -inf for empty splits
    lse = np.stack(lse_parts)  # [S, B, H, M, 1]
    o_s = np.stack(o_parts)  # [S, B, H, M, F]
    lse_max = lse.max(axis=0)  # [B, H, M, 1]
    lse_max = np.where(np.isneginf(lse_max), 0.0, lse_max)  # row with no key anywhere
    w = np.exp(lse - lse_max)  # [S, B, H, M, 1]
    den = w.sum(axis=0)  # [B, H, M, 1]
    num = (w * o_s).sum(axis=0)  # [B, H, M, F]
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)
