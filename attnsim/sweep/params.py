"""What a sweep can vary: dotted paths onto the spec dataclasses, the kind of value each takes,
and how a value is applied to an Arch, a Workload or a mapping.

Paths name the YAML keys (``arch.levels.SMEM.capacity``, values with units: '128KiB') or the
dataclass fields, whose names say the unit (``arch.levels.SMEM.capacity_bytes``, plain numbers
in that unit, or values with units). Either way the result column is named after the field:

    arch.clock                             -> arch.clock_hz
    arch.levels.<LEVEL>.capacity           -> arch.levels.<LEVEL>.capacity_bytes
    arch.levels.<LEVEL>.bandwidth          -> arch.levels.<LEVEL>.bandwidth_bytes_per_s
    arch.levels.<LEVEL>.read_energy_per_byte -> arch.levels.<LEVEL>.read_energy_pj_per_byte
    arch.gpu.sm_count, arch.gpu.smem_per_sm, ...   arch.compute.*, arch.efficiency.*, arch.energy.*
    workload.batch, heads, kv_heads, seq (both lengths), seq_q, seq_kv, head_dim, value_dim,
             dtype, kv_page, mask.kind, mask.window, mask.sink, mask.density, mask.causal,
             params.<name> (a family's numeric parameter, e.g. workload.params.density)
    mapping (an algorithm, 'best', 'default', a mapping preset or file), mapping.block_n, ...

Integer workload shapes take a 'k' (x1024) or 'M' (x1024^2) suffix: ``1k`` is 1024 tokens.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import re
from dataclasses import dataclass, fields, is_dataclass, replace
from functools import cached_property, lru_cache
from types import MappingProxyType

from attnsim import units
from attnsim.arch import KERNEL_NAMES, Arch, load_arch
from attnsim.errors import MappingError, Problem, SpecError
from attnsim.mapping.kernel import (ALGORITHMS, LAUNCH_ORDERS, MAPPING_DIR, STYLES, KernelMapping,
                                    default_mapping, load_mapping)
from attnsim.spec.schema import did_you_mean
from attnsim.workload.families import REGISTRY as FAMILIES
from attnsim.workload.spec import DTYPES, MASK_KINDS, Workload, load_workload

TOKEN_SUFFIX = {"": 1, "k": 1024, "K": 1024, "M": 1024 ** 2}
PLAIN_KINDS = ("int", "tokens", "float", "fraction", "bool", "enum", "name")
NUMERIC_KINDS = ("int", "tokens", "float", "fraction") + tuple(units.KINDS)
SEARCH_MODULE = "attnsim.mapping.search"
SPECIAL_MAPPINGS = ("default", "best")
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_TOKENS = re.compile(r"^(?P<num>\d+(?:\.\d*)?|\.\d+)\s*(?P<suffix>[kKM]?)$")


@dataclass(frozen=True)
class Param:
    """One variable spec field. ``target`` addresses the field inside its section."""

    path: str  # as written by the user (one of possibly two spellings)
    column: str  # the result column: the dataclass field path, unit in the name
    kind: str  # a units kind ('size', 'bandwidth', ...) or one of PLAIN_KINDS
    target: tuple  # ('levels', 'SMEM', 'capacity_bytes'), ('batch',), ('block_n',), ...
    scale: float = 1.0  # stored value = SI value * scale (energies are stored in pJ)
    choices: tuple = ()
    bare_ok: bool = False  # plain numbers are in the column's unit (SI-named paths only)

    @cached_property
    def section(self) -> str:
        return self.column.split(".")[0]

    @property
    def numeric(self) -> bool:
        return self.kind in NUMERIC_KINDS

    @property
    def integral(self) -> bool:
        return self.kind in ("int", "tokens")

    @property
    def pandas_dtype(self) -> str:
        if self.integral:
            return "int64"
        if self.numeric:
            return "float64"
        return "bool" if self.kind == "bool" else "str"


# ---------------------------------------------------------------- the catalogue of paths

_LEVEL_FIELDS = (  # (YAML key, dataclass field, kind, scale)
    ("capacity", "capacity_bytes", "size", 1.0),
    ("bandwidth", "bandwidth_bytes_per_s", "bandwidth", 1.0),
    ("instances", "instances", "int", 1.0),
    ("read_energy_per_byte", "read_energy_pj_per_byte", "energy", 1e12),
    ("write_energy_per_byte", "write_energy_pj_per_byte", "energy", 1e12),
)
_GPU_FIELDS = (
    ("sm_count", "sm_count", "int", 1.0), ("max_ctas_per_sm", "max_ctas_per_sm", "int", 1.0),
    ("max_warps_per_sm", "max_warps_per_sm", "int", 1.0),
    ("max_threads_per_sm", "max_threads_per_sm", "int", 1.0),
    ("registers_per_sm", "registers_per_sm", "int", 1.0),
    ("max_registers_per_thread", "max_registers_per_thread", "int", 1.0),
    ("smem_per_sm", "smem_per_sm_bytes", "size", 1.0), ("smem_per_cta", "smem_per_cta_bytes", "size", 1.0),
)
_EFFICIENCY_FIELDS = (
    ("hbm_bandwidth", "hbm_bandwidth", "fraction", 1.0), ("l2_bandwidth", "l2_bandwidth", "fraction", 1.0),
    ("paged_kv_bandwidth", "paged_kv_bandwidth", "fraction", 1.0),
    ("launch_overhead", "launch_overhead_s", "time", 1.0),
)
_KERNEL_FACTORS = (
    ("mma", "mma", "fraction", 1.0), ("hbm", "hbm", "fraction", 1.0),
    ("launch_overhead", "launch_overhead_s", "time", 1.0),
    ("combine_overhead", "combine_overhead_s", "time", 1.0),
    ("skip_masked_tiles", "skip_masked_tiles", "bool", 1.0),
)
_ENERGY_FIELDS = (
    ("matrix_per_flop", "matrix_pj_per_flop", "energy", 1e12), ("exp_per_op", "exp_pj_per_op", "energy", 1e12),
    ("vector_per_op", "vector_pj_per_op", "energy", 1e12), ("static_power", "static_power_w", "power", 1.0),
)
_WORKLOAD_INTS = ("batch", "heads", "kv_heads", "seq", "seq_q", "seq_kv", "head_dim", "value_dim", "kv_page")
_MAPPING_INTS = ("block_m", "block_n", "warps", "stages", "split_kv", "q_heads_per_cta", "registers_per_thread")


def _add(cat: dict, prefix: str, entries, target_prefix: tuple = ()) -> None:
    """Register each (YAML key, field, kind, scale) under both spellings of its path."""
    for key, fld, kind, scale in entries:
        column = f"{prefix}.{fld}"
        target = target_prefix + (fld,)
        cat[column] = Param(column, column, kind, target, scale, bare_ok=kind in units.KINDS)
        if key != fld:
            path = f"{prefix}.{key}"
            cat[path] = Param(path, column, kind, target, scale)


_CATALOGUES: dict[str, dict[str, Param]] = {}


def catalogue(arch: Arch) -> dict[str, Param]:
    """Every path a sweep over this base arch may vary, keyed by path (both spellings)."""
    key = arch.spec_hash
    if key not in _CATALOGUES:
        _CATALOGUES[key] = _build_catalogue(arch)
    return _CATALOGUES[key]


def _build_catalogue(arch: Arch) -> dict[str, Param]:
    cat: dict[str, Param] = {}
    cat["arch"] = Param("arch", "arch", "name", ("name",))
    _add(cat, "arch", [("clock", "clock_hz", "frequency", 1.0)])
    for lv in arch.levels:
        _add(cat, f"arch.levels.{lv.name}", _LEVEL_FIELDS, ("levels", lv.name))
    if arch.gpu is not None:
        _add(cat, "arch.gpu", _GPU_FIELDS, ("gpu",))
    if arch.array is not None:
        _add(cat, "arch.array", [(k, k, "int", 1.0) for k in ("rows", "cols", "vector_lanes")], ("array",))
        cat["arch.array.dataflow"] = Param("arch.array.dataflow", "arch.array.dataflow", "enum",
                                           ("array", "dataflow"), choices=("ws", "os", "is"))
    _add(cat, "arch.compute", [(k, k, "float", 1.0) for k in ("exp_per_cycle", "vector_ops_per_cycle")],
         ("compute",))
    for instr, per_dtype in arch.compute.matrix_flops_per_cycle.items():
        _add(cat, f"arch.compute.matrix_flops_per_cycle.{instr}", [(d, d, "float", 1.0) for d in per_dtype],
             ("compute", "matrix_flops_per_cycle", instr))
    _add(cat, "arch.efficiency", _EFFICIENCY_FIELDS, ("efficiency",))
    _add(cat, "arch.efficiency.mma", [(i, i, "fraction", 1.0) for i in arch.efficiency.mma], ("efficiency", "mma"))
    for kernel in KERNEL_NAMES:
        _add(cat, f"arch.efficiency.kernels.{kernel}", _KERNEL_FACTORS, ("efficiency", "kernels", kernel))
    _add(cat, "arch.energy", _ENERGY_FIELDS, ("energy",))

    cat["workload"] = Param("workload", "workload", "name", ("name",))
    for k in _WORKLOAD_INTS:
        cat[f"workload.{k}"] = Param(f"workload.{k}", f"workload.{k}", "tokens", (k,))
    cat["workload.dtype"] = Param("workload.dtype", "workload.dtype", "enum", ("dtype",), choices=DTYPES)
    cat["workload.family"] = Param("workload.family", "workload.family", "enum", ("family",),
                                   choices=tuple(FAMILIES))
    for k, kind, choices in (("kind", "enum", MASK_KINDS), ("window", "tokens", ()), ("sink", "tokens", ()),
                             ("density", "fraction", ()), ("causal", "bool", ())):
        cat[f"workload.mask.{k}"] = Param(f"workload.mask.{k}", f"workload.mask.{k}", kind, ("mask", k),
                                          choices=choices)

    cat["mapping"] = Param("mapping", "mapping", "name", ("name",))
    if arch.kind == "gpu":
        for k in _MAPPING_INTS:
            cat[f"mapping.{k}"] = Param(f"mapping.{k}", f"mapping.{k}", "int", (k,))
        for k, choices in (("style", STYLES), ("launch_order", LAUNCH_ORDERS), ("instr", ("mma_sync", "wgmma"))):
            cat[f"mapping.{k}"] = Param(f"mapping.{k}", f"mapping.{k}", "enum", (k,), choices=choices)
        cat["mapping.softmax_overlap"] = Param("mapping.softmax_overlap", "mapping.softmax_overlap", "bool",
                                               ("softmax_overlap",))
    else:
        from attnsim.mapping.spatial import SPATIAL_STYLES
        for k in ("block_m", "block_n"):
            cat[f"mapping.{k}"] = Param(f"mapping.{k}", f"mapping.{k}", "int", (k,))
        cat["mapping.style"] = Param("mapping.style", "mapping.style", "enum", ("style",), choices=SPATIAL_STYLES)
    return cat


def lookup(path: str, arch: Arch) -> Param:
    """The Param for a dotted path, or a SpecError saying where the path stops making sense."""
    cat = catalogue(arch)
    path = path.strip()
    if path in cat:
        return cat[path]
    if path.startswith("workload.params.") and path.count(".") == 2:
        # a family's own parameter (numeric); the family's Field table checks each value when applied
        return Param(path, path, "float", ("params", path.split(".")[2]))
    parts = path.split(".")
    known = list(cat)
    for cut in range(len(parts), 0, -1):  # the longest prefix that is a section of some path
        prefix = ".".join(parts[:cut]) + "."
        children = sorted({k[len(prefix):].split(".")[0] for k in known if k.startswith(prefix)})
        if children and cut == len(parts):
            raise SpecError(Problem(f"{path!r} is a section, not a field; under it: {', '.join(children)}",
                                    key=path))
        if children and parts[cut] in children:
            raise SpecError(Problem(f"unknown sweep path {path!r}: {prefix}{parts[cut]} is a field, with nothing "
                                    "under it", key=path, hint=f"did you mean '{prefix}{parts[cut]}'?"))
        if children:
            name = parts[cut]
            hint = did_you_mean(name, children) or did_you_mean(path, known)
            raise SpecError(Problem(f"unknown sweep path {path!r}: no {name!r} under {prefix[:-1]}; "
                                    f"known: {', '.join(children)}", key=path, hint=hint))
    roots = ("arch", "workload", "mapping")
    hint = did_you_mean(path, known) or did_you_mean(parts[0], roots)
    raise SpecError(Problem(f"unknown sweep path {path!r}: a path starts with arch, workload or mapping",
                            key=path, hint=hint))


# ---------------------------------------------------------------- values

def parse_value(param: Param, text) -> object:
    """One value of a param from its text (or a YAML scalar); raises ValueError with a reason."""
    kind = param.kind
    if isinstance(text, str):
        text = text.strip()
    if kind in units.KINDS:
        return _parse_quantity(param, text)
    if kind == "tokens":
        return _parse_tokens(text)
    if kind == "int":
        if isinstance(text, int) and not isinstance(text, bool):
            return int(text)
        if isinstance(text, str) and re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        raise ValueError(f"expected an integer, got {text!r}")
    if kind in ("float", "fraction"):
        value = _number(text)
        if value is None or not math.isfinite(value):
            raise ValueError(f"expected a number, got {text!r}")
        if kind == "fraction" and not 0 < value <= 1:
            raise ValueError(f"expected a fraction in (0, 1], got {text!r}")
        return float(value)
    if kind == "bool":
        if isinstance(text, bool):
            return text
        low = str(text).lower()
        if low in ("true", "yes", "1", "on"):
            return True
        if low in ("false", "no", "0", "off"):
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    if kind == "enum":
        if text in param.choices:
            return text
        hint = did_you_mean(str(text), param.choices)
        raise ValueError(f"expected one of {', '.join(param.choices)}, got {text!r}" + (f" ({hint})" if hint else ""))
    if kind == "name":
        if not isinstance(text, str) or not text:
            raise ValueError(f"expected a name, got {text!r}")
        return text
    raise AssertionError(kind)


def _number(text) -> float | None:
    if isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        return float(text)
    if isinstance(text, str) and _NUMBER.match(text):
        return float(text)
    return None


def _parse_quantity(param: Param, text) -> float:
    plain = _number(text)
    if plain is not None:
        if param.bare_ok:
            return plain
        example = units.KINDS[param.kind].examples[0].replace(" ", "")
        raise ValueError(f"{units.KINDS[param.kind].expected()}, got {text!r} (the unit is required, "
                         f"e.g. '{example}'; or vary {param.column} to give plain numbers in its unit)")
    try:
        return units.parse_quantity(str(text), param.kind) * param.scale
    except units.UnitError as e:
        raise ValueError(str(e)) from None


def _parse_tokens(text) -> int:
    if isinstance(text, int) and not isinstance(text, bool):
        return int(text)
    m = _TOKENS.match(str(text)) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"expected a whole number of tokens like 4096 or 4k (k = 1024, M = 1024^2), got {text!r}")
    value = float(m["num"]) * TOKEN_SUFFIX[m["suffix"]]
    if value != int(value):
        raise ValueError(f"{text!r} is not a whole number ({value:g})")
    return int(value)


def parse_step(param: Param, text: str) -> tuple[str, float]:
    """':x2' -> ('x', 2.0); ':+0.5TB/s' -> ('+', 5e11); ':-16' -> ('+', -16)."""
    text = text.strip()
    if text[:1] in ("x", "*"):
        factor = _number(text[1:].strip())
        if factor is None or factor <= 0 or factor == 1:
            raise ValueError(f"a geometric step is 'x' and a factor > 0 other than 1, got {text!r}")
        return "x", factor
    if text[:1] in ("+", "-"):
        sign = -1.0 if text[0] == "-" else 1.0
        body = text[1:].strip()
        if param.kind in units.KINDS:
            size = _parse_quantity(param, body)
        elif param.kind == "tokens":
            size = float(_parse_tokens(body))
        else:
            size = _number(body)
            if size is None:
                raise ValueError(f"expected a step like '+1' after ':', got {text!r}")
        if size == 0:
            raise ValueError(f"a step of zero never reaches the end of the range ({text!r})")
        return "+", sign * size
    raise ValueError(f"expected a step 'xF' (geometric) or '+S' (arithmetic) after ':', got {text!r}")


# ---------------------------------------------------------------- applying values

def apply_arch(arch: Arch, items) -> Arch:
    """A copy of `arch` with each (Param, value) applied; a value for `arch` loads that preset."""
    for p, v in items:
        if p.section == "arch" and p.target == ("name",):
            arch = load_arch_cached(v)
    # sm_count first: it rescales the per-SM levels, whose own fields, when varied, then set absolute values
    for p, v in sorted(items, key=lambda item: item[0].column != "arch.gpu.sm_count"):
        if p.section == "arch" and p.target != ("name",):
            arch = _set_arch(arch, p, v)
    return arch


def _set_arch(arch: Arch, p: Param, v) -> Arch:
    t = p.target
    if t[0] == "clock_hz":
        return replace(arch, clock_hz=v)
    if t[0] == "levels":
        return arch.with_level(t[1], **{t[2]: v})
    if t[0] == "gpu":
        if arch.gpu is None:
            raise SpecError(Problem(f"arch {arch.name!r} is {arch.kind}: it has no gpu section", key=p.path))
        if t[1] == "sm_count":
            return _with_sm_count(arch, v)
        return replace(arch, gpu=replace(arch.gpu, **{t[1]: v}))
    if t[0] == "array":
        if arch.array is None:
            raise SpecError(Problem(f"arch {arch.name!r} is {arch.kind}: it has no array section", key=p.path))
        return replace(arch, array=replace(arch.array, **{t[1]: v}))
    if t[0] == "compute":
        c = arch.compute
        if len(t) == 2:
            return replace(arch, compute=replace(c, **{t[1]: v}))
        table = {i: dict(d) for i, d in c.matrix_flops_per_cycle.items()}
        table.setdefault(t[2], {})[t[3]] = v
        return replace(arch, compute=replace(c, matrix_flops_per_cycle=MappingProxyType(table)))
    if t[0] == "efficiency":
        e = arch.efficiency
        if len(t) == 2:
            return replace(arch, efficiency=replace(e, **{t[1]: v}))
        if t[1] == "mma":
            return replace(arch, efficiency=replace(e, mma=MappingProxyType({**e.mma, t[2]: v})))
        kernels = {k: dict(f) for k, f in e.kernels.items()}
        factor = {"launch_overhead_s": "launch_overhead", "combine_overhead_s": "combine_overhead"}.get(t[3], t[3])
        kernels.setdefault(t[2], {})[factor] = v
        return replace(arch, efficiency=replace(e, kernels=MappingProxyType(kernels)))
    if t[0] == "energy":
        return replace(arch, energy=replace(arch.energy, **{t[1]: v}))
    raise AssertionError(t)


def _with_sm_count(arch: Arch, sms: int) -> Arch:
    """Keep per-SM resources: compute instances follow the SM count, and so do the levels with one
    instance per SM (their aggregate bandwidth scales with it); HBM and L2 stay as they are."""
    old = arch.gpu.sm_count
    levels = tuple(replace(lv, instances=sms, bandwidth_bytes_per_s=lv.bandwidth_bytes_per_s * sms / old)
                   if lv.instances == old else lv for lv in arch.levels)
    return replace(arch, gpu=replace(arch.gpu, sm_count=sms), compute=replace(arch.compute, instances=sms),
                   levels=levels)


def apply_workload(w: Workload, items) -> Workload:
    """A copy of `w` with each (Param, value) applied, then checked (WorkloadError if it makes no sense).

    Tied fields: `seq` sets seq_q and seq_kv; value_dim follows head_dim, and kv_heads follows
    heads, when they were equal in the base and are not varied themselves; a mask.window on a
    base without a window makes it a (causal) sliding window; a mask.density < 1 on a base
    without one makes it block-sparse.
    """
    for p, v in items:
        if p.section == "workload" and p.target == ("name",):
            w = load_workload_cached(v)
    changes, mask, params = {}, {}, {}
    for p, v in items:
        if p.section != "workload" or p.target == ("name",):
            continue
        if p.target[0] == "params":
            params[p.target[1]] = int(v) if float(v).is_integer() else float(v)
        elif p.target[0] == "mask":
            mask[p.target[1]] = v
        elif p.target[0] == "seq":
            changes["seq_q"] = changes["seq_kv"] = v
        else:
            changes[p.target[0]] = v
    if params:
        from attnsim.workload.spec import resolve_params
        unknown = sorted(set(params) - set(w.params.as_dict()))
        if unknown:
            known = sorted(w.params.as_dict())
            raise SpecError(Problem(f"family {w.family!r} has no parameter {unknown[0]!r}; its parameters: "
                                    f"{', '.join(known) or 'none'}", key=f"workload.params.{unknown[0]}",
                                    hint=did_you_mean(unknown[0], known)))
        changes["params"] = resolve_params(w.family, {**w.params.as_dict(), **params}, path=("workload", "params"))
    if not changes and not mask:
        return w
    if "head_dim" in changes and "value_dim" not in changes and w.value_dim == w.head_dim:
        changes["value_dim"] = changes["head_dim"]
    if "heads" in changes and "kv_heads" not in changes and w.kv_heads == w.heads:
        changes["kv_heads"] = changes["heads"]
    if mask:
        m = w.mask
        if "window" in mask and "kind" not in mask and m.kind != "window":
            mask.update(kind="window", causal=True)
        if "density" in mask and "kind" not in mask and m.kind != "block_sparse" and mask["density"] < 1:
            mask.update(kind="block_sparse", causal=m.is_causal)
        changes["mask"] = replace(m, **mask)
    return w.with_changes(**changes)


@lru_cache(maxsize=64)
def load_arch_cached(name: str) -> Arch:
    return load_arch(name)


@lru_cache(maxsize=256)
def load_workload_cached(name: str) -> Workload:
    return load_workload(name)


@lru_cache(maxsize=256)
def load_mapping_cached(name: str) -> KernelMapping:
    return load_mapping(name)


# ---------------------------------------------------------------- mappings

def check_mapping_choice(choice: str) -> None:
    """Raise a SpecError unless `choice` names a mapping a sweep can use."""
    from attnsim.mapping.spatial import SPATIAL_STYLES
    if choice in ALGORITHMS or choice in SPATIAL_STYLES or choice == "default":
        return
    if choice == "best" or choice.startswith("best:"):
        if importlib.util.find_spec(SEARCH_MODULE) is None:
            raise SpecError(Problem(f"mapping=best needs {SEARCH_MODULE} (the mapper), which this attnsim "
                                    "does not have", key="mapping",
                                    hint="vary mapping over algorithms (flash2, flash3, ...) or mapping fields"))
        objective = choice.partition(":")[2] or "latency"
        known = getattr(importlib.import_module(SEARCH_MODULE), "OBJECTIVES", None)
        if known is not None and objective not in known:
            raise SpecError(Problem(f"unknown mapper objective {objective!r} in {choice!r}; objectives: "
                                    f"{', '.join(known)}", key="mapping", hint=did_you_mean(objective, known)))
        return
    try:
        load_mapping_cached(choice)
    except SpecError as e:
        known = list(ALGORITHMS) + list(SPECIAL_MAPPINGS) + sorted(p.stem for p in MAPPING_DIR.glob("*.yaml"))
        hint = did_you_mean(choice, known)
        raise SpecError(Problem(f"unknown mapping {choice!r}: expected an algorithm ({', '.join(ALGORITHMS)}), "
                                f"'best', 'default', a mapping preset or a mapping YAML file", key="mapping",
                                hint=hint or (str(e.problems[0]) if e.problems else None))) from None


def resolve_mapping(arch: Arch, w: Workload, choice, overrides: dict):
    """The mapping a point runs: `choice` (None/'default', an algorithm, 'best[:objective]', a
    preset or file, or a mapping value) resolved for this arch and workload, then `overrides`."""
    if arch.kind == "spatial":
        from attnsim.mapping.spatial import resolve_spatial_mapping
        m = resolve_spatial_mapping(None if choice in (None, "default") else choice, arch, w)
        return replace(m, **overrides) if overrides else m
    if isinstance(choice, KernelMapping):
        m = choice
    elif choice is None or choice == "default":
        from attnsim.model.analytical import default_algorithm
        m = default_mapping(default_algorithm(arch, w), arch, w)
    elif choice in ALGORITHMS:
        m = default_mapping(choice, arch, w)
    elif choice == "best" or str(choice).startswith("best:"):
        m = best_mapping(arch, w, choice.partition(":")[2] or "latency")
    else:
        m = load_mapping_cached(choice)
    return m.with_changes(**overrides) if overrides else m


_BEST: dict = {}  # (arch hash, workload, objective) -> mapping: probes and sub-groups ask twice


def best_mapping(arch: Arch, w: Workload, objective: str) -> KernelMapping:
    """The mapper's choice: ``attnsim.mapping.search.search_gpu(arch, w, objective=...).best``."""
    key = (arch.spec_hash, w, objective)
    if key in _BEST:
        return _BEST[key]
    try:
        search = importlib.import_module(SEARCH_MODULE)
    except ImportError:
        raise SpecError(Problem(f"mapping=best needs {SEARCH_MODULE} (the mapper), which this attnsim does "
                                "not have", key="mapping")) from None
    kwargs = {"objective": objective}
    if "top_k" in inspect.signature(search.search_gpu).parameters:
        kwargs["top_k"] = 1
    found = search.search_gpu(arch, w, **kwargs)
    for candidate in (found, getattr(found, "best", None), getattr(found, "mapping", None),
                      found[0] if isinstance(found, tuple) and found else None):
        if isinstance(candidate, KernelMapping):
            if len(_BEST) > 4096:
                _BEST.clear()
            _BEST[key] = candidate
            return candidate
    raise MappingError(Problem(f"{SEARCH_MODULE}.search_gpu returned {type(found).__name__}, not a KernelMapping",
                               key="mapping"))


