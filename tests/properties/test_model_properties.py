"""Properties every prediction must have, over random shapes and masks."""
import dataclasses

from hypothesis import HealthCheck, given, settings, strategies as st

import attnsim
from attnsim.model.bounds import compulsory_dram_bytes, speed_of_light

H100 = attnsim.load_arch("h100_sxm5_80gb")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def cases(draw):
    kv_heads = draw(st.sampled_from([1, 2, 4, 8]))
    group = draw(st.sampled_from([1, 2, 4]))
    decode = draw(st.booleans())
    seq_kv = draw(st.integers(64, 20000))
    seq_q = 1 if decode else draw(st.integers(64, 20000))
    mask = draw(st.sampled_from(["full", "causal", "window", "block"]))
    kw = {}
    if mask == "causal":
        kw["causal"] = True
    elif mask == "window":
        kw["window"] = draw(st.integers(1, 9000))
        kw["sink"] = draw(st.sampled_from([0, 4]))
    elif mask == "block":
        kw["density"] = draw(st.floats(0.05, 0.95))
        kw["causal"] = draw(st.booleans())
    w = attnsim.attention("softmax", batch=draw(st.integers(1, 8)), heads=kv_heads * group, kv_heads=kv_heads,
                          seq_q=seq_q, seq_kv=seq_kv, head_dim=draw(st.sampled_from([64, 128])), **kw)
    alg = "flash_decode" if decode else draw(st.sampled_from(["flash2", "flash3", "unfused"]))
    return w, alg


@SETTINGS
@given(cases())
def test_latency_at_or_above_speed_of_light(case):
    w, alg = case
    r = attnsim.predict(H100, w, alg)
    sol = speed_of_light(H100, w, r.counts["allowed (m,n) pairs per (b,h)"])
    assert r.latency_s >= sol["max"] * (1 - 1e-12)


@SETTINGS
@given(cases())
def test_traffic_at_or_above_compulsory(case):
    w, alg = case
    r = attnsim.predict(H100, w, alg)
    assert r.traffic_bytes["HBM"] >= compulsory_dram_bytes(w, r.counts["allowed (m,n) pairs per (b,h)"]) * (1 - 1e-12)


def _scaled_level(arch, name, **factors):
    lv = arch.level(name)
    return arch.with_level(name, **{k: getattr(lv, k) * f for k, f in factors.items()})


@SETTINGS
@given(cases(), st.sampled_from(["HBM", "L2", "SMEM"]), st.floats(1.0, 8.0))
def test_more_bandwidth_never_slower(case, level, factor):
    w, alg = case
    base = attnsim.predict(H100, w, alg).latency_s
    faster = attnsim.predict(_scaled_level(H100, level, bandwidth_bytes_per_s=factor), w, alg).latency_s
    assert faster <= base * (1 + 1e-12)


@SETTINGS
@given(cases(), st.floats(1.0, 8.0))
def test_more_l2_capacity_never_slower(case, factor):
    w, alg = case
    base = attnsim.predict(H100, w, alg).latency_s
    bigger = attnsim.predict(_scaled_level(H100, "L2", capacity_bytes=factor), w, alg).latency_s
    assert bigger <= base * (1 + 1e-12)


@SETTINGS
@given(cases(), st.floats(1.0, 2.0))
def test_more_smem_capacity_never_slower(case, factor):
    w, alg = case
    base = attnsim.predict(H100, w, alg).latency_s
    g = H100.gpu
    arch = dataclasses.replace(H100, gpu=dataclasses.replace(g, smem_per_sm_bytes=g.smem_per_sm_bytes * factor))
    assert attnsim.predict(arch, w, alg).latency_s <= base * (1 + 1e-12)


@SETTINGS
@given(st.integers(256, 16384), st.booleans(), st.sampled_from(["flash2", "flash3"]))
def test_block_sparse_density_one_equals_dense(seq, causal, alg):
    dense = attnsim.attention("softmax", heads=16, seq=seq, head_dim=128, causal=causal)
    sparse = dense.with_changes(mask=attnsim.Mask("block_sparse", density=1.0, causal=causal))
    a, b = attnsim.predict(H100, dense, alg), attnsim.predict(H100, sparse, alg)
    assert a.latency_s == b.latency_s
    assert a.traffic_bytes == b.traffic_bytes


def test_causal_costs_about_half_of_full_at_long_sequence():
    for alg in ("flash2", "flash3"):
        full = attnsim.predict(H100, attnsim.attention("softmax", heads=16, seq=32768, head_dim=128), alg)
        causal = attnsim.predict(H100, attnsim.attention("softmax", heads=16, seq=32768, head_dim=128,
                                                         causal=True), alg)
        # causal visits 64*65/2 of 64*64 key tiles per head at 128x128 -> (n+1)/(2n) of the work
        assert 0.45 <= causal.latency_s / full.latency_s <= 0.60


def test_window_wider_than_sequence_equals_causal():
    c = attnsim.attention("softmax", heads=16, seq=4096, head_dim=128, causal=True)
    wdw = attnsim.attention("softmax", heads=16, seq=4096, head_dim=128, window=10000)
    assert attnsim.predict(H100, c).latency_s == attnsim.predict(H100, wdw).latency_s
