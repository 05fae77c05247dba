"""Slow, obvious twins of ``attnsim.sim.systolic_kernels``: plain Python, no numba, small shapes only.

``gemm_reference`` is a register-level systolic array. Every cycle, each PE takes the operand
its left neighbour held last cycle and the operand (os) or partial sum (ws, is) its upper
neighbour held, multiplies, and passes them on; edges inject the skewed streams. It counts
every MAC, edge read and output write, asserts that operands meet in step, and checks the
result against A @ B, so the timing conventions are shown to compute the right product.
Cost: folds x L x R x C Python steps.
"""
from __future__ import annotations

import math

import numpy as np

NONE = None


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _fold_len(df: str, rows: int, cols: int, t: int) -> int:
    return t + rows + cols - 2 if df == "os" else 2 * rows + cols + t - 2


class _Channel:
    """A first-come-first-served DRAM channel of bw bytes per cycle (bw <= 0: unlimited)."""

    def __init__(self, bw: float):
        self.bw, self.free, self.busy = bw, 0, 0

    def request(self, issue: int, nbytes: int) -> int:
        if nbytes <= 0:
            return issue
        dur = 0 if self.bw <= 0 else int(math.ceil(nbytes / self.bw))
        start = max(issue, self.free)
        self.free = start + dur
        self.busy += dur
        return self.free


def _os_fold(A, B, O, fr, fc, rows, cols, ru, cu, stats):
    """Output stationary: a from the left, b from the top, accumulators stay in the PEs."""
    T = A.shape[1]
    L = _fold_len("os", rows, cols, T)
    a_reg = [[NONE] * cols for _ in range(rows)]  # (s, value)
    b_reg = [[NONE] * cols for _ in range(rows)]
    acc = [[0] * cols for _ in range(rows)]
    done = [[0] * cols for _ in range(rows)]
    for c in range(L):
        rd_if = rd_fl = wr = 0
        new_a = [[NONE] * cols for _ in range(rows)]
        new_b = [[NONE] * cols for _ in range(rows)]
        for i in range(rows):
            for j in range(cols):
                if j == 0:
                    s = c - i
                    a_in = (s, A[fr * rows + i, s]) if i < ru and 0 <= s < T else NONE
                    rd_if += a_in is not NONE
                else:
                    a_in = a_reg[i][j - 1]
                if i == 0:
                    s = c - j
                    b_in = (s, B[s, fc * cols + j]) if j < cu and 0 <= s < T else NONE
                    rd_fl += b_in is not NONE
                else:
                    b_in = b_reg[i - 1][j]
                if a_in is not NONE and b_in is not NONE:
                    assert a_in[0] == b_in[0], "operands out of step"
                    acc[i][j] += a_in[1] * b_in[1]
                    done[i][j] += 1
                    stats["macs"] += 1
                    if done[i][j] == T:  # the finished output is written with its last MAC
                        O[fr * rows + i, fc * cols + j] = acc[i][j]
                        wr += 1
                new_a[i][j], new_b[i][j] = a_in, b_in
        a_reg, b_reg = new_a, new_b
        _tally(stats, rd_if, rd_fl, wr)


def _stationary_fold(W, stream, out, rows, cols, ru, cu, T, stats, stationary_is_ifmap):
    """ws / is: load W (ru x cu, rows x cols padded) from the top, stream from the left, sums down.

    stream(r, s) -> value of the streamed operand for array row r, step s;
    out(s, j, value) accumulates a finished partial sum leaving the bottom of column j.
    """
    L = _fold_len("ws", rows, cols, T)
    w_reg = [[NONE] * cols for _ in range(rows)]
    a_reg = [[NONE] * cols for _ in range(rows)]
    p_reg = [[NONE] * cols for _ in range(rows)]  # (s, partial sum)
    for c in range(L):
        rd_load = rd_stream = wr = 0
        if c < rows:  # shift the stationary block down one row; row rows-1-c enters at the top
            r_in = rows - 1 - c
            row = [W[r_in][j] if r_in < ru and j < cu else NONE for j in range(cols)]
            rd_load += sum(v is not NONE for v in row)
            w_reg = [row] + w_reg[:-1]
        new_a = [[NONE] * cols for _ in range(rows)]
        new_p = [[NONE] * cols for _ in range(rows)]
        for r in range(rows):
            for j in range(cols):
                if j == 0:
                    s = c - rows - r
                    a_in = (s, stream(r, s)) if r < ru and 0 <= s < T else NONE
                    rd_stream += a_in is not NONE
                else:
                    a_in = a_reg[r][j - 1]
                p = p_reg[r - 1][j] if r > 0 else NONE
                if a_in is not NONE and w_reg[r][j] is not NONE:
                    if p is NONE:
                        assert r == 0, "a partial sum must start in the top row"
                        p = (a_in[0], 0)
                    assert p[0] == a_in[0], "partial sum and operand out of step"
                    p = (p[0], p[1] + a_in[1] * w_reg[r][j])
                    stats["macs"] += 1
                new_a[r][j], new_p[r][j] = a_in, p
        a_reg, p_reg = new_a, new_p
        for j in range(cols):
            p = p_reg[rows - 1][j]
            if p is not NONE:
                assert c == 2 * rows - 1 + p[0] + j
                out(p[0], j, p[1])
                wr += 1
        if stationary_is_ifmap:
            _tally(stats, rd_load, rd_stream, wr)
        else:
            _tally(stats, rd_stream, rd_load, wr)


