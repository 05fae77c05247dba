"""The report's families section: every family preset (``workloads/*.yaml`` with a ``family:``)
predicted against softmax attention on the same shape, and linear attention's crossover.

For each preset and arch the baseline is the arch's default softmax-attention kernel on the
preset's shape and mask (FlashAttention-3-style on Hopper, -2 elsewhere, flash-decoding for a
decode step); the candidate is the family with its plan of kernels. Everything is a prediction.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from attnsim.errors import AttnsimError  # noqa: E402
from attnsim.model.analytical import predict  # noqa: E402
from attnsim.units import fmt_si  # noqa: E402
from attnsim.workload.spec import Params, list_workload_presets, load_workload  # noqa: E402

FAMILY_ARCHS = ("h100_sxm5_80gb", "a100_sxm4_80gb")
CROSSOVER_ARCH = "h100_sxm5_80gb"
CROSSOVER_SEQS = tuple(2 ** k for k in range(9, 18))  # 512 .. 128k
CROSSOVER_SHAPE = dict(batch=1, heads=32, head_dim=128)


def family_presets() -> list:
    out = []
    for name in list_workload_presets():
        w = load_workload(name)
        if w.family != "softmax":
            out.append(w)
    return out


def baseline_of(w):
    """What the family is compared with: its Family.baseline, else softmax attention on the same
    shape and mask; None when it has no twin."""
    from dataclasses import replace
    from attnsim.workload.families import family
    fam = family(w.family)
    if fam.baseline is not None:
        return fam.baseline(w)
    return replace(w, family="softmax", params=Params(), name="")


def _changed(w, twin) -> str:
    diff = {k: v for k, v in twin.params.items if w.params.get(k) != v}
    return f"{w.family}, " + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in diff.items())


def family_rows(archs: dict) -> pd.DataFrame:
    rows = []
    for w in family_presets():
        for name, arch in archs.items():
            row = {"preset": w.name, "family": w.family, "params": w.params.label(), "arch": name}
            twin = baseline_of(w)
            if twin is None:
                rows.append({**row, "status": "no baseline: this family has no attention twin"})
                continue
            try:
                base = predict(arch, twin)
                cand = predict(arch, w)
            except AttnsimError as e:
                rows.append({**row, "status": str(e).splitlines()[0]})
                continue
            rows.append({**row, "baseline": base.mapping if twin.family == "softmax" else _changed(w, twin), "baseline_s": base.latency_s, "family_s": cand.latency_s,
                         "speedup": base.latency_s / cand.latency_s, "bound": cand.bound,
                         "kernels": len(cand.kernels), "status": "ok"})
    return pd.DataFrame(rows)


def plot_speedups(df: pd.DataFrame, out: Path) -> Path | None:
    ok = df[df.status == "ok"] if len(df) else df
    if ok.empty:
        return None
    presets = sorted(ok.preset.unique())
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(presets) + 1.6))
    archs = sorted(ok.arch.unique())
    h = 0.8 / len(archs)
    for j, a in enumerate(archs):
        s = ok[ok.arch == a].set_index("preset").reindex(presets)
        ax.barh([i + j * h for i in range(len(presets))], s.speedup, height=h, label=a)
    ax.axvline(1.0, color="k", lw=1)
    ax.set_xscale("log")
    ax.set_yticks([i + h * (len(archs) - 1) / 2 for i in range(len(presets))], presets, fontsize=8)
    ax.set_xlabel("predicted speedup over softmax attention on the same shape (log scale)")
    ax.legend(fontsize=8)
    ax.grid(True, axis="x", which="both", alpha=0.2)
    fig.tight_layout()
    path = out / "families_speedup.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def crossover(arch, seqs=CROSSOVER_SEQS, shape=CROSSOVER_SHAPE) -> pd.DataFrame:
    """linear_chunked (default parameters) vs FlashAttention-2, causal, over sequence lengths."""
    import attnsim
    rows = []
    for n in seqs:
        fa2 = predict(arch, attnsim.attention(seq=n, causal=True, **shape), "flash2")
        lin = predict(arch, attnsim.attention("linear_chunked", seq=n, causal=True, **shape))
        rows.append({"seq": n, "flash2_s": fa2.latency_s, "linear_chunked_s": lin.latency_s})
    return pd.DataFrame(rows)


def plot_crossover(df: pd.DataFrame, arch_name: str, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(df.seq, df.flash2_s * 1e3, "o-", label="FlashAttention-2 (causal softmax)")
    ax.plot(df.seq, df.linear_chunked_s * 1e3, "s-", label="linear_chunked (default parameters)")
    ax.set(xscale="log", yscale="log", xlabel="sequence length", ylabel="predicted latency (ms)",
           title=f"{arch_name}, batch {CROSSOVER_SHAPE['batch']}, {CROSSOVER_SHAPE['heads']} heads of "
                 f"{CROSSOVER_SHAPE['head_dim']}")
    ax.set_xticks(df.seq, [f"{s // 1024}k" if s >= 1024 else str(s) for s in df.seq], fontsize=8)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.2)
    fig.tight_layout()
    path = out / "linear_crossover.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def families_section(archs: dict, out: Path) -> list[str]:
    L = ["## Attention families", "",
         "Each family preset (`workloads/*.yaml` with a `family:`) against softmax attention on the same "
         "shape and mask with the arch's default kernels (token pruning: against the same model unpruned), "
         "from docs/families/. Predictions only.", ""]
    use = {n: a for n, a in archs.items() if n in FAMILY_ARCHS}
    df = family_rows(use)
    if df.empty:
        return L + ["(no family presets)", ""]
    df.to_csv(out / "families.csv", index=False)
    png = plot_speedups(df, out)
    if png is not None:
        L += [f"![family speedups]({png.name})", ""]
    L += ["| preset | arch | baseline kernel | baseline | family | speedup | family bound |", "|---|---|---|---|---|---|---|"]
    for r in df.itertuples():
        if r.status != "ok":
            L.append(f"| {r.preset} | {r.arch} | | | | | {r.status} |")
            continue
        L.append(f"| {r.preset} | {r.arch} | {r.baseline} | {fmt_si(r.baseline_s, 's')} | {fmt_si(r.family_s, 's')} "
                 f"| {r.speedup:.2f}x | {r.bound} |")
    L.append("")
    if CROSSOVER_ARCH in archs:
        cx = crossover(archs[CROSSOVER_ARCH])
        cx.to_csv(out / "linear_crossover.csv", index=False)
        png = plot_crossover(cx, CROSSOVER_ARCH, out)
        from attnsim.model.families.linear import crossover_seq
        n = crossover_seq(archs[CROSSOVER_ARCH], **CROSSOVER_SHAPE)
        L += ["### Linear attention vs FlashAttention-2", "",
              f"On {CROSSOVER_ARCH} (batch {CROSSOVER_SHAPE['batch']}, {CROSSOVER_SHAPE['heads']} heads of "
              f"{CROSSOVER_SHAPE['head_dim']}, causal) chunked linear attention is predicted faster than "
              f"FlashAttention-2 from N = {n} tokens (`crossover_seq`; docs/families/linear.md derives it).", "",
              f"![crossover]({png.name})", ""]
    return L
