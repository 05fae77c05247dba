"""Plans: a family's work as a sequence of kernels, and their cost on a GPU or a spatial array.

Softmax attention with a mask is one fused kernel, costed by ``gpu_kernel`` (or ``spatial``).
The other families of ``attnsim.workload.families`` are a few kernels each: a scoring pre-pass
and a block-sparse attention kernel (top-k routing), a chunked scan (linear attention, state
spaces), a dequantizing decode kernel, projections around an attention kernel (MLA). A
``Plan`` lists them in launch order:

    AttentionOp   a softmax-attention call (a Workload of family 'softmax' and its mapping):
                  costed by the existing models, exactly as ``attnsim.predict`` costs it
    KernelOp      any other kernel, described by its work and its traffic:
                  GEMMs (count x m x n x k), exponentials, vector ops, HBM and L2 bytes, the
                  grid (CTAs) and what one CTA holds (shared memory, warps)

A KernelOp on a GPU (all rates and efficiencies from the arch YAML, none here):

    per CTA   t_mma = padded GEMM FLOPs / CTAs / (matrix FLOP/clk x efficiency.mma[instr])
              t_vec = max(exps / CTAs / exp/clk, vector ops / CTAs / ALU ops/clk)
              c     = t_mma + t_vec   (serialized)  or  max(t_mma, t_vec)  (overlap=True)
    makespan  waves of equal CTAs, k resident per SM (``gpu_kernel.uniform_makespan``)
    time      max(makespan, HBM bytes / (BW x efficiency.hbm_bandwidth),
                  L2 bytes / (BW x efficiency.l2_bandwidth)) + efficiency.launch_overhead

GEMM edges are padded to the instruction's tile (mma.sync m16 n8 k16, wgmma m64 n8 k16): a thin
GEMM (one decode token) wastes the rest of the tile, so thin products belong on the vector units
(``vector_ops``), as real decode kernels do. On a spatial array a KernelOp's GEMMs run on the
systolic array (``spatial.systolic_gemm_cycles``, folds and fill/drain included) and its
exponentials and vector ops on the 1D array, pipelined when ``overlap``.

Kernels run one after another; the plan's time is the sum of its kernels' times.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from attnsim import __version__
from attnsim.arch import Arch
from attnsim.errors import MappingError, Problem
from attnsim.model.result import Result
from attnsim.workload.spec import Workload

# GEMM tile edges (m, n, k) an instruction computes at once; smaller products are padded up
INSTR_TILE = {"mma_sync": (16, 8, 16), "wgmma": (64, 8, 16), "array": (1, 1, 1)}
DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1}


def _ceil_to(x: float, q: int) -> float:
    return math.ceil(x / q) * q


@dataclass(frozen=True)
class Gemm:
    """`count` independent (m x k) @ (k x n) products."""

    count: float
    m: int
    n: int
    k: int

    @property
    def flops(self) -> float:
        return 2.0 * self.count * self.m * self.n * self.k

    def padded_flops(self, instr: str) -> float:
        pm, pn, pk = INSTR_TILE[instr]
        return 2.0 * self.count * _ceil_to(self.m, pm) * _ceil_to(self.n, pn) * _ceil_to(self.k, pk)


@dataclass(frozen=True)
class KernelOp:
    """One kernel that is not a softmax-attention call, by its work and traffic (totals over the grid)."""

    name: str
    ctas: float  # CTAs in the grid (independent work items)
    gemms: tuple = ()  # Gemm, on the tensor cores / the systolic array
    exps: float = 0.0  # exponentials (special-function units / the 1D array)
    vector_ops: float = 0.0  # fp32 ALU ops (an FMA is one)
    hbm_bytes: float = 0.0  # read from and written to HBM / DRAM
    l2_bytes: float | None = None  # L2 -> SM (None: the HBM bytes; every byte passes through L2)
    smem_bytes_per_cta: float = 0.0  # shared memory one CTA holds (occupancy)
    warps: int = 4
    overlap: bool = False  # vector work overlaps the MMAs (separate warps / pipelined arrays)
    dtype: str = "bf16"  # the GEMMs' input dtype
    count: int = 1  # identical launches (e.g. one per layer)
    instr: str | None = None  # GPU matrix instruction class; None = the arch's best (wgmma on Hopper)
    detail: str = ""  # said in the kernel's mapping label (e.g. a GEMM's output tile)

    @property
    def useful_flops(self) -> float:
        return sum(g.flops for g in self.gemms)


@dataclass(frozen=True)
class AttentionOp:
    """A softmax-attention call inside a plan; ``mapping`` as ``attnsim.predict`` takes it."""

    name: str
    workload: Workload
    mapping: object = None
    count: int = 1
    # (rows per query tile, keys per key tile) -> TileStats per (b, head group), averaged over the
    # heads: masks that differ between heads (head_mix); None: the workload's mask says it
    tile_stats: object = None


@dataclass(frozen=True)
class Plan:
    """A family's kernels in launch order, the FLOPs its math needs, and what to say about it."""

    family: str
    ops: tuple
    useful_flops: float  # the family cascade's matrix FLOPs (the TFLOP/s convention)
    mapping: str  # a label for the plan's mapping (kernel names and tiles)
    counts: dict = field(default_factory=dict)  # family-specific counts worth reporting
    notes: tuple = ()  # one-line remarks (what is assumed)


