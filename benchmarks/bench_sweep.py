"""Sweep benchmarks: a million-point buffer-size sweep end to end, and Dask scaling.

    .venv/bin/python benchmarks/bench_sweep.py            # full run, prints JSON
    .venv/bin/python benchmarks/bench_sweep.py --quick    # 65,536 points, for a smoke test

Figures (wall-clock seconds with ``time.perf_counter``; everything a user's ``attnsim sweep -o``
pays: building the grid, evaluating, writing each checkpointed Parquet part, the manifest and
the final table; numba caches warm, progress bar off):

    sweep_1m_points_s               BUFFER sweep (1,048,576 points), processes executor, 2 workers
    sweep_1m_points_inprocess_s     the same sweep, inprocess executor
    sweep_1m_points_per_s           points / sweep_1m_points_s
    sweep_dask_{1,2,4}_workers_s    BUFFER sweep on a distributed.LocalCluster of N single-threaded
                                    worker processes on 127.0.0.1 (cluster start and a warm-up sweep
                                    excluded); sweep_dask_speedup_{2,4}_workers_x = 1-worker / N-worker
    sweep_lowering_*                the same for LOWERING, a sweep in which every point is its own
                                    structural group (decode: batch x KV length x head dim, the
                                    split-KV heuristic re-run per point): the per-point Python path,
                                    the case that needs more cores
    machine_parallel_speedup_2_procs_x
                                    control: 2 processes running pure-Python loops vs 1 (2.0 on two
                                    free cores); speedups above cannot exceed what this allows
    quick: the same keys with `1m` replaced by the point count (e.g. sweep_65536_points_s)

A benchmark reports; it does not fail. The machine's core count is in the output: with 2 cores,
4 workers cannot beat 2.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ARCH = "h100_sxm5_80gb"
# 4 x 8 x 16 x 16 x 8 x 16 = 1,048,576 points; 32 structural groups (seq x batch); SMEM below the
# 160 KiB a flash3 128x128 tile needs fails with its reason (4 of 16 capacities)
BUFFER_VARY = ["workload.seq=1k..8k:x2", "workload.batch=1..128:x2",
               "arch.levels.SMEM.capacity=96KiB..336KiB:+16KiB", "arch.levels.HBM.bandwidth=2TB/s..5.75TB/s:+0.25TB/s",
               "arch.levels.L2.capacity=10MB..80MB:+10MB", "arch.clock=1GHz..2.5GHz:+0.1GHz"]
QUICK_BUFFER_VARY = ["workload.seq=1k..8k:x2", "workload.batch=1..8:x2",
                     "arch.levels.SMEM.capacity=96KiB..336KiB:+16KiB",
                     "arch.levels.HBM.bandwidth=2TB/s..5.75TB/s:+0.25TB/s",
                     "arch.levels.L2.capacity=20MB..80MB:+20MB", "arch.clock=1.4GHz,1.8GHz,2.2GHz,2.6GHz"]
LOWERING_VARY = ["workload.batch=1..250", "workload.seq_kv=1k..200k:+1k", "workload.head_dim=64,128"]
QUICK_LOWERING_VARY = ["workload.batch=1..50", "workload.seq_kv=1k..100k:+1k", "workload.head_dim=64,128"]
CHUNK = 65_536
LOWERING_CHUNK = 10_000


def buffer_sweep(quick: bool):
    import attnsim
    from attnsim.sweep import build_sweep
    w = attnsim.attention("softmax", batch=1, heads=32, kv_heads=8, seq=8192, head_dim=128, causal=True)
    return build_sweep(ARCH, w, "flash3", QUICK_BUFFER_VARY if quick else BUFFER_VARY)


def lowering_sweep(quick: bool):
    import attnsim
    from attnsim.sweep import build_sweep
    w = attnsim.attention("softmax", batch=1, heads=32, kv_heads=8, seq_q=1, seq_kv=8192, head_dim=128)
    return build_sweep(ARCH, w, "flash_decode", QUICK_LOWERING_VARY if quick else LOWERING_VARY)


def timed(sweep, chunk: int, **kw) -> tuple[float, object]:
    from attnsim.sweep import run_sweep
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        run = run_sweep(sweep, Path(d) / "out.parquet", chunk_size=chunk, progress=False, **kw)
        return time.perf_counter() - t0, run


def dask_scaling(sweeps: dict, workers: tuple[int, ...]) -> dict[str, dict[int, float]]:
    """Seconds per sweep on LocalClusters of 1, 2, 4 workers (started, warmed, then timed)."""
    import logging
    from distributed import LocalCluster
    from attnsim.sweep import Sample, Sweep
    times: dict[str, dict[int, float]] = {name: {} for name in sweeps}
    for n in workers:
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None, silence_logs=logging.ERROR) as cluster:
            addr = cluster.scheduler_address
            for name, (sweep, chunk) in sweeps.items():
                # warm every worker (imports, numba cache) on a small sample: another sweep, so that
                # the timed run finds none of its own groups cached on the workers
                warm = Sweep(sweep.arch, sweep.workload, sweep.mapping, sweep.axes, Sample(8 * n, seed=n))
                timed(warm, 8, executor="dask", scheduler=addr)
                times[name][n] = timed(sweep, chunk, executor="dask", scheduler=addr)[0]
    return times


def _spin(n: int) -> float:
    t0 = time.perf_counter()
    total = 0
    for i in range(n):
        total += i * i
    return time.perf_counter() - t0


def machine_parallelism(n: int = 5_000_000) -> float:
    """Control: how much faster 2 processes finish 2 units of pure-Python work than 1 process
    finishes 1 unit, x2 (2.0 on two free cores; 1.0 when the cores share one core's time)."""
    import multiprocessing
    one = _spin(n)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_spin, [1000, 1000])  # start both workers before timing
        t0 = time.perf_counter()
        pool.map(_spin, [n, n])
        two = time.perf_counter() - t0
    return 2 * one / two


