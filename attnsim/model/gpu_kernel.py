"""The analytical GPU model's hot loop: numba over an array of design points.

One row of ``points`` is one design point (workload x mapping x arch, lowered to numbers
by ``attnsim.model.lower``); one row of the output holds its counts and times. Columns are
named by the constants below. This module imports numpy and numba only; its slow, obvious
twin is ``attnsim.model.gpu_reference`` and tests assert they agree.

Per design point (fused / split-KV styles):

    tiles      non-empty key tiles per query-tile row, from the mask (closed form)
    per tile   t_mma  = 2*Br*Bc*(D+F) / (mma FLOP/clk * efficiency)
               t_soft = max(exps / exp/clk, vector ops / ALU ops/clk)
               t_c    = t_mma + t_soft        (FA2: softmax serialized with the MMAs)
                      = max(t_mma, t_soft)    (FA3: overlapped, ping-pong warpgroups)
               t_tile = max(t_c, smem reads, per-SM share of L2->SM bandwidth)
    CTAs       c_i = L_i * t_tile + Q load + O store; k CTAs share an SM
    makespan   max(longest CTA, sum(c_i)/SMs, waves of the shortest CTA)   (three lower bounds)
    memory     max(makespan, HBM bytes / BW, L2 bytes / BW) + launch overhead

K/V bytes per key position are D * K_BYTES + F * V_BYTES (both the workload dtype unless the
kernel reads a quantized cache; V_BYTES 0 when V is part of the K rows, as in MLA's latent
cache), plus IDX_TILE_BYTES of block-table entries per key tile (paged caches). A dequantizing
kernel spends DEQUANT_OPS vector ops per K/V element it loads, on top of the softmax's.
"""
import math

import numpy as np
from numba import njit

from attnsim.numba_config import JIT_OPTS

# ---- input columns ----
(STYLE, B, H, HKV, M, N, D, F, DP, FP, ELEM_BYTES,
 MASK, WINDOW, SINK, DENSITY, CAUSAL,
 X_SUM, X_MAX, X_MIN, X_FULL, X_ALLOWED, X_ROWS,
 BR, BC, WARPS, STAGES, SPLIT, QPC, OVERLAP, REGS, SMEM_CTA, SMEM_READERS,
 SMS, CLOCK, MMA_PER_CYCLE, MMA_EFF, EXP_PER_CYCLE, VEC_PER_CYCLE,
 MAX_CTAS, MAX_WARPS, MAX_THREADS, REGS_PER_SM, SMEM_SM,
 HBM_BW, HBM_EFF, L2_BW, L2_EFF, L2_CAP, SMEM_BYTES_PER_CYCLE, LAUNCH_S,
 E_HBM, E_L2, E_SMEM, E_MMA, E_EXP, E_VEC, P_STATIC, COMBINE_S,
 K_BYTES, V_BYTES, DEQUANT_OPS, IDX_TILE_BYTES, IDX_HBM_BYTES, N_IN) = range(64)

# ---- output columns ----
(O_STATUS, O_LATENCY, O_T_COMPUTE, O_T_HBM, O_T_L2, O_T_LAUNCH, O_T_COMBINE, O_BOUND,
 O_HBM_BYTES, O_L2_BYTES, O_SMEM_BYTES, O_MMA_FLOPS, O_USEFUL_FLOPS, O_EXPS, O_VEC_OPS,
 O_CTAS_PER_SM, O_WAVES, O_N_CTAS, O_N_KERNELS, O_TILES, O_T_MMA_TILE, O_T_SOFT_TILE, O_T_TILE,
 O_E_HBM, O_E_L2, O_E_SMEM, O_E_MMA, O_E_EXP, O_E_VEC, O_E_STATIC,
 O_UTIL_MMA, O_UTIL_EXP, O_UTIL_VEC, O_UTIL_HBM, O_UTIL_L2, O_ALLOWED, N_OUT) = range(37)

