"""Architectures: frozen dataclasses built in one step from a YAML spec.

An Arch is a tree of storage levels, outermost first (HBM -> L2 -> SMEM -> RF on a GPU;
DRAM -> global buffer -> PE buffers on a spatial array), compute units at the leaves, named
efficiency factors (each with its own source) and per-access / per-op energies.
Every quantity is SI and its name says its unit.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from attnsim.errors import SpecError
from attnsim.spec.schema import Field, Reader, did_you_mean
from attnsim.spec.yamlio import load_yaml

ARCH_DIR = Path(__file__).resolve().parent.parent / "arch_specs"

DTYPE_BYTES = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1}
INSTR_CLASSES = ("mma_sync", "wgmma", "array")
# Kernel families a spec may give its own efficiency factors (the `algorithm` names).
KERNEL_NAMES = ("unfused", "flash2", "flash3", "flash_decode", "flash2_kvcache")
KERNEL_FACTORS = ("mma", "hbm", "launch_overhead", "combine_overhead", "skip_masked_tiles")


@dataclass(frozen=True)
class Level:
    """One storage level. Bandwidth is the aggregate over all instances of the level."""

    name: str
    capacity_bytes: float  # per instance
    bandwidth_bytes_per_s: float  # aggregate, all instances together
    instances: int
    read_energy_pj_per_byte: float
    write_energy_pj_per_byte: float
    associativity: int | None = None  # ways per set, where the spec gives it (the cycle simulator's L2)

    @property
    def total_capacity_bytes(self) -> float:
        return self.capacity_bytes * self.instances


@dataclass(frozen=True)
class GpuLimits:
    """Per-SM scheduling limits that set occupancy."""

    sm_count: int
    max_ctas_per_sm: int
    max_warps_per_sm: int
    max_threads_per_sm: int
    registers_per_sm: int
    max_registers_per_thread: int
    smem_per_sm_bytes: float
    smem_per_cta_bytes: float
    compute_capability: str


@dataclass(frozen=True)
class SpatialArray:
    """A 2D MAC array (systolic) beside a 1D vector array, FuseMax-style."""

    rows: int
    cols: int
    dataflow: str  # 'ws' | 'os' | 'is'
    vector_lanes: int  # 1D array width: vector ops per clock


@dataclass(frozen=True)
class Compute:
    """Throughput per clock of one compute instance (an SM on a GPU, the whole array on a spatial design)."""

    matrix_flops_per_cycle: Mapping[str, Mapping[str, float]]  # instr class -> dtype -> FLOP/clock
    exp_per_cycle: float  # exponentials per clock (special-function units)
    vector_ops_per_cycle: float  # fp32 ALU ops per clock (an FMA counts as one op)
    instances: int  # SMs, or 1 for a spatial array


@dataclass(frozen=True)
class Efficiency:
    """Named efficiency factors; each one has its own source in the YAML (never a literal in code)."""

    mma: Mapping[str, float]  # instr class -> sustained fraction of peak matrix throughput
    hbm_bandwidth: float  # sustained fraction of peak HBM/DRAM bandwidth for streaming reads
    l2_bandwidth: float  # sustained fraction of L2 (or global buffer) bandwidth
    launch_overhead_s: float  # fixed cost per kernel launch
    paged_kv_bandwidth: float | None = None  # sustained HBM fraction when K/V come from a paged cache
    # per kernel family: {'flash_decode': {'hbm': 0.8, 'launch_overhead': 1.2e-5}}; overrides the above;
    # 'skip_masked_tiles': False says the kernel computes every key tile, masked or not
    kernels: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def for_kernel(self, kernel: str, factor: str, default: float) -> float:
        return self.kernels.get(kernel, {}).get(factor, default)


@dataclass(frozen=True)
class Energy:
    """Per-operation energies (per-access energies live on the levels)."""

    matrix_pj_per_flop: float
    exp_pj_per_op: float
    vector_pj_per_op: float
    static_power_w: float  # idle/leakage power charged over the kernel's duration


@dataclass(frozen=True)
class Arch:
    name: str
    kind: str  # 'gpu' | 'spatial'
    description: str
    clock_hz: float
    levels: tuple[Level, ...]
    compute: Compute
    efficiency: Efficiency
    energy: Energy
    gpu: GpuLimits | None = None
    array: SpatialArray | None = None
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    file: str | None = field(default=None, compare=False)

    def level(self, name: str) -> Level:
        for lv in self.levels:
            if lv.name == name:
                return lv
        names = [lv.name for lv in self.levels]
        raise SpecError(f"arch {self.name!r} has no level {name!r}; levels are {names}"
                        + (f" ({did_you_mean(name, names)})" if did_you_mean(name, names) else ""))

    def peak_matrix_flops_per_s(self, instr: str, dtype: str) -> float:
        """Peak dense matrix FLOP/s for an instruction class and dtype, all compute instances."""
        per_cycle = self.matrix_flops_per_cycle(instr, dtype)
        return per_cycle * self.clock_hz * self.compute.instances

    def matrix_flops_per_cycle(self, instr: str, dtype: str) -> float:
        table = self.compute.matrix_flops_per_cycle
        if instr not in table:
            raise SpecError(f"arch {self.name!r} has no matrix instruction class {instr!r}; "
                            f"it has {sorted(table)}")
        if dtype not in table[instr]:
            raise SpecError(f"arch {self.name!r}: instruction class {instr!r} has no dtype {dtype!r}; "
                            f"it has {sorted(table[instr])}")
        return table[instr][dtype]

    @property
    def default_instr(self) -> str:
        """The best matrix instruction class the arch offers (wgmma on Hopper)."""
        for instr in ("wgmma", "mma_sync", "array"):
            if instr in self.compute.matrix_flops_per_cycle:
                return instr
        raise SpecError(f"arch {self.name!r} lists no matrix instruction class")

    @property
    def spec_hash(self) -> str:
        return hashlib.sha256(repr(self).encode()).hexdigest()[:16]

    def with_changes(self, **changes) -> "Arch":
        """A copy with top-level fields replaced (sweeps and the app use this)."""
        return replace(self, **changes)

    def with_level(self, name: str, **changes) -> "Arch":
        """A copy with one level's fields replaced, e.g. with_level('SMEM', capacity_bytes=128*1024)."""
        self.level(name)  # raises a clear error for unknown names
        levels = tuple(replace(lv, **changes) if lv.name == name else lv for lv in self.levels)
        new = replace(self, levels=levels)
        if self.gpu is not None and name == "SMEM" and "capacity_bytes" in changes:
            cap = changes["capacity_bytes"]
            new = replace(new, gpu=replace(self.gpu, smem_per_sm_bytes=cap,
                                           smem_per_cta_bytes=min(self.gpu.smem_per_cta_bytes, cap)))
        return new


