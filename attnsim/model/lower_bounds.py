"""Data-movement lower bounds of the attention cascade: off-chip traffic versus on-chip capacity.

The "ski slope" (after Orojenesis): the least DRAM traffic any schedule of a stated class can
achieve with ``C`` bytes of on-chip buffer. It falls as ``C`` grows and flattens at the
compulsory traffic once the reuse the schedule needs fits on chip.

Notation, per (batch, KV head) group: G query heads share one K/V head; M queries, N keys,
head dims D (Q, K) and F (V, O); e bytes per input element; accumulators, scores and softmax
state are fp32 (4 bytes), so a query row's online-softmax state is st = (F + 2) * 4 bytes
(the O accumulator, the running max and sum). Per mask (full, causal, sliding window):

    W_r      keys query row r sees                                 (row_visible_keys)
    V(bp)    keys the query blocks of bp consecutive positions see, summed over the blocks
             (a key a block sees is streamed once for the whole block)
    Wmax(bp) the most keys one such block sees
    N_vis    keys some query sees;   A = allowed (query, key) pairs per head
    |Q| = G*M*D*e   |O| = G*M*F*e   |K_vis| = N_vis*D*e   |V_vis| = N_vis*F*e

Compulsory traffic: |Q| + |K_vis| + |V_vis| + |O| (every Q row is read and every O row written
once, every visible key and value read once). The bound of the whole call is B * Hkv times the
group's: groups share no data, so a schedule gains nothing by running two at once.

The class of schedules: two-level tiled loop nests in which one operand's block stays on chip
(stationary) while the other streams past it, one row or key at a time (larger streaming
tiles only add footprint and, under a mask, visit more keys). A query block is g heads x bp
consecutive positions (g divides G, 1 <= bp <= M); a key block is bn consecutive keys.
Footprints count only what the reuse needs: the stationary block, one streamed row, one score.

Why no Hong-Kung 2*M*N*K/sqrt(C) term: that form arises when a GEMM's reduction dimension is
too long to hold, so all three operands must be tiled. Here the reductions of QK^T (D) and of the
online PV update fit in one row, and for a two-level nest with an m-by-n output tile the Q (or
K) block is reused across the whole inner loop: traffic |Q| + |K| * (query blocks) for a tile of
bm x bn, whatever bn, so the best tile is the tallest stationary block that fits (bn = 1), whose
traffic falls as 1/C, faster than 1/sqrt(C). The PV pass of an unfused schedule (reduction N) is
O-stationary or V-stationary on the same argument, its re-reads charged explicitly.

The K/V-stationary options count the key blocks row r meets as ceil(W_r / bn): its W_r visible
keys need at least that many blocks of bn keys (exact for full and causal masks, whose visible
keys start at key 0; a lower bound for windows). That makes their cost non-increasing in bn, so
the largest bn that fits is optimal; the query-stationary options are minimized over every
(g, bp) exactly, since V(bp) is not monotone in bp.

Each schedule class contains the shallower fusion depths (a fused design may choose not to
fuse), so unfused >= fused >= fully_fused at every capacity; each bound is the minimum over a
set of options whose feasibility only grows with C, so it never rises with C. With no option
feasible the bound is infinite (no schedule of the class fits).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


from attnsim.errors import MappingError, Problem
from attnsim.model import gpu_kernel as K
from attnsim.workload.spec import Workload
from attnsim.workload.tiles import neighborhood_counts_many

SCHEDULES = ("unfused", "fused", "fully_fused")
ACC_BYTES = 4  # fp32: scores, accumulators, softmax max and sum
BOUND_MASKS = {"full": K.MK_FULL, "causal": K.MK_CAUSAL, "window": K.MK_WINDOW}
TILE_MASKS = {**BOUND_MASKS, "block_sparse": K.MK_BLOCK}
# The spatial mapper's styles and the least bound class each belongs to; a class contains the
# styles of the shallower classes too (a fused design may choose not to fuse).
STYLE_SCHEDULE = {"unfused": "unfused", "row_fused": "fused", "fused": "fully_fused"}
SCHEDULE_STYLES = {"unfused": ("unfused",), "fused": ("unfused", "row_fused"),
                   "fully_fused": ("unfused", "row_fused", "fused")}


# ---------------------------------------------------------------- mask statistics

def row_visible_keys(w: Workload) -> np.ndarray:
    """W_r: keys each query row sees, [M] (closed form of ``gpu_kernel.allowed_in_rows`` per row).

    Row r sits at key p = r + N - M and sees keys [max(0, p - window + 1), p] (window masks also
    the sink keys below that range); with M > N the first rows see nothing.
    """
    _check_interval_mask(w)
    m, n = w.seq_q, w.seq_kv
    if w.mask.kind == "full":
        return np.full(m, n, dtype=np.int64)
    p = np.arange(m, dtype=np.int64) + (n - m)
    hi = np.minimum(p, n - 1)
    seen = p >= 0
    if w.mask.kind == "causal":
        return np.where(seen, hi + 1, 0)
    lo = np.maximum(0, p - w.mask.window + 1)
    return np.where(seen, hi - lo + 1 + np.minimum(w.mask.sink, lo), 0)


def _check_interval_mask(w: Workload) -> None:
    if w.mask.kind not in BOUND_MASKS:
        raise MappingError(Problem(
            f"lower bounds are derived for interval masks {list(BOUND_MASKS)}; got {w.mask.kind!r}",
            key="mask.kind", hint="a block-sparse mask is defined at the kernel's own tile size, a "
                                  "neighborhood mask has no interval structure; neither has a derivation here"))


def block_stats(w: Workload, bp: int, bn: int) -> tuple[float, float, int, float, int]:
    """(tiles, max tiles of a query block, query blocks, allowed pairs, non-empty query blocks)
    per head, for query blocks of bp positions and key tiles of bn keys."""
    tiles, lmax, rows, allowed, nonempty = (x[0] for x in block_stats_many(w, bp, (int(bn),))[:5])
    return float(tiles), float(lmax), int(rows), float(allowed), int(nonempty)


def block_stats_many(w: Workload, bp: int, bns) -> tuple[np.ndarray, ...]:
    """block_stats for one query-block size and several key-tile sizes at once, as arrays
    (tiles, max tiles, query blocks, allowed, non-empty blocks, full tiles, min tiles); a
    neighborhood mask is counted once per bp for every bn (``workload.tiles.neighborhood_counts``)."""
    return _block_stats_many(w.mask, w.seq_q, w.seq_kv, int(bp), tuple(int(b) for b in bns))


@lru_cache(maxsize=4096)
def _block_stats_many(mask, m_len: int, n_len: int, bp: int, bns: tuple):
    if mask.kind == "block_counts":
        raise MappingError(Problem("block statistics (bounds, the spatial mapper) are not derived for block_counts "
                                   "masks; predict with a given mapping", key="mask.kind"))
    if mask.kind == "neighborhood":
        if math.prod(mask.grid) != m_len or m_len != n_len:
            raise MappingError(Problem(f"grid {mask.grid} does not match seq_q={m_len}, seq_kv={n_len}",
                                       key="mask.grid"))
        tiles, full, lmax, lmin, rows, allowed = neighborhood_counts_many(mask, bp, bns)
        return tiles, lmax, np.full(len(bns), rows), np.full(len(bns), allowed), np.full(len(bns), rows), full, lmin
    out = np.array([K.mask_tile_stats(TILE_MASKS[mask.kind], m_len, n_len, bp, bn, mask.window, mask.sink,
                                      mask.density, mask.causal) for bn in bns], dtype=float).reshape(-1, 6)
    first_seen = 0 if mask.kind == "full" or (mask.kind == "block_sparse" and not mask.causal) \
        else max(0, m_len - n_len)  # rows before this see no key
    nonempty = out[:, 4] - first_seen // bp
    return out[:, 0], out[:, 1], out[:, 4], out[:, 5], nonempty, out[:, 3], out[:, 2]


@dataclass(frozen=True)
class _Profile:
    """A workload's mask at every query-block size: what the bound formulas read."""

    vis: np.ndarray  # V(bp) for bp = 1..M, index bp - 1
    wmax: np.ndarray  # Wmax(bp)
    w_rows: np.ndarray  # W_r
    n_vis: int
    allowed: float  # A, per head


