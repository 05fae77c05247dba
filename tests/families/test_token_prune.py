"""token_prune: the pruning numerics, the degenerate settings (keep = 1, prune_layer = 0), the
plan's time as the sum of its parts, golden pass counts with derivations, properties, bad input."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import attnsim
from attnsim.errors import WorkloadError
from attnsim.model.bounds import compulsory_dram_bytes
from attnsim.model.families import plan_for
from attnsim.model.plan import AttentionOp, kernel_cost
from attnsim.workload.families import token_prune as tp
from attnsim.workload.masks import causal_mask, full_mask
from attnsim.workload.reference import attention_reference

H100 = attnsim.load_arch("h100_sxm5_80gb")
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def prune_w(seq=640, heads=8, kv_heads=None, head_dim=64, causal=True, **params):
    return attnsim.attention("token_prune", batch=1, heads=heads, kv_heads=kv_heads, seq=seq, head_dim=head_dim,
                             causal=causal, params=params)


def softmax(seq, heads=8, kv_heads=None, head_dim=64, causal=True):
    return attnsim.attention("softmax", batch=1, heads=heads, kv_heads=kv_heads, seq=seq, head_dim=head_dim,
                             causal=causal)


# ---------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("n,text,keep,causal,heads,kv_heads", [
    (63, 0, 0.25, True, 4, 4), (100, 20, 0.5, False, 4, 2), (257, 7, 0.1, True, 6, 3), (100, 0, 1.0, True, 2, 1)],
    ids=["N63-causal", "N100-text20-full-GQA", "N257-text7-causal-GQA", "N100-keep1"])
def test_attention_on_kept_tokens_equals_masked_full_attention(n, text, keep, causal, heads, kv_heads):
    """Later layers on the gathered tokens compute exactly what full-length attention computes for
    the kept queries when a mask removes the pruned keys (kept tokens keep their order)."""
    rng = np.random.default_rng(n)
    d, b = 16, 2
    q = rng.standard_normal((b, heads, n, d))
    k = rng.standard_normal((b, kv_heads, n, d))
    v = rng.standard_normal((b, kv_heads, n, d))
    probes = q[:, :, -3:]  # the last query rows score the tokens
    scores = tp.attention_scores(probes, k)
    n_keep = max(1, int(keep * (n - text) + 0.5))
    idx = tp.select_tokens(scores, n_keep, text)
    base = causal_mask(n, n) if causal else full_mask(n, n)
    for i in range(b):
        sel = idx[i]
        pruned = attention_reference(q[i:i + 1, :, sel], k[i:i + 1, :, sel], v[i:i + 1, :, sel],
                                     mask=causal_mask(len(sel), len(sel)) if causal else None)
        kept = tp.keep_mask(idx[i:i + 1], n)[0]
        full = attention_reference(q[i:i + 1], k[i:i + 1], v[i:i + 1], mask=base & kept[None, :])
        np.testing.assert_allclose(pruned, full[:, :, sel], rtol=1e-12, atol=1e-12)


def test_selection_keeps_the_top_scores_and_the_text():
    rng = np.random.default_rng(5)
    scores = rng.random((3, 101))
    idx = tp.select_tokens(scores, 23, 11)
    assert idx.shape == (3, 34)
    for row, s in zip(idx, scores):
        assert list(row) == sorted(row)  # sequence order kept
        assert set(range(90, 101)) <= set(row)  # every text token
        kept = [i for i in row if i < 90]
        pruned = sorted(set(range(90)) - set(kept))
        assert min(s[kept]) >= max(s[pruned])


def test_scores_against_direct_loops():
    rng = np.random.default_rng(6)
    q, k = rng.standard_normal((1, 4, 3, 8)), rng.standard_normal((1, 2, 37, 8))
    want = np.zeros(37)
    for h in range(4):
        for p in range(3):
            s = k[0, h // 2] @ q[0, h, p] / np.sqrt(8)
            want += np.exp(s - s.max()) / np.exp(s - s.max()).sum()
    np.testing.assert_allclose(tp.attention_scores(q, k)[0], want / 12, rtol=1e-12)
    x, ref = rng.standard_normal((1, 37, 5)), rng.standard_normal((1, 2, 5))
    cos = [[x[0, i] @ ref[0, j] / np.linalg.norm(x[0, i]) / np.linalg.norm(ref[0, j]) for j in range(2)]
           for i in range(37)]
    np.testing.assert_allclose(tp.similarity_scores(x, ref)[0], np.mean(cos, axis=1), rtol=1e-12)
    hidden = rng.standard_normal((1, 37, 5))
    np.testing.assert_array_equal(tp.gather_tokens(hidden, np.array([[0, 4, 36]])), hidden[:, [0, 4, 36]])


# ---------------------------------------------------------------------------- degenerate settings


def t_attention(seq, **kw):
    return attnsim.predict(H100, softmax(seq, **kw)).latency_s


def pass_time(w):
    p = plan_for(H100, w)
    return sum(kernel_cost(H100, op).latency_s for op in p.ops if not isinstance(op, AttentionOp))


def test_keep_one_is_layers_of_plain_attention():
    w = prune_w(keep=1.0, layers=24, prune_layer=5)
    p = plan_for(H100, w)
    assert [(op.name, op.count) for op in p.ops] == [("attention", 24)]
    assert attnsim.predict(H100, w).latency_s == 24 * t_attention(640)


def test_time_is_full_layers_plus_pass_plus_pruned_layers():
    """seq 640, 64 text tokens, keep 0.25: K = 64 + round(0.25 * 576) = 208 tokens."""
    w = prune_w(keep=0.25, layers=32, prune_layer=2, text_tokens=64, probes=8)
    assert tp.kept_tokens(w) == 208
    want = 2 * t_attention(640) + pass_time(w) + 30 * t_attention(208)
    assert attnsim.predict(H100, w).latency_s == pytest.approx(want, rel=1e-12)
    assert [op.name for op in plan_for(H100, w).ops] == [
        "attention (full length)", "prune: score (probe attention)", "prune: top-k (radix select)",
        "prune: gather kept tokens", "attention (pruned)"]


def test_prune_before_the_first_layer():
    w = prune_w(keep=0.5, layers=8, prune_layer=0)
    assert plan_for(H100, w).ops[0].name == "prune: score (probe attention)"
    want = pass_time(w) + 8 * t_attention(320)
    assert attnsim.predict(H100, w).latency_s == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("mapping,name", [(None, "flash3"), ("flash2", "flash2")], ids=["default", "flash2"])
def test_mapping_applies_to_both_attention_calls(mapping, name):
    ops = [op for op in plan_for(H100, prune_w(), mapping).ops if isinstance(op, AttentionOp)]
    assert [op.mapping.name for op in ops] == [name, name]
    assert [op.workload.seq_q for op in ops] == [640, 160]


@pytest.mark.parametrize("score,probes", [("attention", 1), ("attention", 64), ("similarity", 4),
                                          ("similarity", 32)],
                         ids=["cls", "probes64", "sim4", "sim32"])
def test_useful_flops_are_the_cascade_mma(score, probes):
    """Cascade mma = the attention model's useful FLOPs of every attention call + the scoring products
    (2 B H P N D for probe attention, 2 B T P E for similarity), wherever they run."""
    w = prune_w(keep=0.3, layers=6, prune_layer=2, score=score, probes=probes, text_tokens=40, kv_heads=2)
    p = plan_for(H100, w)
    attn = sum(kernel_cost(H100, op).useful_flops * op.count for op in p.ops if isinstance(op, AttentionOp))
    scoring = 2 * 8 * probes * 640 * 64 if score == "attention" else 2 * 600 * probes * 512
    assert p.useful_flops == tp.cascade_ops(w)["mma"] == attn + scoring


# ---------------------------------------------------------------------------- golden pass counts


def test_golden_pass_llava_like():
    """seq 640 = 576 image + 64 text tokens, 8 heads x 64 (hidden 512), bf16, keep 0.25, 8 probes.
    score: K read once 640*8*64*2 = 655360, probe queries 8*8*64*2 = 8192, scores 640*4 = 2560
           -> 666112 B; 8 heads x ceil(8/64) = 8 CTAs before the key split; flash-attn's split
           heuristic (2 x 132 slots, 640/64 = 10 key tiles) splits 10 ways -> 80 CTAs (8 of 264 slots
           would leave the GPU idle); 8 probes < 16 rows: the products run on the
           vector units, 2 passes x 8*8*640*64 = 5242880 FMAs + 6*8*8*640 = 245760 softmax ops
    top-k: 16 radix passes x 7 ops x 576 = 64512 ops; HBM 576*4 + 144*(4 + 8) = 4032 B; one CTA
    gather: 208 kept rows x 512 x 2 B read and written + 208*8 index bytes = 427648 B"""
    w = prune_w(keep=0.25, text_tokens=64, probes=8)
    score, topk, gather = plan_for(H100, w).ops[1:4]
    assert (score.hbm_bytes, score.ctas, score.gemms) == (666112, 80, ())
    assert score.vector_ops == 5242880 + 245760
    assert (topk.vector_ops, topk.hbm_bytes, topk.ctas) == (64512, 4032, 1)
    assert gather.hbm_bytes == 427648


def test_golden_pass_uses_mma_from_16_probes():
    """64 probe rows: two (64 x 640 x 64) products per head on the tensor cores."""
    score = plan_for(H100, prune_w(probes=64)).ops[1]
    assert [(g.count, g.m, g.n, g.k) for g in score.gemms] == [(8, 64, 640, 64)] * 2


@pytest.mark.parametrize("name", ["token_prune_llava15_7b", "token_prune_video_16k"])
def test_example_workloads(name):
    w = attnsim.load_workload(name)
    r = attnsim.predict(H100, w)
    full = attnsim.predict(H100, w.with_changes(params=w.params.of({**w.params.as_dict(), "keep": 1.0})))
    assert r.latency_s < full.latency_s


@pytest.mark.parametrize("arch", ["fusemax_like", "tpu_like_128x128"])
def test_spatial_archs_cost_the_plan(arch):
    w = prune_w(keep=0.25, text_tokens=64, probes=32, score="similarity")
    r = attnsim.predict(arch, w)
    assert r.latency_s > 0 and r.model == "spatial-analytical (plan)"
    assert r.useful_flops == tp.cascade_ops(w)["mma"]


# ---------------------------------------------------------------------------- properties


@st.composite
def cases(draw):
    seq = draw(st.integers(2, 20000))
    kv = draw(st.sampled_from([1, 2, 8]))
    layers = draw(st.integers(1, 40))
    return attnsim.attention(
        "token_prune", batch=draw(st.integers(1, 4)), heads=kv * draw(st.sampled_from([1, 4])), kv_heads=kv,
        seq=seq, head_dim=draw(st.sampled_from([64, 128])), causal=draw(st.booleans()),
        params={"layers": layers, "prune_layer": draw(st.integers(0, layers - 1)),
                "keep": draw(st.floats(0.01, 1.0)), "score": draw(st.sampled_from(["attention", "similarity"])),
                "probes": draw(st.integers(1, min(seq, 128))), "text_tokens": draw(st.integers(0, seq - 1))})


def speed_of_light(arch, w):
    """Matrix FLOPs at the best peak; and every attention call's compulsory Q, K, V, O bytes."""
    peak = max(per[w.dtype] for per in arch.compute.matrix_flops_per_cycle.values() if w.dtype in per)
    flops = tp.cascade_ops(w)["mma"] / (peak * arch.clock_hz * arch.compute.instances)
    k = tp.kept_tokens(w) if tp.prunes(w) else w.seq_q
    pl, layers = w.param("prune_layer"), w.param("layers")
    full = w.with_changes(family="softmax", params=w.params.of({}))
    kept = full.with_changes(seq_q=k, seq_kv=k)
    byts = (pl * compulsory_dram_bytes(full, tp.allowed_pairs(w.seq_q, w.mask.is_causal))
            + (layers - pl) * compulsory_dram_bytes(kept, tp.allowed_pairs(k, w.mask.is_causal)))
    return max(flops, byts / arch.levels[0].bandwidth_bytes_per_s)


