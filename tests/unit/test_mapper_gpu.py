"""The GPU kernel mapper: its fast rows are lower_gpu's rows, its legality is check_mapping's,
and its answers are the model's (a search never reports a number predict would not)."""
from __future__ import annotations

import numpy as np
import pytest

import attnsim
from attnsim.errors import MappingError
from attnsim.mapping.kernel import check_mapping
from attnsim.mapping.search import (ILLEGAL, PRUNED, GpuSpace, classify_space, fast_rows, search_gpu,
                                    to_mapping)
from attnsim.model import gpu_kernel as K
from attnsim.model.lower import lower_gpu

WORKLOADS = {
    "llama70b-prefill-causal": dict(batch=1, heads=64, kv_heads=8, seq=8192, head_dim=128, causal=True),
    "decode-gqa": dict(batch=4, heads=32, kv_heads=8, seq_q=1, seq_kv=5000, head_dim=128),
    "window-sink-d64": dict(batch=2, heads=16, kv_heads=4, seq=3000, head_dim=64, window=700, sink=4),
    "blocksparse-fp8": dict(batch=1, heads=8, seq=2048, head_dim=128, density=0.3, causal=True, dtype="fp8"),
    "odd-d80-M1000": dict(batch=3, heads=6, kv_heads=2, seq_q=1000, seq_kv=1500, head_dim=80),
}


def _w(name):
    return attnsim.attention("softmax", **WORKLOADS[name])


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_fast_rows_equal_lower_gpu(h100, name):
    """For a random sample of legal points, the numpy-built row is lower_gpu's row, bit for bit."""
    w = _w(name)
    c = classify_space(h100, w)
    p = c.points.take(c.legal)
    rng = np.random.default_rng(7)
    idx = rng.choice(len(p), size=min(150, len(p)), replace=False)
    rows = fast_rows(h100, w, p.take(idx), c.instrs)
    for j, i in enumerate(idx):
        m = to_mapping(p, int(i), c.instrs, c.orders)
        np.testing.assert_array_equal(rows[j], lower_gpu(h100, w, m), err_msg=m.label())


def test_fast_rows_equal_lower_gpu_neighborhood(h100):
    w = attnsim.attention("softmax", batch=1, heads=4, seq=1024, head_dim=64, grid=(32, 32), win=(7, 7))
    space = GpuSpace(block_m=(64, 128), block_n=(32, 64), warps=(4,), stages=(2,))
    c = classify_space(h100, w, space)
    p = c.points.take(c.legal)
    rows = fast_rows(h100, w, p, c.instrs)
    for i in range(len(p)):
        np.testing.assert_array_equal(rows[i], lower_gpu(h100, w, to_mapping(p, i, c.instrs, c.orders)))


def test_fast_rows_equal_lower_gpu_on_a100(a100):
    w = _w("window-sink-d64")
    c = classify_space(a100, w)
    assert c.instrs == ("mma_sync",)  # no wgmma before Hopper
    p = c.points.take(c.legal)
    idx = np.random.default_rng(3).choice(len(p), size=60, replace=False)
    rows = fast_rows(a100, w, p.take(idx), c.instrs)
    for j, i in enumerate(idx):
        np.testing.assert_array_equal(rows[j], lower_gpu(a100, w, to_mapping(p, int(i), c.instrs, c.orders)))


@pytest.mark.parametrize("name", ["llama70b-prefill-causal", "odd-d80-M1000"])
def test_vectorized_legality_is_check_mapping(h100, name):
    """A point the mapper calls legal passes check_mapping; one it calls illegal for a
    check_mapping rule fails it (occupancy is the kernel's rule: no CTA fits an SM)."""
    w = _w(name)
    space = GpuSpace(warps=(2, 4, 6, 16, 80), q_heads_per_cta=(1, 3, 8), block_m=(16, 24, 128, 256))
    c = classify_space(h100, w, space)
    rng = np.random.default_rng(1)
    unpruned = np.flatnonzero(c.pruned == 0)
    for i in rng.choice(unpruned, size=400, replace=False):
        m = to_mapping(c.points, int(i), c.instrs, c.orders)
        reason = ILLEGAL[c.illegal[i] - 1] if c.illegal[i] else None
        if reason is None or reason == "no CTA fits an SM":
            check_mapping(m, w, h100)
        else:
            with pytest.raises(MappingError):
                check_mapping(m, w, h100)
    seen = {ILLEGAL[k - 1] for k in np.unique(c.illegal) if k}
    assert {"warps", "wgmma needs 4-warp groups", "q_heads_per_cta must divide G", "block not a multiple of 16",
            "smem overflow"} <= seen


