"""`attnsim sweep`: a grid (or random sample) of design points into a Parquet table, with plots.

    attnsim sweep --arch h100_sxm5_80gb --seq 8192 --heads 32 --kv-heads 8 --causal --algorithm flash3 \\
        --vary arch.levels.SMEM.capacity=64KiB..256KiB:x2 --vary workload.seq_kv=1k,4k,16k \\
        -o smem.parquet --plot smem_plots
    attnsim sweep --file examples/sweeps/smem_vs_seq.yaml -o smem.parquet --executor dask --workers 4

See docs/sweeps.md. ``add_parser`` registers the subcommand on the main parser's subparsers.
"""
from __future__ import annotations

import argparse

from attnsim.errors import AttnsimError
from attnsim.mapping.kernel import ALGORITHMS

SHAPE_DEFAULTS = {"batch": 1, "heads": 32, "head_dim": 128, "sink": 0, "dtype": "bf16"}


def add_parser(subparsers) -> argparse.ArgumentParser:
    sw = subparsers.add_parser(
        "sweep", help="evaluate a grid of design points (any arch, workload or mapping field) into Parquet",
        description="Vary spec fields over a grid (or a random sample of it) and write one row per point. "
                    "A killed sweep re-run with the same command resumes where it stopped. See docs/sweeps.md.")
    src = sw.add_argument_group("what to sweep (flags, or a sweep file)")
    src.add_argument("--file", help="sweep YAML: base, vary, optional sample (examples/sweeps/)")
    src.add_argument("--arch", help="arch preset or YAML (the base point)")
    src.add_argument("--workload", help="workload preset or YAML (instead of the shape flags)")
    src.add_argument("--mapping", help="mapping preset or YAML for every point")
    src.add_argument("--algorithm", choices=list(ALGORITHMS) + ["best", "default"],
                     help="kernel family for every point; best runs the mapper per point (default: as predict)")
    src.add_argument("--vary", action="append", default=[], metavar="PATH=VALUES",
                     help="a varied field, e.g. arch.levels.SMEM.capacity=64KiB..256KiB:x2, "
                          "workload.seq_kv=1k,4k,16k (k = 1024), mapping=flash2,flash3; repeat for more axes")
    src.add_argument("--sample", type=int, metavar="N", help="evaluate N points drawn at random from the grid")
    src.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    shape = sw.add_argument_group("workload shape (as for predict)")
    shape.add_argument("--batch", type=int)
    shape.add_argument("--heads", type=int)
    shape.add_argument("--kv-heads", type=int, help="KV heads (GQA/MQA); default = heads")
    shape.add_argument("--seq", type=int, help="sequence length for both queries and keys")
    shape.add_argument("--seq-q", type=int)
    shape.add_argument("--seq-kv", type=int)
    shape.add_argument("--head-dim", type=int)
    shape.add_argument("--causal", action="store_true")
    shape.add_argument("--window", type=int, help="sliding window in keys (implies causal)")
    shape.add_argument("--sink", type=int)
    shape.add_argument("--density", type=float, help="block-sparse density in (0, 1]")
    shape.add_argument("--dtype", choices=["fp16", "bf16", "fp8", "fp32"])
    shape.add_argument("--family", help="attention family (default softmax); vary its parameters with "
                                        "--vary workload.params.NAME=...")
    shape.add_argument("--params", default="", help="the family's parameters, k=v,k=v")
    out = sw.add_argument_group("output and execution")
    out.add_argument("-o", "--output", required=True, help="output Parquet file (checkpoint parts in OUTPUT.d/)")
    out.add_argument("--csv", action="store_true", help="also write the table as CSV beside the Parquet file")
    out.add_argument("--plot", metavar="DIR", help="write the standard figures (PNG) into DIR")
    out.add_argument("--executor", choices=["inprocess", "processes", "dask"],
                     help="default inprocess; processes with --workers; dask with --scheduler")
    out.add_argument("--workers", type=int, help="worker processes (processes, or a local Dask cluster)")
    out.add_argument("--scheduler", metavar="ADDR", help="an existing Dask scheduler, e.g. tcp://10.0.0.5:8786")
    out.add_argument("--chunk-size", type=int, default=None, help="points per checkpointed chunk (default 50000)")
    out.add_argument("--overwrite", action="store_true", help="discard results of another sweep at OUTPUT")
    out.add_argument("--quiet", action="store_true", help="no progress bar")
    sw.set_defaults(func=cmd_sweep)
    return sw


