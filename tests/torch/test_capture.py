"""Capturing the bundled models and hand-built ones yields exactly the expected calls and shapes."""
import math

import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import attnsim  # noqa: E402
from attnsim.torch import capture, predict_capture  # noqa: E402
from attnsim.torch.record import CaptureError  # noqa: E402
from attnsim.torch.export import write_capture  # noqa: E402
from attnsim.torch.models import llama, plain, video_dit, vit  # noqa: E402
from attnsim.torch.models.video_dit import neighborhood_3d  # noqa: E402
from attnsim.torch.masks import mask_from_mask_mod  # noqa: E402
from attnsim.workload.spec import Mask  # noqa: E402
from attnsim.workload.tiles import explicit_tile_stats  # noqa: E402

DEVICES = ["meta", "cpu"]


def run(factory, device):
    with torch.device(device):
        model, inputs = factory()
        return capture(model, *inputs)


def shape(w):
    return (w.batch, w.heads, w.kv_heads, w.seq_q, w.seq_kv, w.head_dim, w.value_dim, w.dtype)


def gemms(cap):
    return [(g.op, g.module, g.count, g.m, g.n, g.k) for g in cap.gemms]


@pytest.mark.parametrize("device", DEVICES)
def test_llama_decoder(device):
    cap = run(llama.factory, device)
    assert [(a.op, a.module) for a in cap.attention] == [("sdpa", "layers.0.attn"), ("sdpa", "layers.1.attn")]
    for a in cap.attention:
        assert shape(a.workload) == (2, 4, 2, 200, 200, 64, 64, "bf16")
        assert a.workload.mask == Mask("causal") and a.causal_flag and a.gqa and a.scale == 64 ** -0.5
    t = 2 * 200  # tokens: batch x seq
    per_layer = [("q_proj", 256, 256), ("k_proj", 128, 256), ("v_proj", 128, 256), ("o_proj", 256, 256),
                 ("mlp.gate_proj", 512, 256), ("mlp.up_proj", 512, 256), ("mlp.down_proj", 256, 512)]
    want = [("linear", f"layers.{i}." + ("attn." if "mlp" not in p else "") + p, 1, t, n, k)
            for i in range(2) for p, n, k in per_layer]
    assert gemms(cap) == want
    assert cap.layer_order == ("layers.0", "layers.1")
    assert {"rsqrt", "cat", "silu"} <= set(cap.not_costed)  # RMSNorm, RoPE, SwiGLU: listed, not costed


@pytest.mark.parametrize("device", DEVICES)
def test_vit_block(device):
    cap = run(vit.factory, device)
    assert len(cap.attention) == 2
    for a in cap.attention:
        assert a.op == "sdpa" and shape(a.workload) == (2, 3, 3, 197, 197, 64, 64, "bf16")
        assert a.workload.mask == Mask("full") and not a.causal_flag and not a.gqa and a.scale == 0.125
    t = 2 * 197
    assert gemms(cap) == [("linear", f"blocks.{i}.{p}", 1, t, n, k) for i in range(2)
                          for p, n, k in (("attn.qkv", 576, 192), ("attn.proj", 192, 192), ("fc1", 768, 192),
                                          ("fc2", 192, 768))]
    assert cap.not_costed["layer_norm"] == 4 and cap.not_costed["gelu"] == 2


@pytest.mark.parametrize("device", DEVICES)
def test_video_dit_flex_attention(device):
    cap = run(video_dit.factory, device)
    assert [(a.op, a.module) for a in cap.attention] == [("flex_attention", "blocks.0"), ("flex_attention", "blocks.1")]
    want = mask_from_mask_mod(neighborhood_3d((4, 8, 10), (3, 5, 5)), 320, 320)
    nbhd = attnsim.attention(seq=320, heads=2, head_dim=64, grid=(4, 8, 10), win=(3, 5, 5)).mask
    for a in cap.attention:
        assert shape(a.workload) == (1, 2, 2, 320, 320, 64, 64, "bf16") and a.scale == 0.125
        assert a.workload.mask == want and not a.workload.mask.is_causal
        assert a.mask_note.startswith("BlockMask 128x128" if device == "cpu" else "mask_mod evaluated on every pair")
        for bp, bc in ((128, 128), (128, 64), (192, 128)):  # the same tiles as attnsim's neighborhood mask
            assert a.workload.mask.counts.tile_stats(bp, bc) == explicit_tile_stats(nbhd, 320, 320, bp, bc)
    assert gemms(cap) == [("linear", f"blocks.{i}.{p}", 1, m, n, k) for i in range(2)
                          for p, m, n, k in (("adaln", 1, 768, 128), ("qkv", 320, 384, 128), ("proj", 320, 128, 128),
                                             ("fc1", 320, 512, 128), ("fc2", 320, 128, 512))]


