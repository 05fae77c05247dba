"""Analytical model of attention on a spatial design: an R x C systolic MAC array beside a
1D vector array (softmax), a global buffer (GLB) and DRAM.

Systolic GEMM (Mg x Ng, reduction Kg) cycles, per fold of the stationary operand:
    ws: fold = R x C block of the (Kg x Ng) weights; rows stream through:  2R + C + Mg - 2
    os: fold = R x C block of the (Mg x Ng) outputs; reduction streams:    R + C + Kg - 2
    is: fold = R x C block of the (Kg x Mg) inputs; weights stream:        2R + C + Ng - 2
(fill R where an operand is preloaded, stream, skew-drain R + C - 2). Softmax: exps / exp rate and vector ops / lanes.
"""
from __future__ import annotations

import math

from attnsim import __version__
from attnsim.arch import Arch
from attnsim.errors import MappingError, Problem
from attnsim.mapping.spatial import SpatialMapping
from attnsim.model import gpu_kernel as K
from attnsim.model.result import Result
from attnsim.workload.spec import Workload

MASK_CODES = {"full": K.MK_FULL, "causal": K.MK_CAUSAL, "window": K.MK_WINDOW, "block_sparse": K.MK_BLOCK}


def systolic_gemm_cycles(mg: int, ng: int, kg: int, rows: int, cols: int, dataflow: str) -> int:
    """Cycles of an (mg x kg) @ (kg x ng) GEMM on a rows x cols array, folds one after another.

    ws / is: fill the stationary operand (rows cycles), stream, skewed drain (rows + cols - 2);
    os: nothing to preload: stream the reduction, drain (rows + cols - 2). The cycle-accurate
    simulator (attnsim.sim.spatial) agrees exactly and matches SCALE-Sim's counts.
    """
    if dataflow == "ws":
        return math.ceil(kg / rows) * math.ceil(ng / cols) * (2 * rows + cols + mg - 2)
    if dataflow == "is":
        return math.ceil(kg / rows) * math.ceil(mg / cols) * (2 * rows + cols + ng - 2)
    if dataflow == "os":
        return math.ceil(mg / rows) * math.ceil(ng / cols) * (rows + cols + kg - 2)
    raise MappingError(Problem(f"unknown dataflow {dataflow!r}; expected ws, os or is", key="array.dataflow"))


def _tile_stats(w: Workload, bm: int, bn: int, tile_stats=None):
    if tile_stats is not None or w.mask.kind == "block_counts":
        # per head, averaged over heads (masks that differ between heads), or a mask's block counts
        s = tile_stats(bm, bn) if tile_stats is not None else w.mask.counts.tile_stats(bm, bn)
        return s.tiles, s.full_tiles, s.rows, s.allowed
    if w.mask.kind == "neighborhood":
        from attnsim.workload.tiles import explicit_tile_stats
        s = explicit_tile_stats(w.mask, w.seq_q, w.seq_kv, bm, bn)
        return s.tiles, s.full_tiles, s.rows, s.allowed
    tot, _, _, full, rows, allowed = K.mask_tile_stats(MASK_CODES[w.mask.kind], w.seq_q, w.seq_kv, bm, bn,
                                                       w.mask.window, w.mask.sink, w.mask.density,
                                                       w.mask.causal)
    return tot, full, rows, allowed


