"""The attention shape flags shared by `predict`, `map`, `bound` and `simulate attention`."""
from __future__ import annotations

from attnsim.errors import AttnsimError
from attnsim.variant import parse_params

DTYPES = ["fp16", "bf16", "fp8", "fp32"]


def add_shape_flags(p) -> None:
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=None, help="KV heads (GQA/MQA); default = heads")
    p.add_argument("--seq", type=int, help="sequence length for both queries and keys")
    p.add_argument("--seq-q", type=int, help="query positions (1 for a decode step)")
    p.add_argument("--seq-kv", type=int, help="key positions")
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--causal", action="store_true")
    p.add_argument("--window", type=int, help="sliding window in keys (implies causal)")
    p.add_argument("--sink", type=int, default=0, help="sink tokens always visible under a window")
    p.add_argument("--density", type=float, help="block-sparse density in (0, 1]")
    p.add_argument("--dtype", default="bf16", choices=DTYPES)


def shape_kwargs(a) -> dict:
    """The shape flags as keyword arguments of ``attnsim.attention``."""
    if a.seq is None and (a.seq_q is None or a.seq_kv is None):
        raise AttnsimError("give --seq (or --seq-q and --seq-kv) with the shape flags"
                           + (", or --workload FILE" if hasattr(a, "workload") else ""))
    return dict(batch=a.batch, heads=a.heads, kv_heads=a.kv_heads, seq=a.seq, seq_q=a.seq_q, seq_kv=a.seq_kv,
                head_dim=a.head_dim, causal=a.causal, window=a.window, sink=a.sink, density=a.density,
                dtype=a.dtype)


def workload_from_flags(a):
    """A Workload from --workload FILE (when the parser has it and it is given) or the shape flags,
    of the --family with its --params where the parser has them (else softmax attention)."""
    from attnsim.workload.spec import attention, load_workload
    if getattr(a, "workload", None):
        return load_workload(a.workload)
    return attention(getattr(a, "family", "softmax"), params=parse_params(getattr(a, "params", "")),
                     **shape_kwargs(a))


def add_family_flags(p) -> None:
    p.add_argument("--family", default="softmax",
                   help="attention family (attnsim list shows them; default softmax): e.g. topk_blocks, linear_chunked")
    p.add_argument("--params", default="",
                   help="the family's parameters, k=v,k=v (lists as [8,8] or 8x8), e.g. density=0.25,block_k=64")
