"""Slow, obvious twins of ``attnsim.sim.gpu_kernels`` (tests assert they agree exactly).

Plain Python: lists, dicts, ``heapq``. The event loop here is written as a generic
dependency graph: each CTA is a list of named ops, each op names the ops whose *end* it
waits for and the ops it must be *issued after* (program order), and an op is pushed on the
heap the moment its last dependency has been processed, at the latest of those times. The
kernel writes the same rules as counters and ring buffers; agreement checks one against
the other cycle for cycle.
"""
from __future__ import annotations

import heapq
import math
from collections import OrderedDict

from attnsim.model.gpu_reference import element_mask, key_tiles
from attnsim.sim import gpu_kernels as G

MK_FULL, MK_CAUSAL, MK_WINDOW, MK_BLOCK = G.MK_FULL, G.MK_CAUSAL, G.MK_WINDOW, G.MK_BLOCK


# ----------------------------------------------------------------------------- tile lists

def tile_lists_ref(kind, m_len, n_len, bp, bc, window, sink, density, causal, split, every_tile):
    """[[(tile, partial), ...] per (query tile, chunk)], counted from the element mask."""
    base = (MK_CAUSAL if causal else MK_FULL) if kind == MK_BLOCK else kind
    mask = element_mask(base, m_len, n_len, window, sink)
    ncol = -(-n_len // bc)
    chunk = -(-ncol // split)
    out = []
    for r0 in range(0, m_len, bp):
        tiles = key_tiles(mask[r0:r0 + bp], bc)
        partial = [j for j, (any_, all_) in enumerate(tiles) if any_ and not all_]
        full = [j for j, (any_, all_) in enumerate(tiles) if all_]
        kept = partial + full[::-1]
        if kind == MK_BLOCK and kept:
            kept = kept[:min(len(kept), max(1, math.floor(density * len(kept) + 0.5)))]
        kept_full = set(kept) & set(full)
        visit = list(range(ncol)) if every_tile else sorted(kept)
        visit = visit[::-1]  # FlashAttention walks the key tiles from the top down
        for s in range(split):
            out.append([(j, 0 if j in kept_full else 1) for j in visit if s * chunk <= j < (s + 1) * chunk])
    return out


# ----------------------------------------------------------------------------- servers

class Server:
    """FIFO server: work queued in a busy period ends at s0 + ceil(queued work / rate)."""

    def __init__(self, ident, rate, periods):
        self.ident, self.rate, self.periods = ident, rate, periods
        self.s0, self.work, self.free, self.busy = 0, 0.0, 0, 0

    def serve(self, t, w):
        if t > self.free:
            if self.free > self.s0:
                self.busy += self.free - self.s0
                self.periods.append((self.ident, self.s0, self.free, self.work))
            self.s0, self.work = t, float(w)
        else:
            self.work += w
        self.free = self.s0 + math.ceil(self.work / self.rate)
        return self.free


class Cache:
    """Set-associative by bytes: each set holds line-groups up to set_bytes and `slots` of
    them; an OrderedDict per set keeps them least recently used first."""

    def __init__(self, n_sets, set_bytes, slots):
        self.sets = [OrderedDict() for _ in range(n_sets)]  # line -> [bytes, fill cycle, dirty]
        self.used = [0] * n_sets
        self.set_bytes, self.slots = set_bytes, slots

    def set_of(self, line):
        h = (line * 2654435761) % 2 ** 32
        return (h ^ (h >> 16)) % len(self.sets)

    def get(self, line, touch=True):
        s = self.sets[self.set_of(line)]
        if line in s and touch:
            s.move_to_end(line)
        return s.get(line)

    def put(self, line, nbytes, fill, dirty):
        """Allocate; returns dirty bytes evicted (0 and no allocation if it cannot fit a set)."""
        if nbytes > self.set_bytes:
            return 0
        k = self.set_of(line)
        s, wb = self.sets[k], 0
        while self.used[k] + nbytes > self.set_bytes or len(s) >= self.slots:
            _, (size, _, was_dirty) = s.popitem(last=False)
            self.used[k] -= size
            wb += size if was_dirty else 0
        s[line] = [nbytes, fill, dirty]
        self.used[k] += nbytes
        return wb


# ----------------------------------------------------------------------------- CTA programs

def cta_program(n_tiles, stages, fa3):
    """{op: (end_deps, after_deps)} for one CTA with n_tiles key tiles, and its first op."""
    ops = {"Q": ((), ())}
    prev_load = "Q"
    for j in range(n_tiles):
        ops[("K", j)] = (((("S", j - stages),) if j >= stages else ()), (prev_load,))
        ops[("V", j)] = (((("O", j - stages),) if j >= stages else ()), (("K", j),))
        prev_load = ("V", j)
        after_s = ((("S", j - 1),) if j >= 1 else ())
        if fa3:  # tensor-pipe program order S0 S1 O0 S2 O1 ...
            ops[("S", j)] = ((("K", j), "Q"), after_s + ((("O", j - 2),) if j >= 2 else ()))
        else:  # the tile waits for the previous one to finish
            ops[("S", j)] = ((("K", j), "Q") + ((("O", j - 1),) if j >= 1 else ()), after_s)
        ops[("X", j)] = ((("S", j),), ((("X", j - 1),) if j >= 1 else ()))
        after_o = ((("O", j - 1),) if j >= 1 else ())
        if fa3 and j + 1 < n_tiles:
            after_o += (("S", j + 1),)
        ops[("O", j)] = ((("X", j), ("V", j)), after_o)
    ops["EPI"] = (((("O", n_tiles - 1),) if n_tiles else ("Q",)), ())
    ops["STORE"] = (("EPI",), ())
    ops["DONE"] = (("STORE",), ())
    return ops


def event_type(op):
    name = op if isinstance(op, str) else op[0]
    return {"Q": G.EV_LOAD, "K": G.EV_LOAD, "V": G.EV_LOAD, "S": G.EV_S, "X": G.EV_X, "O": G.EV_O,
            "EPI": G.EV_EPI, "STORE": G.EV_STORE, "DONE": G.EV_DONE}[name]


def simulate_ref(prm, cta_lo, cta_hi, cta_kv, cta_qline, cta_qbytes, cta_obytes, cta_pline, cta_ofinal,
                 tile_j, tile_partial):
    """Same arguments and results as ``gpu_kernels.simulate_kernel`` (as lists and ints)."""
    p = [float(x) for x in prm]
    sms, k = int(p[G.P_SMS]), int(p[G.P_K])
    fa3, stages, split = p[G.P_FA3] > 0, int(p[G.P_STAGES]), int(p[G.P_SPLIT])
    bc, n_len, ncol = int(p[G.P_BC]), int(p[G.P_N]), int(p[G.P_NCOL])
    n_ctas = len(cta_lo)
    stats = [0] * G.N_STATS
    periods = []
    pipes = {}
    for s in range(sms):
        pipes[s, "tensor"] = Server(3 * s + G.PIPE_TENSOR, p[G.P_TENSOR_RATE], periods)
        pipes[s, "soft"] = Server(3 * s + G.PIPE_SOFT, 1.0, periods)
        pipes[s, "smem"] = Server(3 * s + G.PIPE_SMEM, p[G.P_SMEM_RATE], periods)
    l2 = Server(3 * sms, p[G.P_L2_RATE], periods)
    hbm = Server(3 * sms + 1, p[G.P_HBM_RATE], periods)
    cache = Cache(int(p[G.P_N_SETS]), int(p[G.P_SET_BYTES]), int(p[G.P_SET_SLOTS]))
    cta_start, cta_end, cta_slot = [0] * n_ctas, [0] * n_ctas, [0] * n_ctas

    def write_back(t, nbytes):
        if nbytes > 0:
            hbm.serve(t, nbytes)
            stats[G.S_HBM_BYTES] += nbytes
            stats[G.S_WB_BYTES] += nbytes

    def load(t, line, nbytes, is_q):
        hit = cache.get(line)
        if hit is not None:
            end = max(l2.serve(t, nbytes), hit[1])
            stats[G.S_Q_HITS if is_q else G.S_KV_HITS] += 1
        else:
            end = max(hbm.serve(t, nbytes), l2.serve(t, nbytes))
            stats[G.S_HBM_BYTES] += nbytes
            stats[G.S_Q_MISSES if is_q else G.S_KV_MISSES] += 1
            if not is_q:
                stats[G.S_KV_MISS_BYTES] += nbytes
            write_back(t, cache.put(line, nbytes, end, 0))
        stats[G.S_L2_BYTES] += nbytes
        return end + int(p[G.P_LOAD_LATENCY])

    def run_op(q, c, op, t):
        """Serve one op at cycle t; returns its end cycle."""
        sm = q % sms
        name = op if isinstance(op, str) else op[0]
        tiles = range(cta_lo[c], cta_hi[c])
        if name == "Q":
            return load(t, cta_qline[c], cta_qbytes[c], True)
        if name in ("K", "V"):
            kj = tile_j[tiles[op[1]]]
            keys = min(n_len, (kj + 1) * bc) - kj * bc
            per_key = p[G.P_V_BYTES_PER_KEY] if name == "V" else p[G.P_K_BYTES_PER_KEY]
            return load(t, (cta_kv[c] * ncol + kj) * 2 + (name == "V"), keys * int(per_key), False)
        if name in ("S", "O"):
            flops = p[G.P_S_FLOPS] if name == "S" else p[G.P_O_FLOPS]
            smem = p[G.P_SMEM_S] if name == "S" else p[G.P_SMEM_O]
            stats[G.S_MMA_FLOPS] += int(flops)
            stats[G.S_SMEM_BYTES] += int(smem)
            return max(pipes[sm, "tensor"].serve(t, flops), pipes[sm, "smem"].serve(t, smem))
        if name == "X":
            work = p[G.P_SOFT_WORK]
            stats[G.S_VISITS] += 1
            if tile_partial[tiles[op[1]]]:
                work += p[G.P_PARTIAL_WORK]
                stats[G.S_PARTIAL_VISITS] += 1
            return pipes[sm, "soft"].serve(t, work)
        if name == "EPI":
            return pipes[sm, "soft"].serve(t, p[G.P_EPI_WORK])
        if name == "STORE":
            nb = cta_obytes[c]
            end = l2.serve(t, nb)
            stats[G.S_L2_BYTES] += nb
            if split > 1:
                wb = cache.put(cta_pline[c], nb, end, 1)
                write_back(t, wb + (nb if nb > cache.set_bytes else 0))
            else:
                end = max(end, hbm.serve(t, nb))
                stats[G.S_HBM_BYTES] += nb
            return end
        raise AssertionError(op)

    heap = []
    state = {}  # slot -> (cta, program, {op: (request, end)}, successors)

    def start(q, c, t):
        cta_slot[c], cta_start[c] = q, t
        prog = cta_program(cta_hi[c] - cta_lo[c], stages, fa3)
        succ = {}
        for op, (ends, afters) in prog.items():
            for d in ends + afters:
                succ.setdefault(d, []).append(op)
        state[q] = (c, prog, {}, succ)
        heapq.heappush(heap, (t, q, event_type("Q"), "Q"))

    next_cta = 0
    for q in range(min(sms * k, n_ctas)):
        start(q, next_cta, 0)
        next_cta += 1
    t_main = 0
    while heap:
        t, q, _, op = heapq.heappop(heap)
        stats[G.S_EVENTS] += 1
        c, prog, done, succ = state[q]
        if op == "DONE":
            cta_end[c] = t
            t_main = max(t_main, t)
            if next_cta < n_ctas:
                start(q, next_cta, t)
                next_cta += 1
            continue
        done[op] = (t, run_op(q, c, op, t))
        for nxt in succ.get(op, []):
            ends, afters = prog[nxt]
            if all(d in done for d in ends + afters):
                ready = max([done[d][1] for d in ends] + [done[d][0] for d in afters])
                heapq.heappush(heap, (ready, q, event_type(nxt), nxt))

    servers = [pipes[s, name] for s in range(sms) for name in ("tensor", "soft", "smem")] + [l2, hbm]
    busy_main = [sv.busy + sv.free - sv.s0 for sv in servers]
    t_end = t_main
    if split > 1:  # combine kernel
        for c in range(n_ctas):
            nb = cta_obytes[c]
            entry = cache.get(cta_pline[c], touch=False)
            end = l2.serve(t_main, nb)
            stats[G.S_L2_BYTES] += nb
            if entry is not None:
                entry[2] = 0
                stats[G.S_P_HITS] += 1
            else:
                end = max(end, hbm.serve(t_main, nb))
                stats[G.S_HBM_BYTES] += nb
                stats[G.S_P_MISSES] += 1
            t_end = max(t_end, end)
        for c in range(n_ctas):
            nb = cta_ofinal[c]
            if nb > 0:
                e = max(l2.serve(t_main, nb), hbm.serve(t_main, nb))
                stats[G.S_L2_BYTES] += nb
                stats[G.S_HBM_BYTES] += nb
                t_end = max(t_end, e)
    for sv in servers:
        sv.serve(sv.free + 1, 0.0)
    stats[G.S_T_MAIN], stats[G.S_T_END] = t_main, t_end
    stats[G.S_TL_N] = len(periods)
    return dict(stats=stats, busy=[sv.busy for sv in servers], busy_main=busy_main, cta_start=cta_start,
                cta_end=cta_end, cta_slot=cta_slot, periods=periods)