# styles, mask kinds, status and bound codes
STYLE_FUSED, STYLE_SPLIT, STYLE_UNFUSED = 0, 1, 2
MK_FULL, MK_CAUSAL, MK_WINDOW, MK_BLOCK, MK_EXPLICIT = 0, 1, 2, 3, 4
ST_OK, ST_NO_FIT = 0, 1
(BD_MMA, BD_SOFTMAX, BD_SMEM, BD_SM_LOAD, BD_HBM, BD_L2, BD_LAUNCH, BD_TAIL) = range(8)
# one op per element each: scale-subtract (FMA), row max, row sum, convert P to 16 bit
SOFTMAX_VECTOR_OPS_PER_ELEMENT = 4


@njit(**JIT_OPTS)
def sum_clamped(a, b, c, lo, hi):
    """sum over integers m in [a, b] of clamp(m + c, lo, hi)   (0 when a > b)."""
    if a > b:
        return 0.0
    total = 0.0
    # region 1: m + c <= lo  ->  m <= lo - c
    e1 = min(b, lo - c)
    if e1 >= a:
        total += (e1 - a + 1) * lo
    if lo >= hi:  # every value clamps to lo
        return (b - a + 1) * lo
    # region 3: m + c >= hi  ->  m >= hi - c
    s3 = max(a, hi - c)
    if s3 <= b:
        total += (b - s3 + 1) * hi
    # region 2: lo < m + c < hi
    s2 = max(a, lo - c + 1)
    e2 = min(b, hi - c - 1)
    if s2 <= e2:
        total += (e2 - s2 + 1) * (s2 + e2 + 2 * c) / 2.0
    return total


@njit(**JIT_OPTS)
def allowed_in_rows(kind, r0, r1, m_len, n_len, window, sink):
    """Allowed (m, n) pairs in query rows r0..r1 for full / causal / window masks (closed form).

    Row m (aligned to key m + N - M) sees [lo(m), hi(m)] plus the sink keys [0, min(sink, lo)).
    """
    off = n_len - m_len
    if kind == MK_FULL:
        return float((r1 - r0 + 1) * n_len)
    a = max(r0, -off)  # rows before this see no key
    if a > r1:
        return 0.0
    hi_sum = sum_clamped(a, r1, off, 0, n_len - 1)
    if kind == MK_CAUSAL:
        return hi_sum + (r1 - a + 1)
    lo_sum = sum_clamped(a, r1, off - window + 1, 0, n_len)
    sink_sum = sum_clamped(a, r1, off - window + 1, 0, sink) if sink > 0 else 0.0
    return hi_sum - lo_sum + (r1 - a + 1) + sink_sum


@njit(**JIT_OPTS)
def row_tiles(kind, r0, r1, m_len, n_len, bc, window, sink):
    """(non-empty tiles, full tiles) in the query-tile row covering rows r0..r1.

    Rows see contiguous key intervals whose ends rise with m, so the row's tiles are those
    meeting [lo(first row), hi(last row)] or the sink; a tile is full when it lies inside
    every row's allowed set.

        causal, 4 query tiles x 4 key tiles:   # full   \\ partial   . empty
            \\ . . .
            # \\ . .
            # # \\ .
            # # # \\
    """
    off = n_len - m_len
    ncol = (n_len + bc - 1) // bc
    if kind == MK_FULL:
        return ncol, ncol
    a = max(r0, -off)
    if a > r1:
        return 0, 0
    hi_last = min(r1 + off, n_len - 1)
    hi_first = min(a + off, n_len - 1)
    if kind == MK_CAUSAL:
        lo_first, lo_last, s = 0, 0, 0
    else:
        lo_first = max(0, a + off - window + 1)
        lo_last = max(0, r1 + off - window + 1)
        s = sink
    # non-empty: tiles of [lo_first, hi_last] united with the sink tiles [0, min(s, hi_last+1)-1]
    j0, j1 = lo_first // bc, hi_last // bc
    count = j1 - j0 + 1
    s_end = min(s, hi_last + 1)
    if s_end > 0:
        sj1 = (s_end - 1) // bc
        if sj1 < j0:
            count += sj1 + 1
        else:
            count += j0  # sink tiles 0..j0-1 are new
    # full: all rows non-empty, c1 <= hi(first row), and (c1 < s or lo(last row) <= max(c0, s))
    if a > r0:
        return count, 0
    if hi_first >= n_len - 1:
        j_hi = ncol - 1
    else:
        j_hi = (hi_first + 1) // bc - 1
    if j_hi < 0:
        return count, 0
    if lo_last <= s:
        return count, j_hi + 1
    j_s = ncol - 1 if s >= n_len else s // bc - 1  # tiles entirely below s
    j_lo = (lo_last + bc - 1) // bc
    full = 0
    if j_s >= 0:
        full += min(j_s, j_hi) + 1
    if j_lo <= j_hi:
        full += j_hi - max(j_lo, j_s + 1) + 1 if max(j_lo, j_s + 1) <= j_hi else 0
    return count, full


