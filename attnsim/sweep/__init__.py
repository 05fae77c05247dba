"""Parameter sweeps: grids (or random samples) over any arch, workload or mapping field,
evaluated in bulk, checkpointed to Parquet, in one process, local processes or on Dask.

    from attnsim.sweep import build_sweep, run_sweep
    s = build_sweep("h100_sxm5_80gb", attnsim.attention(seq=8192, heads=32, kv_heads=8, causal=True),
                    "flash3", ["arch.levels.SMEM.capacity=64KiB..256KiB:x2", "workload.seq_kv=1k,4k,16k"])
    table = run_sweep(s, "smem.parquet").table        # one row per point; docs/sweeps.md

Modules: ``params`` (paths and values), ``spec`` (axes, the grid, YAML sweep files),
``evaluate`` (a chunk of points -> rows), ``executors``, ``run`` (checkpointed runs), ``plots``.
"""
from attnsim.sweep.run import SweepRun, evaluate_sweep, run_sweep
from attnsim.sweep.spec import Axis, Sample, Sweep, build_sweep, extend_sweep, load_sweep_file, parse_vary

__all__ = ["Axis", "Sample", "Sweep", "SweepRun", "build_sweep", "evaluate_sweep", "extend_sweep",
           "load_sweep_file", "parse_vary", "run_sweep"]
