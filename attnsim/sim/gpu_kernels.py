"""The cycle-level GPU simulator's event loop (numba). Imports numpy and numba only.

Time is an integer number of SM clock cycles. Every shared unit is a FIFO *server* with a
rate (work per cycle): per SM a tensor pipe (FLOP), a softmax pipe (SFU/FP32 cycles) and a
shared-memory pipe (bytes); for the whole chip one L2 server and one HBM server (bytes).
A server keeps its busy period: the start s0 and the work W queued since; a request at t
ends at s0 + ceil(W / rate), so rounding never accumulates over a busy period.

Each CTA is a small dataflow program over its key tiles j = 0 .. L-1 (tiles of one CTA come
from ``tile_lists``). One op is one event, pushed when its last dependency is processed:

    LOAD   Q, K0, V0, K1, V1, ...  in order; K(j) waits S(j - stages), V(j) waits O(j - stages)
    S(j)   Q K^T on the tensor pipe (+ its K reads on the SMEM pipe), after K(j) and Q
    X(j)   softmax on the softmax pipe, after S(j)
    O(j)   P V on the tensor pipe (+ V reads on SMEM), after X(j) and V(j)
    FA2    S(j) also waits O(j-1): the whole tile is serialized within the CTA
    FA3    program order on the tensor pipe S0 S1 O0 S2 O1 ...: the softmax of tile j runs
           while S(j+1) and O(j-1) use the tensor pipe (ping-pong)
    EPI    scale O by 1/l (softmax pipe), STORE (O, or the fp32 partial with split-KV), DONE

An op's request cycle is the latest of its end-dependencies' ends and its order-dependencies'
(program order) requests. Events live in a binary heap of int64 keys ``t << SH | slot << 3 |
type``; a slot has at most one pending event per type, so keys are unique and the order is
fully determined (the slow twin in ``gpu_reference`` orders (t, slot, type) tuples the same
way). With one CTA per SM the SM's compute ops skip the heap (see ``direct`` below). When a
CTA is DONE its slot takes the next CTA in launch order at that cycle. Slot q lives on SM
q % SMs, so the first wave fills the SMs round-robin. Loads are usable a fixed
``P_LOAD_LATENCY`` cycles after their last byte (0 by default, as in the analytical model).

L2 is a set-associative cache of tile line-groups (a K tile or a V tile of one (batch, KV
head); a Q tile; a split-KV partial output) with byte capacity per set and LRU replacement.
A hit costs L2 bandwidth only (and waits for a fill still in flight); a miss costs HBM and
L2 bandwidth (cut through: the request ends when both servers are done) and allocates.
Partial outputs are written into L2 dirty; a dirty line-group evicted before the combine
kernel reads it is written back to HBM. O is streamed to HBM without allocating.
"""
import math

import numpy as np
from numba import njit

from attnsim.numba_config import JIT_OPTS

# Hot helpers are inlined into the event loop at numba-IR level: a call that passes arrays costs
# reference counting and argument marshalling per array, which dominated the loop's time.
INLINE_OPTS = dict(JIT_OPTS, inline="always")

# ---- params (float64 vector) ----
(P_SMS, P_K, P_FA3, P_STAGES, P_SPLIT, P_BC, P_N, P_NCOL,
 P_K_BYTES_PER_KEY, P_V_BYTES_PER_KEY,
 P_S_FLOPS, P_O_FLOPS, P_TENSOR_RATE, P_SMEM_S, P_SMEM_O, P_SMEM_RATE,
 P_SOFT_WORK, P_PARTIAL_WORK, P_EPI_WORK, P_L2_RATE, P_HBM_RATE,
 P_N_SETS, P_SET_BYTES, P_SET_SLOTS, P_TIMELINE_CAP, P_LOAD_LATENCY, N_PARAMS) = range(27)

# ---- integer statistics (int64 vector) ----
(S_T_MAIN, S_T_END, S_KV_HITS, S_KV_MISSES, S_Q_HITS, S_Q_MISSES, S_P_HITS, S_P_MISSES,
 S_HBM_BYTES, S_L2_BYTES, S_SMEM_BYTES, S_WB_BYTES, S_VISITS, S_PARTIAL_VISITS, S_MMA_FLOPS,
 S_EVENTS, S_TL_N, S_TL_DROPPED, S_KV_MISS_BYTES, N_STATS) = range(20)