@njit(**JIT_OPTS)
def kept_tiles_allowed(r0, r1, m_len, n_len, bc, full_row, kept_partial, kept_full):
    """Allowed pairs in the tiles a block-sparse query-tile row (rows r0..r1) keeps: its first
    `kept_partial` partial tiles (lowest key index first) and its last `kept_full` full tiles
    (highest key index first, i.e. nearest the diagonal). The base mask is causal or full: tiles
    0..full_row-1 are full and the partial ones (causal only) follow them.

        causal row, 5 candidate tiles, keep 3:   # # # # \\   ->   . . # # \\
    """
    off = n_len - m_len
    total = 0.0
    for t in range(kept_partial):  # row m sees keys n <= m + off of the tile [c0, c0 + width)
        c0 = (full_row + t) * bc
        width = min(n_len, c0 + bc) - c0
        total += sum_clamped(r0, r1, off - c0 + 1, 0, width)
    for t in range(kept_full):  # every row sees every key of a full tile (the last may be ragged)
        c0 = (full_row - 1 - t) * bc
        total += (r1 - r0 + 1) * (min(n_len, c0 + bc) - c0)
    return total


@njit(**JIT_OPTS)
def mask_tile_stats(kind, m_len, n_len, bp, bc, window, sink, density, causal):
    """(sum, max, min of non-empty tiles per query-tile row; full tiles; rows; allowed pairs)."""
    rows = (m_len + bp - 1) // bp
    if kind == MK_FULL:  # every row: all key tiles, all full
        ncol = (n_len + bc - 1) // bc
        return rows * ncol, ncol, ncol, rows * ncol, rows, float(m_len) * n_len
    base = MK_CAUSAL if (kind == MK_BLOCK and causal) else (MK_FULL if kind == MK_BLOCK else kind)
    tot = 0.0
    full_tot = 0.0
    allowed = 0.0
    lmax = 0.0
    lmin = 1e300
    for i in range(rows):
        r0 = i * bp
        r1 = min(m_len, r0 + bp) - 1
        cnt, full = row_tiles(base, r0, r1, m_len, n_len, bc, window, sink)
        alw = allowed_in_rows(base, r0, r1, m_len, n_len, window, sink)
        if kind == MK_BLOCK and cnt > 0:
            keep = min(cnt, max(1, math.floor(density * cnt + 0.5)))
            partial = min(keep, cnt - full)  # the diagonal (partial) tiles are always kept
            if keep < cnt:
                alw = kept_tiles_allowed(r0, r1, m_len, n_len, bc, full, partial, keep - partial)
            full = keep - partial
            cnt = keep
        tot += cnt
        full_tot += full
        allowed += alw
        lmax = max(lmax, cnt)
        lmin = min(lmin, cnt)
    return tot, lmax, lmin, full_tot, rows, allowed


@njit(**JIT_OPTS)
def uniform_makespan(n, c, sms, k):
    """Cycles for n equal CTAs of c SM-cycles each, k at a time per SM: full waves share an SM k
    ways; the last, partial wave spreads over the SMs and runs ceil(r / SMs) deep."""
    per_wave = sms * k
    full_waves = n // per_wave
    rest = n - full_waves * per_wave
    return full_waves * k * c + math.ceil(rest / sms) * c


