"""The attention shape flags shared by `predict`, `map`, `bound` and `simulate attention`."""
from __future__ import annotations

import re

from attnsim.errors import AttnsimError

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


def workload_from_flags(a, family: str | None = None, params: dict | None = None):
    """A Workload from --workload FILE (when the parser has it and it is given) or the shape flags,
    of `family` with `params` (default: the --family/--params flags where the parser has them)."""
    from attnsim.workload.spec import attention, load_workload
    if getattr(a, "workload", None):
        return load_workload(a.workload)
    if a.seq is None and (a.seq_q is None or a.seq_kv is None):
        raise AttnsimError("give --seq (or --seq-q and --seq-kv) with the shape flags"
                           + (", or --workload FILE" if hasattr(a, "workload") else ""))
    if family is None:
        family = getattr(a, "family", "softmax")
        params = parse_params(getattr(a, "params", ""))
    return attention(family, params=params, batch=a.batch, heads=a.heads, kv_heads=a.kv_heads, seq=a.seq, seq_q=a.seq_q,
                     seq_kv=a.seq_kv, head_dim=a.head_dim, causal=a.causal, window=a.window, sink=a.sink,
                     density=a.density, dtype=a.dtype)


def add_family_flags(p) -> None:
    p.add_argument("--family", default="softmax",
                   help="attention family (attnsim list shows them; default softmax): e.g. topk_blocks, linear_chunked")
    p.add_argument("--params", default="",
                   help="the family's parameters, k=v,k=v (lists as [8,8] or 8x8), e.g. density=0.25,block_k=64")


_DIMS = re.compile(r"^\d+(x\d+)+$")


def _split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` outside brackets: 'grid=[8,8],window=3' -> ['grid=[8,8]', 'window=3']."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[("
        depth -= ch in "])"
        if ch == sep and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [s.strip() for s in out if s.strip()]


def parse_params(text: str, where: str = "--params", sep: str = ",") -> dict:
    """'density=0.25,grid=[64,64],tiling=nd' -> {'density': 0.25, 'grid': [64, 64], 'tiling': 'nd'}.

    Values are read as YAML scalars and lists; '64x64' is the list [64, 64]."""
    import yaml
    out: dict = {}
    for item in _split_top(text or "", sep):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise AttnsimError(f"{where}: expected key=value, got {item!r} (e.g. density=0.25{sep}block_k=64)")
        value = value.strip()
        if _DIMS.match(value):
            out[key] = [int(x) for x in value.split("x")]
            continue
        try:
            out[key] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            raise AttnsimError(f"{where}: {key}: cannot read value {value!r}") from None
    return out


def parse_variant(text: str, where: str) -> tuple[str, dict, str | None]:
    """'topk_blocks:density=0.25@flash2' -> ('topk_blocks', {'density': 0.25}, 'flash2').

    A bare kernel name ('flash2', 'flash3', 'unfused', ...) is softmax attention with that kernel."""
    from attnsim.mapping.kernel import ALGORITHMS
    from attnsim.spec.schema import did_you_mean
    from attnsim.workload.families import family_names
    body, _, kernel = text.partition("@")
    name, _, params = body.partition(":")
    name = name.strip()
    if name in ALGORITHMS and not params:
        return "softmax", {}, name
    families = family_names()
    if name not in families:
        hint = did_you_mean(name, list(families) + list(ALGORITHMS))
        raise AttnsimError(f"{where}: unknown family or kernel {name!r}" + (f" ({hint})" if hint else "")
                           + f"; families: {', '.join(families)}; kernels: {', '.join(ALGORITHMS)}")
    kernel = kernel.strip() or None
    if kernel is not None and kernel not in ALGORITHMS:
        raise AttnsimError(f"{where}: unknown kernel {kernel!r} after '@'; kernels: {', '.join(ALGORITHMS)}")
    return name, parse_params(params, where), kernel
