"""Cycle-level simulation of a spatial design: a systolic GEMM, and attention on a 2D MAC array
beside a 1D vector array (FuseMax-like).

    simulate_gemm(rows, cols, dataflow, m, n, k, ...) -> GemmSim    one GEMM, cycle by cycle
    simulate_attention(arch, workload, mapping) -> Result           unfused / row_fused / fused

The numba kernels live in ``attnsim.sim.systolic_kernels``; their slow twins (a register-level
array that really multiplies) in ``attnsim.sim.systolic_reference``.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

import numpy as np

from attnsim.errors import MappingError, Problem, SpecError
from attnsim.model import gpu_kernel as GK
from attnsim.model.analytical import resolve
from attnsim.sim import systolic_kernels as K
from attnsim.spec.schema import did_you_mean

VOPS = GK.SOFTMAX_VECTOR_OPS_PER_ELEMENT  # vector ops per score element, as the analytical model

DATAFLOWS = ("os", "ws", "is")
BUFFERS = ("ifmap", "filter", "ofmap")


# ================================================================ GEMM

@dataclass(frozen=True)
class GemmSim:
    """Counts of one simulated GEMM. Cycles are clock cycles; SRAM accesses are words; DRAM is bytes."""

    rows: int
    cols: int
    dataflow: str
    m: int
    n: int
    k: int
    word_bytes: int
    cycles: int  # compute_cycles + stall_cycles
    compute_cycles: int  # folds x fold_cycles: what the array takes with data always on time
    stall_cycles: int  # waiting for DRAM: first fill, late prefetches, ofmap drain, last write-back
    folds: int
    fold_cycles: int
    macs: int
    mapped_pe_folds: int  # sum over folds of the PEs mapped (ru x cu)
    sram_reads: Mapping[str, int]  # words read by the array edges: ifmap, filter
    sram_writes: Mapping[str, int]  # words written by the array: ofmap (partial sums included)
    dram_reads: Mapping[str, int]  # bytes: ifmap, filter
    dram_writes: Mapping[str, int]  # bytes: ofmap
    sram_peak_words_per_cycle: Mapping[str, int]  # busiest cycle of each SRAM port
    dram_busy_cycles: int

    @property
    def utilization(self) -> float:
        """MACs / (cycles x R x C): the fraction of PE-cycles that did a MAC."""
        return self.macs / (self.cycles * self.rows * self.cols)

    @property
    def mapping_efficiency(self) -> float:
        """Mean over folds of the fraction of PEs mapped (SCALE-Sim's 'Mapping Efficiency')."""
        return self.mapped_pe_folds / (self.folds * self.rows * self.cols)

    def to_dict(self) -> dict:
        return {"rows": self.rows, "cols": self.cols, "dataflow": self.dataflow, "m": self.m, "n": self.n,
                "k": self.k, "word_bytes": self.word_bytes, "cycles": self.cycles,
                "compute_cycles": self.compute_cycles, "stall_cycles": self.stall_cycles, "folds": self.folds,
                "fold_cycles": self.fold_cycles, "macs": self.macs, "utilization": self.utilization,
                "mapping_efficiency": self.mapping_efficiency,
                "sram_reads_words": dict(self.sram_reads), "sram_writes_words": dict(self.sram_writes),
                "sram_peak_words_per_cycle": dict(self.sram_peak_words_per_cycle),
                "dram_reads_bytes": dict(self.dram_reads), "dram_writes_bytes": dict(self.dram_writes),
                "dram_busy_cycles": self.dram_busy_cycles}


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_positive_int(probs: list, key: str, v) -> None:
    if not _is_int(v) or v < 1:
        probs.append(Problem(f"expected a positive integer, got {v!r}", key=key))


def _block_words(dataflow: str, rows: int, cols: int, m: int, n: int, k: int) -> dict[str, int]:
    """Words of the largest (first) fold's block of each buffer."""
    s_r, s_c, t = K.geometry(K.DATAFLOW_CODES[dataflow], m, n, k)
    ru, cu = min(rows, s_r), min(cols, s_c)
    if dataflow == "os":
        return {"ifmap": ru * t, "filter": t * cu, "ofmap": ru * cu}
    if dataflow == "ws":
        return {"ifmap": t * ru, "filter": ru * cu, "ofmap": t * cu}
    return {"ifmap": ru * cu, "filter": ru * t, "ofmap": t * cu}


def _read_sram(sram_bytes, probs: list) -> dict[str, int]:
    """{'ifmap'|'filter'|'ofmap': bytes} from numbers or size strings; -1 = unlimited."""
    caps = {b: -1 for b in BUFFERS}
    if sram_bytes is None:
        return caps
    if not isinstance(sram_bytes, Mapping):
        probs.append(Problem(f"expected a dict {{ifmap, filter, ofmap: bytes}} or None, got {sram_bytes!r}",
                             key="sram_bytes"))
        return caps
    from attnsim.units import UnitError, parse_size
    for name, v in sram_bytes.items():
        if name not in BUFFERS:
            probs.append(Problem(f"unknown buffer {name!r}; buffers are {list(BUFFERS)}", key="sram_bytes",
                                 hint=did_you_mean(str(name), BUFFERS)))
            continue
        if v is None:
            continue
        if isinstance(v, str):
            try:
                v = parse_size(v)
            except UnitError as e:
                probs.append(Problem(str(e), key=f"sram_bytes.{name}"))
                continue
        if (isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating))
                or not v >= 1 or math.isinf(v)):
            probs.append(Problem(f"expected a size of at least 1 byte, got {v!r}", key=f"sram_bytes.{name}"))
            continue
        caps[name] = int(v)
    return caps