# ---- schema tables: the YAML keys, their kinds, and help text (used by errors and docs) ----

TOP_FIELDS = [
    Field("name", "str", help="preset name, e.g. h100_sxm5_80gb"),
    Field("kind", "enum", choices=("gpu", "spatial"), help="gpu or spatial"),
    Field("description", "str", required=False, default=""),
    Field("clock", "frequency", help="clock the throughputs per clock are counted at"),
]
GPU_FIELDS = [
    Field("sm_count", "int", min=1),
    Field("max_ctas_per_sm", "int", min=1),
    Field("max_warps_per_sm", "int", min=1),
    Field("max_threads_per_sm", "int", min=32),
    Field("registers_per_sm", "int", min=1),
    Field("max_registers_per_thread", "int", min=1),
    Field("smem_per_sm", "size"),
    Field("smem_per_cta", "size"),
    Field("compute_capability", "str"),
]
ARRAY_FIELDS = [
    Field("rows", "int", min=1),
    Field("cols", "int", min=1),
    Field("dataflow", "enum", choices=("ws", "os", "is")),
    Field("vector_lanes", "int", min=1),
]
COMPUTE_FIELDS = [
    Field("exp_per_cycle", "float", min=0, help="exponentials per clock per compute instance"),
    Field("vector_ops_per_cycle", "float", min=0, help="fp32 ALU ops per clock per compute instance"),
]
LEVEL_FIELDS = [
    Field("name", "str"),
    Field("capacity", "size"),
    Field("bandwidth", "bandwidth", help="aggregate over all instances"),
    Field("instances", "int", min=1, required=False, default=1),
    Field("read_energy_per_byte", "energy"),
    Field("write_energy_per_byte", "energy", required=False),
    Field("associativity", "int", min=1, required=False, help="ways per set (caches)"),
]
EFFICIENCY_FIELDS = [
    Field("hbm_bandwidth", "fraction", needs_source=True,
          help="sustained fraction of peak DRAM bandwidth for streaming reads"),
    Field("l2_bandwidth", "fraction", needs_source=True,
          help="sustained fraction of peak L2 / global-buffer bandwidth"),
    Field("launch_overhead", "time", needs_source=True, help="fixed cost of one kernel launch"),
    Field("paged_kv_bandwidth", "fraction", required=False, needs_source=True,
          help="sustained fraction of peak DRAM bandwidth when K/V are read from a paged cache"),
]
ENERGY_FIELDS = [
    Field("matrix_per_flop", "energy"),
    Field("exp_per_op", "energy"),
    Field("vector_per_op", "energy"),
    Field("static_power", "power"),
]


