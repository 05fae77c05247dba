"""attnsim speed benchmarks (``make bench``).

    .venv/bin/python benchmarks/run.py            # full run; writes benchmarks/results.json, docs/benchmarks.md
    .venv/bin/python benchmarks/run.py --quick    # small run, prints only (add --write to write)
    .venv/bin/python benchmarks/run.py --profile  # also time each kind of design point separately

Figures (the unit is in the key name):

    analytical_gpu_points_per_s                 design points/s through the numba kernel
                                                ``attnsim.model.gpu_kernel.evaluate_points``, one core,
                                                best of 5 over a 200,000-point H100 sweep
    analytical_gpu_prefill_points_per_s         the same, over the batch's prefill points only (the
                                                decode points are cheap: their mask loop runs once)
    analytical_gpu_points_per_s_with_lowering   end-to-end ``attnsim.predict`` calls/s (resolve the
                                                mapping, lower to a row, evaluate, build the Result)
    lower_gpu_rows_per_s                        ``attnsim.model.lower.lower_gpu`` alone, rows/s
    numba_compile_s                             first call of ``evaluate_points`` with an empty numba
                                                cache (compile time a fresh install pays once)

A benchmark reports; it does not fail: the exit code is 0 even when a target is missed
(look for "TARGET MISSED" in the output).
"""
from __future__ import annotations

import argparse
import subprocess
import datetime as _dt
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = ROOT / "benchmarks" / "results.json"
DEFAULT_DOCS = ROOT / "docs" / "benchmarks.md"
TABLE_BEGIN, TABLE_END = "<!-- bench-table -->", "<!-- /bench-table -->"
ARCH = "h100_sxm5_80gb"

# One entry per figure: what it measures, its unit, and its target (None: reported only).
# `higher`: whether a larger figure is better (decides "met?").
FIGURES = {
    "analytical_gpu_points_per_s": dict(
        title="analytical GPU model, batch `evaluate_points` (numba, 1 core)",
        unit="points/s", target=1e6, higher=True),
    "analytical_gpu_prefill_points_per_s": dict(
        title="same, prefill points only (fused + unfused; no decode)",
        unit="points/s", target=None, higher=True),
    "analytical_gpu_points_per_s_with_lowering": dict(
        title="end-to-end `attnsim.predict` (Python: resolve, lower, evaluate, Result)",
        unit="calls/s", target=None, higher=True),
    "lower_gpu_rows_per_s": dict(
        title="`lower_gpu` alone (Python, with mapping check)",
        unit="rows/s", target=None, higher=True),
    "numba_compile_s": dict(
        title="first `evaluate_points` call, empty numba cache",
        unit="s", target=None, higher=False),
    "gpu_sim_fa_fwd_h100_b16_h16_n8k_s": dict(
        title="cycle-level GPU simulator: FA forward, H100, B16 H16 N8k D128 (1M tile events, 1 core)",
        unit="s", target=1.0, higher=False),
    "systolic_speedup_vs_scalesim_x": dict(
        title="systolic simulator vs SCALE-Sim 3.0.0, same GEMMs, identical cycles (geometric mean)",
        unit="x", target=1000.0, higher=True),
    "mapper_gpu_llama3_70b_prefill_8k_h100_s": dict(
        title="GPU mapper: best mapping, Llama-3-70B prefill 8k attention on H100",
        unit="s", target=1.0, higher=False),
    "mapper_spatial_fusemax_llama3_8b_prefill_8k_s": dict(
        title="spatial mapper: best fused mapping on fusemax_like, Llama-3-8B prefill 8k",
        unit="s", target=10.0, higher=False),
    "sweep_1m_points_s": dict(
        title="sweep of 1,000,000 points, 2 cores",
        unit="s", target=120.0, higher=False),
    "family_predict_calls_per_s": dict(
        title="`attnsim.predict` of every family preset (plans of kernels), H100, warm",
        unit="calls/s", target=None, higher=True),
    "capture_llama3_8b_two_layers_s": dict(
        title="`predict --model`: capture two Llama-3-8B layers (8k tokens, meta device) and cost them",
        unit="s", target=None, higher=False),
}
# Benchmark modules beside this file, each with run(quick) -> {figure: value}; each runs in its own
# process (they need both cores or their own numba state, unlike the pinned evaluation benchmark).
MODULES = ("bench_sim_gpu", "bench_systolic", "bench_mapper", "bench_sweep", "bench_families")
META_KEYS = ("machine", "date", "python", "numba", "numpy", "runs")


