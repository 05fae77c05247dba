"""Numba kernels of the cycle-level spatial simulator: a systolic GEMM and a two-array schedule.

Imports numpy, numba and ``attnsim.numba_config`` only. The public, validating wrappers live in
``attnsim.sim.spatial``; the slow, obvious twins in ``attnsim.sim.systolic_reference`` (a
register-level array that really multiplies the matrices). Tests assert that every integer
count agrees exactly.

Geometry. ifmap (M x K) @ filter (K x N) = ofmap (M x N) on an R x C array (SCALE-Sim's names):

    dataflow   array rows   array cols   streamed in time   stationary in the PEs
    os         M            N            K                  ofmap (accumulators)
    ws         K            N            M                  filter block
    is         K            M            N                  ifmap block

Folds: ceil(Sr/R) x ceil(Sc/C) blocks, column fold outer, row fold inner (SCALE-Sim's order).
In a fold with ru x cu PEs mapped and T streamed steps, at cycle c of the fold (0-based):

    os  a[i, s] enters row i at c = s + i;  b[s, j] enters column j at c = s + j
        PE(i, j) does MAC s at c = s + i + j;  o[i, j] is written with its last MAC, c = T-1+i+j
    ws  weight row r (cu words) enters at c = R-1-r (bottom row first, shifted down R times)
        a[s, r] enters row r at c = R + s + r;  PE(r, j) does MAC s at c = R + s + r + j
        o[s, j] leaves the bottom of column j at c = 2R-1 + s + j (partial sums cross all R rows)
    is  as ws, with the ifmap block stationary and the filter streamed (o[m, n] leaves column m)

    ws, R = C = 3, T = 2:   cycle  0 1 2 3 4 5 6 7 8
        weights in at the top      w w w . . . . . .    (row 2 first)
        a into row 0               . . . a a . . . .
        a into row 1               . . . . a a . . .
        a into row 2               . . . . . a a . .
        o out of column 0          . . . . . o o . .
        o out of column 2          . . . . . . . o o    L = 2R + C + T - 2 = 9 (os: T + R + C - 2)

A fold lasts L cycles whatever ru and cu are: the skew network is as wide as the array.
"""
import math

import numpy as np
from numba import njit

from attnsim.numba_config import JIT_OPTS

DF_OS, DF_WS, DF_IS = 0, 1, 2
DATAFLOW_CODES = {"os": DF_OS, "ws": DF_WS, "is": DF_IS}

# ---- simulate_gemm_kernel output columns (all int64) ----
(G_COMPUTE, G_STALL, G_CYCLES, G_FOLDS, G_FOLD_CYCLES, G_MACS, G_MAPPED,
 G_SRAM_IF, G_SRAM_FL, G_SRAM_OF, G_DRAM_IF, G_DRAM_FL, G_DRAM_OF,
 G_PEAK_IF, G_PEAK_FL, G_PEAK_OF, G_DRAM_BUSY, N_GEMM_OUT) = range(18)

# ---- fold_trace accumulator columns ----
(T_MACS, T_IF, T_FL, T_OF, T_PEAK_IF, T_PEAK_FL, T_PEAK_OF, N_TRACE) = range(8)

# ---- two_array_schedule output columns (all int64) ----
(S_TOTAL, S_BUSY_2D, S_BUSY_1D, S_DRAM_BUSY, S_IDLE_2D_DRAM, S_IDLE_2D_1D, S_TAIL, N_SCHED_OUT) = range(8)


@njit(**JIT_OPTS)
def geometry(df, m, n, k):
    """(Sr, Sc, T): the GEMM extents on array rows, on array columns, and streamed in time."""
    if df == DF_OS:
        return m, n, k
    if df == DF_WS:
        return k, n, m
    return k, m, n


@njit(**JIT_OPTS)
def fold_cycles(df, rows, cols, t):
    """L: cycles of one fold (fill, T streamed steps, skew drain), fixed by the full array."""
    if df == DF_OS:
        return t + rows + cols - 2
    return 2 * rows + cols + t - 2


@njit(**JIT_OPTS)
def _count_window(x, w, t):
    """#{i in [0, w): 0 <= x - i < t}: lanes of a skewed edge (w lanes, t steps each) busy at x."""
    lo = max(0, x - t + 1)
    hi = min(w - 1, x)
    return hi - lo + 1 if hi >= lo else 0


