"""FlexAttention masks -> attnsim masks: tile statistics equal brute force over the element mask."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.nn.attention.flex_attention import create_block_mask, create_mask  # noqa: E402

import attnsim  # noqa: E402
from attnsim.torch.masks import (block_level_counts, builder_from_block_mask, builder_from_mask_mod,  # noqa: E402
                                 mask_from_block_mask, mask_from_dense, mask_from_mask_mod)
from attnsim.torch.models.video_dit import neighborhood_3d  # noqa: E402
from attnsim.workload.spec import Mask  # noqa: E402
from naive import as_tuple, tile_stats_brute  # noqa: E402

L = 1000
TILES = [(128, 64), (128, 128), (64, 128), (192, 128), (16, 16)]
DOC = torch.repeat_interleave(torch.arange(5), torch.tensor([100, 300, 77, 200, 323]))  # 5 documents, 1000 tokens


def neighborhood_2d(gh, gw, wh, ww):
    def mask_mod(b, h, q, k):
        return ((q // gw - k // gw).abs() <= wh // 2) & ((q % gw - k % gw).abs() <= ww // 2)
    return mask_mod


MASK_MODS = {
    "causal": lambda b, h, q, k: q >= k,
    "sliding-window-128": lambda b, h, q, k: (q >= k) & (q - k < 128),
    "document": lambda b, h, q, k: DOC[q] == DOC[k],
    "document-causal": lambda b, h, q, k: (DOC[q] == DOC[k]) & (q >= k),
    "prefix-lm-130": lambda b, h, q, k: (k <= q) | (k < 130),
    "dilated-3": lambda b, h, q, k: ((q - k) % 3 == 0) & ((q - k).abs() <= 96),
    "neighborhood-2d-25x40": neighborhood_2d(25, 40, 7, 9),
    "neighborhood-3d-5x10x20": neighborhood_3d((5, 10, 20), (3, 5, 7)),
}


def element_mask(mask_mod, m=L, n=L):
    return create_mask(mask_mod, 1, 1, m, n, device="cpu")[0, 0].numpy()


@pytest.mark.parametrize("name", list(MASK_MODS))
def test_mask_mod_tile_stats_equal_brute_force(name):
    mm = MASK_MODS[name]
    el = element_mask(mm)
    counts = builder_from_mask_mod(mm, 1, 1, L, L).build()
    for bp, bc in TILES:
        assert as_tuple(counts.tile_stats(bp, bc)) == tile_stats_brute(el, bp, bc), (bp, bc)


@pytest.mark.parametrize("block", [128, (64, 128)], ids=["block128", "block64x128"])
@pytest.mark.parametrize("name", list(MASK_MODS))
def test_block_mask_gives_the_same_counts_as_its_mask_mod(name, block):
    mm = MASK_MODS[name]
    bm = create_block_mask(mm, None, None, L, L, device="cpu", BLOCK_SIZE=block)
    assert builder_from_block_mask(bm).build() == builder_from_mask_mod(mm, 1, 1, L, L).build()


def test_closed_forms_are_recognised():
    assert mask_from_mask_mod(MASK_MODS["causal"], L, L) == Mask("causal")
    assert mask_from_mask_mod(MASK_MODS["sliding-window-128"], L, L) == Mask("window", window=128, causal=True)
    assert mask_from_mask_mod(lambda b, h, q, k: q >= 0, 300, 500) == Mask("full")
    # bottom-right aligned causal when M != N, as attnsim's Mask
    assert mask_from_mask_mod(lambda b, h, q, k: k <= q + 200, 300, 500) == Mask("causal")
    for name in ("document", "prefix-lm-130", "dilated-3", "neighborhood-2d-25x40"):
        assert mask_from_mask_mod(MASK_MODS[name], L, L).kind == "block_counts", name


def test_causality_is_derived_not_guessed():
    assert mask_from_mask_mod(MASK_MODS["document-causal"], L, L).is_causal
    assert not mask_from_mask_mod(MASK_MODS["prefix-lm-130"], L, L).is_causal
    assert not mask_from_mask_mod(MASK_MODS["document"], L, L).is_causal


def test_3d_neighborhood_mask_mod_predicts_as_the_neighborhood_mask():
    grid, win = (5, 12, 16), (3, 5, 7)
    n = 5 * 12 * 16
    w = attnsim.attention(seq=n, heads=4, head_dim=64, grid=grid, win=win)
    wc = w.with_changes(mask=mask_from_mask_mod(neighborhood_3d(grid, win), n, n))
    assert wc.mask.kind == "block_counts"
    for arch in ("h100_sxm5_80gb", "a100_sxm4_80gb"):
        a, b = attnsim.predict(arch, w), attnsim.predict(arch, wc)
        assert (a.latency_s, a.counts, a.traffic_bytes) == (b.latency_s, b.counts, b.traffic_bytes)


def test_per_head_mask_mod():
    bm = create_block_mask(lambda b, h, q, k: (q >= k) & (q - k < 64 * (h + 1)), None, 3, L, L, device="cpu")
    mask, note = mask_from_block_mask(bm)
    assert mask.kind == "block_counts" and mask.counts.counts.shape[:2] == (1, 3) and "exact" in note
    stats = [tile_stats_brute(element_mask(lambda b, h, q, k, hh=hh: (q >= k) & (q - k < 64 * (hh + 1))), 128, 128)
             for hh in range(3)]
    s = mask.counts.tile_stats(128, 128)
    assert s.tiles == np.mean([t[0] for t in stats]) and s.max_row_tiles == max(t[2] for t in stats)


def test_scalar_only_mask_mod_runs_under_vmap():
    # broadcast, .sum() reduces the whole grid; under vmap (FlexAttention's semantics) it is per pair
    def scalar_causal(b, h, q, k):
        return (q - k).sum() >= 0
    assert mask_from_mask_mod(scalar_causal, 300, 300) == Mask("causal")


def test_block_mask_without_usable_mask_mod_is_block_level():
    bm = create_block_mask(MASK_MODS["sliding-window-128"], None, None, L, L, device="cpu")

    def broken(b, h, q, k):
        raise RuntimeError("reads a tensor that is not there")
    bm.mask_mod = broken
    mask, note = mask_from_block_mask(bm)
    assert mask.kind == "block_counts" and not mask.counts.exact and "upper bound" in note
    el = element_mask(MASK_MODS["sliding-window-128"])
    exact = tile_stats_brute(el, 128, 128)
    s = mask.counts.tile_stats(128, 128)
    assert s.tiles == exact[0] and s.rows == exact[4]  # non-empty tiles exact at the block size
    assert s.allowed >= exact[5] and s.full_tiles <= exact[1]
    assert block_level_counts(bm).tile_stats(256, 256).tiles == tile_stats_brute(el, 256, 256)[0]


def test_dense_masks():
    causal = torch.ones(300, 300, dtype=torch.bool).tril()
    assert mask_from_dense(causal, 300, 300) == Mask("causal")
    assert mask_from_dense(~causal, 300, 300, allowed_when="false") == Mask("causal")
    additive = torch.zeros(300, 300).masked_fill(~causal, float("-inf"))
    assert mask_from_dense(additive[None, None], 300, 300) == Mask("causal")
    hf = torch.zeros(300, 300, dtype=torch.bfloat16).masked_fill(~causal, torch.finfo(torch.bfloat16).min)
    assert mask_from_dense(hf, 300, 300) == Mask("causal")
    padding = torch.ones(2, 1, 1, 300, dtype=torch.bool)
    padding[1, ..., 250:] = False  # the second sequence is 250 tokens
    m = mask_from_dense(padding, 300, 300)
    assert m.kind == "block_counts" and m.counts.counts.shape[:2] == (2, 1)
    assert m.counts.allowed == (300 * 300 + 300 * 250) / 2
