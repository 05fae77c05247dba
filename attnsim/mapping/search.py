"""The GPU kernel mapper: search the kernel-mapping space of one (arch, workload) for the best point.

    enumerate     every combination of the space's values (deterministic order, numpy index grids)
    prune         space rules (split-KV only on small grids; overlap only with wgmma; launch orders
                  the model cannot tell apart) -> `pruned_reasons`
    filter        check_mapping's rules, vectorized (head dim, warps, wgmma warpgroups, GQA packing,
                  shared memory, registers) and the occupancy rule (no CTA fits an SM)
                  -> `illegal_reasons`; each point counts once, under the first rule it breaks
    lower         one `lower_gpu` base row per (style, instruction class), copied and its mapping
                  columns overwritten in numpy (a test checks the rows equal `lower_gpu`'s exactly)
    evaluate      one `evaluate_points` call over every legal point
    rank          by latency, energy or energy x latency (EDP); ties keep enumeration order

Among points the model scores equally, the one with less energy (less latency when ranking by
energy) wins, then the earlier in enumeration order, which puts cheaper choices first (smaller
tiles, fewer warps, fewer stages, no packing, no split).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields

import numpy as np

from attnsim.arch import Arch, load_arch
from attnsim.errors import MappingError, Problem
from attnsim.mapping.kernel import (LAUNCH_ORDERS, SUPPORTED_HEAD_DIMS, STYLES, KernelMapping, padded_head_dim)
from attnsim.model import gpu_kernel as K
from attnsim.model.result import Result
from attnsim.spec.schema import did_you_mean
from attnsim.workload.spec import Workload, load_workload

OBJECTIVES = ("latency", "energy", "edp")
DECODE_MAX_QUERIES = 16  # at or below this many query positions the key range is worth splitting
SMALL_GRID_CTAS_PER_SM = 2  # below this many unsplit CTAs per SM the grid is "small"
ENERGY_COLUMNS = (K.O_E_HBM, K.O_E_L2, K.O_E_SMEM, K.O_E_MMA, K.O_E_EXP, K.O_E_VEC, K.O_E_STATIC)
GPU_MMA_TILE_EDGE = 16
WGMMA_WARPGROUP = 4


@dataclass(frozen=True)
class GpuSpace:
    """The values each mapping field may take. ``None`` means: derived from the arch and workload
    (split counts: powers of two up to ``max_split_kv`` and the key tiles; GQA packing: the
    divisors of G; instruction classes: those with a rate for the workload's dtype).
    ``max_points``: evaluate a seeded random sample of that many legal points instead of all."""

    styles: tuple[str, ...] = ("fused", "split_kv", "unfused")
    block_m: tuple[int, ...] = (16, 32, 64, 96, 128, 192, 256)
    block_n: tuple[int, ...] = (16, 32, 64, 80, 96, 128, 176, 256)
    warps: tuple[int, ...] = (4, 8, 12, 16)
    stages: tuple[int, ...] = (1, 2, 3, 4)
    split_kv: tuple[int, ...] | None = None
    max_split_kv: int = 128
    q_heads_per_cta: tuple[int, ...] | None = None
    launch_order: tuple[str, ...] = ("m_fastest", "longest_first")
    instr: tuple[str, ...] | None = None
    softmax_overlap: tuple[bool, ...] = (False, True)
    max_points: int | None = None

    @classmethod
    def from_value(cls, space) -> "GpuSpace":
        if space is None:
            return cls()
        if isinstance(space, cls):
            return space
        if isinstance(space, dict):
            names = [f.name for f in fields(cls)]
            unknown = [k for k in space if k not in names]
            if unknown:
                raise MappingError([Problem(f"unknown search-space field {k!r}; fields: {names}", key=f"space.{k}",
                                            hint=did_you_mean(k, names)) for k in unknown])
            return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in space.items()})
        raise MappingError(Problem(f"expected a GpuSpace or a dict of its fields, got {space!r}", key="space"))


@dataclass(frozen=True)
class MapperResult:
    """What a search found. ``top``: the best ``top_k`` points, best first, with full Results.
    ``evaluated``: points scored by the model; ``illegal``: points that cannot run (reasons in
    ``illegal_reasons``); ``pruned``: points the space rules skip (reasons in ``pruned_reasons``).
    evaluated + illegal + pruned (+ points left out by random sampling) = ``space_size``."""

    best: object  # KernelMapping (GPU) or SpatialSearchMapping (spatial)
    best_result: Result
    top: list
    evaluated: int
    illegal: int
    illegal_reasons: dict
    seconds: float
    objective: str = "latency"
    space_size: int = 0
    pruned: int = 0
    pruned_reasons: dict = field(default_factory=dict)
    sampled_out: int = 0  # legal points not evaluated because of `max_points`
    best_ties: int = 1  # evaluated points whose objective equals the best's (the model cannot tell them apart)

    def counts_line(self) -> str:
        parts = [f"{self.space_size:,} points in the space", f"{self.evaluated:,} evaluated",
                 f"{self.illegal:,} illegal"]
        if self.pruned:
            parts.append(f"{self.pruned:,} pruned")
        if self.sampled_out:
            parts.append(f"{self.sampled_out:,} left out by sampling")
        return ", ".join(parts) + f" in {self.seconds:.3f} s"


def ties(values: np.ndarray, best_index: int) -> int:
    return int((values == values[best_index]).sum())


def objective_values(latency: np.ndarray, energy: np.ndarray, objective: str) -> np.ndarray:
    if objective == "latency":
        return latency
    if objective == "energy":
        return energy
    if objective == "edp":
        return energy * latency
    raise MappingError(Problem(f"unknown objective {objective!r}; expected one of {list(OBJECTIVES)}",
                               key="objective", hint=did_you_mean(str(objective), OBJECTIVES)))


def rank(values: np.ndarray, top_k: int, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """Indices of the top_k smallest values; ties go to the smaller `tiebreak`, then to index order."""
    keys = (np.arange(len(values)),) + ((tiebreak,) if tiebreak is not None else ()) + (values,)
    return np.lexsort(keys)[:max(1, top_k)]


def tiebreak_values(latency: np.ndarray, energy: np.ndarray, objective: str) -> np.ndarray:
    """Among points equal in the objective, prefer less energy (latency for the energy objective)."""
    return latency if objective == "energy" else energy


def count_reasons(codes: np.ndarray, names: list[str]) -> dict[str, int]:
    """{reason name: count} for the nonzero codes (code i + 1 is names[i])."""
    counts = np.bincount(codes, minlength=len(names) + 1)
    return {names[i]: int(counts[i + 1]) for i in range(len(names)) if counts[i + 1]}


def _divisors(n: int) -> tuple[int, ...]:
    return tuple(d for d in range(1, n + 1) if n % d == 0)


# ---------------------------------------------------------------- enumeration

@dataclass(frozen=True)
class _Points:
    """The enumerated space as parallel arrays (one entry per point)."""

    style: np.ndarray  # 0 fused (split 1), 1 split_kv, 2 unfused: K.STYLE_* codes
    bm: np.ndarray
    bn: np.ndarray
    warps: np.ndarray
    stages: np.ndarray
    split: np.ndarray
    qpc: np.ndarray
    instr: np.ndarray  # index into instrs
    overlap: np.ndarray
    order: np.ndarray  # index into launch_orders

    def take(self, idx) -> "_Points":
        return _Points(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def __len__(self) -> int:
        return len(self.bm)


def _grid(**dims) -> dict[str, np.ndarray]:
    """Cartesian product of the dims (first dim outermost), raveled in C order."""
    names = list(dims)
    mesh = np.meshgrid(*[np.asarray(dims[n]) for n in names], indexing="ij")
    return {n: m.ravel() for n, m in zip(names, mesh)}


def _enumerate(space: GpuSpace, instrs: tuple[str, ...], splits: tuple[int, ...], qpcs: tuple[int, ...],
               orders: tuple[str, ...]) -> _Points:
    parts = []
    split_vals = tuple(s for s in splits if ("fused" in space.styles and s == 1)
                       or ("split_kv" in space.styles and s > 1))
    if split_vals:
        g = _grid(instr=np.arange(len(instrs)), bm=space.block_m, bn=space.block_n, warps=space.warps,
                  stages=space.stages, qpc=qpcs, split=split_vals, overlap=[int(o) for o in space.softmax_overlap],
                  order=np.arange(len(orders)))
        g["style"] = np.where(g["split"] > 1, K.STYLE_SPLIT, K.STYLE_FUSED)
        parts.append(g)
    if "unfused" in space.styles:  # a GEMM tile: packing, split, overlap and launch order do not apply
        g = _grid(instr=np.arange(len(instrs)), bm=space.block_m, bn=space.block_n, warps=space.warps,
                  stages=space.stages)
        n = len(g["bm"])
        g.update(qpc=np.ones(n, int), split=np.ones(n, int), overlap=np.zeros(n, int), order=np.zeros(n, int),
                 style=np.full(n, K.STYLE_UNFUSED))
        parts.append(g)
    if not parts:
        raise MappingError(Problem(f"the space has no styles; expected some of {list(STYLES)}", key="space.styles"))
    cols = {f.name: np.concatenate([p[f.name] for p in parts]).astype(np.int64) for f in fields(_Points)}
    return _Points(**cols)


# ---------------------------------------------------------------- legality (check_mapping, vectorized)

ILLEGAL = ["head dim", "block not a multiple of 16", "warps", "wgmma needs 4-warp groups",
           "q_heads_per_cta must divide G", "smem overflow", "registers", "no CTA fits an SM"]
PRUNED = ["softmax overlap needs wgmma", "split_kv on a large grid", "split_kv beyond the key tiles",
          "launch order not modelled (equivalent point)"]


def _smem_bytes(p: _Points, dp: int, fp: int, eb: int) -> np.ndarray:
    """kernel.smem_bytes_per_cta over arrays: Q tile + `stages` K/V tiles, or the GEMM operand tiles."""
    fused = p.bm * dp * eb + p.stages * p.bn * (dp + fp) * eb
    unfused = p.stages * (p.bm + p.bn) * 64 * eb
    return np.where(p.style == K.STYLE_UNFUSED, unfused, fused)


def _registers(p: _Points, fp: int) -> np.ndarray:
    """kernel.estimated_registers over arrays: fp32 O accumulator + S/P tile per thread."""
    f = np.where(p.style == K.STYLE_UNFUSED, 0, fp)
    threads = 32 * p.warps
    return -(-(p.bm * (f + p.bn)) // threads)


def _illegal_codes(p: _Points, w: Workload, arch: Arch, instrs, smem, regs) -> np.ndarray:
    """Per point: 0 if legal, else 1 + the index of its first broken rule in ILLEGAL."""
    g = arch.gpu
    fused = p.style != K.STYLE_UNFUSED
    hd_bad = (w.head_dim % 8 or w.value_dim % 8 or max(w.head_dim, w.value_dim) > SUPPORTED_HEAD_DIMS[-1])
    is_wgmma = np.array([i == "wgmma" for i in instrs])[p.instr]
    regs_eff = np.maximum(1, regs)
    # occupancy() in gpu_kernel: at least one CTA must fit by warps, threads, smem and registers
    fits = ((g.max_warps_per_sm // p.warps >= 1) & (g.max_threads_per_sm // (32 * p.warps) >= 1)
            & (smem <= g.smem_per_sm_bytes) & (regs_eff * 32 * p.warps <= g.registers_per_sm))
    rules = [
        fused & bool(hd_bad),
        (p.bm < GPU_MMA_TILE_EDGE) | (p.bm % GPU_MMA_TILE_EDGE != 0) | (p.bn < GPU_MMA_TILE_EDGE)
        | (p.bn % GPU_MMA_TILE_EDGE != 0),
        (p.warps < 1) | (p.warps * 32 > g.max_threads_per_sm),
        is_wgmma & (p.warps % WGMMA_WARPGROUP != 0),
        (p.qpc > 1) & (w.group % p.qpc != 0),
        smem > g.smem_per_cta_bytes,
        regs > g.max_registers_per_thread,
        ~fits,
    ]
    codes = np.zeros(len(p), np.int64)
    for i in range(len(rules) - 1, -1, -1):  # the first rule broken wins
        codes[rules[i]] = i + 1
    return codes


def _pruned_codes(p: _Points, w: Workload, arch: Arch, instrs, orders, orders_equivalent: bool,
                  preferred_order: int) -> np.ndarray:
    is_wgmma = np.array([i == "wgmma" for i in instrs])[p.instr]
    bp = np.maximum(1, p.bm // p.qpc)
    unsplit_ctas = w.batch * (w.heads // p.qpc) * (-(-w.seq_q // bp))
    small = (w.seq_q <= DECODE_MAX_QUERIES) | (unsplit_ctas < SMALL_GRID_CTAS_PER_SM * arch.gpu.sm_count)
    key_tiles = -(-w.seq_kv // p.bn)
    rules = [
        (p.overlap > 0) & ~is_wgmma,
        (p.split > 1) & ~small,
        (p.split > 1) & (p.split > key_tiles),
        (p.order != preferred_order) & orders_equivalent & (p.style != K.STYLE_UNFUSED),
    ]
    codes = np.zeros(len(p), np.int64)
    for i in range(len(rules) - 1, -1, -1):
        codes[rules[i]] = i + 1
    return codes


# ---------------------------------------------------------------- lowering

def _base_mapping(style: str, instr: str, order: str = "m_fastest") -> KernelMapping:
    return KernelMapping(style=style, block_m=64, block_n=64, warps=4, stages=2, instr=instr, launch_order=order)


def _orders_equivalent(arch: Arch, w: Workload, instr: str) -> bool:
    """Does the lowered row ignore the launch order? (It does today: the model has no column for it.)"""
    from attnsim.model.lower import lower_gpu
    rows = [lower_gpu(arch, w, _base_mapping("fused", instr, o), check=False) for o in LAUNCH_ORDERS]
    return all(np.array_equal(rows[0], r) for r in rows[1:])


def fast_rows(arch: Arch, w: Workload, p: _Points, instrs: tuple[str, ...]) -> np.ndarray:
    """Lowered rows [n, K.N_IN] for the points, equal to ``lower_gpu`` of each point's mapping.

    Copies one ``lower_gpu`` row per (style, instruction class) and overwrites what the mapping
    decides: style, tile, warps, stages, split, packing, overlap, registers, shared memory,
    its readers, the MMA rate and efficiency, and (neighborhood masks) the tile statistics.
    """
    from attnsim.model.lower import lower_gpu
    smem, regs = _smem_and_registers(p, w)
    rows = np.empty((len(p), K.N_IN))
    unfused = p.style == K.STYLE_UNFUSED
    for ii, instr in enumerate(instrs):
        for style, sel in (("fused", ~unfused), ("unfused", unfused)):
            mask = sel & (p.instr == ii)
            if mask.any():
                rows[mask] = lower_gpu(arch, w, _base_mapping(style, instr), check=False)
    rows[:, K.STYLE] = p.style
    rows[:, K.BR], rows[:, K.BC] = p.bm, p.bn
    rows[:, K.WARPS], rows[:, K.STAGES], rows[:, K.SPLIT] = p.warps, p.stages, p.split
    rows[:, K.QPC] = p.qpc
    rows[:, K.OVERLAP] = p.overlap
    rows[:, K.REGS] = np.maximum(1, regs)
    rows[:, K.SMEM_CTA] = smem
    is_wgmma = np.array([i == "wgmma" for i in instrs])[p.instr]
    rows[:, K.SMEM_READERS] = np.where(is_wgmma, p.warps / 4, p.warps)
    if w.mask.kind == "block_counts":  # its statistics depend on each point's tile; not searched (yet)
        raise MappingError(Problem("the mapper does not search block_counts masks; predict with a given mapping",
                                   key="mask.kind"))
    if w.mask.kind == "neighborhood":  # explicit_tile_stats' numbers, counted once per query-tile size
        from attnsim.mapping.spatial_search import pair_stats
        t = pair_stats(w, np.maximum(1, p.bm // p.qpc), p.bn)
        rows[:, K.X_SUM], rows[:, K.X_MAX], rows[:, K.X_MIN] = t[:, 0], t[:, 1], t[:, 6]
        rows[:, K.X_FULL], rows[:, K.X_ALLOWED], rows[:, K.X_ROWS] = t[:, 5], t[:, 3], t[:, 2]
    return rows


def to_mapping(p: _Points, i: int, instrs, orders) -> KernelMapping:
    style = {K.STYLE_FUSED: "fused", K.STYLE_SPLIT: "split_kv", K.STYLE_UNFUSED: "unfused"}[int(p.style[i])]
    return KernelMapping(style=style, block_m=int(p.bm[i]), block_n=int(p.bn[i]), warps=int(p.warps[i]),
                         stages=int(p.stages[i]), split_kv=int(p.split[i]), q_heads_per_cta=int(p.qpc[i]),
                         launch_order=orders[int(p.order[i])], instr=instrs[int(p.instr[i])],
                         softmax_overlap=bool(p.overlap[i]))


# ---------------------------------------------------------------- the search

@dataclass(frozen=True)
class GpuCandidates:
    """The enumerated space with a verdict per point: 0 (legal) or a reason code."""

    points: _Points
    pruned: np.ndarray  # 1 + index into PRUNED, 0 if not pruned
    illegal: np.ndarray  # 1 + index into ILLEGAL, 0 if legal (or pruned)
    instrs: tuple[str, ...]
    orders: tuple[str, ...]

    @property
    def legal(self) -> np.ndarray:
        return (self.pruned == 0) & (self.illegal == 0)


@dataclass(frozen=True)
class GpuSearch:
    """Everything a search enumerated and scored (the CLI, sweeps and tests read it)."""

    points: _Points  # the legal, evaluated points
    out: np.ndarray  # evaluate_points output, one row per point
    objective: np.ndarray
    tiebreak: np.ndarray
    instrs: tuple[str, ...]
    orders: tuple[str, ...]
    space_size: int
    illegal_reasons: dict
    pruned_reasons: dict
    sampled_out: int


def _resolve_dims(space: GpuSpace, arch: Arch, w: Workload):
    table = arch.compute.matrix_flops_per_cycle
    instrs = space.instr or tuple(i for i in ("mma_sync", "wgmma") if i in table and w.dtype in table[i])
    unknown = [i for i in instrs if i not in table or w.dtype not in table[i]]
    if unknown or not instrs:
        raise MappingError(Problem(f"arch {arch.name!r} has no {w.dtype} rate for instruction classes "
                                   f"{unknown or list(instrs)}; it has {sorted(table)}", key="space.instr"))
    for o in space.launch_order:
        if o not in LAUNCH_ORDERS:
            raise MappingError(Problem(f"unknown launch order {o!r}; expected some of {list(LAUNCH_ORDERS)}",
                                       key="space.launch_order", hint=did_you_mean(o, LAUNCH_ORDERS)))
    for s in space.styles:
        if s not in STYLES:
            raise MappingError(Problem(f"unknown style {s!r}; expected some of {list(STYLES)}", key="space.styles",
                                       hint=did_you_mean(s, STYLES)))
    splits = space.split_kv
    if splits is None:
        splits = tuple(2 ** i for i in range(int(math.log2(space.max_split_kv)) + 1))
    qpcs = space.q_heads_per_cta or _divisors(w.group)
    return instrs, tuple(splits), tuple(qpcs), tuple(space.launch_order)


def classify_space(arch: Arch, w: Workload, space=None) -> GpuCandidates:
    """Enumerate the space and give every point its verdict (pruned, illegal or legal)."""
    if arch.kind != "gpu":
        raise MappingError(Problem(f"search_gpu needs a GPU arch; {arch.name!r} is {arch.kind} "
                                   "(use attnsim.mapping.spatial_search.search_spatial)", key="arch"))
    space = GpuSpace.from_value(space)
    instrs, splits, qpcs, orders = _resolve_dims(space, arch, w)
    p = _enumerate(space, instrs, splits, qpcs, orders)
    preferred = "longest_first" if w.mask.is_causal else "m_fastest"
    preferred_i = orders.index(preferred) if preferred in orders else 0
    hd_ok = max(w.head_dim, w.value_dim) <= SUPPORTED_HEAD_DIMS[-1]
    equivalent = _orders_equivalent(arch, w, instrs[0]) if hd_ok else True  # no fused point is legal anyway
    pruned = _pruned_codes(p, w, arch, instrs, orders, equivalent, preferred_i)
    smem, regs = _smem_and_registers(p, w)
    illegal = np.where(pruned == 0, _illegal_codes(p, w, arch, instrs, smem, regs), 0)
    return GpuCandidates(points=p, pruned=pruned, illegal=illegal, instrs=instrs, orders=orders)


def _padded_dims(w: Workload) -> tuple[int, int]:
    if max(w.head_dim, w.value_dim) > SUPPORTED_HEAD_DIMS[-1]:
        return w.head_dim, w.value_dim  # only unfused points can be legal; they do not pad
    return padded_head_dim(w.head_dim), padded_head_dim(w.value_dim)


def _smem_and_registers(p: _Points, w: Workload) -> tuple[np.ndarray, np.ndarray]:
    dp, fp = _padded_dims(w)
    return _smem_bytes(p, dp, fp, w.dtype_bytes), _registers(p, fp)


def run_gpu_search(arch: Arch, w: Workload, objective: str = "latency", seed: int = 0, space=None) -> GpuSearch:
    """Enumerate, filter, lower and evaluate the space; return every legal point's scores."""
    objective_values(np.zeros(1), np.zeros(1), objective)  # validate the name early
    cand = classify_space(arch, w, space)
    space = GpuSpace.from_value(space)
    illegal_reasons = count_reasons(cand.illegal, ILLEGAL)
    pruned_reasons = count_reasons(cand.pruned, PRUNED)
    p = cand.points.take(cand.legal)
    sampled_out = 0
    if space.max_points is not None and len(p) > space.max_points:
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(p), size=space.max_points, replace=False))
        sampled_out = len(p) - len(pick)
        p = p.take(pick)
    if len(p) == 0:
        raise MappingError(Problem(f"no legal mapping in the space for {w.label()} on {arch.name}; illegal: "
                                   f"{illegal_reasons}, pruned: {pruned_reasons}", key="space"))
    rows = fast_rows(arch, w, p, cand.instrs)
    out = K.evaluate_points(rows)
    ok = out[:, K.O_STATUS] == K.ST_OK  # the vectorized occupancy rule should have caught the rest
    if not ok.all():
        illegal_reasons["no CTA fits an SM"] = illegal_reasons.get("no CTA fits an SM", 0) + int((~ok).sum())
        p, out = p.take(ok), out[ok]
    energy = out[:, list(ENERGY_COLUMNS)].sum(axis=1)
    obj = objective_values(out[:, K.O_LATENCY], energy, objective)
    return GpuSearch(points=p, out=out, objective=obj, tiebreak=tiebreak_values(out[:, K.O_LATENCY], energy, objective),
                     instrs=cand.instrs, orders=cand.orders, space_size=len(cand.points),
                     illegal_reasons=illegal_reasons, pruned_reasons=pruned_reasons, sampled_out=sampled_out)