@njit(**JIT_OPTS)
def fold_trace(df, rows, cols, t, ru, cu, acc):
    """Walk one fold cycle by cycle; acc[T_*] gets its totals and per-cycle peaks (words)."""
    off = 0 if df == DF_OS else rows  # ws/is: R cycles of stationary load first
    for c in range(fold_cycles(df, rows, cols, t)):
        macs = 0
        for i in range(ru):  # PE(i, j) works at c = off + s + i + j
            macs += _count_window(c - off - i, cu, t)
        if df == DF_OS:
            rd_if = _count_window(c, ru, t)  # a[i, s] at c = s + i
            rd_fl = _count_window(c, cu, t)  # b[s, j] at c = s + j
            wr = _count_window(c - (t - 1), ru, cu)  # o[i, j] at c = T-1 + i + j
        else:
            load = cu if (c < rows and rows - 1 - c < ru) else 0  # stationary row R-1-c
            stream = _count_window(c - rows, ru, t)  # streamed operand at c = R + s + r
            wr = _count_window(c - 2 * rows + 1, cu, t)  # out at c = 2R-1 + s + j
            if df == DF_WS:
                rd_if, rd_fl = stream, load
            else:
                rd_if, rd_fl = load, stream
        acc[T_MACS] += macs
        acc[T_IF] += rd_if
        acc[T_FL] += rd_fl
        acc[T_OF] += wr
        acc[T_PEAK_IF] = max(acc[T_PEAK_IF], rd_if)
        acc[T_PEAK_FL] = max(acc[T_PEAK_FL], rd_fl)
        acc[T_PEAK_OF] = max(acc[T_PEAK_OF], wr)


@njit(**JIT_OPTS)
def transfer(issue, nbytes, chan, bw):
    """One DRAM transfer on a first-come-first-served channel of bw bytes/cycle (bw <= 0: unlimited).

    Returns (arrival cycle, channel free cycle, busy cycles); ceil(nbytes / bw) cycles each.
    """
    if nbytes <= 0:
        return issue, chan, 0
    dur = 0 if bw <= 0.0 else int(math.ceil(nbytes / bw))
    start = max(issue, chan)
    return start + dur, start + dur, dur


@njit(**JIT_OPTS)
def _fold_input_bytes(df, fr, fc, fr_n, ru, cu, t, wb, res_if, res_fl):
    """(ifmap, filter) bytes fold (fr, fc) fetches from DRAM, given which operands stay resident.

    Blocks: the row-fold-indexed operand (os/ws ifmap, is filter: ru x T) is refetched when fr
    changes unless resident (then once, at fc == 0); the os filter (T x cu, indexed by fc) when
    fc changes (fr == 0); the stationary ws filter / is ifmap block (ru x cu) every fold.
    """
    f = fc * fr_n + fr
    row_resident = res_fl if df == DF_IS else res_if
    row_fetch = (fc == 0) if row_resident else (f == 0 or fr_n > 1)
    if df == DF_OS:
        return (ru * t * wb if row_fetch else 0), (t * cu * wb if fr == 0 else 0)
    if df == DF_WS:
        return (ru * t * wb if row_fetch else 0), ru * cu * wb
    return ru * cu * wb, (ru * t * wb if row_fetch else 0)


@njit(**JIT_OPTS)
def simulate_gemm_kernel(df, rows, cols, m, n, k, wb, cap_if, cap_fl, cap_of, bw):
    """Counts of one GEMM (columns G_*). cap_* in bytes (-1: unlimited); bw in bytes/cycle (<= 0: unlimited).

    Folds of equal shape (at most 4: full or last, in each direction) are traced once each.
    DRAM: see ``attnsim.sim.spatial.simulate_gemm`` for the buffer and channel model.
    """
    out = np.zeros(N_GEMM_OUT, np.int64)
    s_r, s_c, t = geometry(df, m, n, k)
    fr_n = (s_r + rows - 1) // rows
    fc_n = (s_c + cols - 1) // cols
    L = fold_cycles(df, rows, cols, t)
    folds = fr_n * fc_n
    ru_last = s_r - (fr_n - 1) * rows
    cu_last = s_c - (fc_n - 1) * cols
    tr = np.zeros(N_TRACE, np.int64)
    for a in range(2):
        n_a = fr_n - 1 if a == 0 else 1
        ru = rows if a == 0 else ru_last
        for b in range(2):
            n_b = fc_n - 1 if b == 0 else 1
            cu = cols if b == 0 else cu_last
            if n_a * n_b == 0:
                continue
            tr[:] = 0
            fold_trace(df, rows, cols, t, ru, cu, tr)
            cnt = n_a * n_b
            out[G_MACS] += cnt * tr[T_MACS]
            out[G_MAPPED] += cnt * ru * cu
            out[G_SRAM_IF] += cnt * tr[T_IF]
            out[G_SRAM_FL] += cnt * tr[T_FL]
            out[G_SRAM_OF] += cnt * tr[T_OF]
            out[G_PEAK_IF] = max(out[G_PEAK_IF], tr[T_PEAK_IF])
            out[G_PEAK_FL] = max(out[G_PEAK_FL], tr[T_PEAK_FL])
            out[G_PEAK_OF] = max(out[G_PEAK_OF], tr[T_PEAK_OF])
    out[G_FOLDS] = folds
    out[G_FOLD_CYCLES] = L
    out[G_COMPUTE] = folds * L

    # ---- DRAM: double-buffered prefetch, one FCFS channel ----
    res_if = cap_if < 0 or m * k * wb <= cap_if
    res_fl = cap_fl < 0 or k * n * wb <= cap_fl
    res_of = cap_of < 0 or m * n * wb <= cap_of
    chan = 0
    busy = 0
    b_if, b_fl = _fold_input_bytes(df, 0, 0, fr_n, min(rows, s_r), min(cols, s_c), t, wb, res_if, res_fl)
    arrive, chan, d = transfer(0, b_if + b_fl, chan, bw)
    busy += d
    out[G_DRAM_IF] += b_if
    out[G_DRAM_FL] += b_fl
    wb_done = np.zeros(2, np.int64)  # write-back finish of the last two output blocks, by parity
    end = 0
    wb_last = 0
    f = 0
    for fc in range(fc_n):
        cu = min(cols, s_c - fc * cols)
        for fr in range(fr_n):
            start = max(end, arrive)
            blk = f if df == DF_OS else fc
            if (df == DF_OS or fr == 0) and blk >= 2 and not res_of:
                start = max(start, wb_done[blk % 2])  # its half of the ofmap buffer is still draining
            if f + 1 < folds:  # prefetch the next fold's blocks into the idle halves
                nfc = fc if fr + 1 < fr_n else fc + 1
                nfr = fr + 1 if fr + 1 < fr_n else 0
                b_if, b_fl = _fold_input_bytes(df, nfr, nfc, fr_n, min(rows, s_r - nfr * rows),
                                               min(cols, s_c - nfc * cols), t, wb, res_if, res_fl)
                arrive, chan, d = transfer(start, b_if + b_fl, chan, bw)
                busy += d
                out[G_DRAM_IF] += b_if
                out[G_DRAM_FL] += b_fl
            end = start + L
            if df == DF_OS or fr == fr_n - 1:  # an output block is final: write it back
                ru = min(rows, s_r - fr * rows)
                nbytes = ru * cu * wb if df == DF_OS else t * cu * wb
                done, chan, d = transfer(end, nbytes, chan, bw)
                busy += d
                out[G_DRAM_OF] += nbytes
                wb_done[blk % 2] = done
                wb_last = max(wb_last, done)
            f += 1
    out[G_CYCLES] = max(end, wb_last)
    out[G_STALL] = out[G_CYCLES] - out[G_COMPUTE]
    out[G_DRAM_BUSY] = busy
    return out


