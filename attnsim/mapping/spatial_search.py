"""The spatial-array mapper: tile sizes, loop order and GLB residency for the attention cascade.

A point of the space (``SpatialSearchMapping``) extends ``SpatialMapping`` (style, block_m,
block_n) with what the mapper also chooses:

    q_heads_per_tile  g query heads of one KV head share a query tile (block_m = g x positions)
    loop_order        'q_outer'  query tiles outer, key tiles inner: the Q tile and its
                                 online-softmax state are stationary in the GLB, K/V stream
                      'kv_outer' key tiles outer: the K/V tile is stationary, query tiles
                                 stream past it and their state is spilled between key tiles
    resident          the streamed operand stays whole in the GLB across the outer loop
                      (K/V for q_outer, every Q row and its state for kv_outer)

Evaluation, vectorized over every point (per (batch, KV head) group, then x B*Hkv):

    compute   as ``attnsim.model.spatial.predict_spatial`` (systolic fill/drain per fold; the 2D
              and 1D arrays pipelined (fused) or taking turns (row_fused); unfused: whole GEMMs)
    GLB       footprint <= capacity, else illegal (reasons counted per style)
    DRAM      per loop order (the formulas are in ``_dram_bytes``); every schedule here is a
              member of the classes ``attnsim.model.lower_bounds`` bounds, with at least the
              bound's footprint, so its traffic is never below the bound at its capacity
    latency   max(compute, DRAM, GLB time) + launch, as predict_spatial

Where this model and ``predict_spatial`` differ: predict_spatial checks no GLB capacity for
the fused style, keeps K/V resident when a head's K/V fit half the GLB, and otherwise charges
one K/V re-read per query tile of one head (whatever G); here the traffic follows the mapping's
loop order, residency and head packing, and a mapping that does not fit is illegal.
"""
from __future__ import annotations

import dataclasses

import time
from dataclasses import dataclass, fields

import numpy as np

from attnsim import __version__
from attnsim.arch import Arch, load_arch
from attnsim.errors import MappingError, Problem
from attnsim.mapping.search import MapperResult, count_reasons, objective_values, rank, tiebreak_values, ties
from attnsim.mapping.spatial import SPATIAL_STYLES, SpatialMapping
from attnsim.model import gpu_kernel as K
from attnsim.model.lower_bounds import ACC_BYTES, block_stats_many
from attnsim.model.result import Result
from attnsim.spec.schema import did_you_mean
from attnsim.workload.spec import Workload, load_workload

LOOP_ORDERS = ("q_outer", "kv_outer")
SPATIAL_OBJECTIVES = ("latency", "energy", "edp", "dram")
STYLE_CODE = {s: i for i, s in enumerate(SPATIAL_STYLES)}  # unfused 0, row_fused 1, fused 2
UNFUSED, ROW_FUSED, FUSED = (STYLE_CODE[s] for s in ("unfused", "row_fused", "fused"))


@dataclass(frozen=True)
class SpatialSearchMapping:
    style: str = "fused"
    block_m: int = 256  # query rows per tile: q_heads_per_tile x positions
    block_n: int = 256  # keys per tile
    q_heads_per_tile: int = 1
    loop_order: str = "q_outer"
    resident: bool = False
    dataflow: str = ""  # spatial unrolling of the array ('os', 'ws', 'is'); '' = the arch's own

    @property
    def positions(self) -> int:
        return self.block_m // self.q_heads_per_tile

    def label(self) -> str:
        res = {"q_outer": "kv-resident", "kv_outer": "q-resident"}[self.loop_order] if self.resident else ""
        pack = f"-g{self.q_heads_per_tile}" if self.q_heads_per_tile > 1 else ""
        return (f"{self.style}-{self.block_m}x{self.block_n}{pack}-{self.loop_order}" + (f"-{res}" if res else "")
                + (f"-{self.dataflow}" if self.dataflow else ""))

    def to_spatial_mapping(self) -> tuple[SpatialMapping, dict]:
        """The plain SpatialMapping (block_m in query positions) and the mapper's extra parameters."""
        return (SpatialMapping(style=self.style, block_m=self.positions, block_n=self.block_n, name=self.label()),
                {"q_heads_per_tile": self.q_heads_per_tile, "loop_order": self.loop_order, "resident": self.resident,
                 "dataflow": self.dataflow})