def _tally(stats, rd_if, rd_fl, wr):
    stats["sram_ifmap"] += rd_if
    stats["sram_filter"] += rd_fl
    stats["sram_ofmap"] += wr
    stats["peak_ifmap"] = max(stats["peak_ifmap"], rd_if)
    stats["peak_filter"] = max(stats["peak_filter"], rd_fl)
    stats["peak_ofmap"] = max(stats["peak_ofmap"], wr)


def gemm_reference(df: str, rows: int, cols: int, m: int, n: int, k: int, wb: int = 2,
                   cap_if: int = -1, cap_fl: int = -1, cap_of: int = -1, bw: float = 0.0,
                   seed: int = 0) -> dict:
    """Every count of ``simulate_gemm_kernel``, from a register-level array (keys name the G_* columns)."""
    rng = np.random.default_rng(seed)
    A = rng.integers(-3, 4, size=(m, k))  # ifmap  [M, K]
    B = rng.integers(-3, 4, size=(k, n))  # filter [K, N]
    O = np.zeros((m, n), dtype=np.int64)  # ofmap  [M, N]
    s_r, s_c, T = {"os": (m, n, k), "ws": (k, n, m), "is": (k, m, n)}[df]
    fr_n, fc_n = _ceil_div(s_r, rows), _ceil_div(s_c, cols)
    L = _fold_len(df, rows, cols, T)
    stats = dict(macs=0, sram_ifmap=0, sram_filter=0, sram_ofmap=0, peak_ifmap=0, peak_filter=0, peak_ofmap=0)
    folds = [(fc, fr) for fc in range(fc_n) for fr in range(fr_n)]  # column fold outer
    mapped = 0
    for fc, fr in folds:
        ru, cu = min(rows, s_r - fr * rows), min(cols, s_c - fc * cols)
        mapped += ru * cu
        if df == "os":
            _os_fold(A, B, O, fr, fc, rows, cols, ru, cu, stats)
        elif df == "ws":  # W[r][j] = B[fr*R + r, fc*C + j]; stream a[s, fr*R + r]; out o[s, fc*C + j]
            W = [[B[fr * rows + r, fc * cols + j] if r < ru and j < cu else NONE for j in range(cols)]
                 for r in range(rows)]

            def out(s, j, v, fc=fc):
                O[s, fc * cols + j] += v
            _stationary_fold(W, lambda r, s, fr=fr: A[s, fr * rows + r], out, rows, cols, ru, cu, T,
                             stats, stationary_is_ifmap=False)
        else:  # is: W[r][j] = A[fc*C + j, fr*R + r]; stream b[fr*R + r, s]; out o[fc*C + j, s]
            W = [[A[fc * cols + j, fr * rows + r] if r < ru and j < cu else NONE for j in range(cols)]
                 for r in range(rows)]

            def out(s, j, v, fc=fc):
                O[fc * cols + j, s] += v
            _stationary_fold(W, lambda r, s, fr=fr: B[fr * rows + r, s], out, rows, cols, ru, cu, T,
                             stats, stationary_is_ifmap=True)
    assert np.array_equal(O, A @ B), "the simulated array computed a wrong product"

    dram = _dram_reference(df, rows, cols, m, n, k, wb, cap_if, cap_fl, cap_of, bw, folds, fr_n, L)
    compute = len(folds) * L
    return dict(compute_cycles=compute, cycles=dram["cycles"], stall_cycles=dram["cycles"] - compute,
                folds=len(folds), fold_cycles=L, macs=stats["macs"], mapped=mapped,
                sram_ifmap=stats["sram_ifmap"], sram_filter=stats["sram_filter"], sram_ofmap=stats["sram_ofmap"],
                peak_ifmap=stats["peak_ifmap"], peak_filter=stats["peak_filter"], peak_ofmap=stats["peak_ofmap"],
                dram_ifmap=dram["ifmap"], dram_filter=dram["filter"], dram_ofmap=dram["ofmap"],
                dram_busy=dram["busy"])


