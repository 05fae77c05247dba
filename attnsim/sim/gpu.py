"""Cycle-level GPU simulator of FlashAttention-style kernels: the public face.

    >>> import attnsim
    >>> from attnsim.sim.gpu import simulate
    >>> w = attnsim.attention("softmax", batch=4, heads=16, seq=4096, head_dim=128)
    >>> sim = simulate("h100_sxm5_80gb", w, "flash3", timeline=True)
    >>> print(sim.result.summary(), sim.stats["l2_kv_hit_rate"])

The workload and mapping are lowered exactly as for the analytical model
(``attnsim.model.lower.lower_gpu``), so both models see the same tile sizes, per-tile costs,
occupancy, rates and efficiency factors. This module builds the CTA grid in launch order and
each CTA's key-tile list, calls the numba event loop (``gpu_kernels.simulate_kernel``) and
turns its integer counts into a ``Result`` (model='cycle') and, when asked, a ``Timeline``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from attnsim import __version__
from attnsim.arch import Arch
from attnsim.errors import AttnsimError, MappingError, Problem, SpecError
from attnsim.mapping.kernel import KernelMapping
from attnsim.model import gpu_kernel as K
from attnsim.model.analytical import resolve
from attnsim.model.lower import BOUND_NAMES, lower_gpu
from attnsim.model.result import Result
from attnsim.sim import gpu_kernels as G
from attnsim.workload.spec import Workload

LAUNCH_ORDERS = ("m_fastest", "longest_first", "head_fastest")
PIPES = ("tensor", "softmax", "smem")  # per-SM servers, in gpu_kernels' PIPE_* order
N_SERVER_PIPES = G.N_PIPES
KERNEL_ARRAYS = ("cta_lo", "cta_hi", "cta_kv", "cta_qline", "cta_qbytes", "cta_obytes", "cta_pline", "cta_ofinal",
                 "tile_j", "tile_partial")


@dataclass(frozen=True)
class SimInputs:
    """Everything the event loop reads: the kernel's arguments plus what built them."""

    arch: Arch
    workload: Workload
    mapping: KernelMapping
    row: np.ndarray  # the lowered design point (attnsim.model.gpu_kernel input columns)
    prm: np.ndarray  # [G.N_PARAMS]
    arrays: dict  # the kernel's array arguments, by name, in call order
    ctas_per_sm: int
    allowed: float  # allowed (m, n) pairs per (batch, head)

    def args(self, timeline_cap: int = 0) -> tuple:
        """The arguments of ``gpu_kernels.simulate_kernel`` (and ``gpu_reference.simulate_ref``)."""
        prm = self.prm.copy()
        prm[G.P_TIMELINE_CAP] = timeline_cap
        return (prm,) + tuple(self.arrays[name] for name in KERNEL_ARRAYS)


@dataclass(frozen=True)
class Timeline:
    """Busy periods of every server. SM pipes: sm, pipe (0 tensor, 1 softmax, 2 smem), start, end
    (cycles). L2 / HBM: start, end, bytes moved in the period. CTAs: sm, start, end."""

    clock_hz: float
    sms: int
    sm: np.ndarray
    pipe: np.ndarray
    start: np.ndarray
    end: np.ndarray
    l2: np.ndarray  # [n, 3]: start, end, bytes
    hbm: np.ndarray  # [n, 3]
    cta_sm: np.ndarray
    cta_start: np.ndarray
    cta_end: np.ndarray
    t_main: int
    t_end: int
    dropped: int = 0  # periods not recorded (buffer full)

    def edges(self, bins: int) -> np.ndarray:
        """bins + 1 bin edges in cycles over the whole run."""
        return np.linspace(0.0, float(max(self.t_end, 1)), bins + 1)

    def bandwidth(self, level: str, bins: int = 200) -> tuple[np.ndarray, np.ndarray]:
        """(bin edges in s, bytes/s in each bin) of the 'L2' or 'HBM' server: each busy period's
        bytes spread evenly over the period."""
        per = self.l2 if level == "L2" else self.hbm
        e = self.edges(bins)
        moved = np.diff(_cumulative(per[:, 0], per[:, 1], per[:, 2], e))
        return e / self.clock_hz, moved / ((e[1] - e[0]) / self.clock_hz)

    def busy(self, bins: int = 200) -> np.ndarray:
        """[sms, 3 pipes, bins]: the fraction of each bin each SM pipe was busy."""
        e = self.edges(bins)
        n = len(PIPES)
        sid = self.sm * n + self.pipe
        o = np.lexsort((self.start, sid))
        sid, st, en = sid[o], self.start[o].astype(np.float64), self.end[o].astype(np.float64)
        cut = np.searchsorted(sid, np.arange(self.sms * n + 1))
        out = np.zeros((self.sms * n, bins))
        for i in range(self.sms * n):
            a, b = cut[i], cut[i + 1]
            out[i] = np.diff(_cumulative(st[a:b], en[a:b], en[a:b] - st[a:b], e)) / (e[1] - e[0])
        return out.reshape(self.sms, n, bins)


