"""FlexAttention masks (a ``mask_mod``, a ``BlockMask``) and dense attention masks as attnsim masks.

The element mask is evaluated on CPU, a band of query rows at a time (at most
``MAX_CHUNK_ELEMENTS`` pairs in memory), and summed into allowed pairs per 16 x 16 granule
(``attnsim.workload.block_counts``): exact at every kernel tile. A mask equal to a closed form is
written as it (full, causal, window W: bottom-right aligned, as ``attnsim.Mask``), any other as
``Mask('block_counts')``.

    mask_mod alone          every (m, n) pair is evaluated: M x N calls' worth of vector work
    BlockMask + mask_mod    what flex_attention computes: a full block is allowed, a partial block
                            is the mask_mod on it, an absent block is empty; only partial blocks
                            are evaluated
    BlockMask, mask_mod     only the blocks are known (full / partial / empty at BLOCK_SIZE): the
    not evaluable           counts are kept at the block, partial blocks marked unknown (see
                            block_counts: tile counts exact at multiples of the block, allowed
                            pairs an upper bound)

A mask_mod is called with broadcast index tensors (``q_idx`` [R, 1], ``kv_idx`` [1, C]), checked
once, on a corner of the first piece (CHECK_ROWS x CHECK_COLS pairs), against ``torch.func.vmap``
over scalar indices (FlexAttention's own semantics, ``create_mask``); a mask_mod that gives a
different answer there or fails when broadcast runs under vmap everywhere.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn.attention.flex_attention import create_mask, noop_mask

from attnsim.errors import AttnsimError
from attnsim.workload.block_counts import BlockCounts, CountsBuilder
from attnsim.workload.spec import Mask

MAX_CHUNK_ELEMENTS = 1 << 22  # (m, n) pairs evaluated at once: bounds the memory of a conversion
CHECK_ROWS, CHECK_COLS = 64, 4096  # the corner where broadcasting is checked against vmap


class MaskError(AttnsimError):
    """A mask that cannot be evaluated (a mask_mod that fails on CPU, tensors on the meta device)."""


class _Evaluator:
    """mask_mod(b, h, rows, cols) -> np.ndarray [R, C] bool, broadcast if that agrees with vmap."""

    def __init__(self, mask_mod):
        self.mask_mod = mask_mod
        self.mode = None  # 'broadcast' | 'vmap', settled on the first call

    def _broadcast(self, b, h, rows, cols):
        out = self.mask_mod(torch.tensor(b, device="cpu"), torch.tensor(h, device="cpu"), rows[:, None], cols[None, :])
        return torch.as_tensor(out).to(torch.bool).expand(len(rows), len(cols))

    def _vmap(self, b, h, rows, cols):
        def shifted(b_, h_, q, k):  # create_mask's indices 0.. -> this piece's rows and columns
            return self.mask_mod(b_ + b, h_ + h, rows[q], cols[k])
        return create_mask(shifted, 1, 1, len(rows), len(cols), device="cpu")[0, 0].to(torch.bool)

    def __call__(self, b: int, h: int, rows: torch.Tensor, cols: torch.Tensor) -> np.ndarray:
        try:
            if self.mode == "broadcast":
                return self._broadcast(b, h, rows, cols).numpy()
            if self.mode == "vmap":
                return self._vmap(b, h, rows, cols).numpy()
            r, c = rows[:CHECK_ROWS], cols[:CHECK_COLS]  # a corner of the first piece: vmap is slow
            ref = self._vmap(b, h, r, c)
            try:
                self.mode = "broadcast" if torch.equal(self._broadcast(b, h, r, c), ref) else "vmap"
            except Exception:  # noqa: BLE001 - a mask_mod written for scalars only
                self.mode = "vmap"
            return self(b, h, rows, cols)
        except MaskError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure of user code, reported in one line
            raise MaskError(f"the mask_mod cannot be evaluated on CPU ({type(e).__name__}: {e}); if it reads "
                            "tensors on the meta device, capture with --device cpu at a small size") from None


def _bands(seq_q: int, cols: int, step: int):
    """Query-row bands of whole granule rows holding at most MAX_CHUNK_ELEMENTS pairs."""
    rows = max(step, (MAX_CHUNK_ELEMENTS // max(1, cols)) // step * step)
    for q0 in range(0, seq_q, rows):
        yield q0, min(seq_q, q0 + rows)


def builder_from_mask_mod(mask_mod, batch: int, heads: int, seq_q: int, seq_kv: int) -> CountsBuilder:
    """Evaluate a mask_mod on every (b, h, m, n): ``batch`` / ``heads`` = 1 for a mask that does
    not depend on them (FlexAttention's B=None / H=None)."""
    ev = _Evaluator(mask_mod)
    out = CountsBuilder(batch, heads, seq_q, seq_kv)
    cols = torch.arange(seq_kv, device="cpu")
    for b in range(batch):
        for h in range(heads):
            for q0, q1 in _bands(seq_q, seq_kv, out.g):
                out.add(b, h, q0, cols.numpy(), ev(b, h, torch.arange(q0, q1, device="cpu"), cols))
    return out


def _blocks(bm) -> dict:
    """A BlockMask's block lists as numpy arrays (they must hold values: not on the meta device)."""
    t = {"kv_num": bm.kv_num_blocks, "kv_idx": bm.kv_indices, "full_num": bm.full_kv_num_blocks,
         "full_idx": bm.full_kv_indices}
    if any(v is not None and v.is_meta for v in t.values()):
        raise MaskError("the BlockMask lives on the meta device, so its blocks are unknown")
    return {k: None if v is None else v.detach().cpu().numpy() for k, v in t.items()}


def block_mask_stats(bm) -> tuple[int, int, int]:
    """(full, partial, all) blocks of a BlockMask, summed over its (b, h) (for reports)."""
    t = _blocks(bm)
    q_blocks = t["kv_num"].shape[-1]
    n_blocks = t["kv_num"].shape[0] * t["kv_num"].shape[1] * q_blocks * math.ceil(bm.seq_lengths[1] / bm.BLOCK_SIZE[1])
    full = int(t["full_num"].sum()) if t["full_num"] is not None else 0
    return full, int(t["kv_num"].sum()), n_blocks


def builder_from_block_mask(bm, mask_mod=None) -> CountsBuilder:
    """What flex_attention computes under a BlockMask: full blocks allowed, partial blocks by the
    mask_mod (the BlockMask's own unless given), absent blocks empty."""
    mask_mod = bm.mask_mod if mask_mod is None else mask_mod
    t = _blocks(bm)
    seq_q, seq_kv = (int(x) for x in bm.seq_lengths)
    bq, bk = (int(x) for x in bm.BLOCK_SIZE)
    bmb, hmb, q_blocks = t["kv_num"].shape
    out = CountsBuilder(bmb, hmb, seq_q, seq_kv)
    ev = None if mask_mod is noop_mask else _Evaluator(mask_mod)
    for b in range(bmb):
        for h in range(hmb):
            for i in range(q_blocks):
                q0, q1 = i * bq, min(seq_q, (i + 1) * bq)
                if q0 >= seq_q:
                    break
                full = _row_blocks(t["full_num"], t["full_idx"], b, h, i)
                partial = _row_blocks(t["kv_num"], t["kv_idx"], b, h, i)
                keys = np.zeros(seq_kv, dtype=bool)
                for j in (full if ev is not None else np.r_[full, partial]):
                    keys[j * bk:(j + 1) * bk] = True  # a noop mask_mod computes partial blocks whole
                if keys.any():
                    out.add_rows(b, h, q0, q1, keys)
                if ev is None or not len(partial):
                    continue
                cols = np.concatenate([np.arange(j * bk, min(seq_kv, (j + 1) * bk)) for j in np.sort(partial)])
                step = max(1, MAX_CHUNK_ELEMENTS // max(1, q1 - q0))
                for c0 in range(0, len(cols), step):
                    piece = cols[c0:c0 + step]
                    out.add(b, h, q0, piece, ev(b, h, torch.arange(q0, q1, device="cpu"), torch.from_numpy(piece)))
    return out


def _row_blocks(num, idx, b, h, i) -> np.ndarray:
    if num is None:
        return np.zeros(0, dtype=np.int64)
    return idx[b, h, i, :int(num[b, h, i])].astype(np.int64)


def block_level_counts(bm) -> BlockCounts:
    """Only the blocks of a BlockMask: counts at BLOCK_SIZE, -1 for a partial block. Causal only
    when provable: every non-empty block lies wholly on or below the diagonal."""
    t = _blocks(bm)
    seq_q, seq_kv = (int(x) for x in bm.seq_lengths)
    bq, bk = (int(x) for x in bm.BLOCK_SIZE)
    bmb, hmb, _ = t["kv_num"].shape
    rq, rk = math.ceil(seq_q / bq), math.ceil(seq_kv / bk)
    rows_in = np.minimum(bq, seq_q - np.arange(rq) * bq)
    cols_in = np.minimum(bk, seq_kv - np.arange(rk) * bk)
    counts = np.zeros((bmb, hmb, rq, rk), dtype=np.int32)
    for b in range(bmb):
        for h in range(hmb):
            for i in range(rq):
                for j in _row_blocks(t["full_num"], t["full_idx"], b, h, i):
                    counts[b, h, i, j] = rows_in[i] * cols_in[j]
                for j in _row_blocks(t["kv_num"], t["kv_idx"], b, h, i):
                    counts[b, h, i, j] = -1
    last_key = np.minimum(np.arange(rk) * bk + cols_in, seq_kv) - 1
    diag_first_row = np.arange(rq) * bq + seq_kv - seq_q  # the key the first row of a block row sees last
    below = last_key[None, :] <= diag_first_row[:, None]
    causal = bool((counts[:, :, ~below] == 0).all())
    return BlockCounts(counts, seq_q, seq_kv, (bq, bk), causal)


def to_mask(builder: CountsBuilder, closed_forms: bool = True) -> Mask:
    """The attnsim mask of an evaluated element mask: its closed form if it has one, else block_counts."""
    form = builder.closed_form() if closed_forms else None
    if form == ("full",):
        return Mask("full")
    if form == ("causal",):
        return Mask("causal")
    if form is not None and form[0] == "window":
        return Mask("window", window=form[1], causal=True)
    return Mask("block_counts", counts=builder.build())


def mask_from_mask_mod(mask_mod, seq_q: int, seq_kv: int, batch: int = 1, heads: int = 1,
                       closed_forms: bool = True) -> Mask:
    """``attnsim.Mask`` of a FlexAttention mask_mod over an (seq_q x seq_kv) grid.

        >>> mask_from_mask_mod(lambda b, h, q, k: q >= k, 1000, 1000)
        Mask(kind='causal', ...)
    """
    return to_mask(builder_from_mask_mod(mask_mod, batch, heads, seq_q, seq_kv), closed_forms)


def mask_from_block_mask(bm, closed_forms: bool = True) -> tuple[Mask, str]:
    """(``attnsim.Mask``, a note on how exact it is) of a FlexAttention BlockMask.

    The BlockMask's blocks, with its mask_mod on the partial blocks; when the blocks live on the
    meta device, the mask_mod alone on every pair; when the mask_mod cannot be evaluated, the
    blocks alone (approximate, see ``block_level_counts``)."""
    seq_q, seq_kv = (int(x) for x in bm.seq_lengths)
    bq, bk = (int(x) for x in bm.BLOCK_SIZE)
    shape = tuple(int(x) for x in bm.kv_num_blocks.shape[:2])
    on_meta = bm.kv_num_blocks.is_meta
    try:
        if on_meta:
            b = builder_from_mask_mod(bm.mask_mod, shape[0], shape[1], seq_q, seq_kv)
            note = "mask_mod evaluated on every pair (the BlockMask is on the meta device)"
        else:
            b = builder_from_block_mask(bm)
            note = f"BlockMask {bq}x{bk} blocks with its mask_mod on the partial blocks (exact)"
        return to_mask(b, closed_forms), note
    except MaskError as e:
        if on_meta:
            raise
        counts = block_level_counts(bm)
        note = (f"BlockMask {bq}x{bk} blocks only (the mask_mod failed: {e}): tile counts exact at tiles that "
                f"are multiples of {bq}x{bk}; a tile inside a partial block counts as visited; allowed pairs "
                "of partial blocks counted whole (an upper bound); causal only if provable from the blocks")
        return Mask("block_counts", counts=counts), note


def mask_from_dense(mask: torch.Tensor, seq_q: int, seq_kv: int, allowed_when: str = "true",
                    closed_forms: bool = True) -> Mask:
    """attnsim mask of a dense attention mask broadcastable to [..., seq_q, seq_kv]: a bool mask
    (``allowed_when='true'``: SDPA's convention, True = attend; 'false': nn.MultiheadAttention's,
    True = masked out) or an additive float mask (-inf or the dtype's lowest value = masked out).
    Leading dims beyond the last two select (batch, head); a mask on the meta device raises MaskError."""
    if mask.is_meta:
        raise MaskError("the mask lives on the meta device, so its values are unknown")
    t = mask.detach().cpu()
    if t.dim() > 4:
        raise MaskError(f"expected a mask of at most 4 dims [B, H, M, N], got shape {list(t.shape)}")
    while t.dim() < 4:
        t = t.unsqueeze(0)
    if t.dtype == torch.bool:
        allowed = t if allowed_when == "true" else ~t
    else:
        allowed = ~(torch.isneginf(t) | (t <= torch.finfo(t.dtype).min))
    bm, hm = allowed.shape[0], allowed.shape[1]
    out = CountsBuilder(bm, hm, seq_q, seq_kv)
    cols = np.arange(seq_kv)
    for b in range(bm):
        for h in range(hm):
            for q0, q1 in _bands(seq_q, seq_kv, out.g):
                band = allowed[b, h, q0:q1] if allowed.shape[2] > 1 else allowed[b, h, :1]  # [R or 1, N or 1]
                out.add(b, h, q0, cols, band.expand(q1 - q0, seq_kv).numpy())
    return to_mask(out, closed_forms)
