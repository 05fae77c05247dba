"""BlockCounts (attnsim.workload.block_counts): no torch needed."""
import numpy as np
import pytest

import attnsim
from attnsim.errors import MappingError, WorkloadError
from attnsim.workload.block_counts import BlockCounts, counts_from_bool, load_block_counts
from attnsim.workload.spec import Mask
from naive import as_tuple, tile_stats_brute

TILES = [(128, 64), (128, 128), (64, 128), (192, 128), (16, 16), (176, 80)]


def _masks(m, n):
    q, k = np.arange(m)[:, None], np.arange(n)[None, :]
    off = n - m
    rng = np.random.default_rng(0)
    return {
        "causal": k <= q + off,
        "window300": (k <= q + off) & (k > q + off - 300),
        "prefix130": (k <= q + off) | (k < 130),
        "random-blocks": np.kron(rng.random((-(-m // 50), -(-n // 50))) < 0.3, np.ones((50, 50), bool))[:m, :n],
        "strided5": (k <= q + off) & ((q + off - k) % 5 == 0),
    }


@pytest.mark.parametrize("m,n", [(1000, 1000), (777, 1001), (63, 257)], ids=lambda v: str(v))
@pytest.mark.parametrize("name", list(_masks(20, 20)))
def test_tile_stats_equal_brute_force(name, m, n):
    el = _masks(m, n)[name]
    c = counts_from_bool(el).build()
    for bp, bc in TILES:
        assert as_tuple(c.tile_stats(bp, bc)) == tile_stats_brute(el, bp, bc), (bp, bc)


def test_granule_counts_of_causal_40():
    # the picture in the module docstring
    el = np.tril(np.ones((40, 40), bool))
    c = counts_from_bool(el).build()
    assert c.counts[0, 0].tolist() == [[136, 0, 0], [256, 136, 0], [128, 128, 36]]
    assert c.causal and c.exact


@pytest.mark.parametrize("m,n,form", [(1000, 1000, ("causal",)), (300, 1000, ("causal",)), (1000, 1000, ("full",))])
def test_closed_forms(m, n, form):
    q, k = np.arange(m)[:, None], np.arange(n)[None, :]
    el = k <= q + n - m if form == ("causal",) else np.ones((m, n), bool)
    assert counts_from_bool(el).closed_form() == form


def test_window_closed_form_and_non_forms():
    q, k = np.arange(900)[:, None], np.arange(900)[None, :]
    assert counts_from_bool((k <= q) & (k > q - 77)).closed_form() == ("window", 77)
    assert counts_from_bool((k <= q) | (k < 5)).closed_form() is None  # prefix-LM
    assert counts_from_bool(k >= q).closed_form() is None  # anti-causal
    assert counts_from_bool((k <= q) & ((q - k) % 2 == 0)).closed_form() is None  # not an interval


def test_causal_flag_is_derived_from_the_element_mask():
    q, k = np.arange(100)[:, None], np.arange(100)[None, :]
    assert counts_from_bool(k <= q).build().causal
    assert counts_from_bool((k <= q) & (q - k < 10)).build().causal
    one_above = k <= q
    one_above[3, 4] = True
    assert not counts_from_bool(one_above).build().causal


def test_per_batch_head_counts_average_the_sums_and_keep_extremes():
    q, k = np.arange(256)[:, None], np.arange(256)[None, :]
    a, b = k <= q, np.ones((256, 256), bool)
    c = counts_from_bool(np.stack([a, b])[None]).build()  # [1, 2 heads, M, N]
    assert c.counts.shape[:2] == (1, 2)
    s, sa, sb = (x.tile_stats(128, 128) for x in (c, counts_from_bool(a).build(), counts_from_bool(b).build()))
    assert s.tiles == (sa.tiles + sb.tiles) / 2 and s.allowed == (sa.allowed + sb.allowed) / 2
    assert s.max_row_tiles == 2 and s.min_row_tiles == 1
    with pytest.raises(MappingError, match="q_heads_per_cta"):
        c.tile_stats(128, 128, heads_per_tile=2)


def test_identical_heads_collapse_to_one_copy():
    el = np.tril(np.ones((64, 64), bool))
    assert counts_from_bool(np.broadcast_to(el, (2, 3, 64, 64))).build().counts.shape[:2] == (1, 1)


def test_tile_that_splits_a_granule_is_refused():
    c = counts_from_bool(np.tril(np.ones((100, 100), bool))).build()
    with pytest.raises(MappingError, match="multiple of 16"):
        c.tile_stats(40, 64)
    assert c.tile_stats(100, 100).tiles == 1  # one tile covering a whole axis is fine


def test_unknown_partial_blocks():
    # block level: 2 x 2 blocks of 64 over 100 x 100; (0,0) partial, (1,0) full, (1,1) partial
    counts = np.array([[[[-1, 0], [36 * 64, -1]]]], dtype=np.int32)
    c = BlockCounts(counts, 100, 100, (64, 64), False)
    assert not c.exact
    s = c.tile_stats(64, 64)
    assert (s.tiles, s.full_tiles, s.rows) == (3, 1, 2)
    assert s.allowed == 64 * 64 + 36 * 64 + 36 * 36  # partial blocks counted whole: an upper bound


def test_save_load_roundtrip_and_yaml(tmp_path):
    el = np.tril(np.ones((300, 300), bool))
    c = counts_from_bool(el).build()
    c.save(tmp_path / "m.npz")
    back = load_block_counts(tmp_path / "m.npz")
    assert back == c and back.causal
    (tmp_path / "w.yaml").write_text("batch: 1\nheads: 8\nseq_q: 300\nseq_kv: 300\nhead_dim: 128\n"
                                     "mask: {kind: block_counts, file: m.npz}\n")
    w = attnsim.load_workload(tmp_path / "w.yaml")
    assert w.mask.kind == "block_counts" and w.mask.is_causal
    ref = attnsim.attention(seq=300, heads=8, head_dim=128, causal=True)
    assert attnsim.predict("h100_sxm5_80gb", w).latency_s == attnsim.predict("h100_sxm5_80gb", ref).latency_s


def test_yaml_errors(tmp_path):
    base = "batch: 1\nheads: 8\nseq_q: 300\nseq_kv: 300\nhead_dim: 128\n"
    (tmp_path / "a.yaml").write_text(base + "mask: {kind: block_counts}\n")
    with pytest.raises(WorkloadError, match="mask.file"):
        attnsim.load_workload(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text(base + "mask: {kind: block_counts, file: nope.npz}\n")
    with pytest.raises(WorkloadError, match="does not exist"):
        attnsim.load_workload(tmp_path / "b.yaml")
    counts_from_bool(np.ones((200, 200), bool)).build().save(tmp_path / "c.npz")
    (tmp_path / "c.yaml").write_text(base + "mask: {kind: block_counts, file: c.npz}\n")
    with pytest.raises(WorkloadError, match="seq_q=200"):
        attnsim.load_workload(tmp_path / "c.yaml")


def test_contradicted_causal_flag_is_an_error(tmp_path):
    c = counts_from_bool(np.ones((64, 64), bool)).build()
    np.savez(tmp_path / "x.npz", counts=c.counts, granule=np.array([16, 16]), seq=np.array([64, 64]),
             causal=np.array(True))
    with pytest.raises(WorkloadError, match="above the diagonal"):
        load_block_counts(tmp_path / "x.npz")


def test_bad_counts_are_refused():
    with pytest.raises(WorkloadError, match="shape"):
        BlockCounts(np.zeros((1, 1, 3, 3), np.int32), 100, 100)
    with pytest.raises(WorkloadError, match="0..") :
        BlockCounts(np.full((1, 1, 1, 1), 300, np.int32), 16, 16)
    w = attnsim.attention(seq=64, heads=4, head_dim=64)
    with pytest.raises(WorkloadError, match="BlockCounts"):
        w.with_changes(mask=Mask("block_counts"))


def test_tools_without_a_derivation_for_block_counts_refuse_clearly():
    from attnsim.mapping.search import search_gpu
    from attnsim.mapping.spatial_search import search_spatial
    from attnsim.sim.gpu import simulate
    w = attnsim.attention(seq=300, heads=4, head_dim=64).with_changes(
        mask=Mask("block_counts", counts=counts_from_bool(np.tril(np.ones((300, 300), bool))).build()))
    for call in (lambda: search_gpu("h100_sxm5_80gb", w), lambda: search_spatial("fusemax_like", w),
                 lambda: simulate("h100_sxm5_80gb", w)):
        with pytest.raises(MappingError, match="block_counts"):
            call()