def test_no_cta_fits_points_are_the_kernels_no_fit(h100):
    w = _w("llama70b-prefill-causal")
    c = classify_space(h100, w)
    code = ILLEGAL.index("no CTA fits an SM") + 1
    p = c.points.take(c.illegal == code)
    assert len(p) > 0
    out = K.evaluate_points(fast_rows(h100, w, p, c.instrs))
    assert (out[:, K.O_STATUS] == K.ST_NO_FIT).all()


def test_head_dim_over_256_leaves_only_unfused(h100):
    w = attnsim.attention("softmax", heads=8, seq=1024, head_dim=320)
    r = search_gpu(h100, w, top_k=3)
    assert r.best.style == "unfused" and r.illegal_reasons["head dim"] > 0


def test_counts_add_up_and_best_is_predicts_number(h100):
    w = attnsim.load_workload("llama3_70b_prefill_8k")
    r = search_gpu(h100, w, top_k=5)
    assert r.evaluated + r.illegal + r.pruned + r.sampled_out == r.space_size
    assert r.evaluated > 5000 and r.illegal > 0 and r.pruned > 0
    lat = [res.latency_s for _, res in r.top]
    assert lat == sorted(lat) and len(r.top) == 5
    # the Result is exactly what the public predict path says about the same mapping
    assert attnsim.predict(h100, w, r.best).latency_s == r.best_result.latency_s
    # flash2's and flash3's default mappings are points of the space: the best is no slower
    for alg in ("flash2", "flash3"):
        assert r.best_result.latency_s <= attnsim.predict(h100, w, alg).latency_s
    # the launch order is not modelled: only the causal-friendly order is kept
    assert r.pruned_reasons["launch order not modelled (equivalent point)"] > 0
    assert {m.launch_order for m, _ in r.top} == {"longest_first"}


def test_decode_searches_split_kv(h100):
    w = attnsim.attention("softmax", batch=1, heads=32, kv_heads=8, seq_q=1, seq_kv=32768, head_dim=128)
    r = search_gpu(h100, w, top_k=3)
    assert r.best.style == "split_kv" and r.best.split_kv > 1
    assert r.best_result.latency_s <= attnsim.predict(h100, w, "flash_decode").latency_s
    assert "split_kv on a large grid" not in r.pruned_reasons  # a decode grid is small


@pytest.mark.parametrize("objective", ["energy", "edp"])
def test_objectives_rank_by_their_quantity(h100, objective):
    w = _w("window-sink-d64")
    r = search_gpu(h100, w, objective=objective, top_k=8)
    key = [res.energy_total_j * (res.latency_s if objective == "edp" else 1.0) for _, res in r.top]
    assert key == sorted(key)
    lat_best = search_gpu(h100, w, top_k=1).best_result
    assert r.best_result.energy_total_j * (r.best_result.latency_s if objective == "edp" else 1) <= \
        lat_best.energy_total_j * (lat_best.latency_s if objective == "edp" else 1)


def test_sampling_is_seeded(h100):
    w = _w("odd-d80-M1000")
    space = {"max_points": 300}
    a = search_gpu(h100, w, seed=5, space=space)
    b = search_gpu(h100, w, seed=5, space=space)
    c = search_gpu(h100, w, seed=6, space=space)
    assert a.evaluated == 300 and a.sampled_out > 0
    assert [m for m, _ in a.top] == [m for m, _ in b.top]
    assert [m for m, _ in a.top] != [m for m, _ in c.top]
    full = search_gpu(h100, w)
    assert full.best_result.latency_s <= a.best_result.latency_s


def test_bad_space_and_arch(h100):
    w = _w("decode-gqa")
    with pytest.raises(MappingError, match="did you mean 'block_m'"):
        search_gpu(h100, w, space={"blok_m": (64,)})
    with pytest.raises(MappingError, match="objective"):
        search_gpu(h100, w, objective="speed")
    with pytest.raises(MappingError, match="spatial"):
        search_gpu(attnsim.load_arch("fusemax_like"), w)
    with pytest.raises(MappingError, match="no legal mapping"):
        search_gpu(h100, w, space={"block_m": (256,), "block_n": (256,), "stages": (4,), "styles": ("fused",)})


def test_reason_names_are_stable():
    assert "smem overflow" in ILLEGAL and "registers" in ILLEGAL and "head dim" in ILLEGAL
    assert "wgmma needs 4-warp groups" in ILLEGAL and "split_kv on a large grid" in PRUNED
