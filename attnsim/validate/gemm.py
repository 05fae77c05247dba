"""Projection GEMMs predicted against Vidur's measured attention-block GEMMs.

Vidur's ``attn_proj`` profiles (``../shared/data/measured/vidur/attn_proj``, PROVENANCE.md there)
time the fused QKV projection (``attn_pre_proj``: tokens x (H + 2 Hkv) d / TP x n_embd) and the
output projection (``attn_post_proj``: tokens x n_embd x H d / TP) on A100 and H100 for several
models, 1 to 4096 tokens and TP 1 to 8. attnsim costs each as one stand-alone GEMM kernel
(``attnsim.model.families.common.gemm_op``), the same GEMM model ``attnsim predict --model``
uses for a network's projections and MLPs.

The arch YAMLs' ``efficiency.mma`` factors were derived from ONE of these rows per GPU (Llama-2-70B,
TP 1, 4096 tokens, the QKV GEMM; see the arch files' VIDUR-GEMM source): those rows are marked
``fit`` and left out of every error figure.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from attnsim.arch import load_arch
from attnsim.errors import SpecError
from attnsim.validate.metrics import summarize

GPU_ARCH = {"a100": "a100_sxm4_80gb", "h100": "h100_sxm5_80gb"}
SMALL_TOKENS = 512  # below this many tokens a projection is a thin, launch- and latency-dominated GEMM
FIT = {"model": "meta-llama_Llama-2-70b-hf", "op": "qkv", "tokens": 4096, "tp": 1}


def read_attn_proj(path: str | Path) -> pd.DataFrame:
    """One row per (GEMM, tokens, TP) of a Vidur attn_proj CSV: shapes, measured median (s)."""
    p = Path(path)
    gpu, _, rest = p.name.partition("_")
    if gpu not in GPU_ARCH or not rest.endswith("_attn_proj_rope.csv"):
        raise SpecError(f"{p}: expected a Vidur attn_proj file named <gpu>_<org>_<model>_attn_proj_rope.csv "
                        f"with gpu in {sorted(GPU_ARCH)}")
    model = rest[: -len("_attn_proj_rope.csv")]
    df = pd.read_csv(p)
    need = ("n_head", "n_kv_head", "n_embd", "num_tokens", "num_tensor_parallel_workers",
            "time_stats.attn_pre_proj.median", "time_stats.attn_post_proj.median")
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise SpecError(f"{p}: missing column(s) {missing}")
    rows = []
    for r in df.to_dict("records"):
        hd, tp, tokens = r["n_embd"] // r["n_head"], int(r["num_tensor_parallel_workers"]), int(r["num_tokens"])
        for op, n, k, col in (("qkv", (r["n_head"] + 2 * r["n_kv_head"]) * hd // tp, r["n_embd"], "attn_pre_proj"),
                              ("out", r["n_embd"], r["n_head"] * hd // tp, "attn_post_proj")):
            rows.append({"gpu": gpu, "arch": GPU_ARCH[gpu], "model": model, "op": op, "tokens": tokens, "tp": tp,
                         "m": tokens, "n": int(n), "k": int(k), "time_median_s": r[f"time_stats.{col}.median"] * 1e-3})
    out = pd.DataFrame(rows)
    # repeated configurations: keep the median of their medians
    keys = ["gpu", "arch", "model", "op", "tokens", "tp", "m", "n", "k"]
    out = out.groupby(keys, as_index=False)["time_median_s"].median()
    out["fit"] = ((out.model == FIT["model"]) & (out.op == FIT["op"]) & (out.tokens == FIT["tokens"])
                  & (out.tp == FIT["tp"]))
    out["regime"] = np.where(out.tokens < SMALL_TOKENS, f"< {SMALL_TOKENS} tokens", f">= {SMALL_TOKENS} tokens")
    return out


def predict_gemms(df: pd.DataFrame, dtype: str = "fp16") -> np.ndarray:
    from attnsim.model.families.common import gemm_op
    from attnsim.model.plan import kernel_cost
    pred = np.empty(len(df))
    archs = {name: load_arch(name) for name in df.arch.unique()}
    for i, r in enumerate(df.itertuples()):
        a = archs[r.arch]
        pred[i] = kernel_cost(a, gemm_op("gemm", 1, r.m, r.n, r.k, dtype, 2, arch=a)).latency_s
    return pred


def validate_gemms(files: list[str | Path]) -> dict:
    """Held-out error of the GEMM model per GPU and regime (the fit rows excluded)."""
    df = pd.concat([read_attn_proj(f) for f in files], ignore_index=True)
    df["predicted_s"] = predict_gemms(df)
    held = df[~df.fit]
    out: dict = {"n_fit_rows": int(df.fit.sum()), "rows": int(len(held))}
    for gpu in sorted(held.gpu.unique()):
        for regime in sorted(held.regime.unique()):
            s = held[(held.gpu == gpu) & (held.regime == regime)]
            if len(s):
                out[f"{gpu} {regime}"] = summarize(s.predicted_s.to_numpy(), s.time_median_s.to_numpy())
    out["table"] = df
    return out


def gemm_report(files: list[str | Path], out: str | Path) -> dict:
    """Write ``out/README.md`` (the error table) and ``out/gemm_scatter.png``; return the summary."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    res = validate_gemms(files)
    df = res.pop("table")
    held = df[~df.fit]
    fig, ax = plt.subplots(figsize=(6.5, 6))
    for (gpu, regime), s in held.groupby(["gpu", "regime"]):
        ax.scatter(s.time_median_s * 1e3, s.predicted_s * 1e3, s=4, alpha=0.35, label=f"{gpu}, {regime} ({len(s)})")
    lo, hi = held.time_median_s.min() * 1e3 / 2, held.time_median_s.max() * 1e3 * 2
    ax.plot([lo, hi], [lo, hi], "k-", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="measured (ms)", ylabel="predicted (ms)",
           title="projection GEMMs (Vidur attn_proj), held-out rows")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "gemm_scatter.png", dpi=120)
    plt.close(fig)
    lines = ["# GEMM predictions vs Vidur's measured projection GEMMs", "",
             f"{res['rows']} held-out GEMMs ({res['n_fit_rows']} fit rows excluded: the efficiency.mma source rows).", "",
             "| GPU, regime | n | median APE | P90 APE | Spearman | median predicted/measured |", "|---|---|---|---|---|---|"]
    for k, v in res.items():
        if isinstance(v, dict):
            lines.append(f"| {k} | {v['n']} | {100 * v['median_ape']:.1f}% | {100 * v['p90_ape']:.1f}% | "
                         f"{v['spearman']:.3f} | {v['median_ratio']:.3f} |")
    lines += ["", "![scatter](gemm_scatter.png)", ""]
    (out / "README.md").write_text("\n".join(lines))
    return res
