"""The main report: prefill and decode sweeps of the analytical model, as Markdown, CSV and plots.

    >>> from attnsim.report import build_report
    >>> build_report("report")          # writes report/README.md, report/points.csv, report/*.png

Everything here is a *prediction* of the analytical model (``attnsim.predict``); nothing is
measured. The grids follow the FlashAttention papers' benchmark convention (B x seq fixed at
16k tokens, 16 heads of dim 128, bf16) for prefill, and a GQA decode step (32 query heads over
8 KV heads) for decode.
"""
from __future__ import annotations

import math
import os
import platform
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from attnsim import __version__  # noqa: E402
from attnsim.arch import Arch, load_arch  # noqa: E402
from attnsim.errors import AttnsimError, MappingError  # noqa: E402
from attnsim.mapping.kernel import default_mapping  # noqa: E402
from attnsim.model.analytical import predict  # noqa: E402
from attnsim.units import fmt_si  # noqa: E402
from attnsim.workload.spec import Workload, attention  # noqa: E402

# ---- the grid ----

ARCHS = ("a100_sxm4_80gb", "h100_sxm5_80gb", "h200_sxm")
DECODE_ARCHS = ("a100_sxm4_80gb", "h100_sxm5_80gb", "h200_sxm")
EXPLAIN_ARCH = "h100_sxm5_80gb"
PREFILL_ALGORITHMS = ("unfused", "flash2", "flash3")
PREFILL_TOKENS = 16384  # B x seq, as in the FlashAttention papers' forward benchmarks
PREFILL_HEADS = 16
HEAD_DIM = 128
DTYPE = "bf16"
PREFILL_SEQS = tuple(2 ** k for k in range(9, 18))  # 512 .. 128k
DECODE_HEADS, DECODE_KV_HEADS = 32, 8
DECODE_BATCHES = (1, 4, 16, 64, 256)
DECODE_KV = (1024, 4096, 16384, 65536, 131072)
# quick=True: a reduced grid (tests), still every section
QUICK_PREFILL_SEQS = (512, 2048, 8192)
QUICK_DECODE_BATCHES = (1, 16)
QUICK_DECODE_KV = (1024, 16384)
TABLE_SEQS = (2048, 8192, 32768, 131072)  # the prefill shapes shown in the Markdown binding table

SECTION_HEADINGS = (
    "## How to read this",
    "## Architectures",
    "## Prefill sweep",
    "## Decode sweep",
    "## Roofline",
    "## Binding resources",
    "## Worked example: explain()",
    "## Attention families",
)
PLOTS = ("prefill_latency.png", "prefill_tflops.png", "decode_latency.png", "roofline.png")
CSV_COLUMNS = (
    "sweep", "arch", "algorithm", "batch", "heads", "kv_heads", "seq_q", "seq_kv", "head_dim", "causal",
    "dtype", "latency_s", "tflops_per_s", "bound", "bound_margin", "ctas_per_sm", "waves", "n_ctas",
    "n_kernels", "split_kv", "useful_flops", "executed_flops", "hbm_bytes", "l2_bytes", "smem_bytes",
    "arithmetic_intensity", "hbm_tb_per_s", "hbm_frac_of_peak", "energy_j", "s_bytes", "s_fits_in_hbm",
)

ALGO_COLORS = {"unfused": "tab:red", "flash2": "tab:blue", "flash3": "tab:green", "flash_decode": "tab:purple"}
BOUND_MARKERS = {"mma": "o", "softmax (exp/vector)": "s", "smem bandwidth": "^", "L2->SM load": "v",
                 "hbm bandwidth": "D", "l2 bandwidth": "P", "launch overhead": "X",
                 "tail (waves / unequal CTAs)": "*"}
DPI = 120


# ---- points ----

@dataclass(frozen=True)
class PointSpec:
    sweep: str  # 'prefill' | 'decode'
    arch: str
    algorithm: str
    workload: Workload


@dataclass
class Point:
    spec: PointSpec
    row: dict | None = None  # the CSV row when the model gave a prediction
    skipped: str = ""  # why not, e.g. 'n/a: needs wgmma'