def simulate_gemm(rows: int, cols: int, dataflow: str, m: int, n: int, k: int, *,
                  sram_bytes: Mapping | None = None, dram_bytes_per_cycle: float | None = None,
                  word_bytes: int = 2) -> GemmSim:
    """Simulate ifmap (m x k) @ filter (k x n) = ofmap (m x n) on a rows x cols systolic array.

    Compute (see ``attnsim.sim.systolic_kernels`` for the per-cycle schedule): the problem is
    cut into folds of the array; every fold is walked cycle by cycle (skewed operand streams,
    stationary-block load, partial-sum drain); a fold lasts L = T + R + C - 2 cycles (os) or
    2R + C + T - 2 (ws, is), T the streamed extent (os: k, ws: m, is: n), so
    ``compute_cycles = folds x L``. This is SCALE-Sim 3.0.0's schedule; its "Total Cycles"
    prints compute_cycles - 1 (the 0-based index of the last cycle; see tests/sim).

    Memory model (``sram_bytes``: capacities of the ifmap, filter and ofmap buffers in bytes,
    a missing key or None meaning unlimited; ``dram_bytes_per_cycle``: None = unlimited):

    * An operand whose whole matrix fits in its buffer stays resident: each fold block is read
      from DRAM once, when first used. Otherwise the buffer is double-buffered: each half
      holds one fold's block (ifmap/filter ru x T or T x cu streamed blocks, ru x cu stationary
      blocks; see ``_block_words``), a block is read again whenever it differs from the previous
      fold's, and a block larger than half the buffer is an error (SpecError) - never guessed.
    * The next fold's missing blocks are requested when the current fold starts; fold 0's at
      cycle 0. A fold starts when the previous one ends and its blocks have arrived.
    * Output blocks (os: each fold's ru x cu; ws/is: the T x cu block accumulated over the row
      folds, held in the ofmap buffer) are written back when final. Unless the whole ofmap fits,
      a fold starting output block b waits until block b - 2 has been written back.
    * One DRAM channel serves reads and writes first-come-first-served, ceil(bytes / bandwidth)
      cycles per transfer. ``cycles`` = max(end of last fold, end of last write-back);
      ``stall_cycles = cycles - compute_cycles`` (includes the first fill and the last drain).

    SRAM counts follow SCALE-Sim: a word read at an array edge is one read; every output leaving
    the array is one ofmap write (ws/is write partial sums once per row fold); partial-sum reads
    for accumulation are not counted.
    """
    probs: list[Problem] = []
    for key, v in (("rows", rows), ("cols", cols), ("m", m), ("n", n), ("k", k), ("word_bytes", word_bytes)):
        _check_positive_int(probs, key, v)
    if dataflow not in DATAFLOWS:
        probs.append(Problem(f"unknown dataflow {dataflow!r}; expected one of {list(DATAFLOWS)}", key="dataflow",
                             hint=did_you_mean(str(dataflow), DATAFLOWS)))
    caps = _read_sram(sram_bytes, probs)
    bw = 0.0
    if dram_bytes_per_cycle is not None:
        if (isinstance(dram_bytes_per_cycle, bool)
                or not isinstance(dram_bytes_per_cycle, (int, float, np.integer, np.floating))
                or not dram_bytes_per_cycle > 0 or math.isinf(dram_bytes_per_cycle)):
            probs.append(Problem(f"expected a positive number of bytes per cycle, got {dram_bytes_per_cycle!r}",
                                 key="dram_bytes_per_cycle", hint="None means unlimited"))
        else:
            bw = float(dram_bytes_per_cycle)
    if probs:
        raise SpecError(probs)
    rows, cols, m, n, k, word_bytes = (int(x) for x in (rows, cols, m, n, k, word_bytes))
    blocks = _block_words(dataflow, rows, cols, m, n, k)
    total = {"ifmap": m * k, "filter": k * n, "ofmap": m * n}
    for b in BUFFERS:
        cap = caps[b]
        if cap >= 0 and total[b] * word_bytes > cap and 2 * blocks[b] * word_bytes > cap:
            probs.append(Problem(
                f"a {cap} B {b} buffer holds neither the whole {b} ({total[b] * word_bytes} B) nor two "
                f"{dataflow} fold blocks of {blocks[b] * word_bytes} B (double buffering)", key=f"sram_bytes.{b}",
                hint=f"give at least {min(total[b], 2 * blocks[b]) * word_bytes} B"))
    if probs:
        raise SpecError(probs)
    o = K.simulate_gemm_kernel(K.DATAFLOW_CODES[dataflow], rows, cols, m, n, k, word_bytes,
                               caps["ifmap"], caps["filter"], caps["ofmap"], bw)
    return GemmSim(
        rows=rows, cols=cols, dataflow=dataflow, m=m, n=n, k=k, word_bytes=word_bytes,
        cycles=int(o[K.G_CYCLES]), compute_cycles=int(o[K.G_COMPUTE]), stall_cycles=int(o[K.G_STALL]),
        folds=int(o[K.G_FOLDS]), fold_cycles=int(o[K.G_FOLD_CYCLES]), macs=int(o[K.G_MACS]),
        mapped_pe_folds=int(o[K.G_MAPPED]),
        sram_reads=MappingProxyType({"ifmap": int(o[K.G_SRAM_IF]), "filter": int(o[K.G_SRAM_FL])}),
        sram_writes=MappingProxyType({"ofmap": int(o[K.G_SRAM_OF])}),
        dram_reads=MappingProxyType({"ifmap": int(o[K.G_DRAM_IF]), "filter": int(o[K.G_DRAM_FL])}),
        dram_writes=MappingProxyType({"ofmap": int(o[K.G_DRAM_OF])}),
        sram_peak_words_per_cycle=MappingProxyType({"ifmap": int(o[K.G_PEAK_IF]), "filter": int(o[K.G_PEAK_FL]),
                                                    "ofmap": int(o[K.G_PEAK_OF])}),
        dram_busy_cycles=int(o[K.G_DRAM_BUSY]))


