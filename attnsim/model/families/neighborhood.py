"""The neighborhood family's plan: one fused attention kernel over the neighborhood mask, as NATTEN's
fused neighborhood attention (FNA) runs it, with its tiles' statistics in the plan's counts.

    kernel    an AttentionOp on the softmax view, mask = the family's neighborhood, tiles
              block_m = prod(q_tile), block_n = prod(kv_tile): FA3-style (wgmma, overlapped
              softmax) on Hopper as NATTEN's Hopper FNA (built on CUTLASS's Hopper FMHA), FA2-style
              elsewhere; on a spatial array the fused (FuseMax-style) mapping with the same tiles
    tiling    nd: query and key boxes (tiles of the token-permuted sequence, NATTEN Hopper /
              Blackwell FNA); flat: consecutive row-major tokens at the same tile sizes
    optional  token_permute: NATTEN's permute (Q, K, V) and unpermute (O) copies around the kernel

Default tile shapes are NATTEN's forward defaults (the first entry of its config lists):
Hopper FNA (src/natten/backends/configs/cutlass_hopper/__init__.py) per dimension and head dim,
CUTLASS 2.x FNA (src/natten/backends/configs/cutlass/__init__.py) on other GPUs, and on a spatial
array (no published FNA) power-of-two boxes of the array's rows (queries) and columns (keys).

Counts (per (b, h)): non-empty, full and partial tiles; computed elements (tiles x block_m x
block_n: a partial or padded tile costs a whole tile) and the wasted fraction of them; and two
speedup upper bounds over dense attention at the same tile shape: dense tiles / non-empty tiles
(assumes every tile costs the same), and M N / allowed pairs (the element-level bound).
"""
from __future__ import annotations

import math

from attnsim.arch import Arch
from attnsim.errors import MappingError, Problem
from attnsim.mapping.kernel import KernelMapping, padded_head_dim
from attnsim.mapping.spatial import SpatialMapping
from attnsim.model.families.common import attention_op, softmax_view, stream_op
from attnsim.model.plan import Plan
from attnsim.workload.families.neighborhood import allowed_pairs, extents, nbhd_mask, settings
from attnsim.workload.spec import Workload
from attnsim.workload.tiles import TileStats, explicit_tile_stats

# NATTEN Hopper FNA forward, fp16/bf16: (q_tile, kv_tile) of the first config per head dim
HOPPER_FNA_TILES = {
    1: {32: ((64,), (128,)), 64: ((64,), (128,)), 128: ((128,), (128,)), 256: ((128,), (64,))},
    2: {32: ((8, 8), (16, 8)), 64: ((8, 8), (16, 8)), 128: ((16, 8), (16, 8)), 256: ((16, 8), (8, 8))},
    3: {32: ((4, 4, 4), (4, 4, 8)), 64: ((4, 4, 4), (4, 4, 8)), 128: ((4, 4, 8), (4, 4, 8)),
        256: ((4, 4, 8), (4, 4, 4))},
}
# NATTEN CUTLASS 2.x FNA (SM50-SM90) forward default tile shapes
CUTLASS_FNA_TILES = {1: ((64,), (64,)), 2: ((8, 8), (8, 8)), 3: ((4, 4, 4), (4, 4, 4))}


