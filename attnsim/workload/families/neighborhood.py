"""Generalized neighborhood attention: sliding, strided and blocked windows on 1D/2D/3D token
grids, with dilation and causal axes (Neighborhood Attention, Hassani et al. CVPR 2023; DiNAT
2022; Generalized Neighborhood Attention (GNA), Hassani et al. 2025; the NATTEN library).

The tokens of a sequence sit on a row-major grid (``grid``, prod(grid) = seq_q = seq_kv). A query
sees, along every axis, the ``window`` keys around the leader of its stride group inside its
dilation sub-grid; the mask is the AND over axes (``attnsim.workload.masks.axis_windows`` has the
rules and their NATTEN source). The work is softmax attention over the allowed (m, n) pairs:

    cascade   softmax_attention_cascade(), masked steps over the allowed pairs
    allowed   prod_a sum_x (keys of axis a seen from coordinate x)   (closed form, ``allowed_pairs``)

2D, grid 9 x 9, window 3 x 3, query Q sees x (``masks.neighborhood_mask``, border 'shift'):

    query (4, 4)         dilation 2, (4, 4)   stride 3, (3, 3)     query (0, 0)
    . . . . . . . . .    . . . . . . . . .    . . . . . . . . .    Q x x . . . . . .
    . . . . . . . . .    . . . . . . . . .    . . . . . . . . .    x x x . . . . . .
    . . . . . . . . .    . . x . x . x . .    . . . . . . . . .    x x x . . . . . .
    . . . x x x . . .    . . . . . . . . .    . . . Q x x . . .    . . . . . . . . .
    . . . x Q x . . .    . . x . Q . x . .    . . . x x x . . .    . . . . . . . . .
    . . . x x x . . .    . . . . . . . . .    . . . x x x . . .    . . . . . . . . .
    . . . . . . . . .    . . x . x . x . .    . . . . . . . . .    . . . . . . . . .
    . . . . . . . . .    . . . . . . . . .    . . . . . . . . .    . . . . . . . . .
    . . . . . . . . .    . . . . . . . . .    . . . . . . . . .    . . . . . . . . .

(stride 3: the group {3, 4, 5} x {3, 4, 5} shares the window of its center (4, 4); at the corner
the window is shifted inward, so (0, 0) still sees 3 x 3 keys).

The executable form (``tiled``) is FlashAttention over the tokens permuted into the kernel's tile
order (``masks.tile_order``: NATTEN's token permute for multi-dimensional tiles), so its exact tile
statistics are those the model's kernel counts (``attnsim.workload.tiles``).
"""
from __future__ import annotations

import math

import numpy as np

from attnsim.spec.schema import Field
from attnsim.workload.cascade import softmax_attention_cascade
from attnsim.workload.families import Family
from attnsim.workload.masks import axis_windows, neighborhood_mask, neighborhood_problems, tile_order
from attnsim.workload.reference import attention_reference, flash_forward_tiled
from attnsim.workload.spec import Mask, Workload

PARAMS = (
    Field("grid", "list", required=False, default=(),
          help="token grid, e.g. [64, 64]; prod(grid) = seq_q = seq_kv; empty: one axis of seq_q tokens"),
    Field("window", "list", required=False, default=(),
          help="kernel size per axis; empty: the whole grid (self attention, NATTEN's profiler default)"),
    Field("dilation", "list", required=False, default=(), help="per axis; empty: 1 on every axis"),
    Field("stride", "list", required=False, default=(),
          help="per axis, at most the window; empty: 1 (sliding); stride = window: blocked"),
    Field("causal", "list", required=False, default=(), help="per axis booleans; empty: none causal"),
    Field("border", "enum", choices=("shift", "clip"), required=False, default="shift",
          help="shift: windows move inward at the borders (NATTEN); clip: they are cut"),
    Field("tiling", "enum", choices=("nd", "flat"), required=False, default="nd",
          help="nd: query/key boxes (NATTEN's q_tile_shape/kv_tile_shape); flat: consecutive row-major tokens"),
    Field("q_tile", "list", required=False, default=(),
          help="query box per axis; empty: NATTEN's default for the arch, dimension and head dim"),
    Field("kv_tile", "list", required=False, default=(), help="key box per axis; empty: as q_tile"),
    Field("token_permute", "bool", required=False, default=False,
          help="add NATTEN's token permute / unpermute kernels around an nd-tiled kernel"),
)


def _ints(value) -> tuple:
    """A per-axis list as given: a list/tuple of ints, an int, or a string like '16x8'."""
    if isinstance(value, str):
        try:
            return tuple(int(x) for x in value.lower().split("x") if x)
        except ValueError:
            return (value,)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value),)
    return tuple(value)


def _bools(value, nd: int) -> tuple:
    if isinstance(value, bool):
        return (value,) * nd
    if isinstance(value, str):
        return tuple({"1": True, "0": False, "true": True, "false": False}.get(x, x)
                     for x in value.lower().replace(",", "x").split("x") if x)
    return tuple(bool(x) if isinstance(x, (int, np.integer)) and x in (0, 1) else x for x in value)


