"""What ptxas said about the bundled CUDA kernels, as KernelMappings the model can evaluate.

``validate/build.py`` compiles the kernels of ``validate/kernels/`` and writes
``validate/kernels/resources.json``: per kernel (an ``extern "C"`` entry named after its
variant, e.g. ``flash_fwd_bf16_d128_m128_n64_w4_s2_causal``) the registers, static shared
memory and spills per arch, the template parameters (``block``) and the dynamic shared memory.

    >>> from attnsim.validate.kernels_meta import bundled_mapping
    >>> m = bundled_mapping("flash_fwd_bf16_d128_m128_n64_w4_s2_causal", "sm_80")
    >>> m.registers_per_thread          # ptxas' count, so the occupancy model uses the real one

``arch`` is an SM name (``sm_80``, ``sm_90``) or an attnsim preset whose SM is known
(``a100_sxm4_80gb`` -> sm_80, ``h100_sxm5_80gb`` / ``h200_sxm`` -> sm_90).
"""
from __future__ import annotations

import json
from pathlib import Path

import attnsim
from attnsim.errors import Problem, SpecError
from attnsim.mapping.kernel import KernelMapping
from attnsim.spec.schema import did_you_mean

RESOURCES_PATH = Path(attnsim.__file__).resolve().parents[1] / "validate" / "kernels" / "resources.json"
#: attnsim arch presets -> the SM the bundled kernels are compiled for on that GPU.
PRESET_SM = {"a100_sxm4_80gb": "sm_80", "h100_sxm5_80gb": "sm_90", "h200_sxm": "sm_90"}
#: Keys of resources.json that are build metadata, not kernels.
METADATA_KEYS = ("nvcc_version", "date", "archs", "nvcc_flags", "build_seconds", "sources_sha256")


def load_resources(path: str | Path | None = None) -> dict:
    """resources.json as a dict (default: the repository's ``validate/kernels/resources.json``)."""
    p = Path(path) if path is not None else RESOURCES_PATH
    if not p.is_file():
        raise SpecError(Problem(f"no kernel resource file at {p}",
                                hint="run `python validate/build.py` (needs nvcc) to compile the kernels and "
                                     "write it"))
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise SpecError(Problem(f"not valid JSON: {e.msg}", file=str(p), line=e.lineno)) from None
    if not isinstance(data, dict):
        raise SpecError(Problem("expected a JSON object of kernels", file=str(p)))
    return data


def kernel_entries(resources: dict) -> dict[str, dict]:
    """The kernel records of a resources dict (the metadata keys left out)."""
    return {k: v for k, v in resources.items() if isinstance(v, dict) and "block" in v}


def variant_names(resources: dict) -> list[str]:
    """Every name bundled_mapping accepts: kernel names and variant (group) names."""
    entries = kernel_entries(resources)
    return sorted(set(entries) | {e.get("variant", k) for k, e in entries.items()})


def _sm(arch: str) -> str:
    if arch in PRESET_SM:
        return PRESET_SM[arch]
    a = arch.strip().lower()
    if a.startswith("sm") and not a.startswith("sm_"):
        a = "sm_" + a[2:]
    return a


def bundled_mapping(variant: str, arch: str = "sm_90", *, path: str | Path | None = None,
                    resources: dict | None = None, split_kv: int = 1, q_heads_per_cta: int = 1) -> KernelMapping:
    """The KernelMapping of a bundled kernel variant, with ptxas' register count for ``arch``.

    flash_fwd variants are 'fused' (mma_sync; causal ones launch the longest CTAs first),
    flash_decode variants 'split_kv' (``split_kv`` and ``q_heads_per_cta`` are launch choices:
    give them), the naive group (``naive_bf16``, or any of its three kernels) 'unfused' with the
    GEMM tile and the larger of its two GEMMs' register counts. Unknown names raise a SpecError
    with a did-you-mean; combine and linear-attention kernels have no KernelMapping (SpecError).
    """
    res = resources if resources is not None else load_resources(path)
    entries = kernel_entries(res)
    groups: dict[str, list[str]] = {}
    for name, e in entries.items():
        groups.setdefault(e.get("variant", name), []).append(name)
    if variant in entries:
        e = entries[variant]
        members = groups.get(e.get("variant", variant), [variant])
    elif variant in groups:
        members = groups[variant]
        e = entries[members[0]]
    else:
        names = variant_names(res)
        raise SpecError(Problem(f"unknown bundled kernel variant {variant!r}; {len(names)} are built "
                                f"(attnsim.validate.kernels_meta.variant_names)",
                                key="variant", hint=did_you_mean(variant, names)))
    sm = _sm(arch)
    if sm not in e:
        built = [k for k in e if k.startswith("sm_")]
        raise SpecError(Problem(f"{variant!r} was not compiled for {arch!r}; resources hold {built}",
                                key="arch", hint=did_you_mean(sm, built)))
    b = e["block"]
    family = e.get("family", "")
    if family == "flash_fwd":
        return KernelMapping(style="fused", block_m=b["block_m"], block_n=b["block_n"], warps=b["warps"],
                             stages=b["stages"], instr="mma_sync",
                             launch_order="longest_first" if b.get("mask") == "causal" else "m_fastest",
                             registers_per_thread=e[sm]["registers"], name=variant)
    if family == "flash_decode":
        return KernelMapping(style="split_kv", block_m=b["block_m"], block_n=b["block_n"], warps=b["warps"],
                             stages=b["stages"], split_kv=split_kv, q_heads_per_cta=q_heads_per_cta,
                             instr="mma_sync", registers_per_thread=e[sm]["registers"], name=variant)
    if family == "naive":
        gemms = [entries[m] for m in members if entries[m]["block"].get("kernel") in ("qk", "pv")]
        regs = max(g[sm]["registers"] for g in gemms) if gemms else e[sm]["registers"]
        gb = gemms[0]["block"] if gemms else b
        return KernelMapping(style="unfused", block_m=gb["block_m"], block_n=gb["block_n"], warps=gb["warps"],
                             stages=gb["stages"], instr="mma_sync", registers_per_thread=regs,
                             name=e.get("variant", variant))
    if family == "flash_decode_combine":
        raise SpecError(Problem(f"{variant!r} is the combine kernel of split-KV decoding; it has no KernelMapping "
                                f"of its own", key="variant",
                                hint="use a flash_decode_* partial variant; the model adds the combine"))
    raise SpecError(Problem(f"{variant!r} ({family or 'unknown family'}) has no KernelMapping: the model has no "
                            f"{family or 'such'} attention family", key="variant"))