def _box(tokens: int, nd: int) -> tuple:
    """A power-of-two box of `tokens` positions over nd axes, as even as it goes, the last axes larger."""
    e = max(0, int(math.log2(tokens)))
    return tuple(2 ** (e // nd + (1 if a >= nd - e % nd else 0)) for a in range(nd))


def default_tiles(arch: Arch, w: Workload, nd: int) -> tuple[tuple, tuple]:
    """(q_tile, kv_tile) when the workload names none."""
    if arch.kind == "spatial":
        return _box(arch.array.rows, nd), _box(arch.array.cols, nd)
    if "wgmma" in arch.compute.matrix_flops_per_cycle:
        d = padded_head_dim(max(w.head_dim, w.value_dim))
        table = HOPPER_FNA_TILES[nd]
        return table[min((k for k in table if k >= d), default=max(table))]
    return CUTLASS_FNA_TILES[nd]


def tile_counts(s: TileStats, m_len: int, n_len: int, bm: int, bn: int) -> dict:
    """The plan's tile statistics per (b, h) (see the module docstring)."""
    computed = s.tiles * bm * bn
    dense = math.ceil(m_len / bm) * math.ceil(n_len / bn)
    return {"tiles (non-empty)": s.tiles, "full tiles": s.full_tiles, "partial tiles": s.tiles - s.full_tiles,
            "query tiles": s.rows, "key tiles": s.cols, "max tiles per query tile": s.max_row_tiles,
            "min tiles per query tile": s.min_row_tiles, "dense tiles": dense, "allowed pairs": s.allowed,
            "density": s.allowed / (m_len * n_len), "computed elements": computed,
            "wasted fraction": 1.0 - s.allowed / computed if computed else 0.0,
            "speedup bound (tiles)": dense / s.tiles, "speedup bound (elements)": m_len * n_len / s.allowed}


def _permute_ops(w: Workload, s: dict, q_tile: tuple, kv_tile: tuple) -> tuple[list, list]:
    """NATTEN's token permute kernels (before) and unpermute (after): one copy per tensor, into the
    padded box order and back; none when the layout is the row-major one (1-D, no dilation, no padding)."""
    padded_q = math.prod(-(-g // (t * d)) * t * d for g, t, d in zip(s["grid"], q_tile, s["dilation"]))
    padded_k = math.prod(-(-g // (t * d)) * t * d for g, t, d in zip(s["grid"], kv_tile, s["dilation"]))
    if len(s["grid"]) == 1 and s["dilation"] == (1,) and padded_q == padded_k == w.seq_q:
        return [], []
    e, bh, bkv = w.dtype_bytes, w.batch * w.heads, w.batch * w.kv_heads
    before = [stream_op("token permute Q", bh * w.seq_q * w.head_dim * e, bh * padded_q * w.head_dim * e),
              stream_op("token permute K", bkv * w.seq_kv * w.head_dim * e, bkv * padded_k * w.head_dim * e),
              stream_op("token permute V", bkv * w.seq_kv * w.value_dim * e, bkv * padded_k * w.value_dim * e)]
    after = [stream_op("token unpermute O", bh * padded_q * w.value_dim * e, bh * w.seq_q * w.value_dim * e)]
    return before, after


def plan(arch: Arch, w: Workload, mapping=None) -> Plan:
    """``mapping``: None (FA3-style on Hopper, FA2-style elsewhere, fused on a spatial array), an
    algorithm name for the kernel, or a KernelMapping / SpatialMapping used as given (its tile
    sizes must then be the boxes' sizes under nd tiling)."""
    s = settings(w)
    nd = len(s["grid"])
    dq, dk = default_tiles(arch, w, nd)
    q_tile = s["q_tile"] or dq
    kv_tile = s["kv_tile"] or dk  # settings() already made a lone q_tile the kv_tile too
    bm, bn = math.prod(q_tile), math.prod(kv_tile)
    boxes = s["tiling"] == "nd"
    mask = nbhd_mask(w, q_tile, kv_tile) if boxes else nbhd_mask(w)
    view = softmax_view(w, mask=mask)
    if boxes and isinstance(mapping, (KernelMapping, SpatialMapping)) and (mapping.block_m, mapping.block_n) != (bm, bn):
        raise MappingError(Problem(f"nd tiling with q_tile {list(q_tile)} and kv_tile {list(kv_tile)} runs "
                                   f"{bm} x {bn} tiles; the mapping has {mapping.block_m} x {mapping.block_n}",
                                   key="mapping.block_m", hint="set q_tile / kv_tile to the mapping's tiles, "
                                                               "or leave the mapping out"))
    op = attention_op("neighborhood attention", arch, view, mapping, block_m=bm, block_n=bn)
    bp, bc = kernel_tile(arch, w, op.mapping)
    stats = explicit_tile_stats(mask, w.seq_q, w.seq_kv, bp, bc)
    ops = [op]
    if boxes and s["token_permute"]:
        before, after = _permute_ops(w, s, q_tile, kv_tile)
        ops = before + ops + after
    useful = w.cascade.ops(extents(w), allowed_pairs(w))["mma"]
    label = f"{s['tiling']} tiles {'x'.join(map(str, q_tile))}/{'x'.join(map(str, kv_tile))}: {op.mapping.label()}"
    notes = ("speedup bound (tiles) assumes every non-empty tile costs the same as a dense one",
             "nd tiles: each axis is padded to a multiple of tile x dilation (NATTEN's token permute); "
             "padded positions are computed and wasted")
    return Plan("neighborhood", tuple(ops), useful, label, tile_counts(stats, w.seq_q, w.seq_kv, bp, bc), notes)


def kernel_tile(arch: Arch, w: Workload, m) -> tuple[int, int]:
    """(query positions, keys) of one tile, as the attention model counts them: a GPU CTA's rows
    are positions x packed query heads; the spatial model caps the tile at the sequence."""
    if arch.kind == "spatial":
        return min(m.block_m, w.seq_q), min(m.block_n, w.seq_kv)
    return max(1, m.block_m // m.q_heads_per_cta), m.block_n


PLANS = {"neighborhood": plan}
