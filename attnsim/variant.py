"""The written forms of a family's parameters and of a variant, shared by the command line, the
`--cases` files, `attnsim.speedup` and the app:

    density=0.25,grid=[64,64],tiling=nd      parameters (lists as [8,8] or 8x8)
    topk_blocks:density=0.25@flash2          a variant: family, parameters, attention kernel
"""
from __future__ import annotations

import re

from attnsim.errors import AttnsimError

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