def _cumulative(start: np.ndarray, end: np.ndarray, weight: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Sum of `weight` over non-overlapping periods [start, end), each spread evenly over its
    period, up to each time in `at`."""
    if start.shape[0] == 0:
        return np.zeros(at.shape[0])
    o = np.argsort(start, kind="stable")
    s, e, w = start[o].astype(np.float64), end[o].astype(np.float64), weight[o].astype(np.float64)
    done = np.concatenate([[0.0], np.cumsum(w)])
    i = np.searchsorted(s, at, side="right") - 1  # the last period starting at or before t
    ok = i >= 0
    j = np.where(ok, i, 0)
    length = np.maximum(e[j] - s[j], 1e-300)
    part = w[j] * np.clip((at - s[j]) / length, 0.0, 1.0)
    return np.where(ok, done[j] + part, 0.0)


@dataclass(frozen=True)
class SimResult:
    result: Result
    timeline: Timeline | None
    stats: dict = field(default_factory=dict)  # the simulation's raw integer counts and cycles


# ----------------------------------------------------------------------------- inputs

def _check(arch: Arch, w: Workload, m: KernelMapping) -> None:
    probs = []
    if arch.kind != "gpu":
        probs.append(Problem(f"the cycle-level GPU simulator needs a GPU arch; {arch.name!r} is {arch.kind}",
                             key="arch"))
    if m.style == "unfused":
        probs.append(Problem("the cycle-level simulator runs fused and split-KV kernels; 'unfused' is three "
                             "GEMM/softmax kernels", key="mapping.style", hint="use attnsim.predict for unfused"))
    if w.mask.kind in ("neighborhood", "block_counts"):
        probs.append(Problem("the cycle-level simulator enumerates full, causal, window and block-sparse masks; "
                             f"a {w.mask.kind} mask has no per-tile list here", key="mask.kind",
                             hint=f"use attnsim.predict for {w.mask.kind} masks"))
    if m.launch_order not in LAUNCH_ORDERS:
        probs.append(Problem(f"expected one of {list(LAUNCH_ORDERS)}, got {m.launch_order!r}",
                             key="launch_order"))
    if probs:
        raise MappingError(probs)


def _launch_order(order: str, lengths: np.ndarray, shape: tuple[int, int, int, int]) -> np.ndarray:
    """CTA indices (in m_fastest numbering b, head group, split, query tile) in launch order.

    m_fastest     query tile fastest, then split chunk, head group, batch (FlashAttention's grid)
    longest_first the same grid, but each (batch, head group, chunk)'s query tiles go from the most
                  key tiles down (FlashAttention's causal grid walks m_block backwards; see
                  validate/kernels/flash_fwd.cu): long CTAs first, short ones fill the tail
    head_fastest  head group fastest, then batch, split chunk, query tile
    """
    idx = np.arange(lengths.shape[0])
    b, hg, sp, rows = shape
    if order == "m_fastest":
        return idx
    if order == "longest_first":
        return np.lexsort((-lengths, idx // rows))  # by group, then longest first (stable)
    return idx.reshape(b, hg, sp, rows).transpose(3, 2, 0, 1).ravel()


def prepare(arch, workload, mapping=None, *, load_latency_cycles: int = 0) -> SimInputs:
    """Lower one design point and build the CTA grid (launch order) and tile lists.
    ``load_latency_cycles``: a fixed delay from a load's last byte to its use (0, as in the
    analytical model, which has no latency term)."""
    arch, w, m = resolve(arch, workload, mapping)
    _check(arch, w, m)
    if load_latency_cycles < 0:
        raise MappingError(Problem(f"expected a non-negative number of cycles, got {load_latency_cycles}",
                                   key="load_latency_cycles"))
    row = lower_gpu(arch, w, m)
    k = int(K.occupancy(row))
    if k < 1:
        raise MappingError(Problem(f"mapping {m.label()} fits no CTA on an SM of {arch.name} "
                                   "(shared memory, registers or warps)", key="mapping"))
    bp = max(1, m.block_m // m.q_heads_per_cta)  # query positions per CTA
    mk = w.mask
    kind = int(row[K.MASK])
    every_tile = kind == K.MK_EXPLICIT  # lowered so: a kernel that does not skip masked tiles
    base_kind = {"full": G.MK_FULL, "causal": G.MK_CAUSAL, "window": G.MK_WINDOW, "block_sparse": G.MK_BLOCK}[mk.kind]
    ptr, tiles, partial = G.tile_lists(base_kind, w.seq_q, w.seq_kv, bp, m.block_n, mk.window, mk.sink, mk.density,
                                       mk.causal, m.split_kv, every_tile)
    if every_tile:
        allowed = float(row[K.X_ALLOWED])
    else:
        allowed = float(K.mask_tile_stats(kind, w.seq_q, w.seq_kv, bp, m.block_n, mk.window, mk.sink, mk.density,
                                          mk.causal)[5])
    arrays = _grid(w, m, bp, ptr)
    arrays.update(tile_j=tiles.astype(np.int64), tile_partial=partial.astype(np.int64))
    prm = _params(row, w, m, k)
    ways = arch.level("L2").associativity
    if ways is None:
        raise SpecError(Problem(f"the cycle simulator needs the L2's ways per set: add `associativity` to the "
                                f"L2 level of {arch.file or arch.name}", key="levels.L2.associativity"))
    _l2_geometry(prm, row, w, m, arrays, ways)
    prm[G.P_LOAD_LATENCY] = int(load_latency_cycles)
    return SimInputs(arch=arch, workload=w, mapping=m, row=row, prm=prm, arrays=arrays, ctas_per_sm=k,
                     allowed=allowed)


def _grid(w: Workload, m: KernelMapping, bp: int, ptr: np.ndarray) -> dict:
    """Per-CTA arrays in launch order: tile range, K/V head, line-group ids, bytes in and out."""
    B, H, HKV, M, N = w.batch, w.heads, w.kv_heads, w.seq_q, w.seq_kv
    D, F, eb = w.head_dim, w.value_dim, w.dtype_bytes
    qpc, split = m.q_heads_per_cta, m.split_kv
    rows, ncol, hg_n, grp = -(-M // bp), -(-N // m.block_n), H // qpc, H // HKV
    # m_fastest numbering: (batch, head group, split chunk, query tile), query tile fastest
    b_i, hg_i, s_i, r_i = (a.ravel() for a in np.meshgrid(np.arange(B), np.arange(hg_n), np.arange(split),
                                                          np.arange(rows), indexing="ij"))
    lo, hi = ptr[r_i * split + s_i], ptr[r_i * split + s_i + 1]
    order = _launch_order(m.launch_order, hi - lo, (B, hg_n, split, rows))
    b_i, hg_i, s_i, r_i, lo, hi = (a[order] for a in (b_i, hg_i, s_i, r_i, lo, hi))
    kv = b_i * HKV + (hg_i * qpc) // grp
    rows_real = qpc * (np.minimum(M, (r_i + 1) * bp) - r_i * bp)  # query rows (positions x heads) held
    n_kv_lines = 2 * B * HKV * ncol  # K and V line-groups come first, then Q tiles, then partials
    qline = n_kv_lines + (b_i * hg_n + hg_i) * rows + r_i
    pline = n_kv_lines + B * hg_n * rows + ((b_i * hg_n + hg_i) * rows + r_i) * split + s_i
    if int(pline.max(initial=0)) >= 2 ** 31:
        raise MappingError(Problem("the grid has more than 2**31 tile line-groups; the simulator's cache "
                                   "hash needs fewer", key="workload", hint="simulate a smaller batch"))
    if split > 1:
        obytes = rows_real * (F + 1) * 4  # fp32 partial O and its log-sum-exp
        ofinal = np.where(s_i == 0, rows_real * F * eb, 0)  # O, written by the combine kernel
    else:
        obytes = rows_real * F * eb
        ofinal = np.zeros_like(obytes)
    i64 = np.int64
    return dict(cta_lo=lo.astype(i64), cta_hi=hi.astype(i64), cta_kv=kv.astype(i64), cta_qline=qline.astype(i64),
                cta_qbytes=(rows_real * D * eb).astype(i64), cta_obytes=obytes.astype(i64),
                cta_pline=pline.astype(i64), cta_ofinal=ofinal.astype(i64))


def _params(row: np.ndarray, w: Workload, m: KernelMapping, k: int) -> np.ndarray:
    """Rates and per-op work: the analytical model's per-tile formulas (gpu_kernel.eval_fused)."""
    br, bc, eb = m.block_m, m.block_n, w.dtype_bytes
    dp, fp = row[K.DP], row[K.FP]
    exp_tile = br * bc + br  # P, plus the rescale factor of each row
    vec_tile = K.SOFTMAX_VECTOR_OPS_PER_ELEMENT * br * bc + br * fp  # softmax + rescale O
    readers = 1.0 + row[K.SMEM_READERS]  # a K/V tile is written once and read by each warp(group)
    prm = np.zeros(G.N_PARAMS)
    prm[G.P_SMS], prm[G.P_K] = row[K.SMS], k
    prm[G.P_FA3] = 1.0 if m.softmax_overlap else 0.0
    prm[G.P_STAGES], prm[G.P_SPLIT], prm[G.P_BC] = m.stages, m.split_kv, bc
    prm[G.P_N], prm[G.P_NCOL] = w.seq_kv, -(-w.seq_kv // bc)
    prm[G.P_K_BYTES_PER_KEY], prm[G.P_V_BYTES_PER_KEY] = w.head_dim * eb, w.value_dim * eb
    prm[G.P_S_FLOPS], prm[G.P_O_FLOPS] = 2.0 * br * bc * dp, 2.0 * br * bc * fp
    prm[G.P_TENSOR_RATE] = row[K.MMA_PER_CYCLE] * row[K.MMA_EFF]
    prm[G.P_SMEM_S], prm[G.P_SMEM_O] = readers * bc * dp * eb, readers * bc * fp * eb
    prm[G.P_SMEM_RATE] = row[K.SMEM_BYTES_PER_CYCLE]
    prm[G.P_SOFT_WORK] = max(exp_tile / row[K.EXP_PER_CYCLE], vec_tile / row[K.VEC_PER_CYCLE])
    prm[G.P_PARTIAL_WORK] = br * bc / row[K.VEC_PER_CYCLE]  # the masking op on a partial tile
    prm[G.P_EPI_WORK] = br * fp / row[K.VEC_PER_CYCLE]  # O *= 1/l
    prm[G.P_L2_RATE] = row[K.L2_BW] * row[K.L2_EFF] / row[K.CLOCK]
    prm[G.P_HBM_RATE] = row[K.HBM_BW] * row[K.HBM_EFF] / row[K.CLOCK]
    return prm


def _l2_geometry(prm: np.ndarray, row: np.ndarray, w: Workload, m: KernelMapping, arrays: dict, ways: int) -> None:
    """Sets of `ways` K-tile line-groups (the arch's levels.L2.associativity); each set holds
    line-groups up to its byte share and at most as many as its smallest possible line-group allows."""
    l2_bytes = int(row[K.L2_CAP])
    n_sets = max(1, l2_bytes // (ways * m.block_n * w.head_dim * w.dtype_bytes))
    set_bytes = l2_bytes // n_sets
    last_keys = w.seq_kv - (-(-w.seq_kv // m.block_n) - 1) * m.block_n
    smallest = [int(arrays["cta_qbytes"].min()), last_keys * min(w.head_dim, w.value_dim) * w.dtype_bytes]
    if m.split_kv > 1:
        smallest.append(int(arrays["cta_obytes"].min()))
    prm[G.P_N_SETS], prm[G.P_SET_BYTES] = n_sets, set_bytes
    prm[G.P_SET_SLOTS] = max(ways, set_bytes // max(1, min(smallest)))


# ----------------------------------------------------------------------------- running

def run_kernel(inputs: SimInputs, timeline: bool = False) -> dict:
    """The numba event loop's outputs as a dict (the same keys as ``gpu_reference.simulate_ref``)."""
    cap = 0
    if timeline:
        tiles = int((inputs.arrays["cta_hi"] - inputs.arrays["cta_lo"]).sum())  # tile visits
        n_ctas = int(inputs.arrays["cta_lo"].shape[0])
        # a server request closes at most one busy period: per tile visit at most 11 requests (K and V
        # on HBM and L2 with a write-back each, S and O on two pipes, softmax), per CTA 10 (Q 3,
        # epilogue 1, store 2, combine 4), and one final close per server
        cap = 11 * tiles + 10 * n_ctas + N_SERVER_PIPES * int(inputs.row[K.SMS]) + 2
    out = G.simulate_kernel(*inputs.args(cap))
    stats, busy, busy_main, c0, c1, cs, srv, ps, pe, pw = out
    return dict(stats=[int(x) for x in stats], busy=busy, busy_main=busy_main, cta_start=c0, cta_end=c1,
                cta_slot=cs, periods=(srv, ps, pe, pw))


def run_reference(inputs: SimInputs) -> dict:
    """The slow Python twin's outputs (for tests; small cases only)."""
    from attnsim.sim.gpu_reference import simulate_ref
    prm, *arrays = inputs.args(0)
    return simulate_ref(prm.tolist(), *(a.tolist() for a in arrays))


def simulate(arch, workload, mapping=None, *, timeline: bool = False, load_latency_cycles: int = 0) -> SimResult:
    """Simulate one attention call cycle by cycle.

    ``arch``, ``workload``, ``mapping``: as for ``attnsim.predict`` (values, preset names,
    YAML paths; an algorithm name or None for the default kernel). ``timeline``: also return
    every server's busy periods (``SimResult.timeline``; see ``attnsim.sim.timeline``).
    ``load_latency_cycles``: fixed delay added to every Q/K/V load (default 0, as in the
    analytical model).
    """
    inputs = prepare(arch, workload, mapping, load_latency_cycles=load_latency_cycles)
    raw = run_kernel(inputs, timeline)
    return finish(inputs, raw, timeline)


# ----------------------------------------------------------------------------- results

def _busy_fractions(raw: dict, sms: int) -> dict:
    """Busy fraction of each kind of unit over the main kernel: SM pipes averaged over the SMs."""
    bm = np.asarray(raw["busy_main"], dtype=np.float64)
    span = max(1, raw["stats"][G.S_T_MAIN])
    out = {name: bm[p:N_SERVER_PIPES * sms:N_SERVER_PIPES].sum() / (sms * span) for p, name in enumerate(PIPES)}
    out["L2"], out["HBM"] = bm[N_SERVER_PIPES * sms] / span, bm[N_SERVER_PIPES * sms + 1] / span
    return {k: float(v) for k, v in out.items()}


BOUND_OF = {"tensor": K.BD_MMA, "softmax": K.BD_SOFTMAX, "smem": K.BD_SMEM, "L2": K.BD_L2, "HBM": K.BD_HBM}


def _bound(frac: dict, t_main: float, t_overhead: float) -> tuple[str, float]:
    """The busiest unit over the main kernel (launch when overheads outlast it), and its margin
    over the next busiest."""
    if t_overhead >= t_main:
        return BOUND_NAMES[K.BD_LAUNCH], t_overhead / max(t_main, 1e-30)
    top, second = sorted(frac, key=lambda u: -frac[u])[:2]
    return BOUND_NAMES[BOUND_OF[top]], frac[top] / frac[second] if frac[second] > 0 else float("inf")


def finish(inputs: SimInputs, raw: dict, timeline: bool = False) -> SimResult:
    """Turn the event loop's counts into a Result (the analytical Result's fields, model='cycle')."""
    arch, w, m, row, prm = inputs.arch, inputs.workload, inputs.mapping, inputs.row, inputs.prm
    st = raw["stats"]
    sms, clock, k = int(row[K.SMS]), float(row[K.CLOCK]), inputs.ctas_per_sm
    t_main = st[G.S_T_MAIN] / clock
    t_launch = float(row[K.LAUNCH_S])
    t_combine = (st[G.S_T_END] - st[G.S_T_MAIN]) / clock + (float(row[K.COMBINE_S]) if m.split_kv > 1 else 0.0)
    latency = t_main + t_launch + t_combine
    frac = _busy_fractions(raw, sms)
    bound, margin = _bound(frac, t_main, t_launch + t_combine)

    br, bc, fp = m.block_m, m.block_n, float(row[K.FP])
    visits, pvisits = st[G.S_VISITS], st[G.S_PARTIAL_VISITS]
    exps = visits * (br * bc + br)
    vec = visits * (K.SOFTMAX_VECTOR_OPS_PER_ELEMENT * br * bc + br * fp) + pvisits * br * bc
    hbm, l2, smem, mma = (float(st[i]) for i in (G.S_HBM_BYTES, G.S_L2_BYTES, G.S_SMEM_BYTES, G.S_MMA_FLOPS))
    sm_seconds = latency * sms * clock
    n_ctas = float(len(inputs.arrays["cta_lo"]))
    times = {"compute (SM makespan)": t_main, "hbm": frac["HBM"] * t_main, "l2": frac["L2"] * t_main,
             "launch": t_launch}
    if m.split_kv > 1:
        times["split-KV combine"] = t_combine
    times["per tile: mma"] = (prm[G.P_S_FLOPS] + prm[G.P_O_FLOPS]) / prm[G.P_TENSOR_RATE] / clock
    times["per tile: softmax"] = prm[G.P_SOFT_WORK] / clock
    energy = {"HBM": hbm * row[K.E_HBM], "L2": l2 * row[K.E_L2], "SMEM": smem * row[K.E_SMEM],
              "mma": mma * row[K.E_MMA], "exp": exps * row[K.E_EXP], "vector": vec * row[K.E_VEC]}
    result = Result(
        arch=arch.name, workload=w.label(), mapping=m.label(), model="cycle",
        latency_s=float(latency), bound=bound, bound_margin=float(margin),
        useful_flops=2.0 * w.batch * w.heads * inputs.allowed * (w.head_dim + w.value_dim), executed_flops=mma,
        traffic_bytes={"HBM": hbm, "L2": l2, "SMEM": smem},
        utilization={"mma": float(mma / (sm_seconds * row[K.MMA_PER_CYCLE])),
                     "exp (SFU)": float(exps / (sm_seconds * row[K.EXP_PER_CYCLE])),
                     "vector (FP32)": float(vec / (sm_seconds * row[K.VEC_PER_CYCLE])),
                     "HBM": float(hbm / (latency * row[K.HBM_BW])), "L2": float(l2 / (latency * row[K.L2_BW])),
                     **{f"busy: {u}": v for u, v in frac.items()}},
        energy_j={**{c: float(e * 1e-12) for c, e in energy.items()}, "static": float(row[K.P_STATIC] * latency)},
        times_s={a: float(b) for a, b in times.items()},
        occupancy={"ctas_per_sm": float(k), "waves": n_ctas / (sms * k), "n_ctas": n_ctas,
                   "n_kernels": 2.0 if m.split_kv > 1 else 1.0},
        counts={"tile visits": float(visits), "exps": float(exps), "vector ops": float(vec),
                "allowed (m,n) pairs per (b,h)": inputs.allowed,
                "L2 K/V hits": float(st[G.S_KV_HITS]), "L2 K/V misses": float(st[G.S_KV_MISSES]),
                "L2 Q hits": float(st[G.S_Q_HITS]), "L2 Q misses": float(st[G.S_Q_MISSES]),
                "cycles": float(st[G.S_T_END]), "events": float(st[G.S_EVENTS])},
        provenance={"attnsim": __version__, "model": "cycle", "arch_hash": arch.spec_hash, "arch_file": arch.file,
                    "mapping": repr(m), "l2_ways": int(arch.level("L2").associativity), "l2_sets": int(prm[G.P_N_SETS])},
    )
    stats = {name.lower()[2:]: st[i] for name, i in _STAT_NAMES.items()}
    kv_loads = st[G.S_KV_HITS] + st[G.S_KV_MISSES]
    stats["l2_kv_hit_rate"] = st[G.S_KV_HITS] / kv_loads if kv_loads else 1.0
    return SimResult(result=result, timeline=_timeline(inputs, raw) if timeline else None, stats=stats)


_STAT_NAMES = {n: getattr(G, n) for n in dir(G) if n.startswith("S_") and isinstance(getattr(G, n), int)}


def _timeline(inputs: SimInputs, raw: dict) -> Timeline:
    sms = int(inputs.row[K.SMS])
    srv, ps, pe, pw = (np.asarray(a) for a in raw["periods"])
    on_sm = srv < N_SERVER_PIPES * sms

    def level(i):
        sel = srv == i
        return np.stack([ps[sel], pe[sel], pw[sel]], axis=1).astype(np.float64)

    st = raw["stats"]
    n = N_SERVER_PIPES
    return Timeline(clock_hz=float(inputs.row[K.CLOCK]), sms=sms, sm=srv[on_sm] // n, pipe=srv[on_sm] % n,
                    start=ps[on_sm], end=pe[on_sm], l2=level(n * sms), hbm=level(n * sms + 1),
                    cta_sm=np.asarray(raw["cta_slot"]) % sms, cta_start=np.asarray(raw["cta_start"]),
                    cta_end=np.asarray(raw["cta_end"]), t_main=st[G.S_T_MAIN], t_end=st[G.S_T_END],
                    dropped=st[G.S_TL_DROPPED])


# ----------------------------------------------------------------------------- CLI

def cmd_simulate_gpu(a) -> int:
    """`attnsim simulate attention ...`: the predict shape flags, plus --timeline PATH."""
    from attnsim.model.analytical import predict
    from attnsim.units import fmt_si
    from attnsim.cli_shapes import workload_from_flags
    w = workload_from_flags(a)
    mapping = getattr(a, "mapping", None) or getattr(a, "algorithm", None)
    path = getattr(a, "timeline", None)
    sim = simulate(a.arch, w, mapping, timeline=bool(path))
    r = sim.result
    if getattr(a, "format", "table") == "json":
        print(r.to_json())
    elif getattr(a, "explain", False):
        print(r.explain())
    else:
        ana = predict(a.arch, w, mapping)
        print(r.summary())
        print(f"  HBM {fmt_si(r.traffic_bytes['HBM'], 'B')}, L2 K/V hit rate {100 * sim.stats['l2_kv_hit_rate']:.1f}%, "
              f"{r.occupancy['ctas_per_sm']:g} CTAs/SM, {r.occupancy['waves']:.2f} waves, "
              f"{int(r.counts['cycles'])} cycles")
        print(f"  analytical model: {fmt_si(ana.latency_s, 's')} (cycle / analytical = "
              f"{r.latency_s / ana.latency_s:.3f})")
    if path:
        from attnsim.sim.timeline import plot_timeline
        plot_timeline(sim, path)
        print(f"wrote {path}")
    return 0
