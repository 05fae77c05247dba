"""The `attnsim` command. Errors print as one clear message (exit 2), never a traceback."""
from __future__ import annotations

import argparse
import json
import sys

from attnsim.cli_shapes import add_family_flags, add_shape_flags, workload_from_flags
from attnsim.errors import AttnsimError


def cmd_predict(a) -> int:
    if a.model:
        from attnsim.cli_capture import predict_model
        return predict_model(a)
    from attnsim.model.analytical import predict
    if a.cases:
        from attnsim.cases import run_cases
        from tqdm import tqdm
        out = a.output or "predictions.csv"
        ok, bad = run_cases(a.cases, out, progress=lambda rows: tqdm(rows, desc="cases", unit="row",
                                                                       disable=None, file=sys.stderr))
        print(f"wrote {out}: {ok} rows predicted, {bad} rows with errors (see the status column)")
        return 0
    if a.workload:
        workload = a.workload
    else:
        if a.seq is None and (a.seq_q is None or a.seq_kv is None):
            raise AttnsimError("give --workload FILE, or --seq (or --seq-q and --seq-kv) with the shape flags, "
                               "or --cases FILE")
        workload = workload_from_flags(a)
    mapping = a.mapping or a.algorithm
    r = predict(a.arch, workload, mapping)
    if a.format == "json":
        print(r.to_json())
    elif a.explain:
        print(r.explain())
    else:
        from attnsim.units import fmt_si
        print(r.summary())
        outer = next(iter(r.traffic_bytes))
        if r.kernels:
            print(f"  {outer} {fmt_si(r.traffic_bytes[outer], 'B')}, energy {fmt_si(r.energy_total_j, 'J')}, "
                  f"{len(r.kernels)} kernels (--explain for the breakdown):")
            for k in r.kernels:
                print(f"    {k['kernel']:34s} {fmt_si(k['latency_s'], 's'):>10s}  bound by {k['bound']}")
        elif "ctas_per_sm" in r.occupancy:
            print(f"  {outer} {fmt_si(r.traffic_bytes[outer], 'B')}, energy {fmt_si(r.energy_total_j, 'J')}, "
                  f"{r.occupancy.get('ctas_per_sm', 0):g} CTAs/SM, {r.occupancy.get('waves', 0):.2f} waves "
                  "(--explain for the breakdown)")
        else:
            print(f"  {outer} {fmt_si(r.traffic_bytes[outer], 'B')}, energy {fmt_si(r.energy_total_j, 'J')} "
                  "(--explain for the breakdown)")
    return 0


def cmd_list(a) -> int:
    from attnsim.arch import list_arch_presets, load_arch
    from attnsim.workload.spec import list_workload_presets
    print("arch presets:")
    for name in list_arch_presets():
        arch = load_arch(name)
        print(f"  {name:20s} {arch.description}")
    print("workload presets:")
    for name in list_workload_presets():
        print(f"  {name}")
    print("algorithms: unfused, flash2, flash3, flash_decode, flash2_kvcache")
    from attnsim.workload.families import family, family_names
    print("families (attnsim predict --family NAME --params k=v,...):")
    for name in family_names():
        try:
            f = family(name)
        except ImportError:  # a family whose module is not installed in this tree
            continue
        params = ", ".join(f"{p.name}={p.default}" for p in f.params)
        print(f"  {name:18s} {f.doc}" + (f"  [{params}]" if params else ""))
    return 0


def cmd_report(a) -> int:
    from attnsim.report import build_report
    path = build_report(a.out, quick=a.quick)
    print(f"report written to {path}")
    return 0


def cmd_validate(a) -> int:
    if a.gemms:
        return _validate_gemms(a)
    if not a.trace:
        raise AttnsimError("give --trace FILE (attention) or --gemms FILE... (Vidur attn_proj GEMM profiles)")
    from attnsim.validate.report import validate
    summary = validate(a.trace, arch=a.arch, out=None if a.json and not a.out else (a.out or "validation"))
    if a.json:
        print(json.dumps(summary, indent=2))
    else:
        o = summary["overall"]
        print(f"{o['n']} configurations: median APE {100 * o['median_ape']:.1f}%, P90 {100 * o['p90_ape']:.1f}%, "
              f"Spearman {o['spearman']:.3f}, speedup sign right {100 * o['sign_accuracy']:.1f}%")
        print(f"report written to {a.out or 'validation'}/README.md")
    return 0


