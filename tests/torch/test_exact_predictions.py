"""A causal / sliding-window mask_mod predicts exactly (same floats) what causal=True / window=W
predicts, for the default kernels, at non-power-of-two lengths: the granule counts give the same
tile statistics at every tile, and the derived causal flag the same mapping decisions."""
import dataclasses
from functools import lru_cache

import pytest

torch = pytest.importorskip("torch")
from torch.nn.attention.flex_attention import create_block_mask  # noqa: E402

import attnsim  # noqa: E402
from attnsim.torch.masks import builder_from_block_mask, builder_from_mask_mod, to_mask  # noqa: E402

ARCHS = ["h100_sxm5_80gb", "a100_sxm4_80gb"]
SHAPES = [  # (seq_q, seq_kv, heads, kv_heads, head_dim): prefill, GQA, small-grid split-KV, decode
    (1000, 1000, 8, 2, 128), (3001, 3001, 32, 8, 128), (777, 777, 4, 4, 64), (257, 257, 2, 2, 256),
    (5, 2049, 32, 8, 128), (1, 1500, 16, 4, 128)]


def same_prediction(a, b):
    da, db = dataclasses.asdict(a), dataclasses.asdict(b)
    for d in (da, db):
        d.pop("workload")
    return da == db


def causal_mod(m, n):
    return lambda b, h, q, k: k <= q + (n - m)  # bottom-right aligned, as attnsim's causal


def window_mod(m, n, w):
    return lambda b, h, q, k: (k <= q + (n - m)) & (q + (n - m) - k < w)


@lru_cache(maxsize=None)
def causal_block_mask_masks(m, n):
    """(counts kept, closed form) of a BlockMask built from the causal mask_mod."""
    bm = create_block_mask(causal_mod(m, n), None, None, m, n, device="cpu")
    b = builder_from_block_mask(bm)
    return to_mask(b, closed_forms=False), to_mask(b)


@lru_cache(maxsize=None)
def window_counts(m, n, w):
    return to_mask(builder_from_mask_mod(window_mod(m, n, w), 1, 1, m, n), closed_forms=False)


def shape_id(s):
    return "M{}-N{}-H{}-Hkv{}-D{}".format(*s)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_causal_mask_mod_equals_causal(arch, shape):
    m, n, h, hkv, d = shape
    ref = attnsim.attention(seq_q=m, seq_kv=n, heads=h, kv_heads=hkv, head_dim=d, causal=True)
    mask, form = causal_block_mask_masks(m, n)  # counts kept: no shortcut through the closed form
    assert mask.kind == "block_counts" and mask.is_causal
    r0, r1 = attnsim.predict(arch, ref), attnsim.predict(arch, ref.with_changes(mask=mask))
    assert same_prediction(r0, r1)
    # and it is recognised as the closed form (one query row sees every key: that is the full mask)
    assert form == (ref.mask if m > 1 else attnsim.Mask("full"))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("window", [100, 333, 1024])
@pytest.mark.parametrize("shape", SHAPES[:4] + SHAPES[5:], ids=shape_id)
def test_sliding_window_mask_mod_equals_window(arch, shape, window):
    m, n, h, hkv, d = shape
    ref = attnsim.attention(seq_q=m, seq_kv=n, heads=h, kv_heads=hkv, head_dim=d, window=window)
    mask = window_counts(m, n, window)
    assert mask.kind == "block_counts" and mask.is_causal
    r0, r1 = attnsim.predict(arch, ref), attnsim.predict(arch, ref.with_changes(mask=mask))
    assert same_prediction(r0, r1)


@pytest.mark.parametrize("algorithm", ["flash2", "unfused"])
def test_other_kernels_too(algorithm):
    ref = attnsim.attention(seq=1500, heads=8, head_dim=128, causal=True)
    mask = to_mask(builder_from_mask_mod(causal_mod(1500, 1500), 1, 1, 1500, 1500), closed_forms=False)
    a = attnsim.predict("h100_sxm5_80gb", ref, algorithm)
    b = attnsim.predict("h100_sxm5_80gb", ref.with_changes(mask=mask), algorithm)
    assert same_prediction(a, b)


def test_spatial_arch_too():
    ref = attnsim.attention(seq=1000, heads=8, head_dim=128, window=200)
    mask = to_mask(builder_from_mask_mod(window_mod(1000, 1000, 200), 1, 1, 1000, 1000), closed_forms=False)
    assert same_prediction(attnsim.predict("fusemax_like", ref), attnsim.predict("fusemax_like", ref.with_changes(mask=mask)))