def predict_spatial(arch: Arch, w: Workload, m: SpatialMapping, tile_stats=None) -> Result:
    a = arch.array
    R, C, df = a.rows, a.cols, a.dataflow
    dram, glb = arch.levels[0], arch.levels[1]
    eb = w.dtype_bytes
    bh = w.batch * w.heads
    M, N, D, F = w.seq_q, w.seq_kv, w.head_dim, w.value_dim
    bm, bn = min(m.block_m, M), min(m.block_n, N)
    tiles, full, rows, allowed = _tile_stats(w, bm, bn, tile_stats)
    exp_rate, lanes = arch.compute.exp_per_cycle, arch.compute.vector_ops_per_cycle
    q = bh * M * D * eb
    kv = w.batch * w.kv_heads * N * (D + F) * eb
    o = bh * M * F * eb
    if m.style == "unfused":
        # dense: S = QK^T for the whole (M, N); S and P round-trip through DRAM
        c2d = bh * (systolic_gemm_cycles(M, N, D, R, C, df) + systolic_gemm_cycles(M, F, N, R, C, df))
        elems = bh * M * N
        c1d = max(elems / exp_rate, K.SOFTMAX_VECTOR_OPS_PER_ELEMENT * elems / lanes)
        s_bytes = bh * M * N * eb
        dram_bytes = q + kv + 4 * s_bytes + o  # write S, read S, write P, read P
        compute_cycles = c2d + c1d  # phases run one after another
        mma_flops = 2.0 * bh * M * N * (D + F)
    else:
        # per (query tile, key tile): QK^T (bm x bn, reduction D) and PV (bm x F, reduction bn)
        per_tile_2d = systolic_gemm_cycles(bm, bn, D, R, C, df) + systolic_gemm_cycles(bm, F, bn, R, C, df)
        per_tile_1d = max((bm * bn + bm) / exp_rate,
                          (K.SOFTMAX_VECTOR_OPS_PER_ELEMENT * bm * bn + bm * F) / lanes)
        if m.style == "row_fused":
            s_row = bm * N * 4  # the whole fp32 score row block stays on chip
            if s_row > glb.capacity_bytes:
                raise MappingError(Problem(
                    f"GLB overflows by {(s_row - glb.capacity_bytes) / 2**20:.2f} MiB: row_fused keeps a "
                    f"{bm} x {N} fp32 score block ({s_row / 2**20:.2f} MiB) on chip, GLB holds "
                    f"{glb.capacity_bytes / 2**20:.2f} MiB", key="mapping.block_m",
                    hint="use style fused, or a smaller block_m"))
            compute_cycles = bh * tiles * (per_tile_2d + per_tile_1d)  # 2D and 1D take turns
        else:
            compute_cycles = bh * tiles * max(per_tile_2d, per_tile_1d)  # pipelined (FuseMax)
        # K/V stay in GLB across query tiles when a head's K/V fit beside the working tiles
        kv_head = N * (D + F) * eb
        refetch = 1 if kv_head <= glb.capacity_bytes / 2 else rows
        dram_bytes = q + kv * min(refetch, rows) + o
        c2d = bh * tiles * per_tile_2d
        c1d = bh * tiles * per_tile_1d
        elems = bh * tiles * bm * bn
        mma_flops = 2.0 * bh * tiles * bm * bn * (D + F)
    glb_bytes = dram_bytes + 2.0 * mma_flops / (2 * min(R, C))  # operand re-reads into the array edge
    t_compute = compute_cycles / arch.clock_hz
    t_dram = dram_bytes / (dram.bandwidth_bytes_per_s * arch.efficiency.hbm_bandwidth)
    t_glb = glb_bytes / (glb.bandwidth_bytes_per_s * arch.efficiency.l2_bandwidth)
    latency = max(t_compute, t_dram, t_glb) + arch.efficiency.launch_overhead_s
    terms = {"compute": t_compute, "dram": t_dram, "glb": t_glb}
    order = sorted(terms.values(), reverse=True)
    bound = max(terms, key=terms.get)
    if bound == "compute":
        bound = "2D array" if (m.style == "fused" and c2d >= c1d) or (m.style != "fused" and c2d >= c1d) \
            else "1D array (softmax)"
    exps = elems
    vec = K.SOFTMAX_VECTOR_OPS_PER_ELEMENT * elems
    useful = 2.0 * bh * allowed * (D + F)
    busy = latency * arch.clock_hz
    return Result(
        arch=arch.name, workload=w.label(), mapping=m.label(), model="spatial-analytical",
        latency_s=latency, bound=bound, bound_margin=order[0] / order[1] if order[1] > 0 else float("inf"),
        useful_flops=useful, executed_flops=mma_flops,
        traffic_bytes={dram.name: dram_bytes, glb.name: glb_bytes},
        utilization={"2D array": mma_flops / 2 / (busy * R * C),
                     "1D array": max(exps / exp_rate, vec / lanes) / busy,
                     dram.name: dram_bytes / (latency * dram.bandwidth_bytes_per_s)},
        energy_j={dram.name: dram_bytes * dram.read_energy_pj_per_byte * 1e-12,
                  glb.name: glb_bytes * glb.read_energy_pj_per_byte * 1e-12,
                  "mac": mma_flops * arch.energy.matrix_pj_per_flop * 1e-12,
                  "exp": exps * arch.energy.exp_pj_per_op * 1e-12,
                  "vector": vec * arch.energy.vector_pj_per_op * 1e-12,
                  "static": arch.energy.static_power_w * latency},
        times_s={"compute (2D + 1D schedule)": t_compute, "2D array busy": c2d / arch.clock_hz,
                 "1D array busy": c1d / arch.clock_hz, "dram": t_dram, "glb": t_glb},
        occupancy={"array_rows": R, "array_cols": C, "vector_lanes": lanes},
        counts={"tile visits": float(bh * tiles), "exps": float(exps), "vector ops": float(vec),
                "allowed (m,n) pairs per (b,h)": float(allowed)},
        provenance={"attnsim": __version__, "model": "spatial-analytical", "arch_hash": arch.spec_hash,
                    "arch_file": arch.file, "mapping": repr(m)},
    )