@pytest.mark.parametrize("device", DEVICES)
def test_plain_matmul_softmax_matmul(device):
    cap = run(plain.factory, device)
    (a,) = cap.attention
    assert a.op == "matmul-softmax-matmul" and a.module == "h.0"
    assert shape(a.workload) == (2, 4, 4, 100, 100, 32, 32, "bf16") and math.isclose(a.scale, 32 ** -0.5)
    if device == "cpu":  # the causal buffer's values are read
        assert a.workload.mask == Mask("causal") and "closed form causal" in a.mask_note
    else:
        assert a.workload.mask == Mask("full") and "costed as full" in a.mask_note
    # the two products of the attention are folded into it; only the projections stay GEMMs
    assert gemms(cap) == [("linear", "h.0.qkv", 1, 200, 384, 128), ("linear", "h.0.proj", 1, 200, 128, 128)]


class EinsumAttention(nn.Module):
    """MQA written with einsum: 8 query heads share one K/V head; an additive causal mask."""

    def forward(self, q, k, v, bias):
        s = torch.einsum("bhqd,bkd->bhqk", q, k) / 8.0
        p = torch.softmax(s + bias, dim=-1)
        return torch.einsum("bhqk,bkd->bhqd", p, v)


def test_einsum_pattern_and_additive_mask():
    q, k, v = torch.randn(2, 8, 96, 64), torch.randn(2, 96, 64), torch.randn(2, 96, 64)
    bias = torch.zeros(96, 96).masked_fill(torch.ones(96, 96, dtype=torch.bool).triu(1), float("-inf"))
    cap = capture(EinsumAttention(), q, k, v, bias)
    (a,) = cap.attention
    assert a.op == "matmul-softmax-matmul" and shape(a.workload) == (2, 8, 1, 96, 96, 64, 64, "fp32")
    assert a.workload.mask == Mask("causal") and a.scale == 1 / 8 and a.gqa  # one K/V head: MQA
    assert cap.gemms == ()


def test_einsum_gemm_dims():
    x, w = torch.randn(4, 10, 32), torch.randn(7, 32, 16)

    class M(nn.Module):
        def forward(self, x, w):
            return torch.einsum("bik,ekn->bein", x, w)
    cap = capture(M(), x, w)
    (g,) = cap.gemms
    assert (g.op, g.count, g.m, g.n, g.k) == ("einsum", 1, 40, 112, 32) and not cap.attention


def test_sdpa_attn_mask_block_structure_and_top_left_causal():
    class M(nn.Module):
        def forward(self, q, k, v, mask):
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            b = F.scaled_dot_product_attention(q[:, :, :100], k, v, is_causal=True)  # 100 queries, 300 keys
            return a, b
    q = torch.randn(1, 2, 300, 64)
    mask = torch.zeros(300, 300, dtype=torch.bool)
    mask[:, :150] = True  # every query sees the first 150 keys: block-structured
    cap = capture(M(), q, q, q, mask)
    a, b = cap.attention
    assert a.workload.mask.kind == "block_counts" and "non-empty" in a.mask_note
    assert a.workload.mask.counts.allowed == 300 * 150
    # SDPA's is_causal is top-left aligned: query m sees keys 0..m, not attnsim's bottom-right causal
    assert b.workload.mask.kind == "block_counts" and "top-left" in b.mask_note
    assert b.workload.mask.counts.allowed == sum(m + 1 for m in range(100))


class MHABlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(128, 4, batch_first=True)

    def forward(self, x, padding):
        return self.attn(x, x, x, key_padding_mask=padding, need_weights=False)[0]


def test_multihead_attention_module():
    x = torch.randn(2, 80, 128)
    padding = torch.zeros(2, 80, dtype=torch.bool)
    padding[1, 60:] = True  # the second sequence has 60 tokens
    cap = capture(MHABlock().eval(), x, padding)
    (a,) = cap.attention
    assert a.op == "multi_head_attention" and a.module == "attn"
    assert shape(a.workload) == (2, 4, 4, 80, 80, 32, 32, "fp32")
    assert a.workload.mask.counts.allowed == (80 * 80 + 80 * 60) / 2  # mean over the two sequences
    assert gemms(cap) == [("mha in_proj", "attn", 1, 160, 384, 128), ("mha out_proj", "attn", 1, 160, 128, 128)]


