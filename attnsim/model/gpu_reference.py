"""Slow, obvious twins of the closed forms in ``attnsim.model.gpu_kernel`` (tests assert they agree).

Plain Python and numpy, no numba. Each mask function builds the element-level boolean mask
with ``attnsim.workload.masks`` and counts from it directly, so it shares no arithmetic with
the kernel's closed forms. Signatures and return values follow the kernel function each one
twins (``foo_ref`` twins ``gpu_kernel.foo``); counts come back as Python numbers.

Mask kinds use the kernel's codes: 0 full, 1 causal, 2 sliding window (+ sinks), 3 block-sparse.
"""
from __future__ import annotations

import math

import numpy as np

from attnsim.workload.masks import causal_mask, full_mask, window_mask

MK_FULL, MK_CAUSAL, MK_WINDOW, MK_BLOCK = 0, 1, 2, 3


def element_mask(kind, m_len, n_len, window, sink):
    """The [M, N] boolean mask of a full (0), causal (1) or window (2) mask kind."""
    if kind == MK_FULL:
        return full_mask(m_len, n_len)
    if kind == MK_CAUSAL:
        return causal_mask(m_len, n_len)
    if kind == MK_WINDOW:
        return window_mask(m_len, n_len, window, sink, causal=True)
    raise ValueError(f"element_mask: no element mask for kind {kind}")


def key_tiles(mask_rows, bc):
    """[(any allowed, all allowed)] for each key tile of width bc (the last tile may be ragged)."""
    n_len = mask_rows.shape[1]
    return [(bool(mask_rows[:, c0:c0 + bc].any()), bool(mask_rows[:, c0:c0 + bc].all()))
            for c0 in range(0, n_len, bc)]


def sum_clamped_ref(a, b, c, lo, hi):
    """sum over integers m in [a, b] of clamp(m + c, lo, hi); 0 when a > b (needs lo <= hi)."""
    total = 0.0
    for m in range(a, b + 1):
        total += min(max(m + c, lo), hi)
    return total


def row_tiles_ref(kind, r0, r1, m_len, n_len, bc, window, sink):
    """(non-empty key tiles, full key tiles) over query rows r0..r1, counted from the mask."""
    tiles = key_tiles(element_mask(kind, m_len, n_len, window, sink)[r0:r1 + 1], bc)
    return sum(any_ for any_, _ in tiles), sum(all_ for _, all_ in tiles)


def allowed_in_rows_ref(kind, r0, r1, m_len, n_len, window, sink):
    """Allowed (m, n) pairs in query rows r0..r1: the number of True entries."""
    return float(element_mask(kind, m_len, n_len, window, sink)[r0:r1 + 1].sum())


def block_sparse_order(tiles):
    """The order in which a block-sparse row keeps its non-empty key tiles (indices): the partial
    tiles first, lowest key index first, then the full tiles from the highest key index down."""
    partial = [j for j, (any_, all_) in enumerate(tiles) if any_ and not all_]
    full = [j for j, (any_, all_) in enumerate(tiles) if all_]
    return partial + full[::-1]


def block_sparse_keep(cnt, full, density):
    """(kept, kept full) tiles of a query-tile row with `cnt` non-empty tiles, `full` of them full:
    keep k = min(cnt, max(1, floor(density * cnt + 0.5))), the partial tiles first."""
    keep = min(cnt, max(1, math.floor(density * cnt + 0.5)))
    partial_kept = min(keep, cnt - full)
    return keep, keep - partial_kept


def mask_tile_stats_ref(kind, m_len, n_len, bp, bc, window, sink, density, causal):
    """(sum, max, min of non-empty tiles per query-tile row; full tiles; rows; allowed pairs).

    Query-tile row i covers rows i*bp .. min(M, (i+1)*bp) - 1. Block-sparse (kind 3) takes
    the causal (causal=True) or full mask as its base, keeps `block_sparse_keep` of each
    row's non-empty tiles in `block_sparse_order` and counts the allowed pairs of the kept
    tiles, element by element.
    """
    base = (MK_CAUSAL if causal else MK_FULL) if kind == MK_BLOCK else kind
    mask = element_mask(base, m_len, n_len, window, sink)
    counts, fulls, allowed = [], [], 0.0
    for r0 in range(0, m_len, bp):
        rows = mask[r0:r0 + bp]
        tiles = key_tiles(rows, bc)
        cnt = sum(any_ for any_, _ in tiles)
        full = sum(all_ for _, all_ in tiles)
        alw = float(rows.sum())
        if kind == MK_BLOCK and cnt > 0:
            keep, full = block_sparse_keep(cnt, full, density)
            alw = float(sum(rows[:, j * bc:(j + 1) * bc].sum() for j in block_sparse_order(tiles)[:keep]))
            cnt = keep
        counts.append(cnt)
        fulls.append(full)
        allowed += alw
    return float(sum(counts)), float(max(counts)), float(min(counts)), float(sum(fulls)), len(counts), allowed


