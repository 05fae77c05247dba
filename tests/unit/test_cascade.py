"""The einsum cascade is the workload's definition of work; the model's counts must match it."""
import attnsim
from attnsim.model import gpu_kernel as K


def test_cascade_names_the_softmax_steps():
    w = attnsim.attention("softmax", heads=8, kv_heads=2, seq=256)
    assert [s.name for s in w.cascade] == ["S", "X", "E", "Es", "L", "O"]
    assert "K[b,h/g,n,d]" in w.cascade.step("S").expr  # GQA: query head h reads KV head h / g


def test_cascade_work_equals_model_useful_counts(h100):
    # causal 1000 x 1000: the mask allows 1000*1001/2 pairs per (b, h)
    w = attnsim.attention("softmax", batch=2, heads=8, kv_heads=2, seq=1000, head_dim=64, causal=True)
    r = attnsim.predict(h100, w, "flash3")
    pairs = r.counts["allowed (m,n) pairs per (b,h)"]
    assert pairs == 1000 * 1001 / 2
    ops = w.cascade.ops(w.extents(), allowed_pairs=pairs)
    assert ops["mma"] == r.useful_flops == 2 * 2 * 8 * pairs * (64 + 64)
    assert ops["exp"] == 2 * 8 * pairs
    # the fused kernel adds one op per element the math does not have: converting P to 16 bit
    per_element = sum(s.ops_per_point for s in w.cascade if s.op == "vector")
    assert K.SOFTMAX_VECTOR_OPS_PER_ELEMENT == per_element + 1