def use_every_cpu() -> list[int]:
    """benchmarks/run.py pins itself to one CPU for its single-core figure, and a process started
    from it inherits that: a sweep's workers need all of them, as a user's would have."""
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, range(os.cpu_count() or 1))
        except OSError:
            pass
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def run(quick: bool = False) -> dict:
    """Measure and return the figures (see the module docstring for the keys)."""
    cpus = use_every_cpu()
    from attnsim.sweep import Sample, Sweep
    buf, low = buffer_sweep(quick), lowering_sweep(quick)
    # one small sweep end to end first: numba cache (or compile), pyarrow's Parquet writer, imports
    timed(Sweep(buf.arch, buf.workload, buf.mapping, buf.axes, Sample(256, seed=1)), 64)
    tag = f"{len(buf)}" if quick else "1m"
    out: dict = {"machine_parallel_speedup_2_procs_x": machine_parallelism()}
    t_in, run_in = timed(buf, CHUNK)
    t_pr, run_pr = timed(buf, CHUNK, executor="processes", workers=2)
    out[f"sweep_{tag}_points_s"] = t_pr
    out[f"sweep_{tag}_points_inprocess_s"] = t_in
    out[f"sweep_{tag}_points_per_s"] = len(buf) / t_pr
    t_low_in, _ = timed(low, LOWERING_CHUNK)
    t_low_pr, _ = timed(low, LOWERING_CHUNK, executor="processes", workers=2)
    out["sweep_lowering_points_inprocess_s"] = t_low_in
    out["sweep_lowering_points_s"] = t_low_pr
    scaling = dask_scaling({"buffer": (buf, CHUNK), "lowering": (low, LOWERING_CHUNK)}, (1, 2, 4))
    for prefix, name in (("sweep_dask", "buffer"), ("sweep_lowering_dask", "lowering")):
        t = scaling[name]
        for n, s in t.items():
            out[f"{prefix}_{n}_workers_s"] = s
        for n in (2, 4):
            out[f"{prefix}_speedup_{n}_workers_x"] = t[1] / t[n]
    out["runs"] = {"buffer_points": len(buf), "buffer_ok": run_in.n_ok, "buffer_vary": buf.describe()["vary"],
                   "lowering_points": len(low), "lowering_vary": low.describe()["vary"],
                   "chunk_size": CHUNK, "lowering_chunk_size": LOWERING_CHUNK, "cpu_count": os.cpu_count(),
                   "cpus_used": cpus,
                   "machine": platform.platform(), "python": platform.python_version(), "quick": quick,
                   "identical_tables_inprocess_vs_processes": bool(run_in.table.equals(run_pr.table))}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="65,536-point sweeps")
    a = p.parse_args(argv)
    print(json.dumps(run(quick=a.quick), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