@dataclass(frozen=True)
class KernelCost:
    name: str
    count: int
    latency_s: float  # one launch
    bound: str
    mapping: str
    hbm_bytes: float
    l2_bytes: float
    smem_bytes: float
    mma_flops: float  # executed (padded)
    useful_flops: float
    exps: float
    vector_ops: float
    energy_j: dict
    occupancy: dict
    counts: dict = field(default_factory=dict)

    def as_row(self) -> dict:
        return {"kernel": self.name, "launches": self.count, "latency_s": self.latency_s * self.count,
                "bound": self.bound, "mapping": self.mapping, "hbm_bytes": self.hbm_bytes * self.count,
                "mma_flops": self.mma_flops * self.count}


# ---------------------------------------------------------------------------- GPU


def _binding(t_launch: float, memory: tuple, compute: str, t_compute: float) -> tuple[float, str]:
    """(the kernel's main time, what binds it): the largest of the compute and memory terms, or
    the launch overhead when that is at least as long; memory terms win ties, in the order given."""
    t_main = max([t_compute] + [t for _, t in memory])
    if t_launch >= t_main:
        return t_main, "launch overhead"
    return t_main, next((name for name, t in memory if t == t_main), compute)


def _gpu_kernel(arch: Arch, op: KernelOp) -> KernelCost:
    from attnsim.model.gpu_kernel import uniform_makespan
    g, c = arch.gpu, arch.compute
    instr = op.instr or arch.default_instr
    mma = sum(gm.padded_flops(instr) for gm in op.gemms)
    rate = arch.matrix_flops_per_cycle(instr, op.dtype) * arch.efficiency.mma[instr] if op.gemms else 1.0
    if op.smem_bytes_per_cta > g.smem_per_cta_bytes:
        raise MappingError(Problem(f"kernel {op.name!r} holds {op.smem_bytes_per_cta / 1024:.1f} KiB of shared "
                                   f"memory per CTA; {arch.name} allows {g.smem_per_cta_bytes / 1024:.1f} KiB",
                                   key="mapping", hint="use a smaller chunk or block"))
    k = min(g.max_ctas_per_sm, g.max_warps_per_sm // op.warps, g.max_threads_per_sm // (32 * op.warps))
    if op.smem_bytes_per_cta > 0:
        k = min(k, int(g.smem_per_sm_bytes // op.smem_bytes_per_cta))
    ctas = max(1, math.ceil(op.ctas))
    t_mma = mma / ctas / rate
    t_vec = max(op.exps / ctas / c.exp_per_cycle, op.vector_ops / ctas / c.vector_ops_per_cycle)
    per_cta = max(t_mma, t_vec) if op.overlap else t_mma + t_vec
    t_compute = uniform_makespan(ctas, per_cta, g.sm_count, k) / arch.clock_hz
    hbm, l2 = arch.level("HBM"), arch.level("L2")
    l2_bytes = op.hbm_bytes if op.l2_bytes is None else op.l2_bytes
    t_hbm = op.hbm_bytes / (hbm.bandwidth_bytes_per_s * arch.efficiency.hbm_bandwidth)
    t_l2 = l2_bytes / (l2.bandwidth_bytes_per_s * arch.efficiency.l2_bandwidth)
    t_launch = arch.efficiency.launch_overhead_s
    if ctas < g.sm_count:
        compute = "tail (waves / unequal CTAs)"  # fewer CTAs than SMs: the grid leaves SMs idle
    else:
        compute = "mma" if t_mma >= t_vec else "exp/vector units"
    t_main, bound = _binding(t_launch, (("hbm bandwidth", t_hbm), ("l2 bandwidth", t_l2)), compute, t_compute)
    latency = t_main + t_launch
    smem = arch.level("SMEM")
    e = arch.energy
    energy = {"HBM": op.hbm_bytes * hbm.read_energy_pj_per_byte * 1e-12,
              "L2": l2_bytes * l2.read_energy_pj_per_byte * 1e-12,
              "SMEM": l2_bytes * smem.read_energy_pj_per_byte * 1e-12,  # operands staged through SMEM once
              "mma": mma * e.matrix_pj_per_flop * 1e-12, "exp": op.exps * e.exp_pj_per_op * 1e-12,
              "vector": op.vector_ops * e.vector_pj_per_op * 1e-12, "static": e.static_power_w * latency}
    label = f"{op.name}: {ctas} CTAs x {op.warps} warps, {instr}" + (", overlapped" if op.overlap else "") \
        + (f", {op.detail}" if op.detail else "")
    return KernelCost(op.name, op.count, latency, bound, label, op.hbm_bytes, l2_bytes, l2_bytes, mma,
                      op.useful_flops, op.exps, op.vector_ops, energy,
                      {"ctas_per_sm": float(k), "waves": ctas / (g.sm_count * k), "n_ctas": float(ctas)})


# ---------------------------------------------------------------------------- spatial


def _spatial_kernel(arch: Arch, op: KernelOp) -> KernelCost:
    from attnsim.model.spatial import systolic_gemm_cycles
    a = arch.array
    dram, glb = arch.levels[0], arch.levels[1]
    c2d = sum(gm.count * systolic_gemm_cycles(gm.m, gm.n, gm.k, a.rows, a.cols, a.dataflow) for gm in op.gemms)
    c1d = max(op.exps / arch.compute.exp_per_cycle, op.vector_ops / arch.compute.vector_ops_per_cycle)
    cycles = max(c2d, c1d) if op.overlap else c2d + c1d
    mma = sum(gm.flops for gm in op.gemms)
    glb_bytes = op.hbm_bytes + 2.0 * mma / (2 * min(a.rows, a.cols))  # operand re-reads into the array edge
    t_compute = cycles / arch.clock_hz
    t_dram = op.hbm_bytes / (dram.bandwidth_bytes_per_s * arch.efficiency.hbm_bandwidth)
    t_glb = glb_bytes / (glb.bandwidth_bytes_per_s * arch.efficiency.l2_bandwidth)
    t_launch = arch.efficiency.launch_overhead_s
    t_main, bound = _binding(t_launch, (("dram", t_dram), ("glb", t_glb)), "2D array" if c2d >= c1d else "1D array",
                             t_compute)
    latency = t_main + t_launch
    e = arch.energy
    energy = {dram.name: op.hbm_bytes * dram.read_energy_pj_per_byte * 1e-12,
              glb.name: glb_bytes * glb.read_energy_pj_per_byte * 1e-12,
              "mac": mma * e.matrix_pj_per_flop * 1e-12, "exp": op.exps * e.exp_pj_per_op * 1e-12,
              "vector": op.vector_ops * e.vector_pj_per_op * 1e-12, "static": e.static_power_w * latency}
    label = f"{op.name}: {a.rows}x{a.cols} {a.dataflow} array" + (" + 1D array pipelined" if op.overlap else "")
    return KernelCost(op.name, op.count, latency, bound, label, op.hbm_bytes, glb_bytes, 0.0, mma,
                      op.useful_flops, op.exps, op.vector_ops, energy,
                      {"array_rows": a.rows, "array_cols": a.cols, "vector_lanes": arch.compute.vector_ops_per_cycle})


# ---------------------------------------------------------------------------- plans


def _attention(arch: Arch, op: AttentionOp) -> KernelCost:
    from attnsim.model.analytical import predict
    r = predict(arch, op.workload, op.mapping, tile_stats=op.tile_stats)
    traffic = list(r.traffic_bytes.values())  # outermost level first: HBM, L2, SMEM / DRAM, GLB
    return KernelCost(op.name, op.count, r.latency_s, r.bound, f"{op.name}: {r.mapping}",
                      traffic[0], traffic[1], r.traffic_bytes.get("SMEM", 0.0),
                      r.executed_flops, r.useful_flops, r.counts.get("exps", 0.0), r.counts.get("vector ops", 0.0),
                      dict(r.energy_j), dict(r.occupancy),
                      {"allowed (m,n) pairs per (b,h)": r.counts.get("allowed (m,n) pairs per (b,h)", 0.0),
                       "tile visits": r.counts.get("tile visits", 0.0)})


def kernel_cost(arch: Arch, op) -> KernelCost:
    """The cost of one op of a plan, one launch."""
    if isinstance(op, AttentionOp):
        return _attention(arch, op)
    return _spatial_kernel(arch, op) if arch.kind == "spatial" else _gpu_kernel(arch, op)


def evaluate_plan(arch: Arch, w: Workload, plan: Plan) -> Result:
    """Cost every kernel of a plan; the Result sums them and lists each (``Result.kernels``)."""
    costs = [kernel_cost(arch, op) for op in plan.ops]
    if not costs:
        raise MappingError(Problem(f"family {plan.family!r} produced an empty plan", key="family"))
    total = sum(c.latency_s * c.count for c in costs)

    def tot(attr):
        return sum(getattr(c, attr) * c.count for c in costs)

    energy: dict = {}
    for c in costs:
        for k, v in c.energy_j.items():
            energy[k] = energy.get(k, 0.0) + v * c.count
    ranked = sorted(costs, key=lambda c: c.latency_s * c.count, reverse=True)
    top = ranked[0]
    margin = (top.latency_s * top.count) / (ranked[1].latency_s * ranked[1].count) if len(ranked) > 1 else float("inf")
    if arch.kind == "spatial":
        dram, glb = arch.levels[0], arch.levels[1]
        traffic = {dram.name: tot("hbm_bytes"), glb.name: tot("l2_bytes")}
        a = arch.array
        busy = total * arch.clock_hz
        util = {"2D array": tot("mma_flops") / 2 / (busy * a.rows * a.cols),
                dram.name: traffic[dram.name] / (total * dram.bandwidth_bytes_per_s)}
        model = "spatial-analytical (plan)"
    else:
        traffic = {"HBM": tot("hbm_bytes"), "L2": tot("l2_bytes"), "SMEM": tot("smem_bytes")}
        busy = total * arch.gpu.sm_count * arch.clock_hz
        peak = arch.matrix_flops_per_cycle(arch.default_instr, w.dtype) if w.dtype in \
            arch.compute.matrix_flops_per_cycle[arch.default_instr] else 0.0
        util = {"mma": tot("mma_flops") / (busy * peak) if peak else 0.0,
                "exp (SFU)": tot("exps") / (busy * arch.compute.exp_per_cycle),
                "vector (FP32)": tot("vector_ops") / (busy * arch.compute.vector_ops_per_cycle),
                "HBM": traffic["HBM"] / (total * arch.level("HBM").bandwidth_bytes_per_s),
                "L2": traffic["L2"] / (total * arch.level("L2").bandwidth_bytes_per_s)}
        model = "analytical (plan)"
    times = {f"{c.name}" + (f" (x{c.count})" if c.count > 1 else ""): c.latency_s * c.count for c in costs}
    counts = {"kernels": float(sum(c.count for c in costs)), "exps": tot("exps"), "vector ops": tot("vector_ops")}
    for c in costs:
        for k, v in c.counts.items():
            counts[f"{c.name}: {k}"] = v
    counts.update({k: float(v) for k, v in plan.counts.items()})
    occupancy = dict(top.occupancy)
    occupancy["n_kernels"] = float(sum(c.count for c in costs))
    return Result(
        arch=arch.name, workload=w.label(), mapping=plan.mapping, model=model, latency_s=total,
        bound=f"{top.bound} ({top.name})" if len(costs) > 1 else top.bound, bound_margin=margin,
        useful_flops=plan.useful_flops, executed_flops=tot("mma_flops"), traffic_bytes=traffic,
        utilization=util, energy_j=energy, times_s=times, occupancy=occupancy, counts=counts,
        provenance={"attnsim": __version__, "model": model, "arch_hash": arch.spec_hash, "arch_file": arch.file,
                    "family": w.family, "params": w.params.label(), "notes": list(plan.notes)},
        kernels=tuple(c.as_row() for c in costs),
    )


def predict_family(arch: Arch, w: Workload, mapping=None) -> Result:
    """Predict a workload of any family other than 'softmax' through its plan."""
    from attnsim.model.families import plan_for
    return evaluate_plan(arch, w, plan_for(arch, w, mapping))