def tile_sizes(extent: int, array_dim: int) -> tuple[int, ...]:
    """Powers of two and multiples of the array dimension up to the extent, and the extent."""
    vals = {1 << i for i in range(extent.bit_length()) if 1 << i <= extent}
    vals |= set(range(array_dim, extent + 1, array_dim)) | {extent}
    return tuple(sorted(vals))


# ---------------------------------------------------------------- enumeration and statistics

@dataclass(frozen=True)
class _Space:
    style: np.ndarray
    bp: np.ndarray  # query positions per tile
    bn: np.ndarray
    g: np.ndarray
    order: np.ndarray  # index into LOOP_ORDERS
    resident: np.ndarray

    def take(self, idx) -> "_Space":
        return _Space(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def __len__(self) -> int:
        return len(self.bp)

    def mapping(self, i: int) -> SpatialSearchMapping:
        return SpatialSearchMapping(style=SPATIAL_STYLES[int(self.style[i])], block_m=int(self.g[i] * self.bp[i]),
                                    block_n=int(self.bn[i]), q_heads_per_tile=int(self.g[i]),
                                    loop_order=LOOP_ORDERS[int(self.order[i])], resident=bool(self.resident[i]))


def _enumerate(arch: Arch, w: Workload, styles) -> _Space:
    bps = tile_sizes(w.seq_q, arch.array.rows)
    bns = tile_sizes(w.seq_kv, arch.array.cols)
    gs = [g for g in range(1, w.group + 1) if w.group % g == 0]
    mesh = np.meshgrid([STYLE_CODE[s] for s in styles], bps, bns, gs, range(len(LOOP_ORDERS)), [0, 1],
                       indexing="ij")
    return _Space(*(m.ravel().astype(np.int64) for m in mesh))


def _stats(w: Workload, bp: np.ndarray, bn: np.ndarray) -> dict[str, np.ndarray]:
    """Mask statistics per point, computed once per query-tile size for all its key tiles."""
    table = pair_stats(w, bp, bn)
    return {"tiles": table[:, 0], "lmax": table[:, 1], "qblocks": table[:, 2], "allowed": table[:, 3],
            "nonempty": table[:, 4]}


def pair_stats(w: Workload, bp: np.ndarray, bn: np.ndarray) -> np.ndarray:
    """[n, 7] rows of ``lower_bounds.block_stats_many`` (tiles, max tiles, query blocks, allowed,
    non-empty blocks, full tiles, min tiles), one per (bp, bn) point."""
    out = np.empty((len(bp), 7))
    for b in np.unique(bp):
        sel = np.flatnonzero(bp == b)
        bns, inv = np.unique(bn[sel], return_inverse=True)
        cols = block_stats_many(w, int(b), tuple(int(x) for x in bns))
        out[sel] = np.stack([np.asarray(c, dtype=float) for c in cols], axis=1)[inv.ravel()]
    return out


# ---------------------------------------------------------------- footprint, traffic, compute

def _footprint(p: _Space, w: Workload) -> np.ndarray:
    """GLB bytes a point holds (double-buffered streamed tiles so DRAM loads overlap compute)."""
    e, d, f, n = w.dtype_bytes, w.head_dim, w.value_dim, w.seq_kv
    st = (f + 2) * ACC_BYTES
    bm, bn = p.g * p.bp, p.bn
    kv_all = n * (d + f) * e
    q_outer = p.order == 0
    res = p.resident > 0
    s_tile = bm * bn * ACC_BYTES
    fused_q = bm * d * e + bm * st + s_tile + np.where(res, kv_all, 2 * bn * (d + f) * e)
    fused_kv = bn * (d + f) * e + s_tile + np.where(res, w.group * w.seq_q * (d * e + st), 2 * bm * (d * e + st))
    # row_fused: the whole fp32 score row block stays on chip (predict_spatial's rule, bm x N)
    row_q = bm * d * e + bm * n * ACC_BYTES + bm * st + np.where(res, kv_all, 2 * bn * (d + f) * e)
    qk = np.where(q_outer, bm * d * e + 2 * bn * d * e, bn * d * e + 2 * bm * d * e) + s_tile
    pv = np.where(q_outer, bm * f * ACC_BYTES + 2 * (bm * bn * e + bn * f * e),
                  bn * f * e + 2 * (bm * bn * e + bm * f * ACC_BYTES))
    return np.select([p.style == FUSED, p.style == ROW_FUSED],
                     [np.where(q_outer, fused_q, fused_kv), row_q], np.maximum(qk, pv)).astype(float)


def _dram_bytes(p: _Space, w: Workload, st_: dict, glb_bytes: float) -> np.ndarray:
    """DRAM bytes of the whole call. Per group (G heads of one KV head), with g heads per tile,
    T = tiles per head at (positions, block_n), QB = query tiles, NE = non-empty query tiles:

    fused / row_fused, q_outer: |Q| + |O| + (G/g) T bn (D+F) e   (K/V once if resident or one key tile)
    fused, kv_outer:  |K| + |V| + (G/g) [(T + QB - NE) bm D e + 2 (T - NE) bm st] + |O|
                      (Q and state once if resident or one query tile covers the group)
    unfused: S dense, written and read, P written and read (S read twice when an fp32 row of S,
             N x 4 bytes, does not fit: online max/sum, then normalize), and per GEMM
             q_outer  QK: |Q| + (G/g) QB N D e      PV: (G/g) QB N F e + |O|
             kv_outer QK: |K| + |Q| ceil(N/bn)      PV: |V| + 2 (ceil(N/bn) - 1) (G/g) QB bm F 4 + |O|
    """
    e, d, f, m, n, gq = w.dtype_bytes, w.head_dim, w.value_dim, w.seq_q, w.seq_kv, w.group
    st = (f + 2) * ACC_BYTES
    q, o, k, v = gq * m * d * e, gq * m * f * e, n * d * e, n * f * e
    bm, bn = p.g * p.bp, p.bn
    sub = gq // p.g
    tiles, qb, ne = st_["tiles"], st_["qblocks"], st_["nonempty"]
    kblocks = -(-n // bn)
    q_outer = p.order == 0
    kv_once = (p.resident > 0) | (kblocks == 1)
    stream_q = q + o + np.where(kv_once, k + v, sub * tiles * bn * (d + f) * e)
    q_once = (p.resident > 0) | ((p.g == gq) & (qb == 1))
    stream_kv = k + v + o + np.where(q_once, q, sub * ((tiles + qb - ne) * bm * d * e + 2 * (tiles - ne) * bm * st))
    s_reads = np.where(n * ACC_BYTES <= glb_bytes, 1, 2)
    s_dense = gq * m * n * e
    qk = np.where(q_outer, q + sub * qb * n * d * e, k + q * kblocks)
    pv = np.where(q_outer, sub * qb * n * f * e + o, v + 2 * (kblocks - 1) * sub * qb * bm * f * ACC_BYTES + o)
    unfused = qk + pv + (3 + s_reads) * s_dense
    per_group = np.select([p.style == UNFUSED, q_outer], [unfused, stream_q], stream_kv)
    return per_group * w.batch * w.kv_heads


def _tile_cycles(bm: np.ndarray, bn: np.ndarray, d: int, f: int, rows: int, cols: int, dataflow: str):
    """2D-array cycles of one (query tile, key tile): QK^T (bm x bn, reduction D) plus PV (bm x F,
    reduction bn), from ``systolic_gemm_cycles`` once per distinct tile shape."""
    from attnsim.model.spatial import systolic_gemm_cycles
    pairs, inv = np.unique(np.stack([bm, bn], axis=1), axis=0, return_inverse=True)
    per = np.array([systolic_gemm_cycles(int(m), int(n), d, rows, cols, dataflow)
                    + systolic_gemm_cycles(int(m), f, int(n), rows, cols, dataflow) for m, n in pairs], dtype=float)
    return per[inv.ravel()]


def _compute(p: _Space, w: Workload, arch: Arch, st_: dict) -> dict[str, np.ndarray]:
    """Cycles of the 2D and 1D arrays, as predict_spatial counts them (query tiles of g x bp rows)."""
    from attnsim.model.spatial import systolic_gemm_cycles
    a = arch.array
    R, C, df = a.rows, a.cols, a.dataflow
    exp_rate, lanes = arch.compute.exp_per_cycle, arch.compute.vector_ops_per_cycle
    M, N, D, F = w.seq_q, w.seq_kv, w.head_dim, w.value_dim
    bh = w.batch * w.heads
    bm, bn = p.g * p.bp, p.bn
    visits = bh // p.g * st_["tiles"]  # (query tile, key tile) pairs
    t2d = _tile_cycles(bm, bn, D, F, R, C, df)
    t1d = np.maximum((bm * bn + bm) / exp_rate, (K.SOFTMAX_VECTOR_OPS_PER_ELEMENT * bm * bn + bm * F) / lanes)
    dense_elems = float(bh * M * N)
    u2d = bh * (systolic_gemm_cycles(M, N, D, R, C, df) + systolic_gemm_cycles(M, F, N, R, C, df))
    u1d = max(dense_elems / exp_rate, K.SOFTMAX_VECTOR_OPS_PER_ELEMENT * dense_elems / lanes)
    unf, fus = p.style == UNFUSED, p.style == FUSED
    c2d = np.where(unf, u2d, visits * t2d)
    c1d = np.where(unf, u1d, visits * t1d)
    cycles = np.where(unf, u2d + u1d, np.where(fus, visits * np.maximum(t2d, t1d), visits * (t2d + t1d)))
    elems = np.where(unf, dense_elems, visits * bm * bn)
    flops = np.where(unf, 2.0 * bh * M * N * (D + F), 2.0 * visits * bm * bn * (D + F))
    return {"cycles": cycles, "c2d": c2d, "c1d": c1d, "elems": elems, "flops": flops, "visits": visits}


@dataclass(frozen=True)
class SpatialEvaluation:
    """Every legal point of a search with its numbers (arrays, one entry per point)."""

    points: _Space
    cols: dict
    space_size: int
    illegal_reasons: dict
    pruned_reasons: dict


ILLEGAL = ["GLB overflow (GEMM tiles)", "GLB overflow (score row block)",
           "GLB overflow (tiles + online-softmax state)"]
PRUNED = ["row_fused needs the query tile outer", "unfused keeps nothing resident",
          "dominated (the resident variant fits)", "resident equals streamed (one tile covers it)"]


def _evaluate(arch: Arch, w: Workload, q: _Space, footprint: np.ndarray) -> dict[str, np.ndarray]:
    """Compute, traffic, time and energy of the points (arrays, one entry per point)."""
    glb, dram_lv = arch.levels[1], arch.levels[0]
    st_ = _stats(w, q.bp, q.bn)
    comp = _compute(q, w, arch, st_)
    dram = _dram_bytes(q, w, st_, glb.capacity_bytes)
    glb_bytes = dram + 2.0 * comp["flops"] / (2 * min(arch.array.rows, arch.array.cols))
    t_compute = comp["cycles"] / arch.clock_hz
    t_dram = dram / (dram_lv.bandwidth_bytes_per_s * arch.efficiency.hbm_bandwidth)
    t_glb = glb_bytes / (glb.bandwidth_bytes_per_s * arch.efficiency.l2_bandwidth)
    latency = np.maximum(np.maximum(t_compute, t_dram), t_glb) + arch.efficiency.launch_overhead_s
    vec = K.SOFTMAX_VECTOR_OPS_PER_ELEMENT * comp["elems"]
    en = {"DRAM": dram * dram_lv.read_energy_pj_per_byte * 1e-12,
          "GLB": glb_bytes * glb.read_energy_pj_per_byte * 1e-12,
          "mac": comp["flops"] * arch.energy.matrix_pj_per_flop * 1e-12,
          "exp": comp["elems"] * arch.energy.exp_pj_per_op * 1e-12,
          "vector": vec * arch.energy.vector_pj_per_op * 1e-12, "static": arch.energy.static_power_w * latency}
    return {**comp, **st_, "footprint": footprint, "dram": dram, "glb": glb_bytes, "t_compute": t_compute,
            "t_dram": t_dram, "t_glb": t_glb, "latency": latency, "vec": vec,
            "energy": sum(en.values()), **{f"e_{k}": v for k, v in en.items()}}


def _one_point(m: SpatialSearchMapping) -> _Space:
    return _Space(style=np.array([STYLE_CODE[m.style]]), bp=np.array([m.positions]), bn=np.array([m.block_n]),
                  g=np.array([m.q_heads_per_tile]), order=np.array([LOOP_ORDERS.index(m.loop_order)]),
                  resident=np.array([int(m.resident)]))


def evaluate_mapping(arch, workload, m: SpatialSearchMapping) -> Result:
    """The mapper's Result for one mapping (raises MappingError when it does not fit the GLB)."""
    arch = arch if isinstance(arch, Arch) else load_arch(arch)
    w = workload if isinstance(workload, Workload) else load_workload(workload)
    probs = []
    if m.style not in SPATIAL_STYLES:
        probs.append(Problem(f"expected one of {list(SPATIAL_STYLES)}, got {m.style!r}", key="style",
                             hint=did_you_mean(m.style, SPATIAL_STYLES)))
    if m.loop_order not in LOOP_ORDERS:
        probs.append(Problem(f"expected one of {list(LOOP_ORDERS)}, got {m.loop_order!r}", key="loop_order",
                             hint=did_you_mean(m.loop_order, LOOP_ORDERS)))
    if m.q_heads_per_tile < 1 or w.group % m.q_heads_per_tile or m.block_m % m.q_heads_per_tile:
        probs.append(Problem(f"must divide G = {w.group} and block_m = {m.block_m}; got {m.q_heads_per_tile}",
                             key="q_heads_per_tile"))
    if not (1 <= m.positions <= w.seq_q and 1 <= m.block_n <= w.seq_kv):
        probs.append(Problem(f"expected 1 <= block_m / q_heads_per_tile <= {w.seq_q} and 1 <= block_n <= "
                             f"{w.seq_kv}; got {m.positions} and {m.block_n}", key="block_m"))
    if probs:
        raise MappingError(probs)
    q = _one_point(m)
    fp = _footprint(q, w)
    glb = arch.levels[1]
    if fp[0] > glb.capacity_bytes:
        raise MappingError(Problem(f"{ILLEGAL[STYLE_CODE[m.style]]}: {m.label()} holds {fp[0] / 2**20:.2f} MiB, "
                                   f"{glb.name} holds {glb.capacity_bytes / 2**20:.2f} MiB", key="mapping",
                                   hint="smaller tiles, or not resident"))
    ev = SpatialEvaluation(points=q, cols=_evaluate(arch, w, q, fp), space_size=1, illegal_reasons={},
                           pruned_reasons={})
    return _result(arch, w, ev, 0)


def _require_spatial(arch: Arch) -> None:
    if arch.kind != "spatial":
        raise MappingError(Problem(f"search_spatial needs a spatial arch; {arch.name!r} is {arch.kind} "
                                   "(use attnsim.mapping.search.search_gpu)", key="arch"))


def evaluate_space(arch: Arch, w: Workload, styles=SPATIAL_STYLES) -> SpatialEvaluation:
    """Enumerate, prune, check the GLB and evaluate every point of the space."""
    _require_spatial(arch)
    for s in styles:
        if s not in SPATIAL_STYLES:
            raise MappingError(Problem(f"unknown spatial style {s!r}; expected some of {list(SPATIAL_STYLES)}",
                                       key="styles", hint=did_you_mean(s, SPATIAL_STYLES)))
    glb = arch.levels[1]
    p = _enumerate(arch, w, styles)
    space_size = len(p)
    fp = _footprint(p, w)
    fits = fp <= glb.capacity_bytes
    # the resident twin of each point sits right after it in enumeration order (resident is innermost)
    twin_fits = np.zeros_like(fits)
    twin_fits[:-1] = fits[1:]
    kblocks = -(-w.seq_kv // p.bn)
    one_tile = np.where(p.order == 0, kblocks == 1, (p.g == w.group) & (p.bp == w.seq_q))
    pr_rules = [(p.style == ROW_FUSED) & (p.order == 1), (p.style == UNFUSED) & (p.resident > 0),
                (p.resident == 0) & twin_fits & ~one_tile & (p.style != UNFUSED), (p.resident > 0) & one_tile]
    pruned = np.zeros(len(p), np.int64)
    for i in range(len(pr_rules) - 1, -1, -1):
        pruned[pr_rules[i]] = i + 1
    illegal = np.where((pruned == 0) & ~fits, 1 + p.style, 0)  # the style code picks the reason
    keep = (pruned == 0) & fits
    q = p.take(keep)
    cols = _evaluate(arch, w, q, fp[keep])
    return SpatialEvaluation(points=q, cols=cols, space_size=space_size,
                             illegal_reasons=count_reasons(illegal, ILLEGAL),
                             pruned_reasons=count_reasons(pruned, PRUNED))


def _ranked(ev: SpatialEvaluation, objective: str, top_k: int, sel=None) -> np.ndarray:
    """Indices (into the evaluation) of the best top_k points, optionally among `sel` only."""
    sel = np.arange(len(ev.points)) if sel is None else sel
    lat, en = ev.cols["latency"][sel], ev.cols["energy"][sel]
    tie = lat if objective == "dram" else tiebreak_values(lat, en, objective)
    return sel[rank(_objective(ev, objective)[sel], top_k, tie)]


def _objective(ev: SpatialEvaluation, objective: str) -> np.ndarray:
    if objective == "dram":
        return ev.cols["dram"]
    if objective not in SPATIAL_OBJECTIVES:
        raise MappingError(Problem(f"unknown objective {objective!r}; expected one of {list(SPATIAL_OBJECTIVES)}",
                                   key="objective", hint=did_you_mean(str(objective), SPATIAL_OBJECTIVES)))
    return objective_values(ev.cols["latency"], ev.cols["energy"], objective)


def _result(arch: Arch, w: Workload, ev: SpatialEvaluation, i: int) -> Result:
    c = {k: float(v[i]) for k, v in ev.cols.items()}
    m = ev.points.mapping(i)
    a = arch.array
    dram_lv, glb = arch.levels[0], arch.levels[1]
    terms = {"compute": c["t_compute"], "dram": c["t_dram"], "glb": c["t_glb"]}
    order = sorted(terms.values(), reverse=True)
    bound = max(terms, key=terms.get)
    if bound == "compute":
        bound = "2D array" if c["c2d"] >= c["c1d"] else "1D array (softmax)"
    busy = c["latency"] * arch.clock_hz
    useful = 2.0 * w.batch * w.heads * c["allowed"] * (w.head_dim + w.value_dim)
    return Result(
        arch=arch.name, workload=w.label(), mapping=m.label(), model="spatial-mapper",
        latency_s=c["latency"], bound=bound, bound_margin=order[0] / order[1] if order[1] > 0 else float("inf"),
        useful_flops=useful, executed_flops=c["flops"],
        traffic_bytes={dram_lv.name: c["dram"], glb.name: c["glb"]},
        utilization={"2D array": c["flops"] / 2 / (busy * a.rows * a.cols),
                     "1D array": max(c["elems"] / arch.compute.exp_per_cycle,
                                     c["vec"] / arch.compute.vector_ops_per_cycle) / busy,
                     dram_lv.name: c["dram"] / (c["latency"] * dram_lv.bandwidth_bytes_per_s)},
        energy_j={dram_lv.name: c["e_DRAM"], glb.name: c["e_GLB"], "mac": c["e_mac"], "exp": c["e_exp"],
                  "vector": c["e_vector"], "static": c["e_static"]},
        times_s={"compute (2D + 1D schedule)": c["t_compute"], "2D array busy": c["c2d"] / arch.clock_hz,
                 "1D array busy": c["c1d"] / arch.clock_hz, "dram": c["t_dram"], "glb": c["t_glb"]},
        occupancy={"array_rows": a.rows, "array_cols": a.cols, "vector_lanes": arch.compute.vector_ops_per_cycle,
                   "glb_footprint_bytes": c["footprint"], "glb_capacity_bytes": glb.capacity_bytes},
        counts={"tile visits": c["visits"], "exps": c["elems"], "vector ops": c["vec"],
                "allowed (m,n) pairs per (b,h)": c["allowed"]},
        provenance={"attnsim": __version__, "model": "spatial-mapper", "arch_hash": arch.spec_hash,
                    "arch_file": arch.file, "mapping": repr(m)},
    )


def search_spatial(arch, workload, *, objective: str = "latency", top_k: int = 10, seed: int = 0,
                   styles=SPATIAL_STYLES, unroll: bool = False) -> MapperResult:
    """Best spatial mappings (style, tiles, head packing, loop order, residency) for one attention call.

    ``objective``: 'latency', 'energy', 'edp' or 'dram' (off-chip bytes). ``unroll``: also search
    the array's spatial unrolling, i.e. which ranks its rows and columns carry (the os, ws and is
    dataflows), as a design choice; by default the arch's own dataflow is kept. The space is
    enumerated whole (``seed`` is accepted for symmetry with search_gpu; nothing is sampled).
    """
    del seed
    t0 = time.perf_counter()
    arch = arch if isinstance(arch, Arch) else load_arch(arch)
    w = workload if isinstance(workload, Workload) else load_workload(workload)
    _require_spatial(arch)
    dataflows = ("os", "ws", "is") if unroll else (arch.array.dataflow,)
    ranked, evaluated, illegal, pruned, space, ill_r, pr_r = [], 0, 0, 0, 0, {}, {}
    for df in dataflows:
        a = arch if df == arch.array.dataflow else dataclasses.replace(
            arch, array=dataclasses.replace(arch.array, dataflow=df))
        ev = evaluate_space(a, w, styles)
        evaluated, space = evaluated + len(ev.points), space + ev.space_size
        illegal, pruned = illegal + sum(ev.illegal_reasons.values()), pruned + sum(ev.pruned_reasons.values())
        for r, n in ev.illegal_reasons.items():
            ill_r[r] = ill_r.get(r, 0) + n
        for r, n in ev.pruned_reasons.items():
            pr_r[r] = pr_r.get(r, 0) + n
        if len(ev.points) == 0:
            continue
        score = _objective(ev, objective)
        for i in _ranked(ev, objective, top_k):
            m = ev.points.mapping(int(i))
            if unroll:
                m = dataclasses.replace(m, dataflow=df)
            ranked.append((float(score[int(i)]), m, a, ev, int(i), ties(score, int(i))))
    if not ranked:
        raise MappingError(Problem(f"no spatial mapping fits {w.label()} on {arch.name}: {ill_r}",
                                   key="mapping", hint="a larger GLB, or a shorter sequence"))
    ranked.sort(key=lambda t: t[0])
    top = [(m, _result(a, w, ev, i)) for _, m, a, ev, i, _ in ranked[:top_k]]
    return MapperResult(best=top[0][0], best_result=top[0][1], top=top, evaluated=evaluated,
                        illegal=illegal, illegal_reasons=ill_r, seconds=time.perf_counter() - t0,
                        objective=objective, space_size=space, pruned=pruned, pruned_reasons=pr_r,
                        best_ties=ranked[0][5])


def best_per_schedule(arch: Arch, w: Workload) -> dict[str, dict]:
    """Per bound schedule class ('unfused', 'fused', 'fully_fused'): among the legal points of
    the styles the class contains (``lower_bounds.SCHEDULE_STYLES``), the latency-best point's DRAM
    bytes, latency, label and style, and the least DRAM bytes of any of them (what
    ``lower_bounds.ski_slope`` overlays on the bounds). A class with no legal point is left out."""
    from attnsim.model.lower_bounds import SCHEDULE_STYLES
    ev = evaluate_space(arch, w)
    out = {}
    for sched, styles in SCHEDULE_STYLES.items():
        sel = np.flatnonzero(np.isin(ev.points.style, [STYLE_CODE[s] for s in styles]))
        if len(sel) == 0:
            continue
        best = int(_ranked(ev, "latency", 1, sel)[0])
        m = ev.points.mapping(best)
        out[sched] = {"dram_bytes": float(ev.cols["dram"][best]), "latency_s": float(ev.cols["latency"][best]),
                      "label": m.label(), "style": m.style, "min_dram_bytes": float(ev.cols["dram"][sel].min())}
    return out
