"""Llama-style decoder layers: pre-RMSNorm, GQA attention with rotary embeddings through
``F.scaled_dot_product_attention(is_causal=True, enable_gqa=True)``, SwiGLU MLP.

Per layer: 4 projections (q: D->H*d, k, v: D->Hkv*d, o: H*d->D), one SDPA call
[B, H, L, d] x [B, Hkv, L, d], 3 MLP GEMMs (gate, up: D->F, down: F->D).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, kv_heads: int, theta: float = 500000.0):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim, self.theta = heads, kv_heads, dim // heads, theta
        self.q_proj = nn.Linear(dim, heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(dim, kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(dim, kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(heads * self.head_dim, dim, bias=False)

    def rope(self, x):  # x [B, heads, L, d]
        d, length = x.shape[-1], x.shape[-2]
        inv = 1.0 / (self.theta ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d))
        ang = torch.outer(torch.arange(length, device=x.device, dtype=torch.float32), inv)  # [L, d/2]
        cos, sin = torch.cat((ang, ang), -1).cos().to(x.dtype), torch.cat((ang, ang), -1).sin().to(x.dtype)
        return x * cos + rotate_half(x) * sin

    def forward(self, x):
        b, length, _ = x.shape
        q = self.q_proj(x).view(b, length, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, length, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, length, self.kv_heads, self.head_dim).transpose(1, 2)
        o = F.scaled_dot_product_attention(self.rope(q), self.rope(k), v, is_causal=True,
                                           enable_gqa=self.kv_heads != self.heads)
        return self.o_proj(o.transpose(1, 2).reshape(b, length, -1))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, kv_heads: int, hidden: int):
        super().__init__()
        self.input_norm, self.post_norm = RMSNorm(dim), RMSNorm(dim)
        self.attn = Attention(dim, heads, kv_heads)
        self.mlp = MLP(dim, hidden)

    def forward(self, x):
        x = x + self.attn(self.input_norm(x))
        return x + self.mlp(self.post_norm(x))


class Decoder(nn.Module):
    def __init__(self, layers: int, dim: int, heads: int, kv_heads: int, hidden: int):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(dim, heads, kv_heads, hidden) for _ in range(layers))
        self.norm = RMSNorm(dim)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


def build(layers, dim, heads, kv_heads, hidden, batch, seq, dtype=torch.bfloat16):
    model = Decoder(layers, dim, heads, kv_heads, hidden).to(dtype).eval()
    return model, (torch.randn(batch, seq, dim, dtype=dtype),)


def factory():
    """2 layers, dim 256, 4 query heads / 2 KV heads (head dim 64), MLP 512; batch 2 x 200 tokens."""
    return build(layers=2, dim=256, heads=4, kv_heads=2, hidden=512, batch=2, seq=200)


def llama3_8b():
    """Llama-3-8B's layer shape (dim 4096, 32 / 8 heads of 128, MLP 14336), 2 layers, 1 x 8192 tokens."""
    return build(layers=2, dim=4096, heads=32, kv_heads=8, hidden=14336, batch=1, seq=8192)
