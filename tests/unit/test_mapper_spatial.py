"""The spatial mapper: compute is predict_spatial's, traffic follows the loop order, every
evaluated point fits the GLB, and the structure of the answers is what the mapping says."""
from __future__ import annotations

from dataclasses import replace

import pytest

import attnsim
from attnsim.errors import MappingError
from attnsim.mapping.spatial import SpatialMapping
from attnsim.mapping.spatial_search import (SpatialSearchMapping, evaluate_mapping, evaluate_space, search_spatial,
                                            tile_sizes)
from attnsim.model.lower_bounds import compulsory_bytes
from attnsim.model.spatial import predict_spatial


@pytest.fixture(scope="module")
def fusemax():
    return attnsim.load_arch("fusemax_like")


@pytest.fixture(scope="module")
def llama8b():
    return attnsim.load_workload("llama3_8b_prefill_8k")


def test_tile_sizes():
    assert tile_sizes(1000, 256) == (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1000)
    assert tile_sizes(1, 256) == (1,)


@pytest.mark.parametrize("style,bm,bn", [("fused", 1024, 512), ("fused", 256, 256), ("row_fused", 64, 256),
                                         ("unfused", 256, 256)])
def test_compute_and_traffic_match_predict_spatial(fusemax, llama8b, style, bm, bn):
    """With one head per tile and K/V resident (predict_spatial keeps them: a head's K/V fit half
    the GLB), the mapper's point is predict_spatial's to the last bit."""
    m = SpatialSearchMapping(style=style, block_m=bm, block_n=bn, resident=style != "unfused")
    mine = evaluate_mapping(fusemax, llama8b, m)
    ref = predict_spatial(fusemax, llama8b, SpatialMapping(style=style, block_m=bm, block_n=bn))
    for key in ("compute (2D + 1D schedule)", "2D array busy", "1D array busy"):
        assert mine.times_s[key] == ref.times_s[key]
    assert mine.executed_flops == ref.executed_flops and mine.useful_flops == ref.useful_flops
    if style != "unfused":  # unfused: the mapper also charges the GEMMs' tiling re-reads
        assert mine.traffic_bytes == ref.traffic_bytes
        assert mine.latency_s == ref.latency_s and mine.energy_j == ref.energy_j


def test_every_evaluated_point_fits_and_reasons_add_up(fusemax, llama8b):
    ev = evaluate_space(fusemax, llama8b)
    assert (ev.cols["footprint"] <= fusemax.levels[1].capacity_bytes).all()
    n_illegal, n_pruned = sum(ev.illegal_reasons.values()), sum(ev.pruned_reasons.values())
    assert len(ev.points) + n_illegal + n_pruned == ev.space_size
    assert set(ev.illegal_reasons) == {"GLB overflow (GEMM tiles)", "GLB overflow (score row block)",
                                       "GLB overflow (tiles + online-softmax state)"}


def test_row_fused_needs_its_score_rows(fusemax, llama8b):
    with pytest.raises(MappingError, match="score row block"):
        evaluate_mapping(fusemax, llama8b, SpatialSearchMapping(style="row_fused", block_m=512, block_n=256))


def test_best_fused_reads_everything_once(fusemax, llama8b):
    r = search_spatial(fusemax, llama8b, styles=("fused",), top_k=3)
    assert r.best.style == "fused" and r.best.resident and r.best.loop_order == "q_outer"
    assert r.best_result.traffic_bytes["DRAM"] == compulsory_bytes(llama8b)
    assert r.best_result.latency_s <= attnsim.predict(fusemax, llama8b, "fused").latency_s