def _prefill_workload(seq: int, causal: bool) -> Workload:
    return attention("softmax", batch=max(1, PREFILL_TOKENS // seq), heads=PREFILL_HEADS, seq=seq,
                     head_dim=HEAD_DIM, causal=causal, dtype=DTYPE)


def _decode_workload(batch: int, kv: int) -> Workload:
    return attention("softmax", batch=batch, heads=DECODE_HEADS, kv_heads=DECODE_KV_HEADS, seq_q=1, seq_kv=kv,
                     head_dim=HEAD_DIM, dtype=DTYPE)


def grid(archs: list[str], quick: bool = False) -> list[PointSpec]:
    """Every (sweep, arch, algorithm, workload) the report evaluates."""
    seqs = QUICK_PREFILL_SEQS if quick else PREFILL_SEQS
    batches = QUICK_DECODE_BATCHES if quick else DECODE_BATCHES
    kvs = QUICK_DECODE_KV if quick else DECODE_KV
    specs = []
    for a in archs:
        for seq in seqs:
            for causal in (False, True):
                w = _prefill_workload(seq, causal)
                specs.extend(PointSpec("prefill", a, algo, w) for algo in PREFILL_ALGORITHMS)
    for a in archs:
        if a not in DECODE_ARCHS:
            continue
        for b in batches:
            for kv in kvs:
                specs.append(PointSpec("decode", a, "flash_decode", _decode_workload(b, kv)))
    return specs


def s_matrix_bytes(w: Workload) -> float:
    """Bytes of the score matrix S an unfused kernel writes to HBM (B x H x M x N, input dtype)."""
    return float(w.batch) * w.heads * w.seq_q * w.seq_kv * w.dtype_bytes


def evaluate_point(spec: PointSpec, arch: Arch) -> Point:
    w = spec.workload
    try:
        r = predict(arch, w, spec.algorithm)
    except MappingError as e:
        wgmma = "wgmma" in arch.compute.matrix_flops_per_cycle
        why = "n/a: needs wgmma" if spec.algorithm == "flash3" and not wgmma else f"n/a: {e}"
        return Point(spec, None, why)
    split = 1
    if spec.algorithm == "flash_decode":
        split = default_mapping("flash_decode", arch, w).split_kv
    hbm = r.traffic_bytes.get("HBM", 0.0)
    hbm_peak = arch.level("HBM").bandwidth_bytes_per_s
    s_bytes = s_matrix_bytes(w) if spec.algorithm == "unfused" else 0.0
    row = {
        "sweep": spec.sweep, "arch": arch.name, "algorithm": spec.algorithm, "batch": w.batch,
        "heads": w.heads, "kv_heads": w.kv_heads, "seq_q": w.seq_q, "seq_kv": w.seq_kv,
        "head_dim": w.head_dim, "causal": w.mask.is_causal, "dtype": w.dtype,
        "latency_s": r.latency_s, "tflops_per_s": r.tflops_per_s, "bound": r.bound,
        "bound_margin": r.bound_margin, "ctas_per_sm": r.occupancy.get("ctas_per_sm", float("nan")),
        "waves": r.occupancy.get("waves", float("nan")), "n_ctas": r.occupancy.get("n_ctas", float("nan")),
        "n_kernels": r.occupancy.get("n_kernels", float("nan")), "split_kv": split,
        "useful_flops": r.useful_flops, "executed_flops": r.executed_flops, "hbm_bytes": hbm,
        "l2_bytes": r.traffic_bytes.get("L2", 0.0), "smem_bytes": r.traffic_bytes.get("SMEM", 0.0),
        "arithmetic_intensity": r.useful_flops / hbm if hbm > 0 else float("inf"),
        "hbm_tb_per_s": hbm / r.latency_s / 1e12, "hbm_frac_of_peak": hbm / r.latency_s / hbm_peak,
        "energy_j": r.energy_total_j, "s_bytes": s_bytes,
        "s_fits_in_hbm": s_bytes <= arch.level("HBM").capacity_bytes * arch.level("HBM").instances,
    }
    return Point(spec, row)


def load_archs(names=ARCHS) -> tuple[dict[str, Arch], dict[str, str]]:
    """The presets that load, and why the others did not."""
    archs, missing = {}, {}
    for n in names:
        try:
            a = load_arch(n)
            archs[a.name] = a
        except AttnsimError as e:
            missing[n] = str(e).splitlines()[0]
    return archs, missing


# ---- formatting helpers ----

def _k(n: int) -> str:
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else str(n)


def _peak(arch: Arch, instr: str | None = None) -> float:
    return arch.peak_matrix_flops_per_s(instr or arch.default_instr, DTYPE)


def _md_table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or "l" * len(header)
    sep = ["---:" if a == "r" else "---" for a in align]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _bytes(v: float) -> str:
    return fmt_si(v, "B")


# ---- plots ----

def _seq_axis(ax, seqs):
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(seqs))
    ax.set_xticklabels([_k(s) for s in seqs])
    ax.minorticks_off()