def _dram_reference(df, rows, cols, m, n, k, wb, cap_if, cap_fl, cap_of, bw, folds, fr_n, L):
    """The double-buffered prefetch timeline, with explicit block identities and sets."""
    s_r, s_c, T = {"os": (m, n, k), "ws": (k, n, m), "is": (k, m, n)}[df]
    total_words = {"ifmap": m * k, "filter": k * n, "ofmap": m * n}
    caps = {"ifmap": cap_if, "filter": cap_fl, "ofmap": cap_of}
    resident = {op: caps[op] < 0 or total_words[op] * wb <= caps[op] for op in caps}

    def blocks(fc, fr):
        """{operand: (block id, words)} of the inputs, and (output id, words, final?)."""
        ru, cu = min(rows, s_r - fr * rows), min(cols, s_c - fc * cols)
        if df == "os":
            return ({"ifmap": (fr, ru * T), "filter": (fc, T * cu)}, ((fc, fr), ru * cu, True))
        if df == "ws":
            return ({"ifmap": (fr, T * ru), "filter": ((fc, fr), ru * cu)}, (fc, T * cu, fr == fr_n - 1))
        return ({"ifmap": ((fc, fr), ru * cu), "filter": (fr, ru * T)}, (fc, T * cu, fr == fr_n - 1))

    seen = {"ifmap": set(), "filter": set()}
    prev = {"ifmap": None, "filter": None}
    traffic = {"ifmap": 0, "filter": 0, "ofmap": 0}

    def fetch_bytes(fc, fr):
        ins, _ = blocks(fc, fr)
        total = 0
        for op, (bid, words) in ins.items():
            new = bid not in seen[op] if resident[op] else bid != prev[op]
            seen[op].add(bid)
            prev[op] = bid
            if new:
                traffic[op] += words * wb
                total += words * wb
        return total

    ch = _Channel(bw)
    arrive = ch.request(0, fetch_bytes(*folds[0]))
    out_order: list = []  # output block ids in the order they start
    wb_done: dict = {}
    end = 0
    for f, (fc, fr) in enumerate(folds):
        start = max(end, arrive)
        _, (oid, owords, final) = blocks(fc, fr)
        if oid not in out_order:
            out_order.append(oid)
            if not resident["ofmap"] and len(out_order) > 2:  # reuses the half of block b - 2
                start = max(start, wb_done[out_order[-3]])
        if f + 1 < len(folds):
            arrive = ch.request(start, fetch_bytes(*folds[f + 1]))
        end = start + L
        if final:
            wb_done[oid] = ch.request(end, owords * wb)
            traffic["ofmap"] += owords * wb
    cycles = max([end] + list(wb_done.values()))
    return dict(cycles=cycles, busy=ch.busy, **traffic)


def two_array_schedule_reference(n_heads, group, d2_dur, d2_in_first, d2_in_other, d2_out, d2_wait1d,
                                 d1_dur, d1_after2d, bw) -> dict:
    """The twin of ``two_array_schedule``: all heads' jobs flattened into one global list first."""
    n2, n1 = len(d2_dur), len(d1_dur)
    jobs2 = []  # (duration, input bytes, output bytes, global 1D job waited for)
    jobs1 = []  # (duration, global 2D job it follows)
    for h in range(n_heads):
        first = h % group == 0
        for x in range(n2):
            inb = d2_in_first[x] if first else d2_in_other[x]
            w = d2_wait1d[x]
            jobs2.append((int(d2_dur[x]), int(inb), int(d2_out[x]), h * n1 + w if w >= 0 else -1))
        for y in range(n1):
            jobs1.append((int(d1_dur[y]), h * n2 + int(d1_after2d[y])))
    ch = _Channel(bw)
    end2, end1 = [0] * len(jobs2), [0] * len(jobs1)
    t2 = t1 = 0
    busy2 = busy1 = idle_dram = idle_1d = 0
    wb_last = 0
    next1 = 0

    def run_1d_until(last):
        nonlocal next1, t1, busy1
        while next1 <= last:
            dur, after = jobs1[next1]
            t1 = max(t1, end2[after]) + dur
            end1[next1] = t1
            busy1 += dur
            next1 += 1

    arrive = ch.request(0, jobs2[0][1])
    for g, (dur, _, outb, wait) in enumerate(jobs2):
        run_1d_until(wait)
        dep = end1[wait] if wait >= 0 else 0
        start = max(t2, arrive, dep)
        if start > t2:
            if arrive >= dep:
                idle_dram += start - t2
            else:
                idle_1d += start - t2
        if g + 1 < len(jobs2):
            arrive = ch.request(start, jobs2[g + 1][1])
        t2 = start + dur
        end2[g] = t2
        busy2 += dur
        if outb > 0:
            wb_last = max(wb_last, ch.request(t2, outb))
    run_1d_until(len(jobs1) - 1)
    total = max(t2, t1, wb_last)
    return dict(total=total, busy_2d=busy2, busy_1d=busy1, dram_busy=ch.busy, idle_2d_dram=idle_dram,
                idle_2d_1d=idle_1d, tail=total - t2)
