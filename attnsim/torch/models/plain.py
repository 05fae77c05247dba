"""GPT-2-style attention written out by hand: q @ k^T * scale, masked_fill with a causal buffer,
softmax, dropout, @ v; then the output projection.

    scores = (q @ k.transpose(-2, -1)) * d**-0.5      # [B, H, L, L]
    scores = scores.masked_fill(~causal[:L, :L], -inf)
    o = dropout(softmax(scores, -1)) @ v               # [B, H, L, d]

On the meta device the causal buffer has no values, so the mask is costed as full (said in the
capture); on CPU it is read and recognised as causal.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, max_len: int, dropout: float = 0.1):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("causal", torch.ones(max_len, max_len, dtype=torch.bool).tril())

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        scores = (q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5
        scores = scores.masked_fill(~self.causal[:t, :t], float("-inf"))
        o = self.dropout(F.softmax(scores, dim=-1)) @ v
        return self.proj(o.transpose(1, 2).reshape(b, t, d))


class Model(nn.Module):
    def __init__(self, layers: int, dim: int, heads: int, max_len: int):
        super().__init__()
        self.h = nn.ModuleList(Attention(dim, heads, max_len) for _ in range(layers))

    def forward(self, x):
        for blk in self.h:
            x = x + blk(x)
        return x


def factory():
    """1 layer, dim 128, 4 heads of 32; batch 2 x 100 tokens; eval mode (dropout off)."""
    model = Model(layers=1, dim=128, heads=4, max_len=128).to(torch.bfloat16).eval()
    return model, (torch.randn(2, 100, 128, dtype=torch.bfloat16),)
