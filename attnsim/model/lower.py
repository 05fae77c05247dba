"""Lower (arch, workload, kernel mapping) values to one row of numbers for the numba kernel."""
from __future__ import annotations

import numpy as np

from attnsim.arch import Arch
from attnsim.mapping.kernel import (KernelMapping, block_table_bytes, check_mapping, estimated_registers,
                                    kernel_head_dims, smem_bytes_per_cta)
from attnsim.model import gpu_kernel as K
from attnsim.workload.spec import Workload
from attnsim.workload.tiles import explicit_tile_stats

MASK_CODES = {"full": K.MK_FULL, "causal": K.MK_CAUSAL, "window": K.MK_WINDOW,
              "block_sparse": K.MK_BLOCK, "neighborhood": K.MK_EXPLICIT, "block_counts": K.MK_EXPLICIT}
STYLE_CODES = {"fused": K.STYLE_FUSED, "split_kv": K.STYLE_SPLIT, "unfused": K.STYLE_UNFUSED}
BOUND_NAMES = {K.BD_MMA: "mma", K.BD_SOFTMAX: "softmax (exp/vector)", K.BD_SMEM: "smem bandwidth",
               K.BD_SM_LOAD: "L2->SM load", K.BD_HBM: "hbm bandwidth", K.BD_L2: "l2 bandwidth",
               K.BD_LAUNCH: "launch overhead", K.BD_TAIL: "tail (waves / unequal CTAs)"}


def arch_columns(arch: Arch, row: np.ndarray, instr: str, dtype: str) -> None:
    g = arch.gpu
    hbm, l2, smem = arch.level("HBM"), arch.level("L2"), arch.level("SMEM")
    row[K.SMS] = g.sm_count
    row[K.CLOCK] = arch.clock_hz
    row[K.MMA_PER_CYCLE] = arch.matrix_flops_per_cycle(instr, dtype)
    row[K.MMA_EFF] = arch.efficiency.mma[instr]
    row[K.EXP_PER_CYCLE] = arch.compute.exp_per_cycle
    row[K.VEC_PER_CYCLE] = arch.compute.vector_ops_per_cycle
    row[K.MAX_CTAS] = g.max_ctas_per_sm
    row[K.MAX_WARPS] = g.max_warps_per_sm
    row[K.MAX_THREADS] = g.max_threads_per_sm
    row[K.REGS_PER_SM] = g.registers_per_sm
    row[K.SMEM_SM] = g.smem_per_sm_bytes
    row[K.HBM_BW] = hbm.bandwidth_bytes_per_s
    row[K.HBM_EFF] = arch.efficiency.hbm_bandwidth
    row[K.L2_BW] = l2.bandwidth_bytes_per_s
    row[K.L2_EFF] = arch.efficiency.l2_bandwidth
    row[K.L2_CAP] = l2.capacity_bytes * l2.instances
    row[K.SMEM_BYTES_PER_CYCLE] = smem.bandwidth_bytes_per_s / smem.instances / arch.clock_hz
    row[K.LAUNCH_S] = arch.efficiency.launch_overhead_s
    row[K.E_HBM] = hbm.read_energy_pj_per_byte
    row[K.E_L2] = l2.read_energy_pj_per_byte
    row[K.E_SMEM] = smem.read_energy_pj_per_byte
    row[K.E_MMA] = arch.energy.matrix_pj_per_flop
    row[K.E_EXP] = arch.energy.exp_pj_per_op
    row[K.E_VEC] = arch.energy.vector_pj_per_op
    row[K.P_STATIC] = arch.energy.static_power_w