@lru_cache(maxsize=64)
def _profile(w: Workload) -> _Profile:
    _check_interval_mask(w)
    vis = np.empty(w.seq_q)
    wmax = np.empty(w.seq_q)
    mk = w.mask
    for bp in range(1, w.seq_q + 1):  # key tiles of one key: V(bp) and Wmax(bp) directly
        tot, lmax, _, _, _, allowed = K.mask_tile_stats(BOUND_MASKS[mk.kind], w.seq_q, w.seq_kv, bp, 1, mk.window,
                                                        mk.sink, mk.density, mk.causal)
        vis[bp - 1], wmax[bp - 1] = tot, lmax
    return _Profile(vis=vis, wmax=wmax, w_rows=row_visible_keys(w), n_vis=int(vis[-1]), allowed=allowed)


# ---------------------------------------------------------------- the bound

@dataclass(frozen=True)
class _Group:
    g_heads: int  # G
    m: int
    n: int
    d: int
    f: int
    e: int
    groups: int  # B * Hkv

    @property
    def st(self) -> int:  # online-softmax state of one query row
        return (self.f + 2) * ACC_BYTES


def _group(w: Workload) -> _Group:
    return _Group(w.group, w.seq_q, w.seq_kv, w.head_dim, w.value_dim, w.dtype_bytes, w.batch * w.kv_heads)


