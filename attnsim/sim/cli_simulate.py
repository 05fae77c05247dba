"""`attnsim simulate`: the cycle-level spatial simulator on the command line.

    attnsim simulate gemm --rows 128 --cols 128 --dataflow ws --m 512 --n 512 --k 512 \\
        [--sram-ifmap '256 KiB' --sram-filter '256 KiB' --sram-ofmap '256 KiB'] [--dram-bw 64]
    attnsim simulate attention --arch fusemax_like --mapping fused --seq 4096 --heads 8

``add_parser(subparsers)`` adds the command to an argparse sub-parser set; each leaf sets
``func(args) -> exit code``.
"""
from __future__ import annotations

import argparse
import json

from attnsim.cli_shapes import add_shape_flags, workload_from_flags
from attnsim.errors import AttnsimError

DATAFLOWS = ("os", "ws", "is")
STYLES = ("fused", "row_fused", "unfused")


def add_parser(subparsers) -> argparse.ArgumentParser:
    sp = subparsers.add_parser("simulate", help="cycle-level simulation of a spatial design (systolic GEMM, "
                                                "attention on a 2D + 1D array)")
    sub = sp.add_subparsers(dest="simulate_command", required=True)

    g = sub.add_parser("gemm", help="one GEMM, ifmap (M x K) @ filter (K x N), on a systolic array")
    g.add_argument("--rows", type=int, required=True, help="array rows R")
    g.add_argument("--cols", type=int, required=True, help="array columns C")
    g.add_argument("--dataflow", choices=DATAFLOWS, required=True,
                   help="os: output stationary, ws: weight (filter) stationary, is: input (ifmap) stationary")
    g.add_argument("--m", type=int, required=True, help="ifmap rows (M)")
    g.add_argument("--n", type=int, required=True, help="filter columns (N)")
    g.add_argument("--k", type=int, required=True, help="reduction (K)")
    for buf in ("ifmap", "filter", "ofmap"):
        g.add_argument(f"--sram-{buf}", metavar="SIZE", help=f"{buf} buffer size, e.g. '64 KiB' (default unlimited)")
    g.add_argument("--dram-bw", type=float, metavar="BYTES_PER_CYCLE",
                   help="DRAM bandwidth in bytes per cycle (default unlimited)")
    g.add_argument("--word-bytes", type=int, default=2, help="bytes per element (default 2)")
    g.add_argument("--format", choices=["table", "json"], default="table")
    g.set_defaults(func=cmd_simulate_gemm)

    at = sub.add_parser("attention", help="attention, cycle by cycle: on a GPU (CTAs on SMs, shared L2/HBM, "
                                          "--timeline) or a spatial arch (unfused, row_fused, fused)")
    at.add_argument("--arch", default="fusemax_like", help="arch preset or YAML (default fusemax_like)")
    at.add_argument("--mapping", choices=STYLES, help="spatial schedule style (default: the arch's usual one)")
    at.add_argument("--algorithm", choices=["flash2", "flash3", "flash_decode", "flash2_kvcache"],
                    help="GPU kernel (default: as attnsim predict chooses)")
    at.add_argument("--timeline", help="GPU: write a per-SM timeline plot (PNG) to this path")
    at.add_argument("--explain", action="store_true", help="print the full breakdown")
    at.add_argument("--block-m", type=int, help="query rows per tile (default: the style's default)")
    at.add_argument("--block-n", type=int, help="keys per tile (default: the array width)")
    add_shape_flags(at)
    at.add_argument("--format", choices=["table", "json"], default="table")
    at.set_defaults(func=cmd_simulate_attention)
    return sp


def cmd_simulate_gemm(a) -> int:
    from attnsim.sim.spatial import simulate_gemm
    from attnsim.units import fmt_si, parse_size
    sram = {buf: parse_size(v) for buf, v in (("ifmap", a.sram_ifmap), ("filter", a.sram_filter),
                                              ("ofmap", a.sram_ofmap)) if v is not None}
    g = simulate_gemm(a.rows, a.cols, a.dataflow, a.m, a.n, a.k, sram_bytes=sram or None,
                      dram_bytes_per_cycle=a.dram_bw, word_bytes=a.word_bytes)
    if a.format == "json":
        print(json.dumps(g.to_dict(), indent=2, sort_keys=True))
        return 0
    mem = ", ".join(f"{b} {fmt_si(v, 'B')}" for b, v in sram.items()) or "unlimited"
    bw = f"{a.dram_bw:g} B/cycle" if a.dram_bw is not None else "unlimited"
    rows = [
        ("cycles", f"{g.cycles:,}  (compute {g.compute_cycles:,} + stall {g.stall_cycles:,})"),
        ("folds", f"{g.folds:,} x {g.fold_cycles:,} cycles"),
        ("MACs", f"{g.macs:,}"),
        ("utilization", f"{100 * g.utilization:.2f}%  (MACs / (cycles x {g.rows} x {g.cols}))"),
        ("mapping efficiency", f"{100 * g.mapping_efficiency:.2f}%"),
        ("SRAM reads (words)", f"ifmap {g.sram_reads['ifmap']:,}, filter {g.sram_reads['filter']:,}"),
        ("SRAM writes (words)", f"ofmap {g.sram_writes['ofmap']:,}"),
        ("SRAM peak words/cycle", ", ".join(f"{k} {v}" for k, v in g.sram_peak_words_per_cycle.items())),
        ("DRAM reads", f"ifmap {fmt_si(g.dram_reads['ifmap'], 'B')}, filter {fmt_si(g.dram_reads['filter'], 'B')}"),
        ("DRAM writes", f"ofmap {fmt_si(g.dram_writes['ofmap'], 'B')}"),
        ("DRAM busy", f"{g.dram_busy_cycles:,} cycles"),
    ]
    print(f"GEMM M={g.m} N={g.n} K={g.k} on a {g.rows} x {g.cols} {g.dataflow} array "
          f"(buffers: {mem}; DRAM: {bw}; {g.word_bytes} B words)")
    for name, value in rows:
        print(f"  {name:22s} {value}")
    return 0


def cmd_simulate_attention(a) -> int:
    from attnsim.arch import load_arch
    from attnsim.mapping.spatial import SpatialMapping, resolve_spatial_mapping
    from attnsim.sim.spatial import simulate_attention
    from attnsim.workload.spec import attention
    w = workload_from_flags(a)
    arch = load_arch(a.arch)
    if arch.kind == "gpu":
        if a.mapping:
            raise AttnsimError(f"--mapping {a.mapping} is a spatial schedule; on GPU arch {arch.name!r} use --algorithm")
        from attnsim.sim.gpu import cmd_simulate_gpu
        return cmd_simulate_gpu(a)
    if a.algorithm or a.timeline:
        raise AttnsimError(f"--algorithm and --timeline are for GPU archs; {arch.name!r} is spatial (use --mapping)")
    m = resolve_spatial_mapping(a.mapping, arch, w)
    if a.block_m is not None or a.block_n is not None:
        m = SpatialMapping(style=m.style, block_m=a.block_m or m.block_m, block_n=a.block_n or m.block_n)
    r = simulate_attention(arch, w, m)
    print(r.to_json() if a.format == "json" else r.explain())
    return 0