def lower_gpu(arch: Arch, w: Workload, m: KernelMapping, check: bool = True, tile_stats=None) -> np.ndarray:
    """One design point as a row of K.N_IN numbers (checks the mapping first unless told not to).

    ``tile_stats(bp, bc)``, when given, replaces the mask's tile counts (the explicit path):
    per (b, head group) sums averaged over heads, max / min over all heads."""
    if check:
        check_mapping(m, w, arch)
    row = np.zeros(K.N_IN)
    row[K.STYLE] = STYLE_CODES[m.style]
    row[K.B], row[K.H], row[K.HKV] = w.batch, w.heads, w.kv_heads
    row[K.M], row[K.N] = w.seq_q, w.seq_kv
    row[K.D], row[K.F] = w.head_dim, w.value_dim
    if m.style != "unfused":
        row[K.DP], row[K.FP] = kernel_head_dims(m, w)
    else:
        row[K.DP], row[K.FP] = -(-w.head_dim // 16) * 16, -(-w.value_dim // 16) * 16
    row[K.ELEM_BYTES] = w.dtype_bytes
    # the KV cache as the kernel reads it (a plain cache: K and V at the workload dtype)
    row[K.K_BYTES] = w.dtype_bytes if m.kv_bytes is None else m.kv_bytes
    row[K.V_BYTES] = 0.0 if m.shared_kv else row[K.K_BYTES]
    row[K.DEQUANT_OPS] = m.dequant_ops
    row[K.IDX_TILE_BYTES], row[K.IDX_HBM_BYTES] = block_table_bytes(m, w)
    mk = w.mask
    row[K.MASK] = MASK_CODES[mk.kind]
    row[K.WINDOW], row[K.SINK], row[K.DENSITY], row[K.CAUSAL] = mk.window, mk.sink, mk.density, mk.causal
    row[K.BR], row[K.BC] = m.block_m, m.block_n
    s = None
    if mk.kind in ("neighborhood", "block_counts") or tile_stats is not None:
        bp = max(1, m.block_m // m.q_heads_per_cta)
        if tile_stats is not None:  # per-head tile counts averaged over heads (a plan's mixed-head kernel)
            s = tile_stats(bp, m.block_n)
        elif mk.kind == "block_counts":
            s = mk.counts.tile_stats(bp, m.block_n, m.q_heads_per_cta)
        else:
            s = explicit_tile_stats(mk, w.seq_q, w.seq_kv, bp, m.block_n)
        row[K.MASK] = K.MK_EXPLICIT
        row[K.X_SUM], row[K.X_MAX], row[K.X_MIN] = s.tiles, s.max_row_tiles, s.min_row_tiles
        row[K.X_FULL], row[K.X_ALLOWED], row[K.X_ROWS] = s.full_tiles, s.allowed, s.rows
    row[K.WARPS], row[K.STAGES], row[K.SPLIT] = m.warps, m.stages, m.split_kv
    row[K.QPC] = m.q_heads_per_cta
    row[K.OVERLAP] = 1.0 if m.softmax_overlap else 0.0
    row[K.REGS] = m.registers_per_thread or max(1, estimated_registers(m, w))
    row[K.SMEM_CTA] = smem_bytes_per_cta(m, w)
    # who reads each K/V tile out of shared memory: every warp (mma.sync) or every warpgroup (wgmma)
    row[K.SMEM_READERS] = m.warps / 4 if m.instr == "wgmma" else m.warps
    arch_columns(arch, row, m.instr, w.dtype)
    eff = arch.efficiency
    if w.kv_page and eff.paged_kv_bandwidth is not None:
        row[K.HBM_EFF] = eff.paged_kv_bandwidth
    # a kernel family's own factors, where the spec gives them
    row[K.MMA_EFF] = eff.for_kernel(m.name, "mma", row[K.MMA_EFF])
    row[K.HBM_EFF] = eff.for_kernel(m.name, "hbm", row[K.HBM_EFF])
    row[K.LAUNCH_S] = eff.for_kernel(m.name, "launch_overhead", row[K.LAUNCH_S])
    row[K.COMBINE_S] = eff.for_kernel(m.name, "combine_overhead", row[K.LAUNCH_S])  # split-KV combine kernel
    if not eff.for_kernel(m.name, "skip_masked_tiles", True) and (mk.kind != "full" or tile_stats is not None) \
            and m.style != "unfused":
        _every_tile(row, m, s)
    return row


def _every_tile(row: np.ndarray, m: KernelMapping, s=None) -> None:
    """A kernel that does not skip masked tiles visits every key tile of every row; the mask's
    own full-tile and allowed-pair counts still say how much masking and useful work there is.
    ``s``: a neighborhood mask's TileStats, whose layout sets the rows and columns (nd tiles pad)."""
    bp = max(1, m.block_m // m.q_heads_per_cta)
    m_len, n_len, bc = int(row[K.M]), int(row[K.N]), m.block_n
    if int(row[K.MASK]) == K.MK_EXPLICIT:
        full, allowed = row[K.X_FULL], row[K.X_ALLOWED]
    else:
        _, _, _, full, _, allowed = K.mask_tile_stats(int(row[K.MASK]), m_len, n_len, bp, bc, int(row[K.WINDOW]),
                                                      int(row[K.SINK]), row[K.DENSITY], row[K.CAUSAL] > 0)
    rows, ncol = (-(-m_len // bp), -(-n_len // bc)) if s is None else (s.rows, s.cols)
    row[K.MASK] = K.MK_EXPLICIT
    row[K.X_SUM], row[K.X_MAX], row[K.X_MIN], row[K.X_ROWS] = rows * ncol, ncol, ncol, rows
    row[K.X_FULL], row[K.X_ALLOWED] = full, allowed