def greedy_makespan_ref(lengths, sms, k):
    """Makespan of equal-length CTAs (all of `lengths` must be equal, c SM-cycles each) on `sms`
    SMs holding up to `k` CTAs each, simulated CTA by CTA.

    What is simulated: there are sms*k slots; slot s belongs to SM s % sms. CTAs start in the
    given order, each in the lowest-numbered free slot. CTAs resident together on one SM share
    it equally, so j equal CTAs that start together on an SM all finish j*c later. With equal
    lengths every CTA of a batch of sms*k (a "wave") starts and ends together, so CTA i runs in
    wave i // (sms*k) on SM (i % (sms*k)) % sms: each wave fills the SMs round-robin. The
    simulation adds c of busy time to its SM's wave for each CTA; a wave lasts as long as its
    busiest SM; the makespan is the sum over waves. Unequal lengths are refused: there CTAs
    of one wave finish at different times and this wave picture no longer holds.
    """
    lengths = list(lengths)
    if any(c != lengths[0] for c in lengths):
        raise ValueError("greedy_makespan_ref simulates equal CTA lengths only")
    per_wave = sms * k
    busy = {}  # (wave, sm) -> SM-cycles of the CTAs resident on that SM in that wave
    for i, c in enumerate(lengths):
        wave, slot = divmod(i, per_wave)
        key = (wave, slot % sms)
        busy[key] = busy.get(key, 0.0) + c
    n_waves = -(-len(lengths) // per_wave)
    return sum(max(busy.get((w, s), 0.0) for s in range(sms)) for w in range(n_waves))


def visited_tiles(M, N, bp, bc, mask_kind, window, sink, density, causal):
    """Per query tile of bp rows, the key-tile indices a fused kernel visits (the mask is the same
    for every batch and head); a block-sparse row keeps the first tiles of block_sparse_order."""
    base = (MK_CAUSAL if causal else MK_FULL) if mask_kind == MK_BLOCK else mask_kind
    mask = element_mask(base, M, N, window, sink)
    out = []
    for r0 in range(0, M, bp):
        tiles = key_tiles(mask[r0:r0 + bp], bc)
        order = block_sparse_order(tiles)
        if mask_kind == MK_BLOCK and order:
            order = order[:block_sparse_keep(len(order), sum(all_ for _, all_ in tiles), density)[0]]
        out.append(order)
    return out


def fused_counts_ref(B, H, Hkv, M, N, D, F, bp, bc, qpc, split, mask_kind, window, sink, density, causal):
    """(n_ctas, visits, max CTA tiles, min CTA tiles) of a fused / split-KV grid, CTA by CTA.

    One CTA per (batch, head group of qpc query heads sharing a KV head, query tile of bp
    positions, split chunk); chunk s holds key tiles s*chunk .. (s+1)*chunk - 1 with
    chunk = ceil(ncol / split) (chunks past the last tile are launched but empty). A CTA
    visits the non-empty key tiles of its query tile that fall in its chunk; visits sums
    that over all CTAs. D and F do not change any count (kept for the kernel's argument
    list). Block-sparse rows keep `block_sparse_keep` tiles: their partial tiles first, then
    full tiles from the highest key index down. n_ctas and visits do not depend on which
    tiles a block-sparse row keeps; the per-CTA max / min do (they follow that choice).
    """
    assert H % Hkv == 0 and (H // Hkv) % qpc == 0, "qpc must divide the GQA group H / Hkv"
    chunk = math.ceil(math.ceil(N / bc) / split)  # key tiles per split
    visited = [set(v) for v in visited_tiles(M, N, bp, bc, mask_kind, window, sink, density, causal)]
    per_cta = []
    for _batch in range(B):
        for _kv_head in range(Hkv):
            for _group in range(H // Hkv // qpc):
                for tiles in visited:
                    for s in range(split):
                        per_cta.append(sum(1 for j in tiles if s * chunk <= j < (s + 1) * chunk))
    return len(per_cta), sum(per_cta), max(per_cta), min(per_cta)


def fused_kv_traffic_ref(B, H, Hkv, M, N, D, F, bp, bc, qpc, split, mask_kind, window, sink, density, causal,
                         k_bytes, v_bytes, dequant_ops, page=0, entry_bytes=4):
    """(K/V bytes read into SMs, block-table bytes read into SMs, dequantization ops) of a fused /
    split-KV grid, tile by tile and key by key.

    Every CTA of ``fused_counts_ref``'s grid loads each key tile it visits as bc key rows of D
    K elements at k_bytes and F V elements at v_bytes (the model charges full tiles, the ragged
    last one too), and dequantizes each of those D + F elements with dequant_ops vector ops.
    With a paged cache (page > 0) each visited tile also reads one entry_bytes block-table
    entry for every distinct page its bc key slots fall in.
    """
    chunk = math.ceil(math.ceil(N / bc) / split)  # key tiles per split
    visited = [sorted(v) for v in visited_tiles(M, N, bp, bc, mask_kind, window, sink, density, causal)]
    kv = idx = ops = 0.0
    for _cta in range(B * (H // qpc)):
        for tiles in visited:
            for s in range(split):
                for j in tiles:
                    if not s * chunk <= j < (s + 1) * chunk:
                        continue
                    for _key in range(bc):
                        kv += D * k_bytes + F * v_bytes
                        ops += (D + F) * dequant_ops
                    if page:
                        idx += entry_bytes * len({key // page for key in range(j * bc, (j + 1) * bc)})
    return kv, idx, ops