# ---------------------------------------------------------------- environment

def prepare_environment(cache_dir: str) -> int | None:
    """One core, one numba thread, a private (empty) numba cache. Call before importing numba."""
    os.environ["NUMBA_NUM_THREADS"] = "1"
    os.environ["NUMBA_CACHE_DIR"] = cache_dir
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    cpu = None
    if hasattr(os, "sched_setaffinity"):
        try:
            cpu = min(os.sched_getaffinity(0))
            os.sched_setaffinity(0, {cpu})
        except OSError:
            cpu = None
    return cpu


def cpu_model() -> str:
    name = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return name or platform.machine()


def machine_info(pinned_cpu) -> dict:
    return {"platform": platform.platform(), "processor": cpu_model(), "cpu_count": os.cpu_count(),
            "pinned_cpu": pinned_cpu}


def machine_short(m: dict) -> str:
    return f"{m.get('processor', '?')}, {m.get('cpu_count', '?')} CPUs, {m.get('platform', '?').split('-with-')[0]}"


# ---------------------------------------------------------------- design points

def base_cases(attnsim):
    """~60 distinct (workload, algorithm) pairs: prefill (flash2 / flash3 / unfused, causal and
    full, seq 1k..32k, head dim 64 / 128) and decode (flash_decode, seq_q 1 and 4)."""
    cases = []
    for alg in ("flash2", "flash3"):
        for causal in (True, False):
            for seq in (1024, 4096, 16384, 32768):
                for hd in (64, 128):
                    heads, kvh = (32, 8) if hd == 128 else (16, 16)
                    batch = max(1, 16384 // seq)
                    cases.append((attnsim.attention("softmax", batch=batch, heads=heads, kv_heads=kvh, seq=seq,
                                                    head_dim=hd, causal=causal), alg))
    for causal in (True, False):
        for seq in (1024, 4096):
            for hd in (64, 128):
                cases.append((attnsim.attention("softmax", batch=4, heads=16, seq=seq, head_dim=hd,
                                                causal=causal), "unfused"))
    for seq_kv in (1024, 4096, 16384, 32768):
        for hd in (64, 128):
            heads, kvh = (32, 8) if hd == 128 else (16, 2)
            for batch in (1, 16):
                cases.append((attnsim.attention("softmax", batch=batch, heads=heads, kv_heads=kvh, seq_q=1,
                                                seq_kv=seq_kv, head_dim=hd, causal=batch > 1), "flash_decode"))
            cases.append((attnsim.attention("softmax", batch=8, heads=heads, kv_heads=kvh, seq_q=4,
                                            seq_kv=seq_kv, head_dim=hd, causal=True), "flash_decode"))
    return cases


def lowered_base(attnsim, arch, cases):
    from attnsim.model.lower import lower_gpu
    import numpy as np
    return np.stack([lower_gpu(arch, w, attnsim.default_mapping(alg, arch, w)) for w, alg in cases])


def sweep_points(base, n: int, arch, seed: int = 0):
    """Tile the lowered rows to n and vary the numeric columns the way a design sweep does:
    sequence length, batch, block sizes, split count. Shared memory and registers are
    recomputed as ``attnsim.mapping.kernel`` does; a draw that would not fit keeps the lowered
    block sizes, so every point is a valid mapping."""
    import numpy as np
    from attnsim.model import gpu_kernel as K

    rng = np.random.default_rng(seed)
    p = base[np.arange(n) % len(base)].copy()
    style = p[:, K.STYLE]
    split = style == K.STYLE_SPLIT
    prefill = ~split
    # prefill: M = N from 1k..32k, batch 1..16
    seq = rng.choice([1024, 2048, 4096, 8192, 16384, 32768], n)
    p[prefill, K.M] = seq[prefill]
    p[prefill, K.N] = seq[prefill]
    p[prefill, K.B] = rng.choice([1, 2, 4, 8, 16], n)[prefill]
    # decode: context 1k..32k, batch 1..64, split-KV 1..16
    p[split, K.N] = seq[split]
    p[split, K.B] = rng.choice([1, 2, 4, 8, 16, 32, 64], n)[split]
    p[split, K.SPLIT] = rng.integers(1, 17, n)[split]
    # block sizes
    br = rng.choice([64, 128, 192], n).astype(float)
    bc = rng.choice([64, 128, 192], n).astype(float)
    eb, stages, warps = p[:, K.ELEM_BYTES], p[:, K.STAGES], p[:, K.WARPS]
    unfused = style == K.STYLE_UNFUSED
    smem = np.where(unfused, stages * (br + bc) * 64 * eb,
                    br * p[:, K.DP] * eb + stages * bc * (p[:, K.DP] + p[:, K.FP]) * eb)
    regs = np.ceil(br * (np.where(unfused, 0.0, p[:, K.FP]) + bc) / (32 * warps))
    ok = (smem <= arch.gpu.smem_per_cta_bytes) & (regs <= arch.gpu.max_registers_per_thread)
    p[ok, K.BR], p[ok, K.BC] = br[ok], bc[ok]
    p[ok, K.SMEM_CTA], p[ok, K.REGS] = smem[ok], np.maximum(1.0, regs[ok])
    return np.ascontiguousarray(p)


def point_classes(points):
    """Name of each point's kind, for the --profile breakdown."""
    import numpy as np
    from attnsim.model import gpu_kernel as K
    style, mask = points[:, K.STYLE], points[:, K.MASK]
    names = np.where(style == K.STYLE_UNFUSED, "unfused",
                     np.where(style == K.STYLE_SPLIT, "split_kv (decode)", "fused"))
    mk = np.where(mask == K.MK_CAUSAL, "causal", "full")
    return np.char.add(np.char.add(names.astype(str), " "), mk.astype(str))


# ---------------------------------------------------------------- benchmarks

def best_of(fn, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_points(attnsim, arch, n: int, repeats: int, profile: bool) -> tuple[dict, dict]:
    import numpy as np
    from attnsim.model import gpu_kernel as K

    cases = base_cases(attnsim)
    base = lowered_base(attnsim, arch, cases)
    points = sweep_points(base, n, arch)
    warm = np.ascontiguousarray(points[:256])
    t0 = time.perf_counter()
    K.evaluate_points(warm)  # compiles (the private cache is empty)
    compile_s = time.perf_counter() - t0
    out = K.evaluate_points(points)
    n_ok = int(np.sum(out[:, K.O_STATUS] == K.ST_OK))
    if n_ok != n:
        print(f"warning: {n - n_ok} of {n} sweep points did not fit (status != OK)", file=sys.stderr)
    t = best_of(lambda: K.evaluate_points(points), repeats)
    prefill = np.ascontiguousarray(points[points[:, K.STYLE] != K.STYLE_SPLIT])
    t_pre = best_of(lambda: K.evaluate_points(prefill), repeats)
    figures = {"analytical_gpu_points_per_s": n / t, "analytical_gpu_prefill_points_per_s": len(prefill) / t_pre,
               "numba_compile_s": compile_s}
    cls = point_classes(points)
    mix = {c: round(float(np.mean(cls == c)), 4) for c in sorted(set(cls.tolist()))}
    info = {"n_points": n, "n_distinct_lowered": len(base), "repeats": repeats, "best_s": round(t, 6),
            "n_ok": n_ok, "n_prefill": len(prefill), "mix": mix}
    if profile:
        print_profile(points, repeats)
    return figures, info


def print_profile(points, repeats: int) -> None:
    """Points/s per kind of point, and the mean trip count of the per-query-tile-row loop in
    ``mask_tile_stats`` (ceil(M / rows per CTA)) for each kind."""
    import numpy as np
    from attnsim.model import gpu_kernel as K

    cls = point_classes(points)
    bp = np.maximum(1, points[:, K.BR] // points[:, K.QPC])
    trips = np.ceil(points[:, K.M] / np.where(points[:, K.STYLE] == K.STYLE_UNFUSED, points[:, K.BR], bp))
    print(f"{'kind':<26}{'share':>8}{'points/s':>14}{'ns/point':>10}{'mean loop trips':>17}")
    for c in sorted(set(cls.tolist())):
        sel = np.ascontiguousarray(points[cls == c])
        t = best_of(lambda: K.evaluate_points(sel), repeats)
        print(f"{c:<26}{len(sel) / len(points):>8.1%}{len(sel) / t:>14.3e}{1e9 * t / len(sel):>10.0f}"
              f"{trips[cls == c].mean():>17.1f}")
    print("by sequence length (prefill):")
    pre = points[:, K.STYLE] != K.STYLE_SPLIT
    for s in sorted(set(points[pre, K.M].tolist())):
        sel = np.ascontiguousarray(points[pre & (points[:, K.M] == s)])
        t = best_of(lambda: K.evaluate_points(sel), repeats)
        print(f"  M = N = {int(s):>6}: {len(sel) / t:.3e} points/s ({1e9 * t / len(sel):.0f} ns/point)")
    # the same points with the mask loop short-circuited: MK_EXPLICIT reads precomputed stats
    from attnsim.model.gpu_kernel import mask_tile_stats
    fused = np.ascontiguousarray(points[points[:, K.STYLE] != K.STYLE_UNFUSED])
    expl = fused.copy()
    for i, r in enumerate(fused):
        bpi = max(1, int(r[K.BR]) // int(r[K.QPC]))
        s = mask_tile_stats(int(r[K.MASK]), int(r[K.M]), int(r[K.N]), bpi, int(r[K.BC]), int(r[K.WINDOW]),
                            int(r[K.SINK]), r[K.DENSITY], r[K.CAUSAL] > 0)
        expl[i, K.X_SUM], expl[i, K.X_MAX], expl[i, K.X_MIN] = s[0], s[1], s[2]
        expl[i, K.X_FULL], expl[i, K.X_ROWS], expl[i, K.X_ALLOWED] = s[3], s[4], s[5]
    expl[:, K.MASK] = K.MK_EXPLICIT
    t_loop = best_of(lambda: K.evaluate_points(fused), repeats)
    t_expl = best_of(lambda: K.evaluate_points(expl), repeats)
    print(f"fused + split_kv points: {len(fused) / t_loop:.3e} points/s as is; "
          f"{len(fused) / t_expl:.3e} points/s with the mask statistics precomputed "
          f"(the mask_tile_stats loop is {1 - t_expl / t_loop:.0%} of their time)")


def bench_python_path(attnsim, arch, calls: int) -> tuple[dict, dict]:
    from attnsim.model.lower import lower_gpu

    cases = base_cases(attnsim)
    maps = [attnsim.default_mapping(alg, arch, w) for w, alg in cases]
    for w, alg in cases[:8]:  # warm the imports and lazy paths
        attnsim.predict(arch, w, alg)

    def run_predict():
        for i in range(calls):
            w, alg = cases[i % len(cases)]
            attnsim.predict(arch, w, alg)

    def run_lower():
        for i in range(calls):
            j = i % len(cases)
            lower_gpu(arch, cases[j][0], maps[j])

    t_pred = best_of(run_predict, 3)
    t_low = best_of(run_lower, 3)
    return ({"analytical_gpu_points_per_s_with_lowering": calls / t_pred, "lower_gpu_rows_per_s": calls / t_low},
            {"n_calls": calls, "repeats": 3})


# ---------------------------------------------------------------- output

def target_text(key: str) -> str:
    spec = FIGURES.get(key, {})
    if spec.get("target") is None:
        return "-"
    return (">= " if spec.get("higher", True) else "<= ") + fmt(spec["target"])


def met(key: str, value: float) -> bool | None:
    spec = FIGURES.get(key, {})
    if spec.get("target") is None:
        return None
    return value >= spec["target"] if spec.get("higher", True) else value <= spec["target"]


def fmt(v: float) -> str:
    if v == 0 or 1e-2 <= abs(v) < 1e4:
        return f"{v:.3g}"
    return f"{v:.3g}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


def unit_of(key: str) -> str:
    if key in FIGURES:
        return FIGURES[key]["unit"]
    for suffix, unit in (("_per_s", "1/s"), ("_s_per_gemm", "s"), ("_x", "x"), ("_s", "s"), ("_bytes", "B"), ("_pct", "%")):
        if key.endswith(suffix):
            return unit
    return ""


def merge_results(path: Path, figures: dict, meta: dict, runs: dict) -> dict:
    data = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            print(f"warning: {path} is not valid JSON; starting a new one", file=sys.stderr)
            data = {}
    data.update(figures)
    data.update(meta)
    data.setdefault("runs", {})
    data["runs"] = {**data["runs"], **runs} if isinstance(data["runs"], dict) else runs
    ordered = {k: data[k] for k in sorted(data) if k not in META_KEYS}
    ordered.update({k: data[k] for k in META_KEYS if k in data})
    return ordered


def table(data: dict) -> str:
    rows = ["| benchmark | figure | unit | target | met? | machine | date |",
            "|---|---:|---|---|---|---|---|"]
    runs = data.get("runs", {}) if isinstance(data.get("runs"), dict) else {}
    keys = [k for k in FIGURES if k in data] + sorted(k for k in data if k not in FIGURES and k not in META_KEYS
                                                       and isinstance(data[k], (int, float)))
    for key in keys:
        v = float(data[key])
        ok = met(key, v)
        run = runs.get(key, {})
        machine = run.get("machine") or machine_short(data.get("machine", {}))
        date = (run.get("date") or data.get("date", ""))[:10]
        title = FIGURES.get(key, {}).get("title", "")
        name = f"`{key}`" + (f"<br>{title}" if title else "")
        rows.append(f"| {name} | {fmt(v)} | {unit_of(key)} | {target_text(key)} | "
                    f"{'-' if ok is None else ('yes' if ok else '**no**')} | {machine} | {date} |")
    return "\n".join(rows)


DOC_INTRO = """# Benchmarks

How fast attnsim evaluates design points. Run them with

    make bench            # = .venv/bin/python benchmarks/run.py

which prints one line per benchmark, writes `benchmarks/results.json` (one key per figure,
the unit in the key name, merged into the existing file) and regenerates the table below.
`benchmarks/run.py --quick` is a small run that writes nothing unless given `--write`;
`--profile` also times each kind of design point separately. A benchmark reports, it does
not fail: a missed target prints `TARGET MISSED` and still exits 0. The test suite only
checks that the benchmark runs (`tests/unit/test_benchmarks_smoke.py`); speed goals live here.

## What is measured

- **`analytical_gpu_points_per_s`**: the analytical GPU model's hot loop,
  `attnsim.model.gpu_kernel.evaluate_points` (numba), on one core (`NUMBA_NUM_THREADS=1`,
  process pinned to one CPU). The batch is 200,000 H100 design points: about 60 distinct
  rows lowered by `lower_gpu` (flash2, flash3, flash-decoding and unfused mappings; causal
  and full masks; sequence 1k..32k; head dim 64 and 128; decode with 1 and 4 queries),
  tiled and varied in numpy the way a sweep varies them (sequence length, batch, block sizes
  64/128/192, split-KV 1..16), with shared memory and registers recomputed so every point is
  a mapping that fits. Compiled first on a small slice, then timed over the whole batch, best
  of 5 (`time.perf_counter`). **Target (project issue): at least 1,000,000 GPU kernel design
  points per second per core.**
- **`analytical_gpu_prefill_points_per_s`**: the same kernel over the batch's prefill points
  only (fused and unfused, 5/8 of the batch). Decode points cost far less (one query tile
  row), so this is the figure to watch for prefill-heavy sweeps; the mix is recorded under
  `runs` in `results.json`.
- **`analytical_gpu_points_per_s_with_lowering`**: end-to-end `attnsim.predict(arch, workload,
  algorithm)` calls per second over 2,000 calls (an `Arch` value, so no YAML parsing): the
  Python path that resolves the mapping, checks and lowers it, evaluates one row and builds
  a `Result`. This is what one-at-a-time use costs; sweeps should lower once and batch.
- **`lower_gpu_rows_per_s`**: `lower_gpu` alone (mapping check included), rows per second.
- **`numba_compile_s`**: the first call of `evaluate_points` with an empty, private numba
  cache: the one-time compile a fresh install pays (later processes load the cache).

## Results

"""


def write_docs(path: Path, data: dict) -> None:
    block = f"{TABLE_BEGIN}\n{table(data)}\n{TABLE_END}"
    if path.exists():
        text = path.read_text()
        i, j = text.find(TABLE_BEGIN), text.find(TABLE_END)
        text = (text[:i] + block + text[j + len(TABLE_END):]) if 0 <= i < j else text.rstrip() + "\n\n" + block + "\n"
    else:
        text = DOC_INTRO + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# ---------------------------------------------------------------- main

def run_module(name: str, quick: bool) -> dict:
    """Run benchmarks/<name>.py's run(quick) in a fresh process; {} (with a note) when it is absent or fails."""
    here = Path(__file__).resolve().parent
    if not (here / f"{name}.py").exists():
        print(f"{name}: not present, skipped")
        return {}
    code = (f"import json, sys; sys.path.insert(0, {str(here)!r}); import {name}; "
            f"print('BENCH-JSON ' + json.dumps({name}.run(quick={quick!r})))")
    # the evaluation benchmark pinned this process to one core and one thread: give modules the machine
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_NUM_THREADS", "NUMBA_CACHE_DIR", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                        "MKL_NUM_THREADS")}
    unpin = (lambda: os.sched_setaffinity(0, range(os.cpu_count()))) if hasattr(os, "sched_setaffinity") else None
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, preexec_fn=unpin)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("BENCH-JSON ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        print(f"{name}: FAILED ({' | '.join(tail)})")
        return {}
    figures = {k: float(v) for k, v in json.loads(lines[-1][len("BENCH-JSON "):]).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for k, v in figures.items():
        verdict = met(k, v)
        print(f"{k}: {fmt(v)} {unit_of(k)}" + ("" if verdict is None else
                                                 f" (target {target_text(k)}: {'met' if verdict else 'TARGET MISSED'})"))
    return figures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer points and calls; writes nothing unless --write")
    ap.add_argument("--write", action="store_true", help="with --quick: write the results and docs anyway")
    ap.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="results JSON (merged into)")
    ap.add_argument("--docs", type=Path, default=DEFAULT_DOCS, help="markdown page with the results table")
    ap.add_argument("--points", type=int, help="design points in the batch (default 200000; 20000 with --quick)")
    ap.add_argument("--calls", type=int, help="predict calls (default 2000; 200 with --quick)")
    ap.add_argument("--repeats", type=int, help="timed runs, best taken (default 5; 2 with --quick)")
    ap.add_argument("--profile", action="store_true", help="also time each kind of design point")
    ap.add_argument("--no-modules", action="store_true",
                    help="skip the other benchmark modules (" + ", ".join(MODULES) + ")")
    args = ap.parse_args(argv)
    n = args.points or (20_000 if args.quick else 200_000)
    calls = args.calls or (200 if args.quick else 2_000)
    repeats = args.repeats or (2 if args.quick else 5)

    cache_dir = tempfile.mkdtemp(prefix="attnsim-bench-numba-")
    pinned = prepare_environment(cache_dir)
    try:
        import numba
        import numpy as np
        import attnsim

        arch = attnsim.load_arch(ARCH)
        fig1, info1 = bench_points(attnsim, arch, n, repeats, args.profile)
        fig2, info2 = bench_python_path(attnsim, arch, calls)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)

    figures = {**fig1, **fig2}
    module_runs = {}
    for name in () if args.no_modules else MODULES:
        got = run_module(name, args.quick)
        figures.update(got)
        module_runs.update({k: {"module": f"benchmarks/{name}.py"} for k in got})
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    machine = machine_info(pinned)
    meta = {"machine": machine, "date": now, "python": platform.python_version(), "numba": numba.__version__,
            "numpy": np.__version__}
    run_info = {"date": now, "machine": machine_short(machine), "quick": bool(args.quick)}
    runs = {"analytical_gpu_points_per_s": {**run_info, **info1},
            "analytical_gpu_prefill_points_per_s": {**run_info, "n_points": info1["n_prefill"], "repeats": repeats},
            "numba_compile_s": {**run_info, "n_points": 256},
            "analytical_gpu_points_per_s_with_lowering": {**run_info, **info2},
            "lower_gpu_rows_per_s": {**run_info, **info2},
            **{k: {**run_info, **v} for k, v in module_runs.items()}}

    pts = figures["analytical_gpu_points_per_s"]
    print(f"analytical_gpu_points_per_s: {pts:,.0f} points/s ({n:,} H100 points, {info1['n_distinct_lowered']} "
          f"distinct lowered rows, best of {repeats}: {info1['best_s'] * 1e3:.1f} ms; 1 core) "
          f"target >= {FIGURES['analytical_gpu_points_per_s']['target']:,.0f}: "
          + ("met" if met("analytical_gpu_points_per_s", pts) else "TARGET MISSED"))
    print(f"analytical_gpu_prefill_points_per_s: {figures['analytical_gpu_prefill_points_per_s']:,.0f} points/s "
          f"(the batch's {info1['n_prefill']:,} prefill points alone)")
    print(f"analytical_gpu_points_per_s_with_lowering: {figures['analytical_gpu_points_per_s_with_lowering']:,.0f} "
          f"attnsim.predict calls/s ({calls:,} calls, best of 3)")
    print(f"lower_gpu_rows_per_s: {figures['lower_gpu_rows_per_s']:,.0f} rows/s ({calls:,} rows, best of 3)")
    print(f"numba_compile_s: {figures['numba_compile_s']:.2f} s (first evaluate_points call, empty cache)")

    if args.quick and not args.write:
        print("--quick: nothing written (add --write to write the results and docs)")
        return 0
    data = merge_results(args.results, figures, meta, runs)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(data, indent=2) + "\n")
    write_docs(args.docs, data)
    print(f"wrote {args.results} and {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
