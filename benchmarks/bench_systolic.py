"""SCALE-Sim 3.0.0 and attnsim's systolic simulator on the same GEMMs, side by side in one run.

    .venv/bin/python benchmarks/bench_systolic.py            # 32x32: 256^3; 128x128: 512^3, 1x4096x128
    .venv/bin/python benchmarks/bench_systolic.py --quick    # two small GEMMs

Every GEMM runs on all three dataflows (os, ws, is). Figures (the unit is in the key name):

    systolic_speedup_vs_scalesim_x   geometric mean over the GEMMs of SCALE-Sim seconds / attnsim
                                     seconds (None without scalesim installed)
    systolic_sim_gemms_per_s         ``attnsim.sim.spatial.simulate_gemm`` calls per second over the
                                     set (numba compiled first; best of repeated calls per GEMM)
    scalesim_s_per_gemm              mean SCALE-Sim wall time per GEMM (Python API, CALC bandwidth
                                     mode, save_disk_space, one run each; None without scalesim)

For every GEMM the cycle counts must be identical: attnsim's compute_cycles equals SCALE-Sim's
"Total Cycles" + 1 (SCALE-Sim prints the 0-based index of the last cycle; see
tests/sim/test_scalesim_crosscheck.py). A mismatch raises AssertionError.
``run_scalesim`` is also what the cross-check tests use to drive SCALE-Sim.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATAFLOWS = ("os", "ws", "is")
# (rows, cols, M, N, K): ifmap M x K, filter K x N
FULL_GEMMS = [(32, 32, 256, 256, 256), (128, 128, 512, 512, 512), (128, 128, 1, 4096, 128)]
QUICK_GEMMS = [(32, 32, 128, 128, 128), (32, 32, 1, 1024, 64)]

# Every section and key of SCALE-Sim's example config must be present. The SRAM sizes (kB) are
# large so that the ofmap buffer never stalls the CALC-mode run.
_SCALESIM_INI = """[general]
run_name = {name}

[architecture_presets]
ArrayHeight : {rows}
ArrayWidth : {cols}
IfmapSramSzkB : {sram_kb}
FilterSramSzkB : {sram_kb}
OfmapSramSzkB : {sram_kb}
IfmapOffset : 0
FilterOffset : 10000000
OfmapOffset : 20000000
Bandwidth : 10
Dataflow : {dataflow}
MemoryBanks : 1
ReadRequestBuffer : 32
WriteRequestBuffer : 32