def build_from_args(a):
    """The Sweep the flags describe."""
    from attnsim.sweep.spec import Sample, build_sweep, extend_sweep, load_sweep_file
    shape_given = [f for f in ("batch", "heads", "kv_heads", "seq", "seq_q", "seq_kv", "head_dim", "window", "sink",
                               "density", "dtype", "family") if getattr(a, f) is not None] + \
        (["causal"] if a.causal else []) + (["params"] if a.params else [])
    if a.file:
        given = [f"--{f}" for f in ("arch", "workload", "mapping", "algorithm") if getattr(a, f)]
        given += [f"--{f.replace('_', '-')}" for f in shape_given]
        if given:
            raise AttnsimError(f"--file gives the base point; drop {', '.join(given)} (or put it in the file)")
        sweep = load_sweep_file(a.file)
        if a.vary or a.sample is not None:
            sweep = extend_sweep(sweep, a.vary, Sample(a.sample, a.seed) if a.sample is not None else None)
        return sweep
    if not a.arch:
        raise AttnsimError("give --arch NAME (with --workload or shape flags, and --vary), or --file sweep.yaml")
    if not a.vary:
        raise AttnsimError("give at least one --vary PATH=VALUES, "
                           "e.g. --vary arch.levels.SMEM.capacity=64KiB..256KiB:x2")
    if a.workload:
        if shape_given:
            raise AttnsimError(f"give --workload or shape flags, not both (got --workload and "
                               f"{', '.join('--' + f.replace('_', '-') for f in shape_given)})")
        workload = a.workload
    else:
        workload = _workload_from_flags(a)
    if a.mapping and a.algorithm:
        raise AttnsimError("give --mapping or --algorithm, not both")
    return build_sweep(a.arch, workload, a.mapping or a.algorithm, a.vary,
                       sample=Sample(a.sample, a.seed) if a.sample is not None else None)


def _workload_from_flags(a):
    from attnsim.variant import parse_params
    from attnsim.workload.spec import attention
    if a.seq is None and (a.seq_q is None or a.seq_kv is None):
        raise AttnsimError("give --workload FILE, or --seq (or --seq-q and --seq-kv) with the shape flags")
    v = {k: getattr(a, k) if getattr(a, k) is not None else d for k, d in SHAPE_DEFAULTS.items()}
    return attention(a.family or "softmax", params=parse_params(a.params), batch=v["batch"], heads=v["heads"], kv_heads=a.kv_heads, seq=a.seq, seq_q=a.seq_q,
                     seq_kv=a.seq_kv, head_dim=v["head_dim"], causal=a.causal, window=a.window, sink=v["sink"],
                     density=a.density, dtype=v["dtype"])


def cmd_sweep(a) -> int:
    from attnsim.sweep.run import DEFAULT_CHUNK_SIZE, run_sweep
    sweep = build_from_args(a)
    executor = a.executor or ("dask" if a.scheduler else "processes" if a.workers else "inprocess")
    print(f"sweep: {len(sweep):,} points over {len(sweep.axes)} axes "
          f"({', '.join(f'{ax.param.path} x{len(ax)}' for ax in sweep.axes)}); executor {executor}", flush=True)
    run = run_sweep(sweep, a.output, executor=executor, workers=a.workers, scheduler=a.scheduler,
                    chunk_size=a.chunk_size or DEFAULT_CHUNK_SIZE, overwrite=a.overwrite, csv=a.csv,
                    progress=not a.quiet)
    print(f"wrote {run.path}: {len(run.table):,} rows, {run.n_ok:,} ok, {run.n_failed:,} with a reason in 'status' "
          f"({len(run.computed)} chunks computed, {len(run.reused)} reused from the checkpoint)")
    if run.csv_path:
        print(f"wrote {run.csv_path}")
    if a.plot:
        from attnsim.sweep.plots import standard_plots
        for p in standard_plots(run.table, sweep, a.plot):
            print(f"wrote {p}")
    return 0