@njit(**JIT_OPTS)
def two_array_schedule(n_heads, group, d2_dur, d2_in_first, d2_in_other, d2_out, d2_wait1d,
                       d1_dur, d1_after2d, bw):
    """Event loop over one head's jobs, repeated for n_heads heads back to back (columns S_*).

    2D-array jobs run in list order: job x lasts d2_dur[x] cycles, needs d2_in_*[x] DRAM bytes
    in the buffer first (``first``: the first head of each group of ``group`` query heads, which
    fetches shared K/V; ``other``: the rest), waits for 1D job d2_wait1d[x] (-1: none), and
    writes d2_out[x] bytes back at its end. 1D-array jobs run in list order: job y lasts
    d1_dur[y] and starts after 2D job d1_after2d[y] ends. The inputs of the next 2D job are
    requested when the current one starts (double buffering); the DRAM channel is FCFS.
    """
    out = np.zeros(N_SCHED_OUT, np.int64)
    n2 = d2_dur.shape[0]
    n1 = d1_dur.shape[0]
    end2 = np.zeros(n2, np.int64)
    end1 = np.zeros(n1, np.int64)
    t2 = 0
    t1 = 0
    chan = 0
    wb_last = 0
    arrive, chan, d = transfer(0, d2_in_first[0], chan, bw)
    out[S_DRAM_BUSY] += d
    for h in range(n_heads):
        y = 0
        for x in range(n2):
            w = d2_wait1d[x]
            while y < n1 and y <= w:  # run the 1D jobs this 2D job waits for
                s1 = max(t1, end2[d1_after2d[y]])
                t1 = s1 + d1_dur[y]
                end1[y] = t1
                out[S_BUSY_1D] += d1_dur[y]
                y += 1
            dep = end1[w] if w >= 0 else 0
            start = max(t2, arrive, dep)
            if start > t2:
                if arrive >= dep:
                    out[S_IDLE_2D_DRAM] += start - t2
                else:
                    out[S_IDLE_2D_1D] += start - t2
            if x + 1 < n2:
                nxt = d2_in_first[x + 1] if h % group == 0 else d2_in_other[x + 1]
                arrive, chan, d = transfer(start, nxt, chan, bw)
                out[S_DRAM_BUSY] += d
            elif h + 1 < n_heads:
                nxt = d2_in_first[0] if (h + 1) % group == 0 else d2_in_other[0]
                arrive, chan, d = transfer(start, nxt, chan, bw)
                out[S_DRAM_BUSY] += d
            t2 = start + d2_dur[x]
            end2[x] = t2
            out[S_BUSY_2D] += d2_dur[x]
            if d2_out[x] > 0:
                done, chan, d = transfer(t2, d2_out[x], chan, bw)
                out[S_DRAM_BUSY] += d
                wb_last = max(wb_last, done)
        while y < n1:  # 1D jobs after the head's last 2D job
            s1 = max(t1, end2[d1_after2d[y]])
            t1 = s1 + d1_dur[y]
            out[S_BUSY_1D] += d1_dur[y]
            y += 1
    out[S_TOTAL] = max(t2, t1, wb_last)
    out[S_TAIL] = out[S_TOTAL] - t2
    return out
