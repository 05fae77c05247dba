"""Masks known by their allowed pairs per granule: the exact, tile-independent form of any mask
(a FlexAttention mask_mod or BlockMask, a dense boolean attn_mask), for ``Mask(kind='block_counts')``.

    counts[b, h, i, j] = allowed (m, n) pairs with m in granule row i and n in granule column j
    granule (gq, gk) = (16, 16): every kernel tile is a multiple of 16 (check_mapping requires it)

At a kernel tile of bp query positions x bc keys (multiples of the granule), a tile's allowed
pairs are the sum of its granules: it is non-empty when the sum is > 0 and full when the sum is
its element count (rows x keys, clipped at the edges). So every statistic the models read
(``TileStats``: non-empty tiles per query-tile row, full tiles, rows, allowed pairs) is exact at
every tile size, and a mask equal to a closed form (causal, window) gives the same numbers.

    causal, M = N = 40, granules of 16 (counts per granule):
        136   0   0
        256 136   0
        128 128  36        (the last row and column hold 8 positions)

A mask known only by blocks (a BlockMask whose mask_mod cannot be evaluated) has the block as
its granule and -1 for a partial block: a tile holding a partial block is non-empty and not
full, and the block's allowed pairs count as its capacity (an upper bound; ``exact`` is False).

``counts`` may vary over batch and heads ([Bm, Hm, ...], Bm in {1, B}, Hm in {1, H}); the tile
statistics are then means over (b, h) for the sums (so B x H x mean is the total) and the max
and min over every (b, h) for the per-row extremes.

Files: ``save`` / ``load_block_counts`` write and read an .npz with arrays ``counts``,
``granule`` [gq, gk], ``seq`` [M, N], ``causal`` (no allowed pair above the bottom-right diagonal
n <= m + N - M, derived from the element mask when it was converted).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from attnsim.errors import MappingError, Problem, WorkloadError
from attnsim.workload.tiles import TileStats

GRANULE = 16  # the MMA tile edge: every kernel tile is a multiple of it
NPZ_KEYS = ("counts", "granule", "seq", "causal")


@dataclass(frozen=True, eq=False)
class BlockCounts:
    counts: np.ndarray  # [Bm, Hm, ceil(M / gq), ceil(N / gk)] int32; -1: a partial block, count unknown
    seq_q: int
    seq_kv: int
    granule: tuple[int, int] = (GRANULE, GRANULE)
    causal: bool = False  # no allowed pair above the bottom-right diagonal n <= m + N - M
    source: str = field(default="", compare=False)  # the .npz it was read from or written to

    def __post_init__(self):
        c = np.asarray(self.counts)
        gq, gk = self.granule
        want = (math.ceil(self.seq_q / gq), math.ceil(self.seq_kv / gk))
        if c.ndim != 4 or c.shape[2:] != want:
            raise WorkloadError(Problem(f"expected counts of shape [Bm, Hm, {want[0]}, {want[1]}] for seq_q="
                                        f"{self.seq_q}, seq_kv={self.seq_kv} at granule {gq}x{gk}, got "
                                        f"{list(c.shape)}", key="mask.counts"))
        cap = _capacity(self.seq_q, gq)[:, None] * _capacity(self.seq_kv, gk)[None, :]
        if ((c < -1) | (c > cap)).any():
            raise WorkloadError(Problem(f"counts must lie in 0..(granule elements), or -1 for a partial block "
                                        f"of unknown count; got values in [{c.min()}, {c.max()}]", key="mask.counts"))
        object.__setattr__(self, "counts", np.ascontiguousarray(c, dtype=np.int32))
        object.__setattr__(self, "granule", (int(gq), int(gk)))

    @cached_property
    def digest(self) -> str:
        h = hashlib.sha1(self.counts.tobytes())
        h.update(repr((self.counts.shape, self.seq_q, self.seq_kv, self.granule, self.causal)).encode())
        return h.hexdigest()

    def __eq__(self, other) -> bool:
        return isinstance(other, BlockCounts) and self.digest == other.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    @property
    def exact(self) -> bool:
        """False when some partial block's count is unknown (a BlockMask without a usable mask_mod)."""
        return not bool((self.counts < 0).any())

    @property
    def allowed(self) -> float:
        """Allowed (m, n) pairs per (b, h), the mean over (b, h) (an upper bound when not exact)."""
        return float(_known_or_capacity(self).sum(axis=(2, 3)).mean())

    def label(self) -> str:
        name = Path(self.source).stem if self.source else self.digest[:8]
        return f"counts-{name}" + ("-causal" if self.causal else "")

    def tile_stats(self, bp: int, bc: int, heads_per_tile: int = 1) -> TileStats:
        """Statistics at query tiles of bp positions x key tiles of bc keys (see the module doc).

        ``heads_per_tile`` > 1 (GQA packing: one CTA serves several query heads) needs one mask
        for every head: the union of different heads' masks is not known from their counts."""
        if heads_per_tile > 1 and self.counts.shape[1] > 1:
            raise MappingError(Problem(f"this mask differs between heads, so a CTA packing {heads_per_tile} "
                                       "query heads visits the union of their tiles, which the counts do not give",
                                       key="mapping.q_heads_per_cta", hint="use q_heads_per_cta: 1"))
        return _tile_stats(self, int(bp), int(bc))

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        np.savez_compressed(p, counts=self.counts, granule=np.array(self.granule), seq=np.array([self.seq_q, self.seq_kv]),
                            causal=np.array(self.causal))
        return p