def _style_legend(algos, extra=()):
    h = [Line2D([], [], color=ALGO_COLORS[a], lw=2, label=a) for a in algos]
    h += [Line2D([], [], color="gray", lw=1.5, ls="-", label="non-causal"),
          Line2D([], [], color="gray", lw=1.5, ls="--", label="causal")]
    return h + list(extra)


def plot_prefill(df: pd.DataFrame, archs: dict[str, Arch], out: Path) -> list[Path]:
    pre = df[df.sweep == "prefill"]
    names = [a for a in archs if (pre.arch == a).any()]
    seqs = sorted(pre.seq_q.unique())
    paths = []
    for kind in ("latency", "tflops"):
        fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names) + 0.6, 4.8), sharey=True,
                                 squeeze=False)
        nofit_handle = Line2D([], [], ls="none", marker="x", color="black", ms=8,
                              label="unfused: S exceeds HBM")
        any_nofit = False
        for ax, name in zip(axes[0], names):
            arch = archs[name]
            for algo in PREFILL_ALGORITHMS:
                for causal, ls in ((False, "-"), (True, "--")):
                    d = pre[(pre.arch == name) & (pre.algorithm == algo) & (pre.causal == causal)]
                    d = d.sort_values("seq_q")
                    if d.empty:
                        continue
                    y = d.latency_s * 1e3 if kind == "latency" else d.tflops_per_s
                    ax.plot(d.seq_q, y, ls=ls, marker=".", color=ALGO_COLORS[algo], lw=1.6)
                    nf = ~d.s_fits_in_hbm
                    if nf.any():
                        any_nofit = True
                        ax.plot(d.seq_q[nf], y[nf], ls="none", marker="x", color="black", ms=8)
            _seq_axis(ax, seqs)
            ax.set_xlabel("sequence length (tokens); batch = 16k / seq")
            ax.set_title(f"{name}")
            ax.grid(True, which="major", alpha=0.3)
            if kind == "latency":
                ax.set_yscale("log")
            else:
                peak = _peak(arch) / 1e12
                ax.axhline(peak, color="black", lw=1.2)
                ax.annotate(f"peak {arch.default_instr} {DTYPE}: {peak:.0f} TFLOP/s", (seqs[0], peak),
                            xytext=(2, -12), textcoords="offset points", fontsize=8)
                if arch.default_instr != "mma_sync" and "mma_sync" in arch.compute.matrix_flops_per_cycle:
                    p2 = _peak(arch, "mma_sync") / 1e12
                    ax.axhline(p2, color="gray", lw=1.0, ls=":")
                    ax.annotate(f"peak mma_sync: {p2:.0f} TFLOP/s", (seqs[0], p2), xytext=(2, 3),
                                textcoords="offset points", fontsize=8, color="dimgray")
        if kind == "tflops":  # shared y axis: room for the highest peak
            axes[0][0].set_ylim(0, max(_peak(archs[n]) for n in names) / 1e12 * 1.1)
        if kind == "latency":
            axes[0][0].set_ylabel("predicted latency (ms, log)")
            title = "Prefill attention forward: predicted latency"
        else:
            axes[0][0].set_ylabel("achieved TFLOP/s (useful FLOPs / latency)")
            title = "Prefill attention forward: predicted throughput"
        fig.suptitle(f"{title}\nB x seq = 16k tokens, {PREFILL_HEADS} heads, head_dim {HEAD_DIM}, {DTYPE}")
        handles = _style_legend(PREFILL_ALGORITHMS, [nofit_handle] if any_nofit else [])
        axes[0][-1].legend(handles=handles, fontsize=8, loc="best")
        fig.tight_layout()
        p = out / f"prefill_{kind}.png"
        fig.savefig(p, dpi=DPI)
        plt.close(fig)
        paths.append(p)
    return paths