@functools.lru_cache(maxsize=4096)
def _gemm(rows: int, cols: int, dataflow: str, m: int, n: int, k: int) -> GemmSim:
    """Unlimited-buffer GEMM, cached by shape (attention reuses a handful of tile shapes)."""
    return simulate_gemm(rows, cols, dataflow, m, n, k)


# ================================================================ attention

SUPPORTED_MASKS = ("full", "causal", "window")


def _row_blocks(w, bm: int, bn: int) -> list[tuple[int, list[tuple[int, int]]]]:
    """Per query-tile row: (rows in it, [(key tile j, keys in it), ...]) of the non-empty tiles.

    Row m sees keys up to m + N - M (bottom-right aligned) under causal and window masks; a
    window of W keys starts at m + N - M - W + 1, and the first `sink` keys stay visible.

        causal, 4 x 4 tiles      window + sink        (# computed, . skipped; a computed
            # . . .                  # . . .           tile is computed whole: the array
            # # . .                  # # . .           does not skip masked elements)
            # # # .                  # # # .
            # # # #                  # . # #
    """
    M, N = w.seq_q, w.seq_kv
    off = N - M
    kind, window, sink = w.mask.kind, w.mask.window, w.mask.sink
    ncol = -(-N // bn)

    def keys(j):
        return min(N, (j + 1) * bn) - j * bn

    out = []
    for r0 in range(0, M, bm):
        r1 = min(M, r0 + bm) - 1
        if kind == "full":
            js = range(ncol)
        else:
            a = max(r0, -off)  # rows before a see no key
            if a > r1:
                js = range(0)
            else:
                hi = min(r1 + off, N - 1)
                lo = 0 if kind == "causal" else max(0, a + off - window + 1)
                js = range(lo // bn, hi // bn + 1)
                s_end = min(sink, hi + 1) if kind == "window" else 0
                if s_end > 0 and (s_end - 1) // bn < lo // bn:  # sink tiles left of the window
                    js = list(range((s_end - 1) // bn + 1)) + list(js)
                elif s_end > 0:
                    js = range(0, hi // bn + 1)
        out.append((r1 - r0 + 1, [(j, keys(j)) for j in js]))
    return out


def _softmax_cycles(exps: int, vec_ops: int, exp_rate: float, lanes: float) -> int:
    """1D array: the exp units and the ALU lanes work concurrently; the slower sets the time."""
    return max(math.ceil(exps / exp_rate), math.ceil(vec_ops / lanes))


def simulate_attention(arch, workload, mapping=None):
    """Cycle-level attention on a spatial arch (2D MAC array + 1D vector array + GLB + DRAM).

    Every GEMM tile runs through ``simulate_gemm`` (cached by shape, unlimited buffers: the
    GLB feeds the array); the 1D array spends max(ceil(exps / exp_per_cycle),
    ceil(vector ops / vector_ops_per_cycle)) cycles on a softmax step (4 vector ops per score
    element, as the analytical model). Query tiles are block_m rows, key tiles block_n keys;
    partial edge tiles keep their true size; tiles the mask empties are skipped.

    * ``fused`` (FuseMax): online softmax per (query tile, key tile); a two-stage pipeline run
      as an event loop over tiles (``two_array_schedule``). The 2D array runs
      QK_0, QK_1, PV_0, QK_2, PV_1, ... so tile i's softmax (exps bm*bn + bm for the rescale,
      vector ops 4*bm*bn + bm*F) overlaps tile i+1's QK^T; PV_i waits for softmax i.
    * ``row_fused`` (FLAT): per query tile, QK^T of all its key tiles, then the softmax of the
      whole bm x N_row block (no online rescale), then PV; 2D, 1D, 2D serialized. The fp32
      score block must fit in the GLB.
    * ``unfused``: per head, S = QK^T as one GEMM, softmax, O = PV as one GEMM, each phase
      streaming through DRAM (S written, read, P written, read); a phase lasts
      max(compute cycles, ceil(its DRAM bytes / bandwidth)); phases and heads serialize.

    DRAM (fused, row_fused): a GEMM tile needs its K (QK^T) or V (PV) tile, and the first QK^T
    of a query tile its Q tile, in the GLB before it starts; the next 2D job's operands are
    requested when the current one starts; O is written back after a query tile's last PV.
    K/V stay in the GLB across query tiles when one KV head's K and V fit in half of it (then
    the first query head of each KV group fetches each tile once); otherwise every query tile
    refetches them. One FCFS channel at the DRAM bandwidth x hbm efficiency. GLB traffic
    counts the arrays' SRAM reads and writes (from the GEMM simulations), the 1D array reading
    S and writing P, and the DRAM fills and drains.
    """
    arch, w, mp = resolve(arch, workload, mapping)
    if arch.kind != "spatial" or arch.array is None:
        raise SpecError(Problem(f"arch {arch.name!r} is a {arch.kind} arch; the spatial simulator needs a "
                                "spatial arch with an `array` section", key="arch.kind"))
    if w.mask.kind not in SUPPORTED_MASKS:
        raise MappingError(Problem(f"the cycle-level spatial simulator handles masks {list(SUPPORTED_MASKS)}, "
                                   f"not {w.mask.kind!r}", key="workload.mask",
                                   hint="use attnsim.predict (the analytical model) for this mask"))
    if not (_is_int(mp.block_m) and _is_int(mp.block_n) and mp.block_m >= 1 and mp.block_n >= 1):
        raise MappingError(Problem(f"block_m and block_n must be positive integers, got {mp.block_m!r}, "
                                   f"{mp.block_n!r}", key="mapping"))
    if mp.style not in ("unfused", "row_fused", "fused"):
        raise MappingError(Problem(f"unknown spatial style {mp.style!r}", key="mapping.style"))
    c = _Setup.of(arch, w, mp)
    counts = _unfused(c) if mp.style == "unfused" else _tiled(c, w, mp.style)
    return _result(arch, w, mp, c, counts)


@dataclass(frozen=True)
class _Setup:
    """The numbers a schedule needs: array, rates (per cycle), sizes, tiles."""

    R: int
    C: int
    df: str
    bw: float  # DRAM bytes per cycle (sustained)
    exp_rate: float
    lanes: float
    glb_bytes: float
    eb: int  # bytes per element
    bh: int  # query heads, all batches
    group: int  # query heads per KV head
    n_first: int  # heads that fetch a KV head's K/V (the first of each group)
    M: int
    N: int
    D: int
    F: int
    bm: int
    bn: int

    @classmethod
    def of(cls, arch, w, mp) -> "_Setup":
        a, dram = arch.array, arch.levels[0]
        return cls(R=a.rows, C=a.cols, df=a.dataflow,
                   bw=dram.bandwidth_bytes_per_s * arch.efficiency.hbm_bandwidth / arch.clock_hz,
                   exp_rate=arch.compute.exp_per_cycle, lanes=arch.compute.vector_ops_per_cycle,
                   glb_bytes=arch.levels[1].capacity_bytes, eb=w.dtype_bytes, bh=w.batch * w.heads,
                   group=w.group, n_first=w.batch * w.kv_heads, M=w.seq_q, N=w.seq_kv, D=w.head_dim,
                   F=w.value_dim, bm=min(mp.block_m, w.seq_q), bn=min(mp.block_n, w.seq_kv))

    def gemm(self, m: int, n: int, k: int) -> GemmSim:
        return _gemm(self.R, self.C, self.df, m, n, k)

    def softmax(self, exps: int, vec_ops: int) -> int:
        return _softmax_cycles(exps, vec_ops, self.exp_rate, self.lanes)


@dataclass(frozen=True)
class _Counts:
    """What a schedule did, all heads together: cycles, bytes, operations."""

    total: int
    busy_2d: int
    busy_1d: int
    dram_busy: int
    idle_2d_dram: int
    idle_2d_1d: int
    tail: int  # cycles after the 2D array's last job (last softmax, last write-back)
    dram_bytes: int
    macs: int
    tiles: int  # tile visits (unfused: one whole-head tile per head)
    exps: int
    vec: int
    glb_words: int  # words the arrays move to and from the GLB


def _glb_words(g: GemmSim) -> int:
    return g.sram_reads["ifmap"] + g.sram_reads["filter"] + g.sram_writes["ofmap"]


def _unfused(c: _Setup) -> _Counts:
    """Per head: S = QK^T, softmax, O = PV, each phase streaming through DRAM; all serialized."""
    M, N, D, F, eb = c.M, c.N, c.D, c.F, c.eb
    qk, pv = c.gemm(M, N, D), c.gemm(M, F, N)
    sm = c.softmax(M * N, VOPS * M * N)
    phases = [(qk.compute_cycles, (M * D + N * D + M * N) * eb),  # read Q, K; write S
              (sm, 2 * M * N * eb),  # read S; write P
              (pv.compute_cycles, (M * N + N * F + M * F) * eb)]  # read P, V; write O
    dma = [0 if c.bw <= 0 else math.ceil(b / c.bw) for _, b in phases]
    wait = [max(0, d - cyc) for (cyc, _), d in zip(phases, dma)]
    return _Counts(total=c.bh * sum(max(cyc, d) for (cyc, _), d in zip(phases, dma)),
                   busy_2d=c.bh * (qk.compute_cycles + pv.compute_cycles), busy_1d=c.bh * sm,
                   dram_busy=c.bh * sum(dma), idle_2d_dram=c.bh * sum(wait), idle_2d_1d=c.bh * sm, tail=0,
                   dram_bytes=c.bh * sum(b for _, b in phases), macs=c.bh * (qk.macs + pv.macs), tiles=c.bh,
                   exps=c.bh * M * N, vec=c.bh * VOPS * M * N,
                   glb_words=c.bh * (_glb_words(qk) + _glb_words(pv) + 2 * M * N))


class _Jobs:
    """One head's job lists for ``two_array_schedule``, with the DRAM bytes each 2D job needs."""

    def __init__(self, c: _Setup):
        self.c = c
        self.kv_resident = c.N * (c.D + c.F) * c.eb <= c.glb_bytes / 2
        self.seen: set[tuple[str, int]] = set()
        self.d2 = {k: [] for k in ("dur", "first", "other", "out", "wait")}
        self.d1 = {k: [] for k in ("dur", "after")}
        self.macs = self.exps = self.vec = self.glb_words = 0

    def kv(self, which: str, j: int, tn: int) -> tuple[int, int]:
        """(bytes for the first head of a KV group, for the others) of K or V tile j."""
        nbytes = tn * (self.c.D if which == "K" else self.c.F) * self.c.eb
        if not self.kv_resident:
            return nbytes, nbytes
        first_use = (which, j) not in self.seen
        self.seen.add((which, j))
        return (nbytes if first_use else 0), 0

    def add2(self, g: GemmSim, inputs: tuple[int, int], out: int, wait: int = -1) -> int:
        for key, v in zip(("dur", "first", "other", "out", "wait"), (g.compute_cycles, *inputs, out, wait)):
            self.d2[key].append(v)
        self.macs += g.macs
        self.glb_words += _glb_words(g)
        return len(self.d2["dur"]) - 1

    def add1(self, after: int, exps: int, vec: int, scores: int) -> int:
        self.d1["dur"].append(self.c.softmax(exps, vec))
        self.d1["after"].append(after)
        self.exps, self.vec = self.exps + exps, self.vec + vec
        self.glb_words += 2 * scores  # read S, write P
        return len(self.d1["dur"]) - 1


def _fused_jobs(c: _Setup, blocks, jobs: _Jobs) -> None:
    """2D order QK_0, QK_1, PV_0, QK_2, PV_1, ...: softmax i overlaps QK_{i+1}; PV_i waits for it."""
    flat = [(tm, j, tn, i == 0, i == len(ts) - 1) for tm, ts in blocks for i, (j, tn) in enumerate(ts)]
    softmax_of = []

    def pv(s: int) -> None:
        tm, j, tn, _, last = flat[s]
        jobs.add2(c.gemm(tm, c.F, tn), jobs.kv("V", j, tn), tm * c.F * c.eb if last else 0, softmax_of[s])

    for s, (tm, j, tn, first, _) in enumerate(flat):
        q = tm * c.D * c.eb if first else 0
        kf, ko = jobs.kv("K", j, tn)
        x = jobs.add2(c.gemm(tm, tn, c.D), (kf + q, ko + q), 0)
        softmax_of.append(jobs.add1(x, tm * tn + tm, VOPS * tm * tn + tm * c.F, tm * tn))
        if s >= 1:
            pv(s - 1)
    if flat:
        pv(len(flat) - 1)


def _row_fused_jobs(c: _Setup, blocks, jobs: _Jobs) -> None:
    """Per query tile: all its QK^T, then one softmax over the whole row block, then all its PV."""
    for tm, ts in blocks:
        if not ts:
            continue
        nk = sum(tn for _, tn in ts)
        if tm * nk * 4 > c.glb_bytes:
            raise MappingError(Problem(
                f"GLB overflows: row_fused keeps a {tm} x {nk} fp32 score block ({tm * nk * 4 / 2**20:.2f} MiB) "
                f"on chip, GLB holds {c.glb_bytes / 2**20:.2f} MiB", key="mapping.block_m",
                hint="use style fused, or a smaller block_m"))
        for i, (j, tn) in enumerate(ts):
            q = tm * c.D * c.eb if i == 0 else 0
            kf, ko = jobs.kv("K", j, tn)
            last_qk = jobs.add2(c.gemm(tm, tn, c.D), (kf + q, ko + q), 0)
        sm = jobs.add1(last_qk, tm * nk, VOPS * tm * nk, tm * nk)
        for i, (j, tn) in enumerate(ts):
            out = tm * c.F * c.eb if i == len(ts) - 1 else 0
            jobs.add2(c.gemm(tm, c.F, tn), jobs.kv("V", j, tn), out, sm if i == 0 else -1)


def _tiled(c: _Setup, w, style: str) -> _Counts:
    blocks = _row_blocks(w, c.bm, c.bn)
    jobs = _Jobs(c)
    (_fused_jobs if style == "fused" else _row_fused_jobs)(c, blocks, jobs)
    if not jobs.d2["dur"]:
        raise MappingError(Problem("the mask leaves no (query, key) tile to compute", key="workload.mask"))
    arr = functools.partial(np.asarray, dtype=np.int64)
    d2, d1 = jobs.d2, jobs.d1
    o = K.two_array_schedule(c.bh, c.group, arr(d2["dur"]), arr(d2["first"]), arr(d2["other"]), arr(d2["out"]),
                             arr(d2["wait"]), arr(d1["dur"]), arr(d1["after"]), float(c.bw))
    out_bytes = sum(d2["out"])
    empty_rows = sum(tm for tm, ts in blocks if not ts)  # rows the mask empties still write their O rows
    dram = (c.n_first * (sum(d2["first"]) + out_bytes) + (c.bh - c.n_first) * (sum(d2["other"]) + out_bytes)
            + c.bh * empty_rows * c.F * c.eb)
    return _Counts(total=int(o[K.S_TOTAL]), busy_2d=int(o[K.S_BUSY_2D]), busy_1d=int(o[K.S_BUSY_1D]),
                   dram_busy=int(o[K.S_DRAM_BUSY]), idle_2d_dram=int(o[K.S_IDLE_2D_DRAM]),
                   idle_2d_1d=int(o[K.S_IDLE_2D_1D]), tail=int(o[K.S_TAIL]), dram_bytes=dram,
                   macs=c.bh * jobs.macs, tiles=c.bh * sum(len(ts) for _, ts in blocks), exps=c.bh * jobs.exps,
                   vec=c.bh * jobs.vec, glb_words=c.bh * jobs.glb_words)


def _result(arch, w, mp, c: _Setup, n: _Counts):
    from attnsim import __version__
    from attnsim.model.result import Result
    dram, glb = arch.levels[0], arch.levels[1]
    glb_bytes = n.glb_words * c.eb + n.dram_bytes  # the arrays' accesses plus DRAM fills and drains
    clock = arch.clock_hz
    latency = n.total / clock + arch.efficiency.launch_overhead_s
    busy = {"2D array": n.busy_2d, "1D array (softmax)": n.busy_1d, "DRAM": n.dram_busy}
    order = sorted(busy.values(), reverse=True)
    allowed = _allowed_pairs(w)
    return Result(
        arch=arch.name, workload=w.label(), mapping=mp.label(), model="spatial-cycle",
        latency_s=latency, bound=max(busy, key=busy.get),
        bound_margin=order[0] / order[1] if order[1] > 0 else float("inf"),
        useful_flops=2.0 * c.bh * allowed * (c.D + c.F), executed_flops=2.0 * n.macs,
        traffic_bytes={dram.name: float(n.dram_bytes), glb.name: float(glb_bytes)},
        utilization={"2D array": n.busy_2d / n.total, "1D array": n.busy_1d / n.total,
                     dram.name: n.dram_busy / n.total, "2D array PEs": n.macs / (n.total * c.R * c.C)},
        energy_j={dram.name: n.dram_bytes * dram.read_energy_pj_per_byte * 1e-12,
                  glb.name: glb_bytes * glb.read_energy_pj_per_byte * 1e-12,
                  "mac": 2.0 * n.macs * arch.energy.matrix_pj_per_flop * 1e-12,
                  "exp": n.exps * arch.energy.exp_pj_per_op * 1e-12,
                  "vector": n.vec * arch.energy.vector_pj_per_op * 1e-12,
                  "static": arch.energy.static_power_w * latency},
        times_s={"total": n.total / clock, "2D array busy": n.busy_2d / clock, "1D array busy": n.busy_1d / clock,
                 "DRAM busy": n.dram_busy / clock, "2D idle waiting on DRAM": n.idle_2d_dram / clock,
                 "2D idle waiting on 1D": n.idle_2d_1d / clock, "after the last 2D job": n.tail / clock},
        occupancy={"array_rows": c.R, "array_cols": c.C, "vector_lanes": c.lanes, "block_m": c.bm,
                   "block_n": c.bn},
        counts={"cycles": float(n.total), "2D busy cycles": float(n.busy_2d), "1D busy cycles": float(n.busy_1d),
                "DRAM busy cycles": float(n.dram_busy), "2D idle cycles waiting on DRAM": float(n.idle_2d_dram),
                "2D idle cycles waiting on 1D": float(n.idle_2d_1d), "tile visits": float(n.tiles),
                "macs": float(n.macs), "exps": float(n.exps), "vector ops": float(n.vec),
                "allowed (m,n) pairs per (b,h)": allowed},
        provenance={"attnsim": __version__, "model": "spatial-cycle", "arch_hash": arch.spec_hash,
                    "arch_file": arch.file, "mapping": repr(mp)},
    )


def _allowed_pairs(w) -> float:
    """(m, n) pairs the mask allows in one (batch, head), from the analytical model's closed form."""
    code = {"full": GK.MK_FULL, "causal": GK.MK_CAUSAL, "window": GK.MK_WINDOW}[w.mask.kind]
    return float(GK.allowed_in_rows(code, 0, w.seq_q - 1, w.seq_q, w.seq_kv, w.mask.window, w.mask.sink))
