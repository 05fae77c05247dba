"""Attention as a cascade of einsums over shared ranks.

Ranks: B batch, H query heads, G query heads per KV head, M query positions,
N key positions, D head dim (Q, K), F value dim (V, O).

Each step says what it computes, which operation class runs it (``mma`` on tensor cores or
the 2D array, ``exp`` on special-function units, ``vector`` on the fp32 ALUs / 1D array) and
how many operations it costs per point of its iteration space. The model counts work from
these steps, so a new family only has to write its cascade.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Einsum:
    name: str  # output tensor name
    expr: str  # human form: "S[b,h,m,n] = Q[b,h,m,d] * K[b,h/g,n,d]"
    op: str  # 'mma' | 'exp' | 'vector'
    ranks: tuple[str, ...]  # iteration space, e.g. ('b','h','m','n','d')
    ops_per_point: float  # FLOP (mma: 2 per MAC) or ops per point of the iteration space
    masked: bool  # True when only (m, n) pairs allowed by the mask are computed


@dataclass(frozen=True)
class Cascade:
    steps: tuple[Einsum, ...]

    def __iter__(self):
        return iter(self.steps)

    def step(self, name: str) -> Einsum:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(f"no step {name!r} in cascade; steps: {[s.name for s in self.steps]}")

    def ops(self, extents: dict[str, int], allowed_pairs: int | None = None) -> dict[str, float]:
        """Total operations per class. ``allowed_pairs`` is the number of (m, n) pairs the mask
        allows for one (b, h); masked steps (which all range over both m and n) count only those."""
        pairs = allowed_pairs if allowed_pairs is not None else extents["m"] * extents["n"]
        total = {"mma": 0.0, "exp": 0.0, "vector": 0.0}
        for s in self.steps:
            points = 1.0
            for r in s.ranks:
                if not (s.masked and r in ("m", "n")):
                    points *= extents[r]
            if s.masked:
                points *= pairs
            total[s.op] += points * s.ops_per_point
        return total

    def describe(self) -> str:
        return "\n".join(f"{s.expr:55s} [{s.op}, {s.ops_per_point:g}/pt]" for s in self.steps)


def softmax_attention_cascade() -> Cascade:
    """Masked softmax attention (any mask; GQA through h/g indexing of K and V).

    S[b,h,m,n]  = Q[b,h,m,d] * K[b,h/g,n,d]        2 FLOP per (m,n,d)    (mma)
    X[b,h,m]    = max_n S[b,h,m,n]                  1 op per (m,n)        (vector)
    E[b,h,m,n]  = exp(S*scale - X)                  1 exp + 1 FMA per (m,n)
    L[b,h,m]    = sum_n E[b,h,m,n]                  1 op per (m,n)        (vector)
    P[b,h,m,n]  = E / L   (fused kernels defer this to O: 1 op per (m,f))
    O[b,h,m,f]  = P[b,h,m,n] * V[b,h/g,n,f]         2 FLOP per (m,n,f)    (mma)
    """
    return Cascade((
        Einsum("S", "S[b,h,m,n] = Q[b,h,m,d] * K[b,h/g,n,d]", "mma", ("b", "h", "m", "n", "d"), 2, True),
        Einsum("X", "X[b,h,m] = max_n S[b,h,m,n]", "vector", ("b", "h", "m", "n"), 1, True),
        Einsum("E", "E[b,h,m,n] = exp(S[b,h,m,n]*scale - X[b,h,m])", "exp", ("b", "h", "m", "n"), 1, True),
        Einsum("Es", "(scale and subtract: one FMA per element)", "vector", ("b", "h", "m", "n"), 1, True),
        Einsum("L", "L[b,h,m] = sum_n E[b,h,m,n]", "vector", ("b", "h", "m", "n"), 1, True),
        Einsum("O", "O[b,h,m,f] = E[b,h,m,n] * V[b,h/g,n,f] / L[b,h,m]", "mma", ("b", "h", "m", "n", "f"), 2, True),
    ))
