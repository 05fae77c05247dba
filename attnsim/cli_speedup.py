"""`attnsim speedup`: a candidate algorithm's predicted speedup over a baseline, with error bands."""
from __future__ import annotations

import json

from attnsim.cli_shapes import add_shape_flags, shape_kwargs


def plot(report, path: str) -> None:
    """Bars: each variant's kernels stacked (predicted time), the error band as a whisker."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    variants = (report.baseline,) + report.candidates
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(variants) + 2), 4.2))
    multi = any(len(v.result.kernels) > 1 for v in variants)
    colors: dict = {}  # one colour per kernel name across the chart
    for i, v in enumerate(variants):
        rows = list(v.result.kernels) or [{"kernel": v.result.mapping, "latency_s": v.latency_s}]
        bottom = 0.0
        for k in rows:
            ms = k["latency_s"] * 1e3
            color = colors.setdefault(k["kernel"], plt.cm.tab20(len(colors) % 20)) if multi else "tab:blue"
            ax.bar(i, ms, bottom=bottom, color=color, edgecolor="white", label=k["kernel"] if multi else None)
            bottom += ms
        if v.band is not None:  # where the measured time would fall, from the validation residuals
            lo, hi = v.latency_s * v.band.low * 1e3, v.latency_s * v.band.high * 1e3
            ax.vlines(i + 0.3, lo, hi, color="k", lw=2)
            ax.hlines([lo, hi], i + 0.22, i + 0.38, color="k", lw=1)
        ax.text(i, v.latency_s * 1e3, f"{report.speedup(v):.2f}x", ha="center", va="bottom", fontsize=9)
    ax.set_xticks(range(len(variants)), [v.spec for v in variants], rotation=15, ha="right", fontsize=8)
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(f"{report.baseline.workload.label()} on {report.arch}", fontsize=9)
    if multi:
        handles, labels = ax.get_legend_handles_labels()
        seen = dict(zip(labels, handles))
        ax.legend(seen.values(), seen.keys(), fontsize=7, loc="upper right")
    if any(v.band is not None for v in variants):
        ax.text(0.01, 0.99, "whiskers: measured/predicted P10-P90 of the nearest measured regime",
                transform=ax.transAxes, fontsize=7, va="top")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cmd_speedup(a) -> int:
    from attnsim.speedup import speedup
    rep = speedup(a.arch, a.baseline, a.candidate or [], traces=a.trace or None, **shape_kwargs(a))
    if a.format == "json":
        print(json.dumps({"arch": rep.arch, "variants": rep.rows()}, indent=2, default=float))
    else:
        print(rep.table())
    if a.plot:
        plot(rep, a.plot)
        print(f"plot written to {a.plot}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("speedup", help="predicted speedup of candidate algorithms over a baseline, with error bands",
                       description="Variants are NAME[:k=v,k=v][@KERNEL]: a kernel (flash2, flash3, unfused, "
                                   "flash_decode, flash2_kvcache) or a family with its parameters, e.g. "
                                   "topk_blocks:density=0.25 or linear_chunked:chunk=64@flash2.")
    p.add_argument("--arch", default="h100_sxm5_80gb", help="preset name or arch YAML (default h100_sxm5_80gb)")
    p.add_argument("--baseline", default="flash2", help="the variant to compare against (default flash2)")
    p.add_argument("--candidate", action="append", help="a candidate variant (repeat for several)")
    add_shape_flags(p)
    p.add_argument("--trace", action="append",
                   help="measured trace CSV for the error bands (default: validate/traces and ../shared/data/measured)")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--plot", help="write a bar chart (PNG) of the variants' kernels and bands")
    p.set_defaults(func=cmd_speedup)
