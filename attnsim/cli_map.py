"""`attnsim map` (search the mapping space) and `attnsim bound` (the off-chip traffic ski slope).

``add_parsers(subparsers)`` adds both commands to the `attnsim` parser. Errors are raised as
AttnsimError (the main CLI prints them without a traceback).
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

from attnsim.cli_shapes import add_shape_flags, workload_from_flags
from attnsim.errors import AttnsimError, Problem, SpecError
from attnsim.units import UnitError, fmt_si, format_quantity, parse_size

CAPACITY_RANGE = re.compile(r"^\s*(?P<lo>[^.]+?)\s*\.\.\s*(?P<hi>[^:]+?)\s*:\s*x\s*(?P<factor>[0-9.eE+]+)\s*$")
MAX_CAPACITIES = 200


def parse_capacities(text: str) -> list[float]:
    """'64KiB..64MiB:x2' (from A to B, times F each step, B included when hit) or a comma list
    '1 MiB, 8 MiB' -> bytes."""
    def size(t):
        try:
            return parse_size(t.strip())
        except UnitError as e:
            raise SpecError(Problem(str(e), key="--capacities", hint="e.g. 64KiB..64MiB:x2 or '1 MiB,8 MiB'"))
    m = CAPACITY_RANGE.match(text)
    if m is None:
        if ".." in text:
            raise SpecError(Problem(f"expected a range A..B:xF such as 64KiB..64MiB:x2, got {text!r}",
                                    key="--capacities"))
        caps = [size(t) for t in text.split(",") if t.strip()]
        if not caps:
            raise SpecError(Problem(f"expected capacities, got {text!r}", key="--capacities"))
        return sorted(caps)
    lo, hi = size(m["lo"]), size(m["hi"])
    try:
        factor = float(m["factor"])
    except ValueError:
        factor = math.nan
    if not factor > 1 or lo <= 0 or hi < lo:
        raise SpecError(Problem(f"expected 0 < A <= B and a factor > 1, got {text!r}", key="--capacities"))
    caps, c = [], lo
    while c <= hi * (1 + 1e-12):
        caps.append(c)
        c *= factor
        if len(caps) > MAX_CAPACITIES:
            raise SpecError(Problem(f"{text!r} gives more than {MAX_CAPACITIES} capacities", key="--capacities",
                                    hint="use a larger factor"))
    return caps


def _shape_flags(p) -> None:
    p.add_argument("--arch", required=True, help="arch preset name or YAML")
    p.add_argument("--workload", help="workload YAML or preset (instead of the shape flags)")
    add_shape_flags(p)


def _workload(a):
    return workload_from_flags(a)


def add_parsers(subparsers) -> None:
    mp = subparsers.add_parser("map", help="search the mapping space for the best mappings of one workload")
    _shape_flags(mp)
    mp.add_argument("--unroll", action="store_true",
                    help="spatial archs: also search the array's spatial unrolling (os, ws, is dataflows)")
    mp.add_argument("--objective", default="latency", choices=["latency", "energy", "edp"],
                    help="what to minimize (edp = energy x latency)")
    mp.add_argument("--top-k", type=int, default=10)
    mp.add_argument("--seed", type=int, default=0, help="seed of the random sample (with --max-points)")
    mp.add_argument("--max-points", type=int, help="GPU: evaluate a random sample of this many legal points")
    mp.add_argument("--format", choices=["table", "json"], default="table")
    mp.set_defaults(func=cmd_map)

    bp = subparsers.add_parser("bound", help="off-chip traffic lower bounds vs on-chip capacity (ski slope)")
    _shape_flags(bp)
    bp.add_argument("--capacities", default="64KiB..64MiB:x2",
                    help="A..B:xF (geometric range) or a comma list of sizes (default 64KiB..64MiB:x2)")
    bp.add_argument("--out", default="bound", help="directory for ski_slope.csv and ski_slope.png")
    bp.set_defaults(func=cmd_bound)


# ---------------------------------------------------------------- map

def _search(arch, w, a):
    if arch.kind == "spatial":
        from attnsim.mapping.spatial_search import search_spatial
        return search_spatial(arch, w, objective=a.objective, top_k=a.top_k, seed=a.seed, unroll=a.unroll)
    from attnsim.mapping.search import search_gpu
    space = {"max_points": a.max_points} if a.max_points else None
    return search_gpu(arch, w, objective=a.objective, top_k=a.top_k, seed=a.seed, space=space)


def _fields(m) -> dict:
    from dataclasses import fields
    return {f.name: getattr(m, f.name) for f in fields(m) if f.name not in ("name", "registers_per_thread")}


def _reasons(d: dict) -> str:
    return "; ".join(f"{k} {v:,}" for k, v in sorted(d.items(), key=lambda kv: -kv[1])) or "none"


def cmd_map(a) -> int:
    from attnsim.arch import load_arch
    if a.top_k < 1:
        raise SpecError(Problem(f"expected a positive integer, got {a.top_k}", key="--top-k"))
    arch, w = load_arch(a.arch), _workload(a)
    r = _search(arch, w, a)
    if a.format == "json":
        print(json.dumps(map_json(r, arch, w), indent=2, default=str))
        return 0
    print(f"best mapping for {w.label()} on {arch.name} (objective: {r.objective})")
    print("  " + ", ".join(f"{k} {v}" for k, v in _fields(r.best).items()))
    if r.best_ties > 1:
        print(f"  ({r.best_ties:,} evaluated points tie with it: the model scores them the same)")
    print()
    print(r.best_result.explain())
    print()
    print(top_table(r))
    print()
    print(r.counts_line())
    print(f"illegal: {_reasons(r.illegal_reasons)}")
    if r.pruned:
        print(f"pruned: {_reasons(r.pruned_reasons)}")
    return 0


def top_table(r) -> str:
    first = r.top[0][1]
    traffic_level = next(iter(first.traffic_bytes))
    head = f"{'rank':>4}  {'mapping':44s} {'latency':>10s} {'energy':>10s} {traffic_level:>10s}  bound"
    lines = [f"top {len(r.top)} by {r.objective}:", head]
    for i, (m, res) in enumerate(r.top, 1):
        label = m.label() + (f" g{m.q_heads_per_cta}" if getattr(m, "q_heads_per_cta", 1) > 1 else "")
        lines.append(f"{i:>4}  {label:44s} {fmt_si(res.latency_s, 's'):>10s} {fmt_si(res.energy_total_j, 'J'):>10s} "
                     f"{fmt_si(res.traffic_bytes[traffic_level], 'B'):>10s}  {res.bound}")
    return "\n".join(lines)


def map_json(r, arch, w) -> dict:
    return {"arch": arch.name, "workload": w.label(), "objective": r.objective,
            "best": {"mapping": _fields(r.best), "label": r.best.label(), "result": r.best_result.to_dict()},
            "top": [{"rank": i, "mapping": _fields(m), "label": m.label(), "latency_s": res.latency_s,
                     "energy_j": res.energy_total_j, "traffic_bytes": res.traffic_bytes, "bound": res.bound}
                    for i, (m, res) in enumerate(r.top, 1)],
            "space_size": r.space_size, "evaluated": r.evaluated, "illegal": r.illegal,
            "illegal_reasons": r.illegal_reasons, "pruned": r.pruned, "pruned_reasons": r.pruned_reasons,
            "sampled_out": r.sampled_out, "best_ties": r.best_ties, "seconds": r.seconds}


# ---------------------------------------------------------------- bound

def cmd_bound(a) -> int:
    from attnsim.arch import load_arch
    from attnsim.model.lower_bounds import SCHEDULES, offchip_traffic_bound, plot_ski_slope, ski_slope
    arch, w = load_arch(a.arch), _workload(a)
    caps = parse_capacities(a.capacities)
    df = ski_slope(w, caps, arch=arch)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "ski_slope.csv", index=False)
    plot_ski_slope(df, out / "ski_slope.png", title=f"{w.label()} (mapper on {arch.name})"
                   if "mapper_bytes" in df else w.label())
    comp = float(df.compulsory_bytes.iloc[0])
    print(f"off-chip traffic bounds for {w.label()}; compulsory {fmt_si(comp, 'B')}")
    print(bound_table(df))
    for sched in SCHEDULES:
        d = df[(df.schedule == sched) & (df.bound_bytes <= comp * (1 + 1e-12))]
        where = f"from {_size(d.capacity_bytes.min())}" if len(d) else "not within the range"
        print(f"  {sched:12s} reaches compulsory traffic {where}")
    level = arch.levels[1]
    c = level.capacity_bytes * (level.instances if arch.kind == "gpu" else 1)
    at = ", ".join(f"{s} {fmt_si(offchip_traffic_bound(w, c, s), 'B')}" for s in SCHEDULES)
    print(f"  at {arch.name}'s {level.name} capacity ({_size(c)}): {at}")
    if arch.kind != "spatial":
        print(f"  ({arch.name} is a GPU: no mapper points; the spatial mapper overlays its points on a spatial arch)")
    print(f"wrote {out / 'ski_slope.csv'} and {out / 'ski_slope.png'}")
    return 0


def bound_table(df) -> str:
    """Bound per (schedule, capacity); with mapper points: the latency-best mapping's DRAM bytes,
    the least DRAM bytes of any legal mapping of the class, each as a multiple of the bound."""
    has_mapper = "mapper_bytes" in df
    head = f"  {'capacity':>10s}  {'schedule':12s} {'bound':>10s}"
    if has_mapper:
        head += f" {'mapper':>10s} {'x bound':>8s} {'least':>10s} {'x bound':>8s}  latency-best mapping"
    lines = [head]
    for _, r in df.sort_values(["schedule", "capacity_bytes"], key=lambda s: s.map(
            {"unfused": 0, "fused": 1, "fully_fused": 2}) if s.name == "schedule" else s).iterrows():
        line = f"  {_size(r.capacity_bytes):>10s}  {r.schedule:12s} {_b(r.bound_bytes):>10s}"
        if has_mapper:
            if math.isfinite(r.mapper_bytes):
                best, least = r.mapper_bytes, r.mapper_min_bytes
                line += (f" {_b(best):>10s} {best / r.bound_bytes:8.2f} {_b(least):>10s} "
                         f"{least / r.bound_bytes:8.2f}  {r.mapper_mapping}")
            else:
                line += f" {'no fit':>10s}"
        lines.append(line)
    return "\n".join(lines)


def _size(v: float) -> str:
    return format_quantity(v, "size", binary=True)


def _b(v: float) -> str:
    return fmt_si(v, "B") if math.isfinite(v) else "no fit"
