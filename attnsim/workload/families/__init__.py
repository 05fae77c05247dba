"""Attention families: one module per family group, each with its numpy reference, its cascade
builder and its parameter table.

A family is named in YAML (`family: topk_blocks`), in `--cases` files (the `algorithm`
column) and on the command line (`--candidate topk_blocks:density=0.25`). Its parameters
(``Workload.params``) are read against the family's `Field` table, so a misspelt or
out-of-range parameter is an error that names the key, the expected form and a did-you-mean.

Registry: family name -> module; modules are imported on first use (``family(name)``).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from attnsim.spec.schema import Field

# family name -> module under attnsim.workload.families (the module defines FAMILIES: {name: Family})
REGISTRY: dict[str, str] = {
    "softmax": "softmax",
    # linear attention (Lightning Attention-2, TransNormer, Based, Hedgehog, GLA)
    "linear_chunked": "linear",
    "gla_chunked": "linear",
    "linear_decode": "linear",
    # selective state spaces (Mamba, Mamba-2)
    "mamba_scan": "ssm",
    "mamba2_ssd": "ssm",
    # content-based sparse attention (BiFormer, HiP, SeerAttention; Routing Transformer; DuoAttention, MoA)
    "topk_blocks": "sparse",
    "routing_clusters": "sparse",
    "head_mix": "sparse",
    # KV-cache compression for decoding (SnapKV, CAKE, ThinK, KIVI, vLLM, DeepSeek MLA)
    "kv_budget": "kvcache",
    "kv_channel_prune": "kvcache",
    "kv_quant": "kvcache",
    "paged_decode": "kvcache",
    "mla_decode": "kvcache",
    # token pruning and merging (HiPrune, FlowCut, ZipVL)
    "token_prune": "token_prune",
    # generalized neighborhood attention (NATTEN, GNA)
    "neighborhood": "neighborhood",
}


@dataclass(frozen=True)
class Family:
    """What a family is: its name, a one-line description, its parameters and its cascade.

    ``params``: Field table of the family's own parameters (all optional, with defaults).
    ``cascade``: Workload -> Cascade, the family's definition of work.
    ``check``: Workload -> list of (key, message) problems beyond the parameter table
    (e.g. "budget exceeds seq_kv"); None when the table says everything.
    ``decode``: a decode-step family (one query position per sequence by default).
    ``baseline``: Workload -> the Workload this one is compared with in reports, or None when it
    has no such twin; None (the field) means softmax attention on the same shape and mask.
    """

    name: str
    doc: str
    params: tuple[Field, ...]
    cascade: Callable
    check: Callable | None = None
    decode: bool = False
    baseline: Callable | None = None


def family(name: str) -> Family:
    """The registered family `name` (KeyError with the known names if unknown)."""
    if name not in REGISTRY:
        raise KeyError(name)
    mod = importlib.import_module(f"attnsim.workload.families.{REGISTRY[name]}")
    return mod.FAMILIES[name]


def family_names() -> list[str]:
    return list(REGISTRY)
