"""ViT encoder layers: pre-LayerNorm, fused qkv projection, ``F.scaled_dot_product_attention``
(not causal), output projection, GELU MLP.

Per layer: qkv (D->3D), one SDPA call [B, H, T, d], proj (D->D), fc1 (D->4D), fc2 (4D->D).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        o = F.scaled_dot_product_attention(q, k, v)
        return self.proj(o.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.fc1, self.fc2 = nn.Linear(dim, mlp_ratio * dim), nn.Linear(mlp_ratio * dim, dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class Encoder(nn.Module):
    def __init__(self, layers: int, dim: int, heads: int):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))

    def forward(self, x):
        for blk in self.blocks:
            x = blk(x)
        return x


def build(layers, dim, heads, batch, tokens, dtype=torch.bfloat16):
    model = Encoder(layers, dim, heads).to(dtype).eval()
    return model, (torch.randn(batch, tokens, dim, dtype=dtype),)


def factory():
    """2 layers, dim 192, 3 heads of 64; batch 2 x 197 tokens (a 14 x 14 patch grid + class token)."""
    return build(layers=2, dim=192, heads=3, batch=2, tokens=197)


def vit_l16():
    """ViT-L/16 at 224 px: 24 layers, dim 1024, 16 heads of 64, 197 tokens, batch 32."""
    return build(layers=24, dim=1024, heads=16, batch=32, tokens=197)