def _capacity(length: int, g: int) -> np.ndarray:
    """Positions in each granule along an axis of `length` (the last one may be short)."""
    n = math.ceil(length / g)
    cap = np.full(n, g, dtype=np.int64)
    cap[-1] = length - g * (n - 1)
    return cap


def _known_or_capacity(bc: BlockCounts) -> np.ndarray:
    gq, gk = bc.granule
    cap = _capacity(bc.seq_q, gq)[:, None] * _capacity(bc.seq_kv, gk)[None, :]
    return np.where(bc.counts < 0, cap, bc.counts).astype(np.int64)


def _tile_edges(length: int, g: int, tile: int, key: str) -> np.ndarray:
    """Granule index where each tile starts (a tile covers whole granules)."""
    n = math.ceil(length / g)
    if length <= tile:
        return np.array([0])
    if tile % g:
        raise MappingError(Problem(f"a tile of {tile} does not cover whole granules of {g} positions, so this "
                                   "mask's statistics at it are not known", key=key,
                                   hint=f"use a tile that is a multiple of {g}"))
    return np.arange(0, n, tile // g)


@lru_cache(maxsize=256)
def _tile_stats(bc: BlockCounts, bp: int, bn: int) -> TileStats:
    gq, gk = bc.granule
    rs = _tile_edges(bc.seq_q, gq, bp, "mapping.block_m")
    cs = _tile_edges(bc.seq_kv, gk, bn, "mapping.block_n")
    c = bc.counts.astype(np.int64)
    unknown = c < 0
    sums = np.add.reduceat(np.add.reduceat(np.where(unknown, 0, c), rs, axis=2), cs, axis=3)  # [Bm, Hm, R, C]
    partial = np.add.reduceat(np.add.reduceat(unknown, rs, axis=2), cs, axis=3) > 0
    rows_in = np.add.reduceat(_capacity(bc.seq_q, gq), rs)  # positions per query tile
    cols_in = np.add.reduceat(_capacity(bc.seq_kv, gk), cs)
    cap = rows_in[:, None] * cols_in[None, :]
    nonempty = (sums > 0) | partial
    full = (sums == cap) & ~partial
    per_row = nonempty.sum(axis=3)  # [Bm, Hm, R]
    return TileStats(tiles=float(per_row.sum(axis=2).mean()), full_tiles=float(full.sum(axis=(2, 3)).mean()),
                     max_row_tiles=float(per_row.max()), min_row_tiles=float(per_row.min()), rows=len(rs),
                     allowed=bc.allowed, cols=len(cs))


def load_block_counts(path: str | Path, key: str = "mask.file") -> BlockCounts:
    p = Path(path)
    if not p.exists():
        raise WorkloadError(Problem(f"block-counts file {str(p)!r} does not exist", key=key,
                                    hint="the .npz written beside the workload YAML by `attnsim capture`"))
    with np.load(p) as z:
        missing = [k for k in NPZ_KEYS if k not in z.files]
        if missing:
            raise WorkloadError(Problem(f"{p}: expected arrays {list(NPZ_KEYS)}, missing {missing}", key=key))
        seq, gran = z["seq"].tolist(), z["granule"].tolist()
        counts = BlockCounts(z["counts"], int(seq[0]), int(seq[1]), (int(gran[0]), int(gran[1])),
                             bool(z["causal"]), source=str(p))
    _check_causal_flag(counts, p)
    return counts


def _check_causal_flag(bc: BlockCounts, where) -> None:
    """A causal flag contradicted by the counts (an allowed pair in a granule wholly above the
    diagonal) is an error, not a guess."""
    if not bc.causal:
        return
    gq, gk = bc.granule
    first_row = np.arange(bc.counts.shape[2]) * gq  # each granule row's first query
    first_key = np.arange(bc.counts.shape[3]) * gk
    above = first_key[None, :] > (np.minimum(first_row + gq, bc.seq_q) - 1 + bc.seq_kv - bc.seq_q)[:, None]
    if (bc.counts[:, :, above] != 0).any():
        raise WorkloadError(Problem(f"{where}: causal is true but the counts allow pairs above the diagonal "
                                    "n <= m + N - M", key="mask.causal"))


class CountsBuilder:
    """Accumulates an element mask, evaluated piece by piece, into granule counts and the
    per-row facts (allowed keys, first and last allowed key) that decide causality and closed forms.

    ``add(b, h, q0, cols, allowed)``: rows q0.. q0+R-1, the sorted key indices ``cols`` [C],
    ``allowed`` [R, C] bool. ``add_rows(b, h, q0, q1, keys)``: rows q0..q1-1 all allow the keys
    where ``keys`` [N] is True. A pair must be added at most once."""

    def __init__(self, bm: int, hm: int, seq_q: int, seq_kv: int, granule: int = GRANULE):
        self.seq_q, self.seq_kv, self.g = seq_q, seq_kv, granule
        self.counts = np.zeros((bm, hm, math.ceil(seq_q / granule), math.ceil(seq_kv / granule)), dtype=np.int64)
        self.row_count = np.zeros((bm, hm, seq_q), dtype=np.int64)
        self.row_lo = np.full((bm, hm, seq_q), seq_kv, dtype=np.int64)  # first allowed key (N: none)
        self.row_hi = np.full((bm, hm, seq_q), -1, dtype=np.int64)  # last allowed key (-1: none)

    def add(self, b: int, h: int, q0: int, cols: np.ndarray, allowed: np.ndarray) -> None:
        r, c = allowed.shape
        if r == 0 or c == 0:
            return
        cols = np.asarray(cols, dtype=np.int64)
        gr = (q0 + np.arange(r)) // self.g
        gc = cols // self.g
        r0 = np.flatnonzero(np.r_[True, gr[1:] != gr[:-1]])  # runs of one granule row / column
        c0 = np.flatnonzero(np.r_[True, gc[1:] != gc[:-1]])
        a = allowed.astype(np.int64)
        s = np.add.reduceat(np.add.reduceat(a, r0, axis=0), c0, axis=1)
        np.add.at(self.counts[b, h], (gr[r0][:, None], gc[c0][None, :]), s)
        cnt = a.sum(axis=1)
        seen = cnt > 0
        first = cols[allowed.argmax(axis=1)]
        last = cols[c - 1 - allowed[:, ::-1].argmax(axis=1)]
        sl = slice(q0, q0 + r)
        self.row_count[b, h, sl] += cnt
        self.row_lo[b, h, sl] = np.where(seen, np.minimum(self.row_lo[b, h, sl], first), self.row_lo[b, h, sl])
        self.row_hi[b, h, sl] = np.where(seen, np.maximum(self.row_hi[b, h, sl], last), self.row_hi[b, h, sl])

    def add_rows(self, b: int, h: int, q0: int, q1: int, keys: np.ndarray) -> None:
        """Every row of [q0, q1) allows the keys where ``keys`` [N] is True (whole blocks of a BlockMask)."""
        q1 = min(q1, self.seq_q)
        idx = np.flatnonzero(keys[:self.seq_kv])
        if q0 >= q1 or not len(idx):
            return
        rows = _overlap(q0, q1, self.counts.shape[2], self.g)  # positions of each granule row in [q0, q1)
        cols = np.add.reduceat(keys[:self.seq_kv].astype(np.int64), np.arange(0, self.seq_kv, self.g))
        self.counts[b, h] += np.outer(rows, cols)
        self.row_count[b, h, q0:q1] += len(idx)
        self.row_lo[b, h, q0:q1] = np.minimum(self.row_lo[b, h, q0:q1], idx[0])
        self.row_hi[b, h, q0:q1] = np.maximum(self.row_hi[b, h, q0:q1], idx[-1])

    def causal(self) -> bool:
        """No allowed pair above the bottom-right diagonal: every row's last key <= m + N - M."""
        diag = np.arange(self.seq_q) + self.seq_kv - self.seq_q
        return bool((self.row_hi <= diag).all())

    def build(self) -> BlockCounts:
        c = self.counts
        if (c == c[:1, :1]).all():  # one mask for every (b, h): keep one copy
            c = c[:1, :1]
        elif (c == c[:, :1]).all():
            c = c[:, :1]
        elif (c == c[:1]).all():
            c = c[:1]
        return BlockCounts(c.astype(np.int32), self.seq_q, self.seq_kv, (self.g, self.g), self.causal())

    def closed_form(self) -> tuple | None:
        """('full',), ('causal',) or ('window', W) when the element mask equals that closed form
        (bottom-right aligned, as attnsim's Mask) for every (b, h), else None."""
        m, n = self.seq_q, self.seq_kv
        if (self.row_count == n).all():
            return ("full",)
        p = np.arange(m) + n - m  # the key each row is aligned to
        seen = p >= 0
        interval = np.where(self.row_count > 0, self.row_hi - self.row_lo + 1 == self.row_count, True)
        if not interval.all() or not (self.row_count[..., ~seen] == 0).all():
            return None
        hi_ok = (self.row_hi[..., seen] == np.minimum(p[seen], n - 1)).all()
        if not hi_ok:
            return None
        lo = self.row_lo[..., seen]
        if (lo == 0).all():
            return ("causal",)
        window = int((p[seen] - lo + 1).max())
        if (lo == np.maximum(0, p[seen] - window + 1)).all():
            return ("window", window)
        return None


def _overlap(a: int, b: int, n: int, g: int) -> np.ndarray:
    """Positions of [a, b) in each of n granules of g."""
    starts = np.arange(n) * g
    return np.clip(np.minimum(starts + g, b) - np.maximum(starts, a), 0, None)


def counts_from_bool(mask: np.ndarray, rows_per_chunk: int = 1024) -> CountsBuilder:
    """A builder filled from a dense boolean mask [M, N] or [Bm, Hm, M, N] (True = allowed)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim == 2:
        mask = mask[None, None]
    if mask.ndim != 4:
        raise ValueError(f"expected a mask of shape [M, N] or [B, H, M, N], got {list(mask.shape)}")
    bm, hm, m, n = mask.shape
    out = CountsBuilder(bm, hm, m, n)
    cols = np.arange(n)
    for b in range(bm):
        for h in range(hm):
            for q0 in range(0, m, rows_per_chunk):
                out.add(b, h, q0, cols, mask[b, h, q0:q0 + rows_per_chunk])
    return out