def settings(w: Workload) -> dict:
    """The family's parameters with their defaults filled in, as per-axis tuples."""
    grid = _ints(w.param("grid")) or (w.seq_q,)
    nd = len(grid)
    return {"grid": grid, "window": _ints(w.param("window")) or grid,
            "dilation": _ints(w.param("dilation")) or (1,) * nd, "stride": _ints(w.param("stride")) or (1,) * nd,
            "causal": _bools(w.param("causal"), nd) or (False,) * nd, "border": w.param("border"),
            "tiling": w.param("tiling"), "q_tile": _ints(w.param("q_tile")),
            "kv_tile": _ints(w.param("kv_tile")) or _ints(w.param("q_tile")),
            "token_permute": w.param("token_permute")}


def check(w: Workload) -> list[tuple[str, str]]:
    s = settings(w)
    probs = [(f"params.{k}", m) for k, m in neighborhood_problems(
        s["grid"], s["window"], s["dilation"], s["stride"], s["border"], s["causal"], s["q_tile"], s["kv_tile"])]
    if not probs and not (math.prod(s["grid"]) == w.seq_q == w.seq_kv):
        probs.append(("params.grid", f"grid {list(s['grid'])} has {math.prod(s['grid'])} tokens but "
                                     f"seq_q={w.seq_q}, seq_kv={w.seq_kv}; neighborhood attention is "
                                     "self attention over the grid"))
    if not probs and w.mask.kind != "full":
        probs.append(("mask.kind", f"the neighborhood family makes its own mask from its params; give mask "
                                   f"kind 'full' (the default), got {w.mask.kind!r}"))
    return probs


def nbhd_mask(w: Workload, q_tile: tuple = (), kv_tile: tuple = ()) -> Mask:
    """The family's mask for the softmax-attention model; q_tile/kv_tile: the boxes of nd tiling
    (empty: flattened tiles)."""
    s = settings(w)
    return Mask("neighborhood", grid=s["grid"], win=s["window"], dilation=s["dilation"], stride=s["stride"],
                border=s["border"], axis_causal=s["causal"], q_tile=tuple(q_tile), kv_tile=tuple(kv_tile))


def element_mask(w: Workload) -> np.ndarray:
    """[M, N] bool: which (query, key) token pairs are computed (row-major token order)."""
    s = settings(w)
    return neighborhood_mask(s["grid"], s["window"], s["dilation"], s["stride"], s["causal"], s["border"])


def allowed_pairs(w: Workload) -> int:
    """Allowed (m, n) pairs per (b, h), in closed form: prod over axes of the keys seen per axis."""
    s = settings(w)
    total = 1
    for a, n in enumerate(s["grid"]):
        lo, hi = axis_windows(n, s["window"][a], s["dilation"][a], s["stride"][a], s["causal"][a], s["border"])
        total *= int(((hi - lo) // s["dilation"][a] + 1).sum())
    return total


def extents(w: Workload) -> dict[str, int]:
    return w.extents()


def reference(q: np.ndarray, k: np.ndarray, v: np.ndarray, w: Workload) -> np.ndarray:
    """Masked softmax attention with the element mask, float64.  # o [B, H, M, F]"""
    return attention_reference(q, k, v, element_mask(w))


def tiled(q: np.ndarray, k: np.ndarray, v: np.ndarray, w: Workload, q_tile: tuple, kv_tile: tuple,
          tiling: str = "nd") -> tuple[np.ndarray, dict]:
    """The executable form: FlashAttention with the online softmax over the tokens in the kernel's
    tile order, then un-permuted. Returns (o [B, H, M, F], the replay's exact tile statistics).

    nd: queries permuted into q_tile boxes and keys into kv_tile boxes (padding positions are zero
    tokens that see nothing and are seen by no one), tiles of prod(q_tile) x prod(kv_tile)
    positions. flat: row-major tokens, tiles of prod(q_tile) x prod(kv_tile) consecutive tokens."""
    mask = element_mask(w)  # [M, N]
    bm, bn = math.prod(q_tile), math.prod(kv_tile)
    if tiling == "flat":
        return flash_forward_tiled(q, k, v, mask, bm, bn)
    s = settings(w)
    qtok, ktok = tile_order(s["grid"], q_tile, s["dilation"]), tile_order(s["grid"], kv_tile, s["dilation"])
    qin, kin = qtok >= 0, ktok >= 0
    pmask = np.zeros((qtok.size, ktok.size), dtype=bool)  # [Pq, Pk] the mask in tile order
    pmask[np.ix_(qin, kin)] = mask[np.ix_(qtok[qin], ktok[kin])]

    def permute(x, order):  # [B, H, L, *] -> [B, H, P, *], zeros at padding positions
        out = np.zeros(x.shape[:2] + (order.size,) + x.shape[3:])
        out[:, :, order >= 0] = x[:, :, order[order >= 0]]
        return out

    o_p, stats = flash_forward_tiled(permute(q, qtok), permute(k, ktok), permute(v, ktok), pmask, bm, bn)
    o = np.zeros(q.shape[:3] + (v.shape[-1],))
    o[:, :, qtok[qin]] = o_p[:, :, qin]  # un-permute: drop the padding rows
    return o, stats


FAMILIES = {
    "neighborhood": Family("neighborhood", "generalized neighborhood attention (NATTEN, GNA): sliding / strided / "
                                           "blocked windows with dilation on 1D-3D grids, flat or nd tiles",
                           PARAMS, lambda w: softmax_attention_cascade(), check),
}
