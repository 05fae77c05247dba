"""Plans of the selective state-space families: the kernels mamba_ssm launches.

mamba_scan, kernel=fused (csrc/selective_scan/selective_scan_fwd_kernel.cuh):
    grid (batch, D_inner): one CTA per channel of one sequence (kNRows = 1), kNThreads threads,
    chunks of kNThreads x kNItems tokens walked in order; per chunk the CTA loops over the N
    states, block-scans the (exp(delta A), delta B u) pairs (cub BlockScan) seeded with the running
    prefix it keeps in shared memory, and accumulates y in registers. The state never leaves the
    SM: HBM sees u, delta, B, C once, y once, and the chunk-end prefixes (kept for the backward).
    Every CTA reads its sequence's whole B and C (N x L each), so L2 -> SM traffic carries them
    D_inner times.
mamba_scan, kernel=materialized (the naive GPU mapping the Mamba paper contrasts, sec. 3.3.2):
    discretize   dA = exp(delta A), dBu = delta B u, both [B, L, D_inner, N] fp32 to HBM
    scan         one thread per (b, d, n), sequential over L, h [B, L, D_inner, N] fp32 to HBM
    contract     y = sum_n C h + D u
mamba2_ssd (mamba_ssm/ops/triton/ssd_combined.py, _mamba_chunk_scan_combined_fwd):
    _chunk_cumsum, _chunk_state (fp32 states), _state_passing, _bmm_chunk (CB in fp32),
    _chunk_scan, with the grids of their launchers; see each function below.

Parallelism is counted as CTAs; a CTA's sequential work (the chunk loop of the fused scan, the
chunk loop of _state_passing) is its per-CTA time. ``mapping`` must be None: the kernels are
chosen by the family's parameters (mamba_scan's `kernel`). On a spatial arch the same KernelOps
run on the systolic array (GEMMs) and the 1D array (exps, vector ops).
"""
from __future__ import annotations

import math

from attnsim.errors import MappingError, Problem
from attnsim.model.families.common import stream_op
from attnsim.model.plan import DTYPE_BYTES, Gemm, KernelOp, Plan
from attnsim.workload.families import ssm as fam

F32 = 4  # fp32 bytes: scan states, dA_cumsum, CB and materialized tensors are fp32 in mamba_ssm
SCAN_T = 8  # float2 (decay product, state) the fused scan writes per chunk end (scan_t)
MAX_DSTATE = 256  # selective_scan_common.h: the fused scan's shared running prefix holds 256 states
WARP = 32
SCAN_THREADS = {128: 32, 256: 32, 512: 32, 1024: 64, 2048: 128}  # kChunkSize -> kNThreads (selective_scan_fwd_cuda)
MATERIALIZED_THREADS = 128  # threads per CTA of the naive scan (one (b, d, n) each)

# Triton tiles of mamba_ssm's SSD kernels: the autotune picks reported for the upstream kernels in
# the header comment of RishiAstra/mamba mamba_ssm/ops/triton/ssd_fused.py (A100; its fused
# config, marked "A100 and H100 same config", for _bmm_chunk and _chunk_cumsum).
CUMSUM_BLOCK_H = 16
BMM_TILE, BMM_WARPS, BMM_STAGES = (64, 64, 64), 4, 2
STATE_TILE, STATE_WARPS, STATE_STAGES = (64, 128, 32), 4, 4  # (headdim, dstate, chunk step)
PASS_BLOCK, PASS_WARPS = 512, 4
SCAN_TILE, SCAN_WARPS, SCAN_STAGES = (32, 64, 32), 2, 5  # (chunk rows, headdim, chunk step)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _no_mapping(w, mapping) -> None:
    if mapping is not None:
        hint = "set params kernel=fused|materialized" if w.family == "mamba_scan" else "tune params chunk / d_state"
        raise MappingError(Problem(f"{w.family} picks its kernels from its parameters; mapping must be None, "
                                   f"got {mapping!r}", key="mapping", hint=hint))