def _validate_gemms(a) -> int:
    from pathlib import Path

    from attnsim.validate.gemm import gemm_report
    files = []
    for g in a.gemms:
        p = Path(g)
        files += sorted(p.glob("*_attn_proj_rope.csv")) if p.is_dir() else [p]
    missing = [str(f) for f in files if not Path(f).exists()]
    if not files or missing:
        raise AttnsimError(f"no Vidur attn_proj file at {', '.join(missing or a.gemms)}")
    out = a.out or "validation_gemm"
    res = gemm_report(files, out)
    if a.json:
        print(json.dumps({k: v for k, v in res.items()}, indent=2))
    else:
        for k, v in res.items():
            if isinstance(v, dict):
                print(f"{k}: {v['n']} GEMMs, median APE {100 * v['median_ape']:.1f}%, P90 {100 * v['p90_ape']:.1f}%, "
                      f"Spearman {v['spearman']:.3f}")
        print(f"report written to {out}/README.md")
    return 0


def cmd_calibrate(a) -> int:
    from attnsim.validate.report import calibrate
    fields = a.fit.split(",") if a.fit else None
    r = calibrate(a.trace, a.arch, fields=fields, split=a.split, out=a.out)
    h = r["held_out_after"]["overall"]
    b = r["held_out_before"]["overall"]
    print(f"fitted {len(r['fitted'])} fields on {r['n_train']} rows; held-out ({r['n_test']} rows) median APE "
          f"{100 * b['median_ape']:.1f}% -> {100 * h['median_ape']:.1f}%, P90 {100 * b['p90_ape']:.1f}% -> "
          f"{100 * h['p90_ape']:.1f}%")
    print(f"calibrated spec and report in {a.out}/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="attnsim", description="Cost model for attention on GPUs and spatial arrays")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser("predict", help="predict one case (flags or YAML files) or a cases CSV")
    pr.add_argument("--arch", default="h100_sxm5_80gb", help="preset name or arch YAML (default h100_sxm5_80gb)")
    pr.add_argument("--workload", help="workload YAML (instead of the shape flags)")
    pr.add_argument("--mapping", help="mapping YAML (default: the algorithm's usual kernel)")
    pr.add_argument("--algorithm", choices=["unfused", "flash2", "flash3", "flash_decode", "flash2_kvcache"],
                    help="kernel family (default: flash3 on Hopper, flash2 elsewhere, flash_decode for seq_q<=16)")
    add_shape_flags(pr)
    add_family_flags(pr)
    pr.add_argument("--format", choices=["table", "json"], default="table")
    pr.add_argument("--explain", action="store_true", help="print the full breakdown")
    pr.add_argument("--cases", help="CSV of cases to predict in batch (see README)")
    pr.add_argument("-o", "--output", help="output CSV for --cases (default predictions.csv)")
    pr.set_defaults(func=cmd_predict)

    ls = sub.add_parser("list", help="list arch and workload presets")
    ls.set_defaults(func=cmd_list)

    rp = sub.add_parser("report", help="write the built-in report (Markdown + PNG plots)")
    rp.add_argument("--out", default="report")
    rp.add_argument("--quick", action="store_true", help="a reduced grid")
    rp.set_defaults(func=cmd_report)
    from attnsim.sim.cli_simulate import add_parser as add_simulate
    add_simulate(sub)
    from attnsim.cli_map import add_parsers as add_map
    add_map(sub)
    from attnsim.cli_sweep import add_parser as add_sweep
    add_sweep(sub)
    from attnsim.cli_app import add_parser as add_app
    add_app(sub)
    from attnsim.cli_speedup import add_parser as add_speedup
    add_speedup(sub)
    from attnsim.cli_capture import add_parser as add_capture
    add_capture(sub)

    va = sub.add_parser("validate", help="compare predictions with a measured trace (report + plots)")
    va.add_argument("--trace", help="trace CSV (project schema, or a Vidur attention CSV)")
    va.add_argument("--gemms", nargs="+", help="Vidur attn_proj GEMM profiles (files or a folder): validate the "
                                               "GEMM model that costs projections and MLPs")
    va.add_argument("--arch", help="arch for every row (default: each row's arch column)")
    va.add_argument("--out", help="report directory (default validation/)")
    va.add_argument("--json", action="store_true", help="print the error summary as JSON")
    va.set_defaults(func=cmd_validate)

    ca = sub.add_parser("calibrate", help="fit named efficiency fields on a training split; report held-out error")
    ca.add_argument("--trace", required=True)
    ca.add_argument("--arch", required=True, help="arch preset or YAML whose fields are fitted")
    ca.add_argument("--fit", help="comma-separated fields, e.g. efficiency.kernels.flash_decode.hbm "
                                  "(default: per-kernel mma, hbm and launch overhead of flash2 and flash_decode)")
    ca.add_argument("--split", default="hash:5",
                    help="held-out rule: hash:K (config hash mod K == 0) or range:COLUMN>VALUE (default hash:5)")
    ca.add_argument("--out", default="calibration")
    ca.set_defaults(func=cmd_calibrate)
    return p


def _version() -> str:
    from attnsim import __version__
    return f"attnsim {__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except AttnsimError as e:
        print(f"attnsim: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as e:  # bad values that slipped past the spec checks, unreadable files
        print(f"attnsim: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attnsim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