@njit(**JIT_OPTS)
def occupancy(p):
    """CTAs resident per SM: the tightest of CTA slots, warps, threads, shared memory, registers."""
    warps = p[WARPS]
    k = min(p[MAX_CTAS], math.floor(p[MAX_WARPS] / warps), math.floor(p[MAX_THREADS] / (32 * warps)))
    if p[SMEM_CTA] > 0:
        k = min(k, math.floor(p[SMEM_SM] / p[SMEM_CTA]))
    k = min(k, math.floor(p[REGS_PER_SM] / (p[REGS] * 32 * warps)))
    return k


@njit(**JIT_OPTS)
def eval_fused(p, out):
    b, h, hkv, m_len, n_len = p[B], p[H], p[HKV], int(p[M]), int(p[N])
    d, f, dp, fp, eb = p[D], p[F], p[DP], p[FP], p[ELEM_BYTES]
    br, bc, qpc, split = int(p[BR]), int(p[BC]), p[QPC], int(p[SPLIT])
    sms, clock = p[SMS], p[CLOCK]
    k = occupancy(p)
    if k < 1:
        out[O_STATUS] = ST_NO_FIT
        return
    bp = max(1, br // int(qpc))  # query positions per CTA (rows = positions x packed heads)
    kind = int(p[MASK])
    if kind == MK_EXPLICIT:
        tot, lmax, lmin, full, rows, allowed = (p[X_SUM], p[X_MAX], p[X_MIN], p[X_FULL], p[X_ROWS],
                                                p[X_ALLOWED])
    else:
        tot, lmax, lmin, full, rows, allowed = mask_tile_stats(
            kind, m_len, n_len, bp, bc, int(p[WINDOW]), int(p[SINK]), p[DENSITY], p[CAUSAL] > 0)
    groups = b * h / qpc  # (batch, head-group) pairs, each with `rows` query tiles
    # split-KV: each row's key tiles are cut into `split` chunks of `chunk` tiles
    ncol = (n_len + bc - 1) // bc
    chunk = (ncol + split - 1) // split
    cta_max = min(chunk, lmax)
    cta_min = max(0.0, lmin - (split - 1) * chunk)
    n_ctas = groups * rows * split
    visits = groups * tot  # (CTA, key tile) pairs
    partial = tot - full

    # ---- per-tile SM cycles ----
    mma_tile = 2.0 * br * bc * (dp + fp)
    exp_tile = br * bc + br  # P, plus the rescale factor of each row
    # softmax + rescale O, + dequantize the Bc*(D+F) K/V elements the CTA loads
    vec_tile = SOFTMAX_VECTOR_OPS_PER_ELEMENT * br * bc + br * fp + p[DEQUANT_OPS] * bc * (d + f)
    t_mma = mma_tile / (p[MMA_PER_CYCLE] * p[MMA_EFF])
    t_soft = max(exp_tile / p[EXP_PER_CYCLE], vec_tile / p[VEC_PER_CYCLE])
    t_c = max(t_mma, t_soft) if p[OVERLAP] > 0 else t_mma + t_soft
    kv_row_bytes = d * p[K_BYTES] + f * p[V_BYTES]  # one key position's K and V
    kv_tile_bytes = bc * kv_row_bytes + p[IDX_TILE_BYTES]  # Bc keys of K and V (+ their block-table entries)
    smem_tile = (1.0 + p[SMEM_READERS]) * bc * (dp + fp) * eb  # write once, read by each warp(group)
    t_smem = smem_tile / p[SMEM_BYTES_PER_CYCLE]
    l2_per_sm_cycle = p[L2_BW] * p[L2_EFF] / clock / sms  # fair share of L2->SM bandwidth
    t_load = kv_tile_bytes / l2_per_sm_cycle
    if p[STAGES] >= 2 or k >= 2:
        t_tile = max(t_c, t_smem, t_load)
    else:
        t_tile = max(t_c + t_load, t_smem)
    # extra masking op on each element of a partial tile
    t_partial = br * bc / p[VEC_PER_CYCLE]
    q_bytes_cta = br * d * eb
    o_bytes_cta = br * f * (4.0 if split > 1 else eb)
    t_pe = (q_bytes_cta + o_bytes_cta) / l2_per_sm_cycle + br * fp / p[VEC_PER_CYCLE]
    c_max = cta_max * t_tile + t_pe
    c_min = cta_min * t_tile + t_pe
    c_sum = tot * t_tile + partial * t_partial + rows * split * t_pe  # per group
    sm_cycles = groups * c_sum
    k_eff = min(k, math.ceil(n_ctas / sms))
    t_cycles_balance = sm_cycles / sms
    t_cycles_wave = uniform_makespan(n_ctas, c_min, sms, k)
    t_cycles = max(c_max, t_cycles_balance, t_cycles_wave)
    t_compute = t_cycles / clock

    # ---- traffic ----
    q_bytes = b * h * m_len * d * eb
    o_bytes = b * h * m_len * f * eb
    kv_visit_bytes = visits * kv_tile_bytes
    kv_compulsory = b * hkv * n_len * kv_row_bytes
    partial_bytes = 0.0
    if split > 1:
        partial_bytes = b * h * m_len * split * (f + 1) * 4.0  # fp32 partial O and log-sum-exp
    # every split of a query tile reads its Q tile; with a split, the main kernel writes fp32
    # partials and only the combine kernel writes O
    o_main = o_bytes if split == 1 else 0.0
    l2_bytes = q_bytes * split + kv_visit_bytes + o_main + partial_bytes
    # K/V re-reads: CTAs of one head that run in the same wave read the same tiles at nearly the
    # same time and hit in L2. A head whose CTAs span several waves re-reads its K/V once per
    # later wave; those reads hit only if the K/V of the heads live at once fit in L2.
    slots = sms * k
    ctas_per_head = rows * split
    heads_live = max(1.0, math.ceil(slots / ctas_per_head))
    kv_heads_live = max(1.0, math.ceil(heads_live * qpc * hkv / h))
    working_set = kv_heads_live * n_len * kv_row_bytes
    miss = 0.0 if working_set <= p[L2_CAP] else 1.0 - p[L2_CAP] / working_set
    kv_first = min(kv_visit_bytes, kv_compulsory)
    later_waves = max(0.0, ctas_per_head / slots - 1.0)
    refetch = min(kv_visit_bytes - kv_first, kv_first * later_waves)
    hbm_bytes = q_bytes + kv_first + refetch * miss + o_main  # repeated Q reads of the splits hit L2
    hbm_bytes += p[IDX_HBM_BYTES]  # the block table, once
    if split > 1 and partial_bytes > p[L2_CAP]:
        hbm_bytes += partial_bytes
    t_hbm = hbm_bytes / (p[HBM_BW] * p[HBM_EFF])
    t_l2 = l2_bytes / (p[L2_BW] * p[L2_EFF])
    t_main = max(t_compute, t_hbm, t_l2)
    t_launch = p[LAUNCH_S]
    n_kernels = 1.0
    t_combine = 0.0
    if split > 1:  # combine kernel: read partials (+lse), write O
        comb_bytes = partial_bytes + o_bytes
        bw = p[L2_BW] * p[L2_EFF] if partial_bytes <= p[L2_CAP] else p[HBM_BW] * p[HBM_EFF]
        t_combine = comb_bytes / bw + p[COMBINE_S]
        l2_bytes += comb_bytes
        hbm_bytes += o_bytes
        n_kernels = 2.0
    latency = t_main + t_launch + t_combine

    # ---- what binds ----
    if t_launch + t_combine >= t_main:
        bound = BD_LAUNCH
    elif t_main == t_hbm:
        bound = BD_HBM
    elif t_main == t_l2:
        bound = BD_L2
    elif c_max > t_cycles_balance:  # one CTA outlasts the balanced per-SM work: too little parallelism
        bound = BD_TAIL
    elif t_tile == t_load:
        bound = BD_SM_LOAD
    elif t_tile == t_smem:
        bound = BD_SMEM
    elif t_mma >= t_soft:
        bound = BD_MMA
    else:
        bound = BD_SOFTMAX

    mma_flops = visits * mma_tile
    exps = visits * exp_tile
    vec_ops = visits * vec_tile + groups * partial * br * bc
    smem_bytes = visits * smem_tile
    out[O_STATUS] = ST_OK
    out[O_LATENCY] = latency
    out[O_T_COMPUTE] = t_compute
    out[O_T_HBM] = t_hbm
    out[O_T_L2] = t_l2
    out[O_T_LAUNCH] = t_launch
    out[O_T_COMBINE] = t_combine
    out[O_BOUND] = bound
    out[O_HBM_BYTES] = hbm_bytes
    out[O_L2_BYTES] = l2_bytes
    out[O_SMEM_BYTES] = smem_bytes
    out[O_MMA_FLOPS] = mma_flops
    out[O_USEFUL_FLOPS] = 2.0 * b * h * allowed * (d + f)
    out[O_ALLOWED] = allowed
    out[O_EXPS] = exps
    out[O_VEC_OPS] = vec_ops
    out[O_CTAS_PER_SM] = k
    out[O_WAVES] = n_ctas / (sms * k)
    out[O_N_CTAS] = n_ctas
    out[O_N_KERNELS] = n_kernels
    out[O_TILES] = visits
    out[O_T_MMA_TILE] = t_mma
    out[O_T_SOFT_TILE] = t_soft
    out[O_T_TILE] = t_tile
    _energy_and_util(p, out, latency, k_eff)


@njit(**JIT_OPTS)
def gemm_time(n_tiles, tile_flops, bytes_hbm, bytes_l2, p, k):
    """(seconds, compute seconds) of one GEMM kernel: waves of output tiles vs memory."""
    c = tile_flops / (p[MMA_PER_CYCLE] * p[MMA_EFF])
    t_c = uniform_makespan(n_tiles, c, p[SMS], k) / p[CLOCK]
    return max(t_c, bytes_hbm / (p[HBM_BW] * p[HBM_EFF]), bytes_l2 / (p[L2_BW] * p[L2_EFF])), t_c


@njit(**JIT_OPTS)
def eval_unfused(p, out):
    """Three kernels: S = QK^T (GEMM, writes S), softmax (reads S, writes P), O = PV (GEMM)."""
    b, h, hkv, m_len, n_len = p[B], p[H], p[HKV], p[M], p[N]
    d, f, dp, fp, eb = p[D], p[F], p[DP], p[FP], p[ELEM_BYTES]
    br, bc = p[BR], p[BC]
    k = occupancy(p)
    if k < 1:
        out[O_STATUS] = ST_NO_FIT
        return
    kind = int(p[MASK])
    if kind == MK_EXPLICIT:
        allowed = p[X_ALLOWED]
    else:
        allowed = mask_tile_stats(kind, int(m_len), int(n_len), int(br), int(bc), int(p[WINDOW]),
                                  int(p[SINK]), p[DENSITY], p[CAUSAL] > 0)[5]
    q, kk, v = b * h * m_len * d * eb, b * hkv * n_len * d * eb, b * hkv * n_len * f * eb
    s = b * h * m_len * n_len * eb  # S and P are written in the working dtype
    o = b * h * m_len * f * eb
    mt, nt, ft = math.ceil(m_len / br), math.ceil(n_len / bc), math.ceil(fp / bc)
    # S = Q K^T: every output tile reads a Q row-panel and a K column-panel from L2
    t1, c1 = gemm_time(b * h * mt * nt, 2.0 * br * bc * dp, q + kk + s, q * nt + kk * mt * (h / hkv) + s, p, k)
    # softmax: one read of S, one write of P; exp and vector work spread over all SMs
    elems = b * h * m_len * n_len
    t_sfu = elems / (p[EXP_PER_CYCLE] * p[SMS] * p[CLOCK])
    t_vec = SOFTMAX_VECTOR_OPS_PER_ELEMENT * elems / (p[VEC_PER_CYCLE] * p[SMS] * p[CLOCK])
    t2 = max(2 * s / (p[HBM_BW] * p[HBM_EFF]), t_sfu, t_vec)
    # O = P V: output tiles over (M, F), reduction over N
    t3, c3 = gemm_time(b * h * mt * ft, 2.0 * br * min(bc, fp) * n_len, s + v + o,
                       s * ft + v * mt * (h / hkv) + o, p, k)
    t_launch = 3 * p[LAUNCH_S]
    latency = t1 + t2 + t3 + t_launch
    hbm = q + kk + 2 * s + 2 * s + v + o
    l2 = q * nt + kk * mt * (h / hkv) + 2 * s + 2 * s + s * ft + v * mt * (h / hkv) + o
    t_hbm = hbm / (p[HBM_BW] * p[HBM_EFF])
    t_compute = c1 + max(t_sfu, t_vec) + c3
    out[O_STATUS] = ST_OK
    out[O_LATENCY] = latency
    out[O_T_COMPUTE] = t_compute
    out[O_T_HBM] = t_hbm
    out[O_T_L2] = l2 / (p[L2_BW] * p[L2_EFF])
    out[O_T_LAUNCH] = t_launch
    out[O_BOUND] = BD_HBM if t_hbm >= t_compute else (BD_MMA if c1 + c3 >= max(t_sfu, t_vec) else BD_SOFTMAX)
    out[O_HBM_BYTES] = hbm
    out[O_L2_BYTES] = l2
    out[O_SMEM_BYTES] = 0.0
    out[O_MMA_FLOPS] = 2.0 * b * h * m_len * n_len * (dp + fp)
    out[O_USEFUL_FLOPS] = 2.0 * b * h * allowed * (d + f)
    out[O_ALLOWED] = allowed
    out[O_EXPS] = elems
    out[O_VEC_OPS] = SOFTMAX_VECTOR_OPS_PER_ELEMENT * elems
    out[O_CTAS_PER_SM] = k
    n_ctas = b * h * mt * nt
    out[O_WAVES] = n_ctas / (p[SMS] * k)
    out[O_N_CTAS] = n_ctas
    out[O_N_KERNELS] = 3.0
    out[O_TILES] = n_ctas
    _energy_and_util(p, out, latency, k)


@njit(**JIT_OPTS)
def _energy_and_util(p, out, latency, k_eff):
    out[O_E_HBM] = out[O_HBM_BYTES] * p[E_HBM] * 1e-12
    out[O_E_L2] = out[O_L2_BYTES] * p[E_L2] * 1e-12
    out[O_E_SMEM] = out[O_SMEM_BYTES] * p[E_SMEM] * 1e-12
    out[O_E_MMA] = out[O_MMA_FLOPS] * p[E_MMA] * 1e-12
    out[O_E_EXP] = out[O_EXPS] * p[E_EXP] * 1e-12
    out[O_E_VEC] = out[O_VEC_OPS] * p[E_VEC] * 1e-12
    out[O_E_STATIC] = p[P_STATIC] * latency
    busy = latency * p[SMS] * p[CLOCK]
    out[O_UTIL_MMA] = out[O_MMA_FLOPS] / (busy * p[MMA_PER_CYCLE])
    out[O_UTIL_EXP] = out[O_EXPS] / (busy * p[EXP_PER_CYCLE])
    out[O_UTIL_VEC] = out[O_VEC_OPS] / (busy * p[VEC_PER_CYCLE])
    out[O_UTIL_HBM] = out[O_HBM_BYTES] / (latency * p[HBM_BW])
    out[O_UTIL_L2] = out[O_L2_BYTES] / (latency * p[L2_BW])


@njit(**JIT_OPTS)
def evaluate_points(points):
    """Evaluate every row of ``points`` [n, N_IN]; returns [n, N_OUT]."""
    n = points.shape[0]
    out = np.zeros((n, N_OUT))
    for i in range(n):
        p = points[i]
        if p[STYLE] == STYLE_UNFUSED:
            eval_unfused(p, out[i])
        else:
            eval_fused(p, out[i])
    return out
