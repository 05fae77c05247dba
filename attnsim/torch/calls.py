"""What a capture records: attention calls and GEMMs, each with the module that made it.

Torch-free (the values are attnsim Workloads and plain numbers), so a capture can be costed and
written without touching the model again.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from attnsim.workload.spec import Workload


@dataclass(frozen=True)
class AttentionCall:
    """One attention call as attnsim costs it (``workload``: family 'softmax', its mask included)."""

    op: str  # 'sdpa' | 'flex_attention' | 'matmul-softmax-matmul' | 'multi_head_attention'
    module: str  # dotted module path of the caller ('' = the model's own forward)
    workload: Workload
    causal_flag: bool = False  # SDPA's / MHA's is_causal as given
    scale: float | None = None  # softmax scale (None: not known, e.g. folded into q)
    dropout: float = 0.0
    gqa: bool = False  # fewer KV heads than query heads
    mask_note: str = ""  # where the mask came from and how exact it is
    notes: tuple = ()  # what of this call is not costed (score_mod, dropout ...)

    def key(self) -> tuple:
        return (self.op, self.workload, self.causal_flag, self.scale, self.dropout, self.mask_note, self.notes)


@dataclass(frozen=True)
class GemmCall:
    """`count` independent (m x k) @ (k x n) products."""

    op: str  # 'linear' | 'matmul' | 'bmm' | 'baddbmm' | 'mm' | 'addmm' | 'einsum' | 'mha in_proj' ...
    module: str
    count: int
    m: int
    n: int
    k: int
    dtype: str
    shared_b: bool = False  # one B operand (a weight) for every product

    def key(self) -> tuple:
        return (self.op, self.count, self.m, self.n, self.k, self.dtype, self.shared_b)


@dataclass(frozen=True)
class Group:
    """Identical calls: the first one, how many, and the modules that made them."""

    call: object
    count: int
    modules: tuple


def layer_of(module: str) -> str:
    """The top-level repeated block a module belongs to: the path up to its first numeric part
    ('layers.3.attn.q_proj' -> 'layers.3'), else its first part ('lm_head'), '(model)' for the root."""
    if not module:
        return "(model)"
    parts = module.split(".")
    for i, p in enumerate(parts):
        if p.isdigit():
            return ".".join(parts[:i + 1])
    return parts[0]


def _group(calls) -> list[Group]:
    order: dict = {}
    for c in calls:
        order.setdefault(c.key(), []).append(c)
    return [Group(cs[0], len(cs), tuple(dict.fromkeys(c.module for c in cs))) for cs in order.values()]


@dataclass(frozen=True)
class Capture:
    """Everything one forward pass did that attnsim costs, and what it did not cost."""

    attention: tuple = ()  # AttentionCall, in call order
    gemms: tuple = ()  # GemmCall, in call order
    not_costed: dict = field(default_factory=dict)  # op name -> calls (norms, RoPE, activations ...)
    device: str = "meta"
    layer_order: tuple = ()  # layers (``layer_of``) in order of their first call

    def distinct_attention(self) -> list[Group]:
        return _group(self.attention)

    def distinct_gemms(self) -> list[Group]:
        return _group(self.gemms)

    def not_costed_line(self) -> str:
        if not self.not_costed:
            return "not costed: nothing"
        items = sorted(self.not_costed.items(), key=lambda kv: (-kv[1], kv[0]))
        return "not costed (elementwise, norms, RoPE, activations, copies): " + ", ".join(f"{k} x{v}" for k, v in items)