def plot_decode(df: pd.DataFrame, archs: dict[str, Arch], out: Path) -> Path:
    dec = df[df.sweep == "decode"]
    names = [a for a in archs if (dec.arch == a).any()]
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(5.2 * max(1, len(names)) + 0.6, 4.8),
                             sharey=True, squeeze=False)
    batches = sorted(dec.batch.unique())
    cmap = plt.get_cmap("viridis")
    for ax, name in zip(axes[0], names):
        for i, b in enumerate(batches):
            d = dec[(dec.arch == name) & (dec.batch == b)].sort_values("seq_kv")
            ax.plot(d.seq_kv, d.latency_s * 1e6, marker="o", ms=4,
                    color=cmap(i / max(1, len(batches) - 1) * 0.9), label=f"batch {b}")
        kvs = sorted(dec.seq_kv.unique())
        _seq_axis(ax, kvs)
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("KV length (tokens)")
        ax.set_title(name)
    axes[0][0].set_ylabel("predicted latency (us, log)")
    axes[0][-1].legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Decode step (flash_decode): {DECODE_HEADS} query heads / {DECODE_KV_HEADS} KV heads, "
                 f"head_dim {HEAD_DIM}, seq_q 1, {DTYPE}")
    fig.tight_layout()
    p = out / "decode_latency.png"
    fig.savefig(p, dpi=DPI)
    plt.close(fig)
    return p


def plot_roofline(df: pd.DataFrame, archs: dict[str, Arch], out: Path) -> Path:
    names = [a for a in archs if (df.arch == a).any()]
    fig, axes = plt.subplots(1, len(names), figsize=(max(9.0, 5.6 * len(names) + 0.8), 5.8), sharey=True,
                             squeeze=False)
    ai_all = df.arithmetic_intensity[np.isfinite(df.arithmetic_intensity)]
    lo = 10 ** math.floor(math.log10(max(ai_all.min(), 1e-3) / 2))
    hi = 10 ** math.ceil(math.log10(ai_all.max() * 2))
    x = np.logspace(math.log10(lo), math.log10(hi), 200)
    bounds_seen, algos_seen = [], []
    for ax, name in zip(axes[0], names):
        arch = archs[name]
        bw = arch.level("HBM").bandwidth_bytes_per_s
        peak = _peak(arch)
        hi = max(hi, 2 * peak / bw)
        ax.plot(x, np.minimum(peak, x * bw) / 1e12, color="black", lw=1.6,
                label=f"roof: {peak / 1e12:.0f} TFLOP/s ({arch.default_instr}), {bw / 1e12:.2f} TB/s")
        eff_peak = peak * arch.efficiency.mma.get(arch.default_instr, 1.0)
        eff_bw = bw * arch.efficiency.hbm_bandwidth
        ax.plot(x, np.minimum(eff_peak, x * eff_bw) / 1e12, color="gray", lw=1.0, ls=":",
                label="sustained roof (YAML efficiency factors)")
        if arch.default_instr != "mma_sync" and "mma_sync" in arch.compute.matrix_flops_per_cycle:
            ax.axhline(_peak(arch, "mma_sync") / 1e12, color="gray", lw=0.8, ls="--",
                       label="mma_sync peak")
        d = df[df.arch == name]
        for algo in ALGO_COLORS:
            for bound, mk in BOUND_MARKERS.items():
                s = d[(d.algorithm == algo) & (d.bound == bound)]
                if s.empty:
                    continue
                ax.scatter(s.arithmetic_intensity, s.tflops_per_s, marker=mk, s=26, color=ALGO_COLORS[algo],
                           edgecolors="black", linewidths=0.3, alpha=0.85, zorder=3)
                if algo not in algos_seen:
                    algos_seen.append(algo)
                if bound not in bounds_seen:
                    bounds_seen.append(bound)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.grid(True, which="major", alpha=0.3)
        ax.set_xlabel("arithmetic intensity (useful FLOPs / HBM byte)")
        ax.set_title(f"{name}: ridge at {peak / bw:.0f} FLOP/B")
        ax.legend(fontsize=7, loc="upper left")
    axes[0][0].set_ylabel("achieved TFLOP/s (log)")
    ymin = max(1e-3, df.tflops_per_s.min() / 2)
    axes[0][0].set_ylim(ymin, max(_peak(archs[n]) for n in names) / 1e12 * 2)
    h_algo = [Line2D([], [], ls="none", marker="o", color=ALGO_COLORS[a], label=a) for a in algos_seen]
    h_bound = [Line2D([], [], ls="none", marker=BOUND_MARKERS[b], color="lightgray", markeredgecolor="black",
                      label=f"bound: {b}") for b in bounds_seen]
    fig.legend(handles=h_algo + h_bound, loc="lower center", ncol=4 if len(names) == 1 else 6,
               fontsize=8, frameon=False)
    fig.suptitle("Roofline: every prefill and decode point\n(color = algorithm, marker = binding resource)")
    fig.tight_layout(rect=(0, 0.12 if len(names) == 1 else 0.08, 1, 1))
    p = out / "roofline.png"
    fig.savefig(p, dpi=DPI)
    plt.close(fig)
    return p