# ---------------------------------------------------------------- pickling specs

def to_plain(obj):
    """Specs with their MappingProxyType fields as tagged dicts, so that they pickle
    (mappingproxy objects do not); ``from_plain`` restores them exactly."""
    if isinstance(obj, MappingProxyType):
        return ("__mappingproxy__", {k: to_plain(v) for k, v in obj.items()})
    if is_dataclass(obj) and not isinstance(obj, type):
        return ("__dataclass__", type(obj), {f.name: to_plain(getattr(obj, f.name)) for f in fields(obj)})
    if isinstance(obj, tuple):
        return tuple(to_plain(x) for x in obj)
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


def from_plain(obj):
    if isinstance(obj, tuple) and obj and obj[0] == "__mappingproxy__":
        return MappingProxyType({k: from_plain(v) for k, v in obj[1].items()})
    if isinstance(obj, tuple) and obj and obj[0] == "__dataclass__":
        cls, values = obj[1], obj[2]
        return cls(**{k: from_plain(v) for k, v in values.items()})
    if isinstance(obj, tuple):
        return tuple(from_plain(x) for x in obj)
    if isinstance(obj, dict):
        return {k: from_plain(v) for k, v in obj.items()}
    return obj


__all__ = ["Param", "catalogue", "lookup", "parse_value", "parse_step", "apply_arch", "apply_workload",
           "resolve_mapping", "check_mapping_choice", "to_plain", "from_plain"]
