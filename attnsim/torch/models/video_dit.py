"""Video DiT layers: adaLN modulation from a conditioning vector, qkv projection, FlexAttention
under a 3D neighborhood mask_mod on a (T, H, W) token grid, output projection, GELU MLP.

The mask: a query at (t, h, w) sees the keys with |dt| <= wt // 2, |dh| <= wh // 2, |dw| <= ww // 2
(clipped at the grid's borders, as attnsim's Mask('neighborhood')). The BlockMask is built once
per forward pass, on the input's device, and shared by the layers.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention.flex_attention import create_block_mask, flex_attention


def neighborhood_3d(grid, win):
    """mask_mod of a clipped 3D neighborhood of `win` positions per axis on a row-major `grid`."""
    _, gh, gw = grid
    ht, hh, hw = (w // 2 for w in win)

    def mask_mod(b, h, q_idx, kv_idx):
        tq, yq, xq = q_idx // (gh * gw), (q_idx // gw) % gh, q_idx % gw
        tk, yk, xk = kv_idx // (gh * gw), (kv_idx // gw) % gh, kv_idx % gw
        return ((tq - tk).abs() <= ht) & ((yq - yk).abs() <= hh) & ((xq - xk).abs() <= hw)
    return mask_mod


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.adaln = nn.Linear(dim, 6 * dim)
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x, c, block_mask):
        b, n, d = x.shape
        s1, b1, g1, s2, b2, g2 = self.adaln(F.silu(c)).unsqueeze(1).chunk(6, dim=-1)
        h = self.norm1(x) * (1 + s1) + b1
        q, k, v = self.qkv(h).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        o = flex_attention(q, k, v, block_mask=block_mask)
        x = x + g1 * self.proj(o.transpose(1, 2).reshape(b, n, d))
        h = self.norm2(x) * (1 + s2) + b2
        return x + g2 * self.fc2(F.gelu(self.fc1(h)))


class VideoDiT(nn.Module):
    def __init__(self, layers: int, dim: int, heads: int, grid, win):
        super().__init__()
        self.grid, self.win = tuple(grid), tuple(win)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))

    def forward(self, x, c):
        n = x.shape[1]
        bm = create_block_mask(neighborhood_3d(self.grid, self.win), None, None, n, n, device=x.device)
        for blk in self.blocks:
            x = blk(x, c, bm)
        return x


def build(layers, dim, heads, grid, win, batch, dtype=torch.bfloat16):
    model = VideoDiT(layers, dim, heads, grid, win).to(dtype).eval()
    n = grid[0] * grid[1] * grid[2]
    return model, (torch.randn(batch, n, dim, dtype=dtype), torch.randn(batch, dim, dtype=dtype))


def factory():
    """2 layers, dim 128, 2 heads of 64; a 4 x 8 x 10 token grid (320 tokens), window 3 x 5 x 5."""
    return build(layers=2, dim=128, heads=2, grid=(4, 8, 10), win=(3, 5, 5), batch=1)


def large():
    """2 layers, dim 1536, 24 heads of 64; a 16 x 30 x 40 grid (19200 tokens), window 5 x 13 x 13."""
    return build(layers=2, dim=1536, heads=24, grid=(16, 30, 40), win=(5, 13, 13), batch=1)