def _resolve(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise SpecError(f"{p}: arch file does not exist")
        return p
    candidate = ARCH_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    names = list_arch_presets()
    hint = did_you_mean(str(name_or_path), names)
    raise SpecError(f"unknown arch preset {str(name_or_path)!r}"
                    + (f" ({hint})" if hint else "") + f"; presets: {', '.join(names)}")


def list_arch_presets() -> list[str]:
    return sorted(p.stem for p in ARCH_DIR.glob("*.yaml"))


def load_arch(name_or_path: str | Path) -> Arch:
    """Load an arch from a preset name (see `list_arch_presets()`) or a YAML file path."""
    if isinstance(name_or_path, Arch):
        return name_or_path
    path = _resolve(name_or_path)
    data, lines = load_yaml(path)
    return arch_from_data(data, lines, str(path))


def arch_from_data(data, lines, file: str | None) -> Arch:
    r = Reader(data, lines, file, require_sources=True)
    top = r.section((), TOP_FIELDS, extra_ok=("sources", "gpu", "array", "compute", "levels",
                                             "efficiency", "energy"))
    kind = top.get("kind")
    gpu = array = None
    if kind == "gpu":
        g = r.section(("gpu",), GPU_FIELDS)
        if not r.problems_at(("gpu",)):
            gpu = GpuLimits(sm_count=g["sm_count"], max_ctas_per_sm=g["max_ctas_per_sm"],
                            max_warps_per_sm=g["max_warps_per_sm"],
                            max_threads_per_sm=g["max_threads_per_sm"],
                            registers_per_sm=g["registers_per_sm"],
                            max_registers_per_thread=g["max_registers_per_thread"],
                            smem_per_sm_bytes=g["smem_per_sm"], smem_per_cta_bytes=g["smem_per_cta"],
                            compute_capability=g["compute_capability"])
    elif kind == "spatial":
        a = r.section(("array",), ARRAY_FIELDS)
        if not r.problems_at(("array",)):
            array = SpatialArray(rows=a["rows"], cols=a["cols"], dataflow=a["dataflow"],
                                 vector_lanes=a["vector_lanes"])

    c = r.section(("compute",), COMPUTE_FIELDS, extra_ok=("matrix_flops_per_cycle",))
    matrix = _read_matrix(r, data)

    levels = []
    raw_levels = _nested(data, "levels")
    if not isinstance(raw_levels, list) or not raw_levels:
        r.problem(("levels",), "expected a list of storage levels, outermost (DRAM/HBM) first")
    else:
        for i in range(len(raw_levels)):
            lv = r.section(("levels", i), LEVEL_FIELDS)
            if r.problems_at(("levels", i)):
                continue
            levels.append(Level(name=lv["name"], capacity_bytes=lv["capacity"],
                                bandwidth_bytes_per_s=lv["bandwidth"], instances=lv["instances"],
                                read_energy_pj_per_byte=lv["read_energy_per_byte"] * 1e12,
                                write_energy_pj_per_byte=(lv["write_energy_per_byte"]
                                                          if lv["write_energy_per_byte"] is not None
                                                          else lv["read_energy_per_byte"]) * 1e12,
                                associativity=lv["associativity"]))
    eff = r.section(("efficiency",), EFFICIENCY_FIELDS, extra_ok=("mma", "kernels"))
    mma_eff = _read_mma_efficiency(r, data, matrix)
    kernel_eff = _read_kernel_efficiency(r, data)
    en = r.section(("energy",), ENERGY_FIELDS)
    r.raise_if_problems()
    instances = gpu.sm_count if gpu is not None else 1
    return Arch(
        name=top["name"], kind=kind, description=top["description"], clock_hz=top["clock"],
        levels=tuple(levels),
        compute=Compute(matrix_flops_per_cycle=MappingProxyType(matrix),
                        exp_per_cycle=c["exp_per_cycle"], vector_ops_per_cycle=c["vector_ops_per_cycle"],
                        instances=instances),
        efficiency=Efficiency(mma=MappingProxyType(mma_eff), hbm_bandwidth=eff["hbm_bandwidth"],
                              l2_bandwidth=eff["l2_bandwidth"], launch_overhead_s=eff["launch_overhead"],
                              paged_kv_bandwidth=eff["paged_kv_bandwidth"],
                              kernels=MappingProxyType(kernel_eff)),
        energy=Energy(matrix_pj_per_flop=en["matrix_per_flop"] * 1e12, exp_pj_per_op=en["exp_per_op"] * 1e12,
                      vector_pj_per_op=en["vector_per_op"] * 1e12, static_power_w=en["static_power"]),
        gpu=gpu, array=array, sources=MappingProxyType(r.sources()), file=file,
    )


def _nested(data, *keys):
    """data[k1][k2]... or None where a level is missing or not a mapping."""
    for k in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(k)
    return data


def _read_matrix(r: Reader, data) -> dict[str, dict[str, float]]:
    """compute.matrix_flops_per_cycle: {instr_class: {dtype: FLOP per clock}}."""
    path = ("compute", "matrix_flops_per_cycle")
    raw = _nested(data, *path)
    if not isinstance(raw, dict):
        r.problem(path, "expected {instruction_class: {dtype: FLOP per clock}}, e.g. {wgmma: {bf16: 4096}}")
        return {}
    out: dict[str, dict[str, float]] = {}
    for instr in raw:
        if instr == "source":
            continue
        if instr not in INSTR_CLASSES:
            r.problem(path + (instr,), f"unknown instruction class {instr!r}; known: {list(INSTR_CLASSES)}",
                      did_you_mean(instr, list(INSTR_CLASSES)))
            continue
        dtypes = [k for k in (raw[instr] or {}) if k != "source"] if isinstance(raw[instr], dict) else []
        fields = [Field(d, "float", min=0, required=False) for d in DTYPE_BYTES]
        vals = r.section(path + (instr,), fields) if isinstance(raw[instr], dict) else {}
        if not isinstance(raw[instr], dict):
            r.problem(path + (instr,), "expected {dtype: FLOP per clock}")
        out[instr] = {d: vals[d] for d in dtypes if d in vals and vals[d] is not None}
    return out


def _read_kernel_efficiency(r: Reader, data) -> dict[str, dict[str, float]]:
    """efficiency.kernels: {kernel family: {mma: fraction, hbm: fraction, launch_overhead: time}}:
    what one kernel implementation sustains, where it differs from the arch-wide factors."""
    path = ("efficiency", "kernels")
    raw = _nested(data, *path)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        r.problem(path, f"expected {{kernel: {{factor: {{value, source}}}}}} with kernels {list(KERNEL_NAMES)}")
        return {}
    fields = [Field("mma", "fraction", required=False, needs_source=True),
              Field("hbm", "fraction", required=False, needs_source=True),
              Field("launch_overhead", "time", required=False, needs_source=True),
              Field("combine_overhead", "time", required=False, needs_source=True,
                    help="fixed cost of the split-KV combine kernel (default: launch_overhead)"),
              Field("skip_masked_tiles", "bool", required=False, needs_source=True,
                    help="false: the kernel computes every key tile, masked or not")]
    out = {}
    for name in raw:
        if name == "source":
            continue
        if name not in KERNEL_NAMES:
            r.problem(path + (name,), f"unknown kernel {name!r}; known: {list(KERNEL_NAMES)}",
                      did_you_mean(name, KERNEL_NAMES))
            continue
        vals = r.section(path + (name,), fields)
        out[name] = {k: v for k, v in vals.items() if v is not None}
    return out


def _read_mma_efficiency(r: Reader, data, matrix) -> dict[str, float]:
    path = ("efficiency", "mma")
    raw = _nested(data, *path)
    if not isinstance(raw, dict):
        r.problem(path, "expected {instruction_class: {value: fraction, source: ...}}")
        return {}
    fields = [Field(i, "fraction", required=i in matrix, needs_source=True) for i in INSTR_CLASSES]
    vals = r.section(path, fields)
    return {i: vals[i] for i in INSTR_CLASSES if vals.get(i) is not None}