@SETTINGS
@given(cases())
def test_latency_at_or_above_speed_of_light(w):
    assert attnsim.predict(H100, w).latency_s >= speed_of_light(H100, w) * (1 - 1e-12)


@SETTINGS
@given(cases(), st.sampled_from(["HBM", "L2", "SMEM"]), st.floats(1.0, 8.0))
def test_more_bandwidth_never_slower(w, level, factor):
    lv = H100.level(level)
    faster = H100.with_level(level, bandwidth_bytes_per_s=lv.bandwidth_bytes_per_s * factor)
    assert attnsim.predict(faster, w).latency_s <= attnsim.predict(H100, w).latency_s * (1 + 1e-12)


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kw,params,key", [
    (dict(seq_q=1, seq_kv=640), {}, "seq_q"),
    (dict(seq=640, window=64), {}, "mask.kind"),
    (dict(seq=640), {"prune_layer": 32}, "params.prune_layer"),
    (dict(seq=640), {"text_tokens": 640}, "params.text_tokens"),
    (dict(seq=640), {"probes": 641}, "params.probes"),
    (dict(seq=640), {"keep": 0.0}, "params.keep"),
    (dict(seq=640), {"score": "cls"}, "params.score"),
    (dict(seq=640), {"keep_ratio": 0.5}, "params.keep_ratio"),
], ids=["decode", "window", "prune-after-last", "all-text", "probes", "keep-0", "score", "misspelt"])
def test_bad_input_names_the_key(kw, params, key):
    with pytest.raises(WorkloadError) as e:
        attnsim.attention("token_prune", heads=8, head_dim=64, params=params, **kw)
    assert any(p.key == key for p in e.value.problems), str(e.value)