# ---- Markdown sections ----

def _header(archs: dict[str, Arch], missing: dict[str, str], quick: bool, n_points: int) -> list[str]:
    now = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    mach = f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs"
    L = ["# attnsim prediction report", "",
         f"- attnsim {__version__}, generated {now}" + (" (quick grid)" if quick else ""),
         f"- machine: {mach}",
         f"- {n_points} design points; the full table is [`points.csv`](points.csv)", "",
         "## How to read this", "",
         "Every number below is a **prediction** of attnsim's analytical model (`attnsim.predict`), not a "
         "measurement. For each design point (architecture, algorithm, shape) the model lowers the "
         "kernel to tiles and CTAs, and takes the largest of the per-resource times (tensor-core "
         "makespan over the SMs, HBM traffic, L2 traffic) plus launch overhead; the largest term is the "
         "*binding resource* and the *bound margin* is how much larger it is than the next term "
         "(1.0 = a tie, so a small margin means a second resource is nearly as tight). The sustained-"
         "throughput efficiency factors (matrix issue efficiency, HBM and L2 streaming fraction, launch "
         "overhead) come from the arch YAMLs, each with its own source (listed below). How accurate the "
         "model is is **not** reported here: `attnsim validate` compares predictions with held-out "
         "measurements. TFLOP/s counts *useful* FLOPs (the pairs the mask allows, 4·B·H·pairs·D), the "
         "FlashAttention papers' convention, so causal runs are not credited for skipped tiles.", "",
         "## Architectures", ""]
    rows = []
    for a in archs.values():
        hbm = a.level("HBM")
        rows.append([f"`{a.name}`", a.description, f"{_peak(a) / 1e12:.0f} ({a.default_instr})",
                     f"{hbm.bandwidth_bytes_per_s / 1e12:.2f}", _bytes(hbm.capacity_bytes * hbm.instances),
                     f"{_peak(a) / hbm.bandwidth_bytes_per_s:.0f}"])
    L.append(_md_table(["preset", "description", f"peak {DTYPE} TFLOP/s", "HBM TB/s", "HBM capacity",
                        "ridge FLOP/B"], rows, "llrrrr"))
    L.append("")
    if missing:
        L.append("Presets not available when this report was built (skipped):")
        L += [f"- `{n}`: {why}" for n, why in missing.items()]
        L.append("")
    L.append("Efficiency factors and their sources (from the YAMLs):")
    L.append("")
    rows = []
    for a in archs.values():
        e, src = a.efficiency, a.sources
        for instr, v in e.mma.items():
            rows.append([a.name, f"mma efficiency, {instr}", f"{v:.2f}", src.get(f"efficiency.mma.{instr}", "")])
        rows.append([a.name, "HBM streaming fraction", f"{e.hbm_bandwidth:.2f}",
                     src.get("efficiency.hbm_bandwidth", "")])
        rows.append([a.name, "L2 bandwidth fraction", f"{e.l2_bandwidth:.2f}",
                     src.get("efficiency.l2_bandwidth", "")])
        rows.append([a.name, "launch overhead", fmt_si(e.launch_overhead_s, "s"),
                     src.get("efficiency.launch_overhead", "")])
    L.append(_md_table(["preset", "factor", "value", "source"], [[c.replace("|", "/") for c in r] for r in rows],
                       "llrl"))
    L.append("")
    return L