# ---- event types (the order breaks ties at equal cycles) ----
EV_LOAD, EV_S, EV_X, EV_O, EV_EPI, EV_STORE, EV_DONE = range(7)
NT = 8
# ---- servers: SM s owns 3*s + pipe; then the chip's L2 and HBM ----
PIPE_TENSOR, PIPE_SOFT, PIPE_SMEM = 0, 1, 2
N_PIPES = 3
# ---- L2 state: per way (tag, bytes, LRU stamp, fill cycle, dirty), per set (ways used, bytes used) ----
W_TAG, W_SIZE, W_STAMP, W_FILL, W_DIRTY, N_W = range(6)
C_COUNT, C_USED = 0, 1
# ---- server state: busy-period start, free-at cycle, busy cycles so far ----
V_S0, V_FREE, V_BUSY = 0, 1, 2
# ---- tile kinds in tile_lists ----
MK_FULL, MK_CAUSAL, MK_WINDOW, MK_BLOCK = 0, 1, 2, 3


# ----------------------------------------------------------------------------- tile lists

@njit(**JIT_OPTS)
def _classify_row(kind, r0, r1, m_len, n_len, bc, window, sink, state):
    """state[j] = 0 empty, 1 partial, 2 full for key tile j of query rows r0..r1 (full /
    causal / window+sink masks; row m sees keys lo(m)..hi(m) and the sink keys below lo(m))."""
    ncol = state.shape[0]
    if kind == MK_FULL:
        for j in range(ncol):
            state[j] = 2
        return
    off = n_len - m_len
    a = max(r0, -off)  # first row that sees a key
    for j in range(ncol):
        state[j] = 0
    if a > r1:
        return
    hi_last = min(r1 + off, n_len - 1)
    hi_first = min(r0 + off, n_len - 1)
    if kind == MK_CAUSAL:
        lo_a, lo_last, s = 0, 0, 0
    else:
        lo_a = max(0, a + off - window + 1)
        lo_last = max(0, r1 + off - window + 1)
        s = sink
    sink_end = min(s, lo_last)  # union over the rows of their sink keys: [0, sink_end)
    for j in range(ncol):
        c0 = j * bc
        c1 = min(n_len, c0 + bc) - 1
        if not ((c0 <= hi_last and c1 >= lo_a) or c0 < sink_end):
            continue
        full = a == r0 and c1 <= hi_first and (c1 < s or max(s, c0) >= lo_last)
        state[j] = 2 if full else 1


@njit(**JIT_OPTS)
def _row_visits(kind, r0, r1, m_len, n_len, bc, window, sink, density, causal, every_tile,
                state, out_j, out_p):
    """Key tiles query rows r0..r1 visit, in visiting order (descending key index, as
    FlashAttention walks them): writes out_j (tile) and out_p (1 = partial) and returns the
    count. Block-sparse keeps min(cnt, max(1, floor(density*cnt + 0.5))) tiles: the partial
    tiles first, then full tiles from the highest key index down."""
    ncol = state.shape[0]
    base = kind
    if kind == MK_BLOCK:
        base = MK_CAUSAL if causal else MK_FULL
    _classify_row(base, r0, r1, m_len, n_len, bc, window, sink, state)
    if kind == MK_BLOCK:
        cnt = 0
        full = 0
        for j in range(ncol):
            if state[j] > 0:
                cnt += 1
            if state[j] == 2:
                full += 1
        if cnt > 0:
            keep = min(cnt, max(1, math.floor(density * cnt + 0.5)))
            left = keep
            for j in range(ncol):  # partial tiles first, ascending
                if state[j] == 1:
                    if left > 0:
                        left -= 1
                        state[j] = 3  # kept partial
            for j in range(ncol - 1, -1, -1):  # then full tiles from the top
                if state[j] == 2:
                    if left > 0:
                        left -= 1
                        state[j] = 4  # kept full
            for j in range(ncol):
                state[j] = 1 if state[j] == 3 else (2 if state[j] == 4 else 0)
    n = 0
    for j in range(ncol - 1, -1, -1):
        if every_tile:
            out_j[n] = j
            out_p[n] = 0 if state[j] == 2 else 1
            n += 1
        elif state[j] > 0:
            out_j[n] = j
            out_p[n] = 1 if state[j] == 1 else 0
            n += 1
    return n