[layout]
IfmapCustomLayout : False
IfmapSRAMBankBandwidth : 10
IfmapSRAMBankNum : 10
IfmapSRAMBankPort : 2
FilterCustomLayout : False
FilterSRAMBankBandwidth : 10
FilterSRAMBankNum : 10
FilterSRAMBankPort : 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth : CALC
UseRamulatorTrace : False
"""


def run_scalesim(rows: int, cols: int, dataflow: str, m: int, n: int, k: int, workdir: str | Path,
                 sram_kb: int = 8192) -> dict:
    """Run SCALE-Sim 3.0.0 on one GEMM in ``workdir``; its reports as {report: {column: value}}.

    Adds "seconds" (wall time of the run). Reports: COMPUTE_REPORT.csv ("Total Cycles", "Stall
    Cycles", "Mapping Efficiency %", ...), DETAILED_ACCESS_REPORT.csv ("SRAM IFMAP Reads", ...).
    """
    from scalesim.scale_sim import scalesim
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    name = f"g{rows}x{cols}_{dataflow}_{m}_{n}_{k}"
    cfg, topo, layout = work / f"{name}.cfg", work / f"{name}_topo.csv", work / f"{name}_layout.csv"
    cfg.write_text(_SCALESIM_INI.format(name=name, rows=rows, cols=cols, dataflow=dataflow, sram_kb=sram_kb))
    topo.write_text(f"Layer,M,N,K,\n{name},{m},{n},{k},\n")  # the parser drops the last field
    layout.write_text("Layer,\n")  # required even with custom layouts off
    out = work / "out"
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        s = scalesim(save_disk_space=True, verbose=False, config=str(cfg), topology=str(topo), layout=str(layout),
                     input_type_gemm=True)
        s.run_scale(top_path=str(out))
    seconds = time.perf_counter() - t0
    reports: dict = {"seconds": seconds}
    for rep in ("COMPUTE_REPORT.csv", "BANDWIDTH_REPORT.csv", "DETAILED_ACCESS_REPORT.csv"):
        path = out / name / rep
        if path.exists():
            header, values = list(csv.reader(path.open()))[:2]
            reports[rep] = {h.strip(): v.strip() for h, v in zip(header, values) if h.strip()}
    return reports


def _time_ours(rows, cols, dataflow, m, n, k, budget_s: float = 0.2) -> tuple[float, object]:
    """Best seconds per simulate_gemm call (after one warm-up call), and the result."""
    from attnsim.sim.spatial import simulate_gemm
    g = simulate_gemm(rows, cols, dataflow, m, n, k)
    best, spent, calls = math.inf, 0.0, 0
    while (spent < budget_s or calls < 3) and calls < 10_000:
        t0 = time.perf_counter()
        simulate_gemm(rows, cols, dataflow, m, n, k)
        dt = time.perf_counter() - t0
        best, spent, calls = min(best, dt), spent + dt, calls + 1
    return best, g


def measure(quick: bool = False) -> list[dict]:
    """One row per (GEMM, dataflow): cycles and seconds of both simulators."""
    try:
        import scalesim  # noqa: F401
        have_scalesim = True
    except ImportError:
        have_scalesim = False
    rows_out = []
    with tempfile.TemporaryDirectory(prefix="bench_systolic_") as tmp:
        for rows, cols, m, n, k in (QUICK_GEMMS if quick else FULL_GEMMS):
            for df in DATAFLOWS:
                ours_s, g = _time_ours(rows, cols, df, m, n, k)
                row = dict(array=f"{rows}x{cols}", dataflow=df, m=m, n=n, k=k, cycles=g.compute_cycles,
                           attnsim_s=ours_s, scalesim_s=None, scalesim_total_cycles=None)
                if have_scalesim:
                    rep = run_scalesim(rows, cols, df, m, n, k, Path(tmp) / f"{rows}_{df}_{m}_{n}_{k}")
                    ss_total = int(rep["COMPUTE_REPORT.csv"]["Total Cycles"])
                    assert int(rep["COMPUTE_REPORT.csv"]["Stall Cycles"]) == 0
                    assert g.compute_cycles == ss_total + 1, (
                        f"{rows}x{cols} {df} M={m} N={n} K={k}: attnsim {g.compute_cycles} cycles, "
                        f"SCALE-Sim Total Cycles {ss_total} (+1 expected)")
                    row.update(scalesim_s=rep["seconds"], scalesim_total_cycles=ss_total)
                rows_out.append(row)
    return rows_out


def summarize(rows: list[dict]) -> dict:
    ours_total = sum(r["attnsim_s"] for r in rows)
    ss = [r for r in rows if r["scalesim_s"] is not None]
    speedup = (math.exp(sum(math.log(r["scalesim_s"] / r["attnsim_s"]) for r in ss) / len(ss)) if ss else None)
    return {"systolic_speedup_vs_scalesim_x": speedup,
            "systolic_sim_gemms_per_s": len(rows) / ours_total,
            "scalesim_s_per_gemm": sum(r["scalesim_s"] for r in ss) / len(ss) if ss else None}


def run(quick: bool = False) -> dict:
    """The three figures (see the module docstring); asserts identical cycle counts on the way."""
    return summarize(measure(quick))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="two small GEMMs instead of the full set")
    a = p.parse_args(argv)
    rows = measure(a.quick)
    print(f"{'array':8s} {'df':3s} {'M x N x K':>18s} {'cycles':>9s} {'attnsim':>10s} {'SCALE-Sim':>10s} "
          f"{'speedup':>9s}")
    for r in rows:
        ss = f"{r['scalesim_s']:.3f} s" if r["scalesim_s"] is not None else "-"
        sp = f"{r['scalesim_s'] / r['attnsim_s']:,.0f}x" if r["scalesim_s"] is not None else "-"
        print(f"{r['array']:8s} {r['dataflow']:3s} {r['m']:>5d}x{r['n']:>5d}x{r['k']:>5d} {r['cycles']:>9,d} "
              f"{1e6 * r['attnsim_s']:>8.1f}us {ss:>10s} {sp:>9s}")
    for key, v in summarize(rows).items():
        print(f"{key} = {v:.4g}" if v is not None else f"{key} = None (scalesim not installed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