def _cell(p: Point | None) -> str:
    if p is None:
        return "-"
    if p.row is None:
        return p.skipped
    r = p.row
    s = f"{fmt_si(r['latency_s'], 's')} / {r['tflops_per_s']:.0f}"
    if not r["s_fits_in_hbm"]:
        s += " (S: does not fit in HBM)"
    return s


def _prefill_section(points: list[Point], archs: dict[str, Arch]) -> list[str]:
    L = ["## Prefill sweep", "",
         f"Forward attention, B x seq = {PREFILL_TOKENS // 1024}k tokens (batch = max(1, 16384 // seq)), "
         f"{PREFILL_HEADS} heads, head_dim {HEAD_DIM}, {DTYPE}, causal and non-causal; algorithms "
         "`unfused` (three kernels, S and P through HBM), `flash2` (FlashAttention-2, mma.sync) and "
         "`flash3` (FlashAttention-3, wgmma with softmax overlapped, Hopper only).", "",
         "![prefill latency](prefill_latency.png)", "", "![prefill TFLOP/s](prefill_tflops.png)", "",
         "Cells: predicted latency / achieved TFLOP/s. The unfused kernel writes S (B·H·seq²·2 bytes) to HBM; "
         "where S alone exceeds the HBM capacity the cell says *S: does not fit in HBM* (the model predicts "
         "it anyway, as if the memory were there; no real run could).", ""]
    idx = {(p.spec.arch, p.spec.algorithm, p.spec.workload.seq_q, p.spec.workload.mask.is_causal): p
           for p in points if p.spec.sweep == "prefill"}
    seqs = sorted({p.spec.workload.seq_q for p in points if p.spec.sweep == "prefill"})
    for name in archs:
        L += [f"**{name}**", ""]
        rows = []
        for seq in seqs:
            for causal in (False, True):
                cells = [_cell(idx.get((name, a, seq, causal))) for a in PREFILL_ALGORITHMS]
                rows.append([_k(seq), str(max(1, PREFILL_TOKENS // seq)), "yes" if causal else "no"] + cells)
        L += [_md_table(["seq", "batch", "causal"] + list(PREFILL_ALGORITHMS), rows, "rrl" + "r" * 3), ""]
    return L


def _decode_section(points: list[Point], archs: dict[str, Arch]) -> list[str]:
    L = ["## Decode sweep", "",
         f"One decode step with flash-decoding (`flash_decode`: the {DECODE_HEADS // DECODE_KV_HEADS} query "
         "heads of a KV head packed into one CTA, keys split over CTAs by flash-attention's own split "
         f"heuristic, then a combine kernel): {DECODE_HEADS} query heads, {DECODE_KV_HEADS} KV heads, "
         f"head_dim {HEAD_DIM}, seq_q 1, {DTYPE}. Decode reads the whole KV cache once, so achieved HBM "
         "bandwidth (HBM bytes / latency) as a fraction of the peak is the number that matters.", "",
         "![decode latency](decode_latency.png)", ""]
    dec = [p for p in points if p.spec.sweep == "decode"]
    for name in archs:
        rows = []
        for p in dec:
            if p.spec.arch != name:
                continue
            w = p.spec.workload
            if p.row is None:
                rows.append([str(w.batch), _k(w.seq_kv)] + [p.skipped] + [""] * 7)
                continue
            r = p.row
            rows.append([str(w.batch), _k(w.seq_kv), fmt_si(r["latency_s"], "s"), _bytes(r["hbm_bytes"]),
                         f"{r['hbm_tb_per_s']:.2f}", f"{100 * r['hbm_frac_of_peak']:.0f}%",
                         f"{r['tflops_per_s']:.1f}", str(r["split_kv"]), f"{r['n_ctas']:.0f}", r["bound"]])
        if rows:
            L += [f"**{name}** (HBM peak {archs[name].level('HBM').bandwidth_bytes_per_s / 1e12:.2f} TB/s)", "",
                  _md_table(["batch", "KV len", "latency", "HBM bytes", "HBM TB/s", "of peak", "TFLOP/s",
                             "split_kv", "CTAs", "bound"], rows, "rrrrrrrrrl"), ""]
    return L


def _roofline_section(df: pd.DataFrame, archs: dict[str, Arch]) -> list[str]:
    L = ["## Roofline", "",
         "x: arithmetic intensity = useful FLOPs / HBM bytes moved (the model's HBM traffic, not the "
         "compulsory minimum); y: achieved TFLOP/s. Solid: the roof from the peak matrix rate of the best "
         "instruction class and the peak HBM bandwidth; dotted: the same roof derated by the YAML "
         "efficiency factors. Color = algorithm, marker = binding resource.", "",
         "![roofline](roofline.png)", ""]
    rows = []
    for name, a in archs.items():
        d = df[df.arch == name]
        if d.empty:
            continue
        peak, bw = _peak(a), a.level("HBM").bandwidth_bytes_per_s
        roof = np.minimum(peak, d.arithmetic_intensity * bw)
        frac = d.tflops_per_s * 1e12 / roof
        best = d.loc[d.tflops_per_s.idxmax()]
        rows.append([name, f"{peak / bw:.0f}", f"{frac.median():.2f}", f"{frac.max():.2f}",
                     f"{best.tflops_per_s:.0f} ({best.algorithm}, seq {_k(int(best.seq_q))}"
                     + (", causal" if best.causal else "") + ")"])
    L += [_md_table(["arch", "ridge FLOP/B", "median fraction of roof", "max fraction of roof",
                     "best TFLOP/s"], rows, "lrrrl"), ""]
    return L


def _binding_section(points: list[Point], df: pd.DataFrame, quick: bool) -> list[str]:
    L = ["## Binding resources", "",
         "The binding resource of every point, with its margin over the next-largest time term, CTAs "
         "resident per SM and the number of waves (CTAs / (SMs x CTAs per SM)). The full table, every "
         "point and more columns (traffic per level, energy, arithmetic intensity), is "
         "[`points.csv`](points.csv); shown here: "
         + ("every point of the quick grid." if quick else
            "prefill at " + ", ".join(_k(s) for s in TABLE_SEQS) + " and decode at batch 1/16/256 x KV 4k/128k."),
         ""]
    if not df.empty:
        cnt = df.groupby(["arch", "algorithm", "bound"]).size().unstack(fill_value=0)
        header = ["arch", "algorithm"] + list(cnt.columns)
        rows = [[a, al] + [str(v) for v in cnt.loc[(a, al)].tolist()] for a, al in cnt.index]
        L += ["How often each resource binds (count of points):", "",
             _md_table(header, rows, "ll" + "r" * len(cnt.columns)), ""]
    pre_seqs = sorted({p.spec.workload.seq_q for p in points if p.spec.sweep == "prefill"})
    show = pre_seqs if quick else [s for s in TABLE_SEQS if s in pre_seqs] or pre_seqs
    dec_b = {1, 16, 256}
    dec_kv = {4096, 131072}
    if quick:  # the quick grid has other decode shapes: show them all
        dec_b = {p.spec.workload.batch for p in points if p.spec.sweep == "decode"}
        dec_kv = {p.spec.workload.seq_kv for p in points if p.spec.sweep == "decode"}
    rows = []
    for p in points:
        w = p.spec.workload
        if p.spec.sweep == "prefill" and w.seq_q not in show:
            continue
        if p.spec.sweep == "decode" and (w.batch not in dec_b or w.seq_kv not in dec_kv):
            continue
        shape = (f"B{w.batch} H{w.heads}/{w.kv_heads} M{_k(w.seq_q)} N{_k(w.seq_kv)}"
                 + (" causal" if w.mask.is_causal else ""))
        if p.row is None:
            rows.append([p.spec.arch, p.spec.algorithm, shape, p.skipped, "", "", "", "", ""])
            continue
        r = p.row
        bound = r["bound"] + ("" if r["s_fits_in_hbm"] else "; S does not fit in HBM")
        rows.append([p.spec.arch, p.spec.algorithm, shape, fmt_si(r["latency_s"], "s"), f"{r['tflops_per_s']:.1f}",
                     bound, f"{r['bound_margin']:.2f}", f"{r['ctas_per_sm']:.0f}", f"{r['waves']:.2f}"])
    L += [_md_table(["arch", "algorithm", "shape", "latency", "TFLOP/s", "bound", "margin", "CTAs/SM", "waves"],
                    rows, "lllrrlrrr"), ""]
    return L


def _explain_section(archs: dict[str, Arch]) -> list[str]:
    L = ["## Worked example: explain()", ""]
    name = EXPLAIN_ARCH if EXPLAIN_ARCH in archs else next(
        (n for n, a in archs.items() if "wgmma" in a.compute.matrix_flops_per_cycle), None)
    if name is None:
        return L + ["No preset with wgmma was available, so there is no flash3 example.", ""]
    seq = 8192
    w = _prefill_workload(seq, True)
    r = predict(archs[name], w, "flash3")
    L += [f"`attnsim.predict('{name}', attnsim.attention('softmax', batch={w.batch}, heads={w.heads}, "
          f"seq={seq}, head_dim={w.head_dim}, causal=True), 'flash3').explain()`:", "",
          "```text", r.explain(), "```", ""]
    return L


# ---- entry point ----

def build_report(out_dir: str | Path, *, quick: bool = False, progress: bool = True) -> Path:
    """Evaluate the report's grid and write ``out_dir/README.md``, ``points.csv`` and the PNG plots.

    ``quick``: a reduced grid (for tests), with every section. ``progress``: a tqdm bar on stderr.
    Returns the README path.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    archs, missing = load_archs(ARCHS)
    if not archs:
        raise AttnsimError("none of the report's arch presets loads: "
                           + "; ".join(f"{n}: {why}" for n, why in missing.items()))
    specs = grid(list(archs), quick=quick)
    points = [evaluate_point(s, archs[s.arch])
              for s in tqdm(specs, desc="attnsim report", unit="pt", file=sys.stderr, disable=not progress)]
    df = pd.DataFrame([p.row for p in points if p.row is not None], columns=list(CSV_COLUMNS))
    df.to_csv(out / "points.csv", index=False)

    plot_prefill(df, archs, out)
    plot_decode(df, archs, out)
    plot_roofline(df, archs, out)

    L = _header(archs, missing, quick, len(df))
    L += _prefill_section(points, archs)
    L += _decode_section(points, archs)
    L += _roofline_section(df, archs)
    L += _binding_section(points, df, quick)
    L += _explain_section(archs)
    from attnsim.report_families import families_section
    L += families_section(archs, out)
    readme = out / "README.md"
    readme.write_text("\n".join(L))
    return readme


if __name__ == "__main__":  # python -m attnsim.report [OUT_DIR] [--quick]
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    print(build_report(args[0] if args else "report", quick="--quick" in sys.argv))