def test_loop_orders_trade_kv_rereads_for_state_spills(fusemax, llama8b):
    q = evaluate_mapping(fusemax, llama8b, SpatialSearchMapping(block_m=256, block_n=256, loop_order="q_outer"))
    kv = evaluate_mapping(fusemax, llama8b, SpatialSearchMapping(block_m=256, block_n=256, loop_order="kv_outer"))
    assert q.times_s == {**q.times_s, "compute (2D + 1D schedule)": kv.times_s["compute (2D + 1D schedule)"]}
    w, e = llama8b, llama8b.dtype_bytes
    kv_bytes = w.batch * w.kv_heads * w.seq_kv * (w.head_dim + w.value_dim) * e
    qo_bytes = w.batch * w.heads * w.seq_q * (w.head_dim + w.value_dim) * e
    # q_outer: causal, 32 query tiles of 256 rows meet 1 + 2 + ... + 32 key tiles of K/V each
    assert q.traffic_bytes["DRAM"] == qo_bytes + w.batch * w.heads * (32 * 33 // 2) * 256 * 256 * e
    # kv_outer: K/V once; Q re-read per visit; the fp32 state (F + 2 values) spilled between visits
    visits, nonempty = 32 * 33 // 2, 32
    st = (w.value_dim + 2) * 4
    per_head = visits * 256 * w.head_dim * e + 2 * (visits - nonempty) * 256 * st
    assert kv.traffic_bytes["DRAM"] == kv_bytes + w.batch * w.heads * per_head + qo_bytes // 2
    assert kv.traffic_bytes["DRAM"] > q.traffic_bytes["DRAM"] > kv_bytes + qo_bytes


def test_head_packing_shares_kv_reads(fusemax):
    """Packing the G heads of one KV head into a tile divides the streamed K/V traffic by G."""
    w = attnsim.attention("softmax", heads=8, kv_heads=2, seq=2048, head_dim=64, causal=True)
    a = evaluate_mapping(fusemax, w, SpatialSearchMapping(block_m=256, block_n=256, q_heads_per_tile=1))
    b = evaluate_mapping(fusemax, w, SpatialSearchMapping(block_m=1024, block_n=256, q_heads_per_tile=4))
    qo = 8 * 2048 * 128 * 2
    assert (a.traffic_bytes["DRAM"] - qo) == 4 * (b.traffic_bytes["DRAM"] - qo)


def test_small_glb_and_other_objectives(fusemax):
    w = attnsim.attention("softmax", heads=4, kv_heads=2, seq=1000, head_dim=64, window=200)
    small = fusemax.with_level("GLB", capacity_bytes=256 * 1024)
    r = search_spatial(small, w, objective="dram", top_k=4)
    d = [res.traffic_bytes["DRAM"] for _, res in r.top]
    assert d == sorted(d)
    for obj in ("energy", "edp"):
        r2 = search_spatial(small, w, objective=obj, top_k=4)
        key = [res.energy_total_j * (res.latency_s if obj == "edp" else 1) for _, res in r2.top]
        assert key == sorted(key)
    tiny = fusemax.with_level("GLB", capacity_bytes=64)
    with pytest.raises(MappingError, match="no spatial mapping fits"):
        search_spatial(tiny, w)


@pytest.mark.parametrize("dataflow", ["ws", "os", "is"])
@pytest.mark.parametrize("style", ["unfused", "row_fused", "fused"])
def test_other_array_and_dataflow(fusemax, dataflow, style):
    arch = replace(fusemax, array=replace(fusemax.array, rows=32, cols=16, dataflow=dataflow))
    w = attnsim.attention("softmax", heads=2, seq=300, head_dim=48, causal=True)
    ref = predict_spatial(arch, w, SpatialMapping(style, 48, 80))
    m = evaluate_mapping(arch, w, SpatialSearchMapping(style, 48, 80))
    for key in ("compute (2D + 1D schedule)", "2D array busy", "1D array busy"):
        assert m.times_s[key] == ref.times_s[key]
    assert search_spatial(arch, w, top_k=2).best_result.latency_s <= m.latency_s


def test_bad_inputs(fusemax, llama8b, h100):
    with pytest.raises(MappingError, match="needs a spatial arch"):
        search_spatial(h100, llama8b)
    with pytest.raises(MappingError, match="did you mean 'fused'"):
        search_spatial(fusemax, llama8b, styles=("fusd",))
    with pytest.raises(MappingError, match="q_heads_per_tile"):
        evaluate_mapping(fusemax, llama8b, SpatialSearchMapping(block_m=256, q_heads_per_tile=3))


@pytest.mark.parametrize("arch_name", ["tpu_like_128x128", "fusemax_like"])
@pytest.mark.parametrize("seq_q", [1, 2048])
def test_searching_spatial_unrolling_is_never_worse(arch_name, seq_q):
    """With unroll=True the os/ws/is dataflows are searched too; the arch's own dataflow is among
    them, so the best latency can only improve, and each top mapping names its dataflow."""
    from attnsim.mapping.spatial_search import search_spatial
    w = attnsim.attention("softmax", heads=8, kv_heads=2, seq_q=seq_q, seq_kv=2048, head_dim=128)
    fixed = search_spatial(arch_name, w, top_k=3)
    free = search_spatial(arch_name, w, top_k=3, unroll=True)
    assert free.best_result.latency_s <= fixed.best_result.latency_s
    assert free.evaluated == 3 * fixed.evaluated
    assert all(m.dataflow in ("os", "ws", "is") for m, _ in free.top)
    assert all(m.dataflow == "" for m, _ in fixed.top)