def test_failures_are_capture_errors():
    class Bad(nn.Module):
        def forward(self, x):
            raise ValueError("shape mismatch somewhere")
    with pytest.raises(CaptureError, match="ValueError: shape mismatch"):
        capture(Bad(), torch.zeros(1))

    class MetaMask(nn.Module):  # a mask_mod that reads a tensor living on the meta device
        def forward(self, q):
            from torch.nn.attention.flex_attention import create_block_mask, flex_attention
            doc = torch.zeros(q.shape[2], dtype=torch.long, device=q.device)
            bm = create_block_mask(lambda b, h, i, j: doc[i] == doc[j], None, None, q.shape[2], q.shape[2],
                                   device=q.device)
            return flex_attention(q, q, q, block_mask=bm)
    with torch.device("meta"):
        with pytest.raises(CaptureError, match="--device cpu"):
            capture(MetaMask(), torch.zeros(1, 1, 256, 64))


def test_capture_folder_loads_and_predicts(tmp_path, capsys):
    from attnsim.cli import main
    with torch.device("meta"):
        model, inputs = video_dit.factory()
        cap = capture(model, *inputs)
    side = write_capture(cap, tmp_path, source="video_dit:factory")
    assert [(a["file"], a["count"]) for a in side["attention"]] == [("attention_01.yaml", 2)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attention_01.npz", "attention_01.yaml", "capture.json",
                                                          "gemms.csv", "summary.md"]
    w = attnsim.load_workload(tmp_path / "attention_01.yaml")
    assert w.mask == cap.attention[0].workload.mask and shape(w) == shape(cap.attention[0].workload)
    assert main(["predict", "--workload", str(tmp_path / "attention_01.yaml"), "--format", "json"]) == 0
    import json
    got = json.loads(capsys.readouterr().out)["latency_s"]
    assert got == attnsim.predict("h100_sxm5_80gb", cap.attention[0].workload).latency_s
    assert (tmp_path / "gemms.csv").read_text().count("\n") == 1 + 5


def test_prediction_sums_the_calls():
    with torch.device("meta"):
        model, inputs = llama.factory()
        cap = capture(model, *inputs)
    p = predict_capture(cap, "h100_sxm5_80gb")
    attn = attnsim.predict("h100_sxm5_80gb", cap.attention[0].workload).latency_s
    assert [r.layer for r in p.layers] == ["layers.0", "layers.1"]
    assert all(r.attention_s == attn and r.attention_calls == 1 and r.gemm_calls == 7 for r in p.layers)
    assert math.isclose(p.total_s, sum(k.total_s for k in p.kernels), rel_tol=1e-12)  # summed in another order
    assert math.isclose(p.attention_s, 2 * attn)
    fp16 = predict_capture(cap, "a100_sxm4_80gb", dtype="fp16")
    w16 = cap.attention[0].workload.with_changes(dtype="fp16")
    assert fp16.dtype == "fp16" and fp16.layers[0].attention_s == attnsim.predict("a100_sxm4_80gb", w16).latency_s


def test_bmm_pattern_with_baddbmm_scores():
    class M(nn.Module):  # nn.MultiheadAttention's need_weights path, by hand: [B * H, L, d]
        def forward(self, q, k, v):
            s = torch.baddbmm(torch.zeros(6, 50, 70), q, k.transpose(1, 2), alpha=0.25)
            return torch.bmm(F.dropout(F.softmax(s, dim=-1), p=0.1, training=True), v)
    cap = capture(M(), torch.randn(6, 50, 16), torch.randn(6, 70, 16), torch.randn(6, 70, 24))
    (a,) = cap.attention
    assert shape(a.workload) == (1, 6, 6, 50, 70, 16, 24, "fp32") and a.dropout == 0.1
    assert a.notes == ("dropout not costed",) and cap.gemms == ()
    assert a.scale is None  # baddbmm's alpha is not read: the scale is reported unknown


def test_a_block_mask_shared_by_layers_is_converted_once(monkeypatch):
    import attnsim.torch.record as cap_module
    calls = []
    real = cap_module.mask_from_block_mask
    monkeypatch.setattr(cap_module, "mask_from_block_mask", lambda bm: calls.append(1) or real(bm))
    with torch.device("meta"):
        model, inputs = video_dit.build(layers=3, dim=64, heads=1, grid=(2, 4, 8), win=(3, 3, 3), batch=1)
        cap = capture(model, *inputs)
    assert len(cap.attention) == 3 and len(calls) == 1
    assert len({a.workload for a in cap.attention}) == 1