# ---------------------------------------------------------------------------- mamba_scan


def scan_combines_per_item(items: int) -> float:
    """Combines per element of cub BlockScan (WARP_SCANS) with `items` per thread: items - 1 to
    reduce a thread's items, log2(32) warp-scan steps and 1 warp-prefix step on the aggregates,
    items to apply the prefix; a combine (a0 a1, a1 b0 + b1) is 2 ops (mul, FMA)."""
    return (2 * items - 1 + math.log2(WARP) + 1) / items


def mamba_scan_fused(w) -> KernelOp:
    e = DTYPE_BYTES[w.dtype]
    b, length, d, n = w.batch, w.seq_q, fam.channels(w), w.param("d_state")
    chunk = fam.scan_chunk(w)
    threads = SCAN_THREADS[chunk]
    items = chunk // threads
    n_chunks = _cdiv(length, chunk)
    elems = b * length * d * n  # (b, l, d, n) points
    per_state = 3 + 2 * scan_combines_per_item(items)  # delta*A, B*du, the scan's combines, y += C*h
    hbm = (2 * b * length * d * e  # read u, delta
           + 2 * b * length * n * e  # read B, C once (shared by every channel: L2 serves the rest)
           + d * n * F32 + 2 * d * F32  # read A, D, delta_bias
           + b * length * d * e  # write y
           + b * d * n_chunks * n * SCAN_T)  # write the chunk-end prefixes x
    l2 = hbm + 2 * b * length * n * e * (d - 1)  # every channel's CTA reads its own B, C
    smem = 2 * chunk * e + MAX_DSTATE * SCAN_T + (threads // WARP + 1) * SCAN_T  # B/C load tiles, prefix, scan
    return KernelOp("selective_scan_fwd", ctas=b * d, exps=elems + 2 * b * length * d,  # exp2 + softplus
                    vector_ops=elems * per_state + 4 * b * length * d,  # + bias, softplus select, du, D u
                    hbm_bytes=hbm, l2_bytes=l2, smem_bytes_per_cta=smem, warps=threads // WARP, dtype=w.dtype)


def mamba_scan_materialized(w) -> tuple:
    e = DTYPE_BYTES[w.dtype]
    b, length, d, n = w.batch, w.seq_q, fam.channels(w), w.param("d_state")
    elems = b * length * d * n
    tok = b * length * d  # (b, l, d) points
    discretize = stream_op("discretize (dA, dBu to HBM)",
                           read_bytes=2 * tok * e + b * length * n * e + d * n * F32,  # delta, u, B, A
                           write_bytes=2 * elems * F32,  # dA, dBu [B, L, D_inner, N]
                           vector_ops=2 * elems + 3 * tok, exps=elems + 2 * tok)
    scan = KernelOp("scan over L (h to HBM)", ctas=_cdiv(b * d * n, MATERIALIZED_THREADS),
                    vector_ops=elems,  # h = dA h + dBu
                    hbm_bytes=2 * elems * F32 + elems * F32,  # read dA, dBu; write h
                    warps=MATERIALIZED_THREADS // WARP, dtype=w.dtype)
    contract = stream_op("contract y = C h + D u",
                         read_bytes=elems * F32 + b * length * n * e + tok * e,  # h, C, u
                         write_bytes=tok * e, vector_ops=elems + tok)
    return discretize, scan, contract


def _inputs_outputs_bytes(w) -> float:
    """Compulsory DRAM traffic of mamba_scan: u, delta, B, C in, A, D, delta_bias, y out."""
    e = DTYPE_BYTES[w.dtype]
    b, length, d, n = w.batch, w.seq_q, fam.channels(w), w.param("d_state")
    return 3 * b * length * d * e + 2 * b * length * n * e + d * n * F32 + 2 * d * F32


def _check_state_fits(arch, w, state_bytes: float, hint: str) -> None:
    glb = arch.levels[1]
    if state_bytes > glb.capacity_bytes:
        raise MappingError(Problem(f"{w.family}: the running state ({state_bytes / 2**20:.1f} MiB fp32) does not fit "
                                   f"the {glb.name} ({glb.capacity_bytes / 2**20:.1f} MiB) of {arch.name}",
                                   key="mapping", hint=hint))


def mamba_scan_spatial(arch, w) -> KernelOp:
    """The scan on the 1D array: its lanes take (channel, state) pairs, each walking L in order
    with its state on chip (one FMA per step: no parallel-scan overhead); the cascade's exps and
    vector ops; u, delta, B, C read and y written once."""
    b, d, n = w.batch, fam.channels(w), w.param("d_state")
    _check_state_fits(arch, w, b * d * n * F32, "use kernel=materialized or a smaller batch")
    ops = fam.cascade_ops(w)
    return KernelOp("selective scan (1D array, state on chip)", ctas=1, exps=ops["exp"],
                    vector_ops=ops["vector"], hbm_bytes=_inputs_outputs_bytes(w), dtype=w.dtype)


def plan_mamba_scan(arch, w, mapping=None) -> Plan:
    _no_mapping(w, mapping)
    if w.param("kernel") == "materialized":
        ops = mamba_scan_materialized(w)
        label = "materialized: discretize + scan + contract (fp32 [B, L, D_inner, N] in HBM)"
    elif arch.kind == "spatial":
        ops = (mamba_scan_spatial(arch, w),)
        label = "selective scan on the 1D array, state on chip"
    else:
        if w.param("d_state") > MAX_DSTATE:
            raise MappingError(Problem(f"the fused selective scan holds at most {MAX_DSTATE} states "
                                       f"(MAX_DSTATE), got d_state={w.param('d_state')}", key="params.d_state",
                                       hint="use kernel=materialized"))
        ops = (mamba_scan_fused(w),)
        label = f"selective_scan_fwd chunk {fam.scan_chunk(w)}, {w.batch * fam.channels(w)} CTAs"
    return Plan(w.family, ops, fam.cascade_ops(w)["mma"], label,
                counts={"channels (D_inner)": float(fam.channels(w)), "d_state": float(w.param("d_state"))},
                notes=("no in/out projections, conv1d or z gate: the scan alone",
                       "delta_softplus as Mamba calls the kernel (2 SFU ops per (b, l, d)) on the GPU"))


# ---------------------------------------------------------------------------- mamba2_ssd


def _state_k(n: int) -> int:
    """dstate the chunk-scan state GEMM runs over: next power of two (>= 16) up to 128 in one
    step (BLOCK_SIZE_DSTATE), in chunk-step blocks beyond."""
    return max(1 << (n - 1).bit_length(), 16) if n <= 128 else _cdiv(n, SCAN_TILE[2]) * SCAN_TILE[2]


def ssd_cumsum(w) -> KernelOp:
    """_chunk_cumsum_fwd: grid (batch, chunks, heads / BLOCK_SIZE_H); dt + bias, softplus, clamp,
    dt A, cumsum over each (padded) chunk; dt_out and dA_cumsum [B, H, C, Q] written in fp32."""
    e = DTYPE_BYTES[w.dtype]
    nc, q, _ = fam.ssd_chunking(w)
    elems = w.batch * w.heads * nc * q
    return KernelOp("_chunk_cumsum_fwd", ctas=w.batch * nc * _cdiv(w.heads, CUMSUM_BLOCK_H),
                    exps=2 * elems,  # softplus: exp and log
                    vector_ops=6 * elems,  # + bias, softplus select, clamp (2), * A, cumsum add
                    hbm_bytes=w.batch * w.seq_q * w.heads * e + 2 * w.heads * F32 + 2 * elems * F32,
                    warps=4, dtype=w.dtype)


def ssd_bmm(w) -> KernelOp:
    """_bmm_chunk_fwd (causal=False): CB[b, c, g] = C_chunk B_chunk^T, every Q x Q tile, K = N;
    grid (tiles, batch, chunks x groups); CB written in fp32."""
    e = DTYPE_BYTES[w.dtype]
    nc, q, _ = fam.ssd_chunking(w)
    g, n = w.param("ngroups"), w.param("d_state")
    tm, tn, tk = BMM_TILE
    tiles = _cdiv(q, tm)
    bc = w.batch * w.seq_q * g * n * e  # C (and B) [B, L, G, N]
    cb = w.batch * nc * g * q * q * F32  # write CB
    return KernelOp("_bmm_chunk_fwd", ctas=tiles * tiles * w.batch * nc * g,
                    gemms=(Gemm(w.batch * nc * g, tiles * tm, tiles * tn, _cdiv(n, tk) * tk),),
                    hbm_bytes=2 * bc + cb, l2_bytes=2 * bc * tiles + cb,  # C per column tile, B per row tile
                    smem_bytes_per_cta=BMM_STAGES * (tm + tn) * tk * e, warps=BMM_WARPS, dtype=w.dtype)


def ssd_chunk_state(w) -> KernelOp | None:
    """_chunk_state_fwd: per (b, c, h) states = x_chunk^T (B_chunk * exp(cs_last - cs) dt), a
    (P x Q) @ (Q x N) GEMM; grid (P tiles x N tiles, batch x chunks, heads); fp32 states out.
    Without final_state the last chunk's state is not needed."""
    e = DTYPE_BYTES[w.dtype]
    nc, q, last = fam.ssd_chunking(w)
    final = w.param("final_state")
    n_full = nc - 1  # chunks of length Q whose state is computed (the last is short or final)
    n_chunks = nc if final else nc - 1
    if n_chunks == 0:
        return None
    b, h, g, p, n = w.batch, w.heads, w.param("ngroups"), w.head_dim, w.param("d_state")
    bm, bn, bk = STATE_TILE
    tm, tn = _cdiv(p, bm), _cdiv(n, bn)
    gemms = [Gemm(b * h * n_full, tm * bm, tn * bn, _cdiv(q, bk) * bk)] if n_full else []
    if final:
        gemms.append(Gemm(b * h, tm * bm, tn * bn, _cdiv(last, bk) * bk))
    pos = n_full * q + (last if final else 0)  # positions whose state contribution is computed
    x = b * pos * h * p * e  # read x
    bb = b * pos * g * n * e  # read B (once per group from HBM)
    dts = b * h * pos * 2 * F32  # read dt, dA_cumsum
    states = b * n_chunks * h * p * n * F32  # write fp32 states
    return KernelOp("_chunk_state_fwd", ctas=tm * tn * b * n_chunks * h, gemms=tuple(gemms),
                    exps=b * h * pos * tm * tn,  # exp(cs_last - cs_k) per k per CTA
                    vector_ops=b * h * pos * tm * tn * bn + 3 * b * h * pos * tm * tn,  # B *= scale; scale
                    hbm_bytes=x + bb + dts + states,
                    l2_bytes=x * tn + b * pos * h * n * e * tm + dts * tm * tn + states,
                    smem_bytes_per_cta=STATE_STAGES * (bm + bn) * bk * e, warps=STATE_WARPS, dtype=w.dtype)


def ssd_state_passing(w) -> KernelOp | None:
    """_state_passing_fwd: grid (P*N / BLOCK_SIZE, batch, heads); each CTA walks the chunks in
    order, states = exp(dA_cs_last) states + new (fp32), writes the state entering each chunk in
    the input dtype (out_dtype = C.dtype) and, with final_state, the fp32 final state."""
    e = DTYPE_BYTES[w.dtype]
    nc, _, _ = fam.ssd_chunking(w)
    final = w.param("final_state")
    steps = nc if final else nc - 1
    if steps == 0:
        return None
    b, h, dim = w.batch, w.heads, w.head_dim * w.param("d_state")
    ctas = _cdiv(dim, PASS_BLOCK) * b * h
    written = nc if final else nc - 1  # with final_state chunk 0's (zero) initial state is stored too
    hbm = (b * steps * h * dim * F32 + b * h * steps * F32  # read states, dA_cumsum[..., -1]
           + b * written * h * dim * e + (b * h * dim * F32 if final else 0))  # write states (+ final)
    return KernelOp("_state_passing_fwd", ctas=ctas, exps=ctas * steps, vector_ops=b * h * dim * steps,
                    hbm_bytes=hbm, warps=PASS_WARPS, dtype=w.dtype)


def _scan_k_extents(q_c: int) -> list[int]:
    """Keys the causal chunk-scan loop visits for each row tile of a chunk of q_c positions
    (K_MAX = min((m + 1) BLOCK_M, limit), in BLOCK_K steps); row tiles cover the full chunk."""
    bm, _, bk = SCAN_TILE
    return [_cdiv(min((i + 1) * bm, q_c), bk) * bk for i in range(_cdiv(q_c, bm))]


def ssd_chunk_scan(w) -> KernelOp:
    """_chunk_scan_fwd (IS_CAUSAL): per (row tile, P tile, b, c, h)
        acc  = (C_rows @ prev_state) * exp(cs_rows)                    state term
        acc += sum_k (CB[rows, k] * exp(cs_rows - cs_k) * dt_k) @ x_k  diagonal block, k <= rows' tile
        out  = acc + D x
    grid (Q/BM x P/BN, batch x chunks, heads). With final_state (mamba_ssm's forward) chunk 0 also
    runs the state term on its zero initial state; without, chunk 0 skips it."""
    e = DTYPE_BYTES[w.dtype]
    nc, q, last = fam.ssd_chunking(w)
    b, h, g, p, n = w.batch, w.heads, w.param("ngroups"), w.head_dim, w.param("d_state")
    bm, bn, _ = SCAN_TILE
    tm_full, tn = _cdiv(q, bm), _cdiv(p, bn)
    ks = _state_k(n)
    state_chunks = nc if w.param("final_state") else nc - 1
    gemms, exps, vec, cb_hbm, cb_l2, x_l2 = [], 0.0, 0.0, 0.0, 0.0, 0.0
    for q_c, count in ((q, nc - 1), (last, 1)):  # full chunks, then the last (maybe short) one
        if count == 0:
            continue
        # the grid launches Q / BM row tiles for every chunk; tiles past a short chunk's end
        # still run their loop to the chunk's limit (their stores are masked)
        kext = _scan_k_extents(q_c) + [_cdiv(q_c, SCAN_TILE[2]) * SCAN_TILE[2]] * (tm_full - _cdiv(q_c, bm))
        for k in kext:
            gemms.append(Gemm(b * h * count * tn, bm, bn, k))
            pts = b * h * count * tn * bm * k  # CB elements scaled per CTA
            exps += pts
            vec += 4 * pts  # sub, * exp, * dt, causal select
            cb_l2 += b * h * count * tn * bm * k * F32
            x_l2 += b * h * count * tn * (k * bn * e + k * 2 * F32)  # x rows and dt, dA_cs of the k range
            cb_hbm += b * g * count * bm * k * F32  # the group's CB rows, once from HBM
    ctas = tm_full * tn * b * nc * h
    rows = tm_full * bm
    if state_chunks:
        gemms.append(Gemm(b * h * state_chunks, rows, tn * bn, ks))
        exps += b * h * state_chunks * rows * tn  # exp(cs_m) per row per CTA
        vec += b * h * state_chunks * rows * tn * bn  # acc *= scale
    vec += b * h * nc * rows * tn * bn  # acc += D x
    positions_with_state = w.seq_q - (0 if w.param("final_state") else min(q, w.seq_q))
    hbm = (cb_hbm + b * w.seq_q * h * p * e  # read CB (causal half), x
           + b * positions_with_state * g * n * e  # read C for the state term
           + b * state_chunks * h * p * n * e  # read the incoming states
           + b * h * nc * q * 2 * F32  # read dt, dA_cumsum
           + b * w.seq_q * h * p * e)  # write y
    per_cta_tiles = b * h * nc * tm_full * tn
    l2 = (cb_l2 + x_l2 + per_cta_tiles * (2 * bm * bn * e + bm * F32)  # residual x, out, dA_cs rows
          + (b * h * state_chunks * tm_full * tn * (bm * ks * e + ks * bn * e) if state_chunks else 0))
    return KernelOp("_chunk_scan_fwd", ctas=ctas, gemms=tuple(gemms), exps=exps, vector_ops=vec,
                    hbm_bytes=hbm, l2_bytes=l2,
                    smem_bytes_per_cta=SCAN_STAGES * (bm * SCAN_TILE[2] * F32 + SCAN_TILE[2] * bn * e),
                    warps=SCAN_WARPS, dtype=w.dtype)


def mamba2_spatial(arch, w) -> KernelOp:
    """SSD on a spatial array, chunks in order, one pass: per chunk the 2D array computes CB
    (rows of C streamed past B^T), the diagonal block (rows of the masked, decayed CB past the
    stationary x chunk), the chunk state (rows of B^T past x) and the state term (rows of C past
    the incoming state), pipelined with the 1D array's exps and scaling (the cascade's counts).
    The running state (B x H x P x N fp32) stays in the global buffer, so DRAM sees x, dt, B, C
    once, y once and, with final_state, the final state."""
    e = DTYPE_BYTES[w.dtype]
    nc, q, last = fam.ssd_chunking(w)
    b, h, g, p, n = w.batch, w.heads, w.param("ngroups"), w.head_dim, w.param("d_state")
    final = w.param("final_state")
    state = b * h * p * n * F32
    _check_state_fits(arch, w, state, "use a smaller batch or fewer heads per call")
    gemms = []
    for q_c, count in ((q, nc - 1), (last, 1)):
        if count:
            gemms += [Gemm(b * count * g, q_c, q_c, n), Gemm(b * count * h, q_c, p, q_c)]
    state_chunks = [(q, nc - 1)] + ([(last, 1)] if final else [])  # chunks whose state is computed
    gemms += [Gemm(b * count * h, n, p, q_c) for q_c, count in state_chunks if count]
    incoming = [(q, nc - 2), (last, 1)] if nc > 1 else []  # chunks with an incoming state
    gemms += [Gemm(b * count * h, q_c, p, n) for q_c, count in incoming if count > 0]
    ops = fam.cascade_ops(w)
    dram = (2 * b * w.seq_q * h * p * e + b * w.seq_q * h * e + 2 * b * w.seq_q * g * n * e  # x, y, dt, B, C
            + 2 * h * F32 + (state if final else 0))  # A, D; final state
    return KernelOp("SSD chunk pass (2D + 1D arrays, state on chip)", ctas=1, gemms=tuple(gemms),
                    exps=ops["exp"], vector_ops=ops["vector"], hbm_bytes=dram, overlap=True, dtype=w.dtype)


def plan_mamba2(arch, w, mapping=None) -> Plan:
    _no_mapping(w, mapping)
    nc, q, _ = fam.ssd_chunking(w)
    if arch.kind == "spatial":
        ops = (mamba2_spatial(arch, w),)
        label = f"SSD chunk pass on the arrays, {nc} chunks of {q}"
    else:
        ops = tuple(op for op in (ssd_cumsum(w), ssd_chunk_state(w), ssd_state_passing(w), ssd_bmm(w),
                                  ssd_chunk_scan(w)) if op is not None)
        label = f"mamba_ssm SSD: {len(ops)} Triton kernels, {nc} chunks of {q}"
    return Plan(w.family, ops, fam.cascade_ops(w)["mma"], label,
                counts={"chunks": float(nc), "chunk": float(q)},
                notes=("no in/out projections, conv1d, z gate or RMSNorm: the SSD scan alone",
                       "dt_softplus as Mamba2 calls the kernels (2 SFU ops per (b, l, h)) on the GPU"))


PLANS = {"mamba_scan": plan_mamba_scan, "mamba2_ssd": plan_mamba2}