def search_gpu(arch, workload, *, objective: str = "latency", top_k: int = 10, seed: int = 0,
               space=None) -> MapperResult:
    """Best kernel mappings for one attention call on a GPU.

    ``arch``/``workload``: values, preset names or YAML paths. ``objective``: 'latency',
    'energy' or 'edp' (energy x latency). ``space``: a GpuSpace or a dict of its fields (None:
    the default space); with ``max_points`` a ``numpy.random.default_rng(seed)`` sample of the
    legal points is evaluated. Returns the best ``top_k`` mappings with full Results.
    """
    from attnsim.model.analytical import result_from_row
    t0 = time.perf_counter()
    arch = arch if isinstance(arch, Arch) else load_arch(arch)
    w = workload if isinstance(workload, Workload) else load_workload(workload)
    s = run_gpu_search(arch, w, objective, seed, space)
    idx = rank(s.objective, top_k, s.tiebreak)
    top = []
    for i in idx:
        m = to_mapping(s.points, int(i), s.instrs, s.orders)
        top.append((m, result_from_row(arch, w, m, s.out[i])))
    seconds = time.perf_counter() - t0
    return MapperResult(best=top[0][0], best_result=top[0][1], top=top, evaluated=len(s.points),
                        illegal=sum(s.illegal_reasons.values()), illegal_reasons=s.illegal_reasons,
                        seconds=seconds, objective=objective, space_size=s.space_size,
                        pruned=sum(s.pruned_reasons.values()), pruned_reasons=s.pruned_reasons,
                        sampled_out=s.sampled_out, best_ties=ties(s.objective, int(idx[0])))


def mapping_fields(m) -> dict:
    """A mapping's fields as a plain dict (for tables and JSON)."""
    return {f.name: getattr(m, f.name) for f in fields(m) if f.name not in ("name", "registers_per_thread")}


__all__ = ["GpuSpace", "MapperResult", "OBJECTIVES", "search_gpu", "run_gpu_search", "fast_rows"]