@njit(**JIT_OPTS)
def tile_lists(kind, m_len, n_len, bp, bc, window, sink, density, causal, split, every_tile):
    """CSR of the key tiles each (query tile, split chunk) visits.

    Returns ptr [rows*split + 1], tiles [visits], partial [visits]: CTA type (row i, chunk s)
    visits tiles[ptr[i*split + s] : ptr[i*split + s + 1]]. Chunk s holds key tiles
    s*chunk .. (s+1)*chunk - 1 with chunk = ceil(ncol / split).
    """
    rows = (m_len + bp - 1) // bp
    ncol = (n_len + bc - 1) // bc
    chunk = (ncol + split - 1) // split
    state = np.zeros(ncol, dtype=np.int64)
    rj = np.zeros(ncol, dtype=np.int64)
    rp = np.zeros(ncol, dtype=np.int64)
    ptr = np.zeros(rows * split + 1, dtype=np.int64)
    for i in range(rows):  # pass 1: counts
        r0 = i * bp
        r1 = min(m_len, r0 + bp) - 1
        n = _row_visits(kind, r0, r1, m_len, n_len, bc, window, sink, density, causal, every_tile,
                        state, rj, rp)
        for t in range(n):
            ptr[i * split + rj[t] // chunk + 1] += 1
    for x in range(rows * split):
        ptr[x + 1] += ptr[x]
    tiles = np.zeros(ptr[rows * split], dtype=np.int64)
    partial = np.zeros(ptr[rows * split], dtype=np.int64)
    fill = ptr[:-1].copy()
    for i in range(rows):  # pass 2: fill, keeping the visiting order within each chunk
        r0 = i * bp
        r1 = min(m_len, r0 + bp) - 1
        n = _row_visits(kind, r0, r1, m_len, n_len, bc, window, sink, density, causal, every_tile,
                        state, rj, rp)
        for t in range(n):
            x = i * split + rj[t] // chunk
            tiles[fill[x]] = rj[t]
            partial[fill[x]] = rp[t]
            fill[x] += 1
    return ptr, tiles, partial


# ----------------------------------------------------------------------------- servers

@njit(**INLINE_OPTS)
def _serve(i, t, w, rate, si, ww, tli, tlw, stats):
    """Queue w units of work on server i at cycle t (FIFO); returns the cycle it is done.
    si[i]: busy-period start, free-at cycle, busy cycles; ww[i]: work queued in the period;
    a closed period is recorded in tli (server, start, end) and tlw (work) while there is room."""
    if t > si[i, V_FREE]:  # idle since free: close the busy period, open a new one at t
        if si[i, V_FREE] > si[i, V_S0]:
            si[i, V_BUSY] += si[i, V_FREE] - si[i, V_S0]
            n = stats[S_TL_N]
            if n < tli.shape[0]:
                tli[n, 0] = i
                tli[n, 1] = si[i, V_S0]
                tli[n, 2] = si[i, V_FREE]
                tlw[n] = ww[i]
                stats[S_TL_N] = n + 1
            elif tli.shape[0] > 0:
                stats[S_TL_DROPPED] += 1
        si[i, V_S0] = t
        ww[i] = w
    else:
        ww[i] += w
    si[i, V_FREE] = si[i, V_S0] + math.ceil(ww[i] / rate)
    return si[i, V_FREE]


# ----------------------------------------------------------------------------- L2 cache

@njit(**JIT_OPTS)
def _set_of(line, n_sets):
    """Hashed set index (Knuth multiplicative hash; line ids stay below 2**31)."""
    h = (line * 2654435761) % 4294967296
    h = h ^ (h >> 16)
    return h % n_sets


@njit(**INLINE_OPTS)
def _lookup(line, set_idx, slots, ways, sets):
    """Way index of `line` in its set, or -1."""
    base = set_idx * slots
    for x in range(sets[set_idx, C_COUNT]):
        if ways[base + x, W_TAG] == line:
            return base + x
    return -1


@njit(**JIT_OPTS)
def _insert(line, nbytes, fill_t, dirty, set_idx, slots, set_bytes, ways, sets, clock):
    """Allocate `line` in its set, evicting least-recently-used line-groups until it fits.
    Returns the dirty bytes evicted (to be written back). A line-group larger than a set is
    not cached."""
    if nbytes > set_bytes:
        return 0
    base = set_idx * slots
    wb = 0
    while sets[set_idx, C_USED] + nbytes > set_bytes or sets[set_idx, C_COUNT] >= slots:
        v = 0
        for x in range(1, sets[set_idx, C_COUNT]):
            if ways[base + x, W_STAMP] < ways[base + v, W_STAMP]:
                v = x
        if ways[base + v, W_DIRTY]:
            wb += ways[base + v, W_SIZE]
        sets[set_idx, C_USED] -= ways[base + v, W_SIZE]
        last = sets[set_idx, C_COUNT] - 1  # move the last way into the hole
        for f in range(N_W):
            ways[base + v, f] = ways[base + last, f]
        sets[set_idx, C_COUNT] = last
    x = base + sets[set_idx, C_COUNT]
    ways[x, W_TAG] = line
    ways[x, W_SIZE] = nbytes
    ways[x, W_STAMP] = clock
    ways[x, W_FILL] = fill_t
    ways[x, W_DIRTY] = dirty
    sets[set_idx, C_COUNT] += 1
    sets[set_idx, C_USED] += nbytes
    return wb


# ----------------------------------------------------------------------------- heap

@njit(**JIT_OPTS)
def _push(heap, n, key):
    i = n
    heap[i] = key
    while i > 0:
        p = (i - 1) >> 1
        if heap[p] <= key:
            break
        heap[i] = heap[p]
        heap[p] = key
        i = p
    return n + 1


@njit(**JIT_OPTS)
def _pop(heap, n):
    top = heap[0]
    n -= 1
    key = heap[n]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and heap[c + 1] < heap[c]:
            c += 1
        if heap[c] >= key:
            break
        heap[i] = heap[c]
        i = c
    heap[i] = key
    return top, n


# ----------------------------------------------------------------------------- event loop

@njit(**JIT_OPTS)
def simulate_kernel(prm, cta_lo, cta_hi, cta_kv, cta_qline, cta_qbytes, cta_obytes, cta_pline,
                    cta_ofinal, tile_j, tile_partial):
    """Simulate one attention call. CTAs are given in launch order; CTA c visits tile_j[cta_lo[c]:
    cta_hi[c]] (key tile indices; tile_partial marks masked tiles), its K/V line-groups are
    (cta_kv[c] * ncol + j) * 2 + (0: K, 1: V), its Q line-group cta_qline[c] (cta_qbytes[c]
    bytes), it stores cta_obytes[c] bytes (the split-KV partial is line-group cta_pline[c]) and
    the combine kernel writes cta_ofinal[c] bytes of O for it.

    Returns (stats [N_STATS], busy [servers], busy_main [servers], cta_start, cta_end, cta_slot,
    timeline periods: server, start, end, work).
    """
    sms = int(prm[P_SMS])
    n_slots = sms * int(prm[P_K])
    fa3 = prm[P_FA3] > 0
    stages = int(prm[P_STAGES])
    split = int(prm[P_SPLIT])
    bc = int(prm[P_BC])
    n_len = int(prm[P_N])
    ncol = int(prm[P_NCOL])
    kbpk = int(prm[P_K_BYTES_PER_KEY])
    vbpk = int(prm[P_V_BYTES_PER_KEY])
    s_flops, o_flops, t_rate = prm[P_S_FLOPS], prm[P_O_FLOPS], prm[P_TENSOR_RATE]
    smem_s, smem_o, m_rate = prm[P_SMEM_S], prm[P_SMEM_O], prm[P_SMEM_RATE]
    soft_w, part_w, epi_w = prm[P_SOFT_WORK], prm[P_PARTIAL_WORK], prm[P_EPI_WORK]
    l2_rate, hbm_rate = prm[P_L2_RATE], prm[P_HBM_RATE]
    n_sets = int(prm[P_N_SETS])
    set_bytes = int(prm[P_SET_BYTES])
    slots = int(prm[P_SET_SLOTS])
    tl_cap = int(prm[P_TIMELINE_CAP])
    lat = int(prm[P_LOAD_LATENCY])  # cycles from a load's last byte to its data being usable
    n_ctas = cta_lo.shape[0]
    L2 = N_PIPES * sms
    HBM = L2 + 1
    n_srv = HBM + 1
    rates = np.empty(n_srv)
    for s in range(sms):
        rates[N_PIPES * s + PIPE_TENSOR] = t_rate
        rates[N_PIPES * s + PIPE_SOFT] = 1.0
        rates[N_PIPES * s + PIPE_SMEM] = m_rate
    rates[L2] = l2_rate
    rates[HBM] = hbm_rate

    stats = np.zeros(N_STATS, dtype=np.int64)
    si = np.zeros((n_srv, 3), dtype=np.int64)
    ww = np.zeros(n_srv)
    tli = np.zeros((tl_cap, 3), dtype=np.int64)
    tlw = np.zeros(tl_cap)

    ways = np.zeros((n_sets * slots, N_W), dtype=np.int64)
    sets = np.zeros((n_sets, 2), dtype=np.int64)
    clock = 0

    cta_start = np.zeros(n_ctas, dtype=np.int64)
    cta_end = np.zeros(n_ctas, dtype=np.int64)
    cta_slot = np.zeros(n_ctas, dtype=np.int64)

    # per-slot CTA state; ring buffers hold the end cycles of the last R ops of each kind
    # (stages + 2 are enough; R is a power of two so that j % R is j & RM)
    R = 1
    while R < stages + 2:
        R *= 2
    RM = R - 1
    sm_of = np.zeros(n_slots, dtype=np.int64)
    for q in range(n_slots):
        sm_of[q] = q % sms
    sl_cta = np.full(n_slots, -1, dtype=np.int64)
    sl_nld = np.zeros(n_slots, dtype=np.int64)  # loads processed: 0 Q, 1+2j K(j), 2+2j V(j)
    sl_ns = np.zeros(n_slots, dtype=np.int64)
    sl_nx = np.zeros(n_slots, dtype=np.int64)
    sl_no = np.zeros(n_slots, dtype=np.int64)
    sl_pend = np.zeros(n_slots * NT, dtype=np.int64)  # one pending event per (slot, type)
    sl_epi = np.zeros(n_slots, dtype=np.int64)  # 1 once EPI is processed
    sl_qend = np.zeros(n_slots, dtype=np.int64)
    sl_req = np.zeros(n_slots * NT, dtype=np.int64)  # request cycle of the last op of each type
    r_k = np.zeros(n_slots * R, dtype=np.int64)
    r_v = np.zeros(n_slots * R, dtype=np.int64)
    r_s = np.zeros(n_slots * R, dtype=np.int64)
    r_x = np.zeros(n_slots * R, dtype=np.int64)
    r_o = np.zeros(n_slots * R, dtype=np.int64)

    # heap key: t << SH | slot << 3 | type  (NT = 8 types per slot)
    SH = 3
    while (1 << SH) < n_slots * NT:
        SH += 1
    PM = (1 << SH) - 1
    heap = np.zeros(n_slots * NT + 1, dtype=np.int64)
    hn = 0
    # With one CTA per SM, the SM's pipes serve that CTA alone and its program order already
    # orders every pipe's requests, so its compute ops are served at once ("immediate"),
    # out of global time order, without changing any result; only L2/HBM requests (loads,
    # stores) go through the heap. With several CTAs per SM every op is a heap event.
    direct = n_slots == sms
    imm = np.zeros(NT, dtype=np.int64)
    im = 0
    next_cta = 0
    t_main = 0

    for q in range(min(n_slots, n_ctas)):  # first wave: slot q takes CTA q at cycle 0
        c = next_cta
        next_cta += 1
        sl_cta[q] = c
        cta_slot[c] = q
        hn = _push(heap, hn, q * NT + EV_LOAD)
        sl_pend[q * NT + EV_LOAD] = 1

    while hn > 0 or im > 0:
        if im > 0:
            im -= 1
            key = imm[im]
        else:
            key, hn = _pop(heap, hn)
        stats[S_EVENTS] += 1
        t = key >> SH
        q = (key & PM) >> 3
        typ = key & 7
        sm = sm_of[q]
        c = sl_cta[q]
        lo = cta_lo[c]
        L = cta_hi[c] - lo
        sl_pend[q * NT + typ] = 0
        sl_req[q * NT + typ] = t

        if typ == EV_LOAD:
            i = sl_nld[q]
            if i == 0:  # read the CTA's Q rows: rows x D elements
                line = cta_qline[c]
                nb = cta_qbytes[c]
            else:  # read K or V of key tile kj: keys x D (or F) elements
                j = (i - 1) // 2
                isv = (i - 1) - 2 * j
                kj = tile_j[lo + j]
                keys = min(n_len, (kj + 1) * bc) - kj * bc
                line = (cta_kv[c] * ncol + kj) * 2 + isv
                nb = keys * (vbpk if isv else kbpk)
            set_idx = _set_of(line, n_sets)
            way = _lookup(line, set_idx, slots, ways, sets)
            clock += 1
            if way >= 0:  # hit: L2 bandwidth only, and not before the fill lands
                ways[way, W_STAMP] = clock
                end = _serve(L2, t, nb, l2_rate, si, ww, tli, tlw, stats)
                end = max(end, ways[way, W_FILL])
                if i == 0:
                    stats[S_Q_HITS] += 1
                else:
                    stats[S_KV_HITS] += 1
            else:  # miss: HBM and L2 together, then allocate
                e1 = _serve(HBM, t, nb, hbm_rate, si, ww, tli, tlw, stats)
                e2 = _serve(L2, t, nb, l2_rate, si, ww, tli, tlw, stats)
                end = max(e1, e2)
                stats[S_HBM_BYTES] += nb
                if i == 0:
                    stats[S_Q_MISSES] += 1
                else:
                    stats[S_KV_MISSES] += 1
                    stats[S_KV_MISS_BYTES] += nb
                wb = _insert(line, nb, end, 0, set_idx, slots, set_bytes, ways, sets, clock)
                if wb > 0:
                    _serve(HBM, t, wb, hbm_rate, si, ww, tli, tlw, stats)
                    stats[S_HBM_BYTES] += wb
                    stats[S_WB_BYTES] += wb
            stats[S_L2_BYTES] += nb
            end += lat
            if i == 0:
                sl_qend[q] = end
            elif isv:
                r_v[q * R + (j & RM)] = end
            else:
                r_k[q * R + (j & RM)] = end
            sl_nld[q] = i + 1
        elif typ == EV_S or typ == EV_O:
            if typ == EV_S:
                j = sl_ns[q]
                fl, sb = s_flops, smem_s
            else:
                j = sl_no[q]
                fl, sb = o_flops, smem_o
            e1 = _serve(N_PIPES * sm + PIPE_TENSOR, t, fl, t_rate, si, ww, tli, tlw, stats)
            e2 = _serve(N_PIPES * sm + PIPE_SMEM, t, sb, m_rate, si, ww, tli, tlw, stats)
            stats[S_MMA_FLOPS] += int(fl)
            stats[S_SMEM_BYTES] += int(sb)
            if typ == EV_S:
                r_s[q * R + (j & RM)] = max(e1, e2)
                sl_ns[q] = j + 1
            else:
                r_o[q * R + (j & RM)] = max(e1, e2)
                sl_no[q] = j + 1
        elif typ == EV_X:
            j = sl_nx[q]
            w = soft_w
            stats[S_VISITS] += 1
            if tile_partial[lo + j]:
                w += part_w
                stats[S_PARTIAL_VISITS] += 1
            r_x[q * R + (j & RM)] = _serve(N_PIPES * sm + PIPE_SOFT, t, w, 1.0, si, ww, tli, tlw, stats)
            sl_nx[q] = j + 1
        elif typ == EV_EPI:
            end = _serve(N_PIPES * sm + PIPE_SOFT, t, epi_w, 1.0, si, ww, tli, tlw, stats)
            sl_epi[q] = 1
            hn = _push(heap, hn, (end << SH) + q * NT + EV_STORE)
            sl_pend[q * NT + EV_STORE] = 1
        elif typ == EV_STORE:  # write O (rows x F), or the fp32 partial O + lse (rows x (F + 1))
            nb = cta_obytes[c]
            end = _serve(L2, t, nb, l2_rate, si, ww, tli, tlw, stats)
            stats[S_L2_BYTES] += nb
            if split > 1:  # fp32 partial O and log-sum-exp: written into L2, dirty
                line = cta_pline[c]
                set_idx = _set_of(line, n_sets)
                clock += 1
                wb = _insert(line, nb, end, 1, set_idx, slots, set_bytes, ways, sets, clock)
                if nb > set_bytes:  # too big to allocate: written through to HBM
                    wb += nb
                if wb > 0:
                    _serve(HBM, t, wb, hbm_rate, si, ww, tli, tlw, stats)
                    stats[S_HBM_BYTES] += wb
                    stats[S_WB_BYTES] += wb
            else:  # O streams through L2 to HBM
                e1 = _serve(HBM, t, nb, hbm_rate, si, ww, tli, tlw, stats)
                end = max(end, e1)
                stats[S_HBM_BYTES] += nb
            hn = _push(heap, hn, (end << SH) + q * NT + EV_DONE)
            sl_pend[q * NT + EV_DONE] = 1
        else:  # EV_DONE: the slot takes the next CTA in launch order now
            cta_end[c] = t
            t_main = max(t_main, t)
            if next_cta < n_ctas:
                c = next_cta
                next_cta += 1
                sl_cta[q] = c
                cta_slot[c] = q
                cta_start[c] = t
                sl_nld[q] = 0
                sl_ns[q] = 0
                sl_nx[q] = 0
                sl_no[q] = 0
                sl_epi[q] = 0
                hn = _push(heap, hn, (t << SH) + q * NT + EV_LOAD)
                sl_pend[q * NT + EV_LOAD] = 1
            continue

        # ---- push every op of this slot whose last dependency was just processed, at the
        # latest of its end-dependencies' ends and its order-dependencies' requests ----
        base = q * NT
        nld = sl_nld[q]
        ns = sl_ns[q]
        no = sl_no[q]
        nx = sl_nx[q]
        if sl_pend[base + EV_LOAD] == 0 and nld < 1 + 2 * L:  # in order, after the previous load
            j = (nld - 1) // 2
            r = sl_req[base + EV_LOAD]
            ok = True
            if nld > 0 and j >= stages:
                if (nld - 1) - 2 * j == 0:  # K(j): its buffer frees when S(j - stages) is done
                    ok = ns > j - stages
                    r = max(r, r_s[q * R + ((j - stages) & RM)])
                else:  # V(j): its buffer frees when O(j - stages) is done
                    ok = no > j - stages
                    r = max(r, r_o[q * R + ((j - stages) & RM)])
            if ok:
                hn = _push(heap, hn, (r << SH) + base + EV_LOAD)
                sl_pend[base + EV_LOAD] = 1
        if sl_pend[base + EV_S] == 0 and ns < L and nld > 1 + 2 * ns:  # K(ns) and Q are loaded
            r = max(r_k[q * R + (ns & RM)], sl_qend[q])
            if ns > 0:
                r = max(r, sl_req[base + EV_S])
            if fa3:  # tensor-pipe program order S0 S1 O0 S2 O1 ...: S(j) follows O(j-2)
                ok = ns < 2 or no >= ns - 1
                if ns >= 2:
                    r = max(r, sl_req[base + EV_O])
            else:  # FA2: after O(j-1) is done
                ok = no >= ns
                if ns > 0:
                    r = max(r, r_o[q * R + ((ns - 1) & RM)])
            if ok:
                if direct:
                    imm[im] = (r << SH) + base + EV_S
                    im += 1
                else:
                    hn = _push(heap, hn, (r << SH) + base + EV_S)
                sl_pend[base + EV_S] = 1
        if sl_pend[base + EV_X] == 0 and nx < ns:
            r = r_s[q * R + (nx & RM)]
            if nx > 0:
                r = max(r, sl_req[base + EV_X])
            if direct:
                imm[im] = (r << SH) + base + EV_X
                im += 1
            else:
                hn = _push(heap, hn, (r << SH) + base + EV_X)
            sl_pend[base + EV_X] = 1
        if sl_pend[base + EV_O] == 0 and no < nx and nld > 2 + 2 * no:  # X(no) done, V(no) loaded
            if (not fa3) or no == L - 1 or ns > no + 1:  # FA3: O(j) follows S(j+1)
                r = max(r_x[q * R + (no & RM)], r_v[q * R + (no & RM)])
                if no > 0:
                    r = max(r, sl_req[base + EV_O])
                if fa3 and no < L - 1:
                    r = max(r, sl_req[base + EV_S])
                if direct:
                    imm[im] = (r << SH) + base + EV_O
                    im += 1
                else:
                    hn = _push(heap, hn, (r << SH) + base + EV_O)
                sl_pend[base + EV_O] = 1
        if sl_pend[base + EV_EPI] == 0 and sl_epi[q] == 0 and no == L and nld >= 1:
            r = sl_qend[q] if L == 0 else r_o[q * R + ((L - 1) & RM)]
            if direct:
                imm[im] = (r << SH) + base + EV_EPI
                im += 1
            else:
                hn = _push(heap, hn, (r << SH) + base + EV_EPI)
            sl_pend[base + EV_EPI] = 1

    # busy cycles of the main kernel (periods still open count up to their end)
    busy_main = si[:, V_BUSY].copy()
    for i in range(n_srv):
        busy_main[i] += si[i, V_FREE] - si[i, V_S0]

    # ---- split-KV combine kernel: read every partial (+ lse), write O ----
    t_end = t_main
    if split > 1:
        for c in range(n_ctas):
            line = cta_pline[c]
            nb = cta_obytes[c]
            set_idx = _set_of(line, n_sets)
            way = _lookup(line, set_idx, slots, ways, sets)
            end = _serve(L2, t_main, nb, l2_rate, si, ww, tli, tlw, stats)
            stats[S_L2_BYTES] += nb
            if way >= 0:
                ways[way, W_DIRTY] = 0  # consumed: the partial is dead, never written back
                stats[S_P_HITS] += 1
            else:
                end = max(end, _serve(HBM, t_main, nb, hbm_rate, si, ww, tli, tlw, stats))
                stats[S_HBM_BYTES] += nb
                stats[S_P_MISSES] += 1
            t_end = max(t_end, end)
        for c in range(n_ctas):
            nb = cta_ofinal[c]
            if nb > 0:
                e1 = _serve(L2, t_main, nb, l2_rate, si, ww, tli, tlw, stats)
                e2 = _serve(HBM, t_main, nb, hbm_rate, si, ww, tli, tlw, stats)
                stats[S_L2_BYTES] += nb
                stats[S_HBM_BYTES] += nb
                t_end = max(t_end, e1, e2)
    for i in range(n_srv):  # close every busy period
        _serve(i, si[i, V_FREE] + 1, 0.0, rates[i], si, ww, tli, tlw, stats)
    stats[S_T_MAIN] = t_main
    stats[S_T_END] = t_end
    n = stats[S_TL_N]
    return (stats, si[:, V_BUSY].copy(), busy_main, cta_start, cta_end, cta_slot,
            tli[:n, 0].copy(), tli[:n, 1].copy(), tli[:n, 2].copy(), tlw[:n].copy())