def compulsory_bytes(w: Workload) -> float:
    """|Q| + |K_vis| + |V_vis| + |O|: every input read once, the output written once (keys no
    query sees are never read; for full and causal masks with M <= N that is no key)."""
    s, pr = _group(w), _profile(w)
    return float(s.groups * ((s.g_heads * s.m * (s.d + s.f) + pr.n_vis * (s.d + s.f)) * s.e))


def _min_within(footprint: np.ndarray, cost: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """For each capacity: the least cost among options whose footprint fits (inf if none)."""
    order = np.argsort(footprint, kind="stable")
    fp, best = footprint[order], np.minimum.accumulate(cost[order])
    k = np.searchsorted(fp, capacity, side="right")  # options 0..k-1 fit
    return np.where(k > 0, best[np.maximum(k - 1, 0)], np.inf)


def _query_blocks(s: _Group, pr: _Profile):
    """Every query block (g heads x bp positions): (rows, g, bp) arrays over g | G, bp = 1..M."""
    gs = np.array([g for g in range(1, s.g_heads + 1) if s.g_heads % g == 0])
    g, bp = np.meshgrid(gs, np.arange(1, s.m + 1), indexing="ij")
    g, bp = g.ravel(), bp.ravel()
    return g * bp, g, bp


def _largest_key_block(s: _Group, capacity: np.ndarray, per_key: float, fixed: float) -> np.ndarray:
    """Largest key block bn (<= N) that fits beside `fixed` bytes, per capacity (0: none fits)."""
    bn = np.floor((capacity - fixed) / per_key)
    return np.clip(bn, 0, s.n).astype(np.int64)


def _row_blocks(pr: _Profile, bn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per key-block size: (sum_r max(1, ceil(W_r / bn)), sum_r max(0, ceil(W_r / bn) - 1)),
    a lower bound on the key blocks each row meets (exact for full and causal masks, whose
    rows start at key 0)."""
    b = np.maximum(bn, 1)[:, None]
    blocks = -(-pr.w_rows[None, :] // b)  # [capacities, M]
    return np.maximum(blocks, 1).sum(axis=1), np.maximum(blocks - 1, 0).sum(axis=1)


def _streamed(s: _Group, pr: _Profile, capacity, stationary_per_row, fixed, per_key_bytes):
    """Query-block-stationary option family: least (G/g) * V(bp) * per_key_bytes over the
    blocks whose footprint g*bp*stationary_per_row(bp) + fixed fits, per capacity."""
    rows, g, bp = _query_blocks(s, pr)
    per_row = stationary_per_row(bp) if callable(stationary_per_row) else stationary_per_row
    footprint = rows * per_row + fixed
    cost = (s.g_heads // g) * pr.vis[bp - 1] * per_key_bytes
    return _min_within(footprint.astype(float), cost.astype(float), capacity)


def _qk_pass(s: _Group, pr: _Profile, c: np.ndarray) -> np.ndarray:
    """S = Q K^T as its own pass, excluding the write of S.
    Q-stationary: Q block (bp rows x g heads) on chip, visible K rows stream past:
        |Q| + (G/g) V(bp) D e,          footprint g*bp*D*e + D*e + 4
    K-stationary: bn keys on chip, every Q row streams past each key block it sees:
        |K_vis| + G sum_r max(1, ceil(W_r/bn)) D e,   footprint bn*D*e + D*e + 4"""
    q = s.g_heads * s.m * s.d * s.e
    a = q + _streamed(s, pr, c, s.d * s.e, s.d * s.e + ACC_BYTES, s.d * s.e)
    bn = _largest_key_block(s, c, s.d * s.e, s.d * s.e + ACC_BYTES)
    reads, _ = _row_blocks(pr, bn)
    b = np.where(bn > 0, pr.n_vis * s.d * s.e + s.g_heads * reads * s.d * s.e, np.inf)
    return np.minimum(a, b)


def _pv_pass(s: _Group, pr: _Profile, c: np.ndarray) -> np.ndarray:
    """O = P V as its own pass, excluding the read of P.
    O-stationary: fp32 O block on chip, visible V rows stream past:
        (G/g) V(bp) F e + |O|,          footprint g*bp*F*4 + F*e + e
    V-stationary: bn values on chip; each row's fp32 partial O is read and written between the
    key blocks it meets:  |V_vis| + G sum_r 2 max(0, ceil(W_r/bn) - 1) F*4 + |O|,
                                        footprint bn*F*e + F*4 + e"""
    o = s.g_heads * s.m * s.f * s.e
    a = o + _streamed(s, pr, c, s.f * ACC_BYTES, s.f * s.e + s.e, s.f * s.e)
    bn = _largest_key_block(s, c, s.f * s.e, s.f * ACC_BYTES + s.e)
    _, spills = _row_blocks(pr, bn)
    b = np.where(bn > 0, pr.n_vis * s.f * s.e + s.g_heads * 2 * spills * s.f * ACC_BYTES + o, np.inf)
    return np.minimum(a, b)


def _unfused(s: _Group, pr: _Profile, c: np.ndarray) -> np.ndarray:
    """Three passes. Round trip: S written, read (twice when one row of S, Wmax(1)*e bytes,
    does not fit: an online max/sum pass, then a normalizing pass), P written and read:
        T_qk(C) + T_pv(C) + (3 + r) * G*A*e,   r = 1 if Wmax(1)*e <= C else 2.
    Or the group's whole S stays on chip (G*A*e bytes, P overwrites it in place) and the two
    GEMM passes share what is left:  T_qk(C - G*A*e) + T_pv(C - G*A*e)."""
    s_bytes = s.g_heads * pr.allowed * s.e
    r = np.where(pr.wmax[0] * s.e <= c, 1, 2)
    round_trip = _qk_pass(s, pr, c) + _pv_pass(s, pr, c) + (3 + r) * s_bytes
    rest = c - s_bytes
    resident = np.where(rest > 0, _qk_pass(s, pr, rest) + _pv_pass(s, pr, rest), np.inf)
    return np.minimum(round_trip, resident)


def _row_fused(s: _Group, pr: _Profile, c: np.ndarray, comp: float) -> np.ndarray:
    """FLAT-style row-granular fusion: a query block keeps its whole fp32 score rows (the keys
    it sees) on chip, so the softmax runs between the two GEMMs; K then V stream past it:
        |Q| + |O| + (G/g) V(bp) (D+F) e,
        footprint g*bp*(max(D*e, 4F) + 4*Wmax(bp) + 8) + (D+F)*e
    (Q is needed only for S, the fp32 O accumulator only for PV; 8: row max and sum).
    K/V resident: compulsory, footprint |K_vis| + |V_vis| + one row's max(D*e, 4F) + 4*Wmax(1) + 8."""
    base = s.g_heads * s.m * (s.d + s.f) * s.e
    row = max(s.d * s.e, s.f * ACC_BYTES) + 2 * ACC_BYTES
    streamed = base + _streamed(s, pr, c, lambda bp: row + ACC_BYTES * pr.wmax[bp - 1], (s.d + s.f) * s.e,
                                (s.d + s.f) * s.e)
    kv_res = pr.n_vis * (s.d + s.f) * s.e + row + ACC_BYTES * pr.wmax[0]
    return np.minimum(streamed, np.where(c >= kv_res, comp, np.inf))


def _online(s: _Group, pr: _Profile, c: np.ndarray, comp: float) -> np.ndarray:
    """FlashAttention / FuseMax online softmax (S and P never leave the chip).
    Query-stationary: Q rows and their state on chip, visible K/V stream past:
        |Q| + |O| + (G/g) V(bp) (D+F) e,        footprint g*bp*(D*e + st) + (D+F)*e + 4
    K/V-stationary: bn keys and values on chip; each row is read for every key block it meets
    and its fp32 state read and written between them:
        |K_vis| + |V_vis| + G sum_r [max(1, L_r) D e + 2 max(0, L_r - 1) st] + |O|,
        L_r = ceil(W_r / bn),                   footprint bn*(D+F)*e + D*e + st + 4
    Either operand wholly resident: compulsory, footprint |K_vis| + |V_vis| + D*e + st + 4, or
    G*M*(D*e + st) + (D+F)*e + 4."""
    base = s.g_heads * s.m * (s.d + s.f) * s.e
    one = s.d * s.e + s.st + ACC_BYTES
    q_stat = base + _streamed(s, pr, c, s.d * s.e + s.st, (s.d + s.f) * s.e + ACC_BYTES, (s.d + s.f) * s.e)
    bn = _largest_key_block(s, c, (s.d + s.f) * s.e, one)
    reads, spills = _row_blocks(pr, bn)
    kv_stat = np.where(bn > 0, pr.n_vis * (s.d + s.f) * s.e + s.g_heads * (reads * s.d * s.e + 2 * spills * s.st)
                       + s.g_heads * s.m * s.f * s.e, np.inf)
    res_fp = min(pr.n_vis * (s.d + s.f) * s.e + one, s.g_heads * s.m * (s.d * s.e + s.st) + (s.d + s.f) * s.e
                 + ACC_BYTES)
    return np.minimum(np.minimum(q_stat, kv_stat), np.where(c >= res_fp, comp, np.inf))


def _bounds(w: Workload, capacities) -> dict[str, np.ndarray]:
    s, pr = _group(w), _profile(w)
    c = np.atleast_1d(np.asarray(capacities, dtype=float))
    comp = compulsory_bytes(w) / s.groups
    unf = _unfused(s, pr, c)
    fus = np.minimum(unf, _row_fused(s, pr, c, comp))
    full = np.minimum(fus, _online(s, pr, c, comp))
    return {"unfused": unf * s.groups, "fused": fus * s.groups, "fully_fused": full * s.groups}


def offchip_traffic_bound(workload: Workload, capacity_bytes, schedule: str = "unfused"):
    """Least DRAM bytes of the attention call over the schedule class with ``capacity_bytes`` on chip.

    ``schedule``: 'unfused' (QK^T, softmax and PV as separate passes: _unfused), 'fused'
    (also row-granular fusion: _row_fused), 'fully_fused' (also online softmax: _online);
    each derivation is in the docstring of the function named. ``capacity_bytes``: a number
    (returns a float) or an array (returns an array). Infinite where nothing in the class fits.
    """
    if schedule not in SCHEDULES:
        from attnsim.spec.schema import did_you_mean
        raise MappingError(Problem(f"unknown schedule {schedule!r}; expected one of {list(SCHEDULES)}",
                                   key="schedule", hint=did_you_mean(str(schedule), SCHEDULES)))
    out = _bounds(workload, capacity_bytes)[schedule]
    return float(out[0]) if np.ndim(capacity_bytes) == 0 else out


# ---------------------------------------------------------------- the ski slope

def ski_slope(workload: Workload, capacities, arch=None):
    """Bound per schedule at each capacity, as a tidy DataFrame: capacity_bytes, schedule,
    bound_bytes, compulsory_bytes. With a spatial ``arch``, also the mapper's points: the
    GLB (``arch.levels[1]``) is set to each capacity, every legal mapping of the styles the
    schedule class contains (SCHEDULE_STYLES) is evaluated, ``mapper_bytes`` is the DRAM traffic
    of the latency-best one (``mapper_mapping``, ``mapper_style``, ``mapper_latency_s``) and
    ``mapper_min_bytes`` the least DRAM traffic of any of them (NaN where none fits)."""
    import pandas as pd
    from attnsim.arch import load_arch
    caps = np.asarray(sorted(float(c) for c in capacities))
    b = _bounds(workload, caps)
    comp = compulsory_bytes(workload)
    rows = []
    for sched in SCHEDULES:
        for i, c in enumerate(caps):
            rows.append({"capacity_bytes": c, "schedule": sched, "bound_bytes": float(b[sched][i]),
                         "compulsory_bytes": comp})
    df = pd.DataFrame(rows)
    if arch is None:
        return df
    arch = load_arch(arch)
    if arch.kind != "spatial":
        return df
    from attnsim.mapping.spatial_search import best_per_schedule
    extra = {"mapper_bytes": [], "mapper_min_bytes": [], "mapper_latency_s": [], "mapper_style": [],
             "mapper_mapping": []}
    glb = arch.levels[1].name
    per_cap = {c: best_per_schedule(arch.with_level(glb, capacity_bytes=c), workload) for c in caps}
    for sched in SCHEDULES:
        for c in caps:
            best = per_cap[c].get(sched)
            extra["mapper_bytes"].append(best["dram_bytes"] if best else math.nan)
            extra["mapper_min_bytes"].append(best["min_dram_bytes"] if best else math.nan)
            extra["mapper_latency_s"].append(best["latency_s"] if best else math.nan)
            extra["mapper_style"].append(best["style"] if best else "")
            extra["mapper_mapping"].append(best["label"] if best else "")
    for k, v in extra.items():
        df[k] = v
    return df


def plot_ski_slope(df, path, title: str | None = None):
    """One log-log figure: a bound curve per schedule, the mapper's points (when present)
    in the same colour, and the compulsory traffic as a dashed line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(10, 5))
    colors = {"unfused": "tab:red", "fused": "tab:orange", "fully_fused": "tab:blue"}
    for sched in SCHEDULES:
        d = df[(df.schedule == sched) & np.isfinite(df.bound_bytes)]
        ax.step(d.capacity_bytes, d.bound_bytes, where="post", color=colors[sched], label=f"bound: {sched}")
        if "mapper_bytes" in df:
            m = df[(df.schedule == sched) & np.isfinite(df.mapper_bytes)]
            ax.plot(m.capacity_bytes, m.mapper_bytes, "o", color=colors[sched], mfc="none",
                    label=f"mapper ({sched}), latency-best")
            ax.plot(m.capacity_bytes, m.mapper_min_bytes, "x", color=colors[sched],
                    label=f"mapper ({sched}), least traffic")
    ax.axhline(df.compulsory_bytes.iloc[0], ls="--", color="gray", label="compulsory")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("on-chip buffer capacity (bytes)")
    ax.set_ylabel("off-chip (DRAM) traffic (bytes)")
    ax.set_title(title or "attention: off-chip traffic vs on-chip capacity")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
