"""`attnsim validate` and `attnsim calibrate`: predictions against a measured trace, as a
Markdown report with plots and a JSON summary of the errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from attnsim.arch import load_arch
from attnsim.errors import SpecError
from attnsim.model import gpu_kernel as K
from attnsim.validate.calibrate import (apply_values, calibrated_spec, field_by_name, fit, split_mask, training_loss,
                                       with_kernel_property)
from attnsim.validate.metrics import summarize
from attnsim.validate.predict_trace import latencies, lower_trace
from attnsim.validate.traces import read_trace

DEFAULT_FIT = ("efficiency.kernels.flash2_kvcache.mma", "efficiency.kernels.flash2_kvcache.launch_overhead",
               "efficiency.kernels.flash_decode.hbm", "efficiency.kernels.flash_decode.mma",
               "efficiency.kernels.flash_decode.launch_overhead")


def _predicted(df: pd.DataFrame, arch_name: str | None, values: dict | None = None):
    """Predicted latency and HBM bytes per trace row (NaN where a row could not be predicted)."""
    lat = np.full(len(df), np.nan)
    hbm = np.full(len(df), np.nan)
    errors: dict[int, str] = {}
    names = [arch_name] if arch_name else sorted(df["arch"].unique())
    for name in names:
        arch = load_arch(name)
        sel = np.arange(len(df)) if arch_name else np.flatnonzero(df["arch"].to_numpy() == name)
        low = lower_trace(df.iloc[sel], arch)
        points = apply_values(low, values) if values else low.points
        out = K.evaluate_points(np.ascontiguousarray(points))
        lat[sel[low.index]] = np.where(out[:, K.O_STATUS] == K.ST_OK, out[:, K.O_LATENCY], np.nan)
        hbm[sel[low.index]] = out[:, K.O_HBM_BYTES]
        errors.update({int(sel[i]): e for i, e in low.errors.items()})
    return lat, hbm, errors


def error_summary(df: pd.DataFrame, pred: np.ndarray) -> dict:
    """Overall and per-regime error figures (rows with a prediction only)."""
    ok = np.isfinite(pred)
    meas = df["time_median_s"].to_numpy(float)
    out = {"overall": summarize(pred[ok], meas[ok])}
    for regime in sorted(df["regime"].unique()):
        sel = ok & (df["regime"].to_numpy() == regime)
        out[regime] = summarize(pred[sel], meas[sel])
    return out


def _plots(df, pred, out_dir: Path, title: str) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    meas = df["time_median_s"].to_numpy(float)
    ok = np.isfinite(pred)
    fig, ax = plt.subplots(figsize=(6.5, 6))
    for regime, color in zip(sorted(df["regime"].unique()), ["tab:blue", "tab:orange", "tab:green"]):
        sel = ok & (df["regime"].to_numpy() == regime)
        ax.scatter(meas[sel] * 1e3, pred[sel] * 1e3, s=6, alpha=0.4, color=color, label=f"{regime} ({sel.sum()})")
    lo, hi = np.nanmin(meas[ok]) * 1e3 / 2, np.nanmax(meas[ok]) * 1e3 * 2
    ax.plot([lo, hi], [lo, hi], "k-", lw=1, label="y = x")
    ax.plot([lo, hi], [lo * 1.2, hi * 1.2], "k:", lw=0.8, label="+-20%")
    ax.plot([lo, hi], [lo / 1.2, hi / 1.2], "k:", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="measured (ms)", ylabel="predicted (ms)", title=title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(True, which="both", alpha=0.2)
    fig.tight_layout()
    fig.savefig(out_dir / "scatter.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    err = (pred - meas) / meas * 100
    for regime, color in zip(sorted(df["regime"].unique()), ["tab:blue", "tab:orange", "tab:green"]):
        sel = ok & (df["regime"].to_numpy() == regime)
        ax.scatter(df["seq_kv"].to_numpy()[sel], err[sel], s=5, alpha=0.35, color=color, label=regime)
    ax.axhline(0, color="k", lw=1)
    ax.set(xscale="log", xlabel="seq_kv (keys)", ylabel="signed error (%)", title="error by sequence length")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.2)
    fig.tight_layout()
    fig.savefig(out_dir / "error_by_seq.png", dpi=120)
    plt.close(fig)
    return ["scatter.png", "error_by_seq.png"]


def _bins(df, pred) -> pd.DataFrame:
    meas = df["time_median_s"].to_numpy(float)
    t = pd.DataFrame({"regime": df["regime"], "ape": np.abs(pred - meas) / meas,
                      "seq_kv": pd.cut(df["seq_kv"], [0, 256, 1024, 4096, 16384, 1 << 30],
                                       labels=["<=256", "257-1k", "1k-4k", "4k-16k", ">16k"]),
                      "batch": pd.cut(df["batch"], [0, 1, 8, 32, 1 << 20], labels=["1", "2-8", "9-32", ">32"])})
    t = t[np.isfinite(t["ape"])]
    g = t.groupby(["regime", "seq_kv", "batch"], observed=True)["ape"]
    return pd.DataFrame({"n": g.size(), "median_ape": g.median(), "p90_ape": g.quantile(0.9)}).reset_index()


def _fmt(s: dict) -> str:
    if not s.get("n"):
        return "| 0 | | | | | |"
    return (f"| {s['n']} | {100 * s['median_ape']:.1f}% | {100 * s['p90_ape']:.1f}% | {100 * s['max_ape']:.0f}% | "
            f"{s['spearman']:.3f} | {100 * s['sign_accuracy']:.1f}% |")


def _summary_table(summary: dict) -> list[str]:
    lines = ["| split | n | median APE | P90 APE | max APE | Spearman | speedup sign right |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for k, s in summary.items():
        lines.append(f"| {k} " + _fmt(s))
    return lines


def validate(trace: str | Path, arch: str | None = None, out: str | Path | None = None) -> dict:
    """Predict every row of `trace`; write a report to `out` when given; return the summary."""
    df, prov = read_trace(trace)
    pred, hbm, errors = _predicted(df, arch)
    summary = error_summary(df, pred)
    summary["unpredicted_rows"] = len(errors)
    if "dram_read_bytes" in df.columns and df["dram_read_bytes"].notna().any():
        measured = df["dram_read_bytes"].fillna(0) + df.get("dram_write_bytes", 0).fillna(0)
        ok = np.isfinite(hbm) & (measured.to_numpy() > 0)
        summary["dram_bytes"] = summarize(hbm[ok], measured.to_numpy()[ok])
    if out:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        plots = _plots(df, pred, out, f"{Path(trace).name}: predicted vs measured")
        bins = _bins(df, pred)
        res = df.assign(predicted_s=pred, error=np.where(np.isfinite(pred), "", ""))
        for i, e in errors.items():
            res.loc[res.index[i], "error"] = e
        res.to_csv(out / "predictions.csv", index=False)
        md = [f"# Validation: `{Path(trace).name}`", "",
              f"Trace source: {prov.get('source', prov.get('upstream', 'see provenance'))}. "
              f"Arch: {arch or ', '.join(sorted(df['arch'].unique()))}. "
              "Each row is predicted by the analytical model with the algorithm's default kernel mapping. "
              "APE = |predicted - measured| / measured; the speedup sign is right when the model orders a pair of "
              "configurations as the measurement does.", "",
              *_summary_table({k: v for k, v in summary.items() if isinstance(v, dict)}), "",
              f"{len(errors)} rows could not be predicted (reasons in predictions.csv).", "",
              *[f"![{p}]({p})" for p in plots], "", "## Error by regime, sequence length and batch", "",
              bins.to_markdown(index=False, floatfmt=".3f") if _has_tabulate() else bins.to_string(index=False)]
        (out / "README.md").write_text("\n".join(md) + "\n")
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
        return True
    except ImportError:
        return False


def select_variants(df, arch, meas, train, fit_fields):
    """For each kernel family being fitted that meets masked rows, fit with and without skipping
    masked tiles, on the training rows only, and keep the variant with the lower training loss."""
    kernels = sorted({f.name.split(".")[2] for f in fit_fields if f.name.startswith("efficiency.kernels.")})
    masked = (df["causal"].astype(bool) | (df["window"].fillna(0) > 0)).to_numpy()
    variants = {}
    for kernel in kernels:
        rows = (df["algorithm"].to_numpy() == kernel) & masked
        if not (rows & train).any():
            continue
        losses = {}
        for skip in (True, False):
            candidate = with_kernel_property(arch, kernel, "skip_masked_tiles", skip)
            low = lower_trace(df, candidate)
            losses[skip] = training_loss(low, meas, train, fit(low, meas, train, fit_fields))
        chosen = min(losses, key=losses.get)
        arch = with_kernel_property(arch, kernel, "skip_masked_tiles", chosen)
        variants[kernel] = {"chosen": chosen, "train_loss": losses}
    return arch, variants


def calibrate(trace: str | Path, arch: str, fields: list[str] | None = None, split: str = "hash:5",
              out: str | Path = "calibration") -> dict:
    """Fit `fields` on the training split of `trace`; report held-out errors before and after;
    write the calibrated arch YAML (its fitted values sourced to this run) and a report."""
    df, prov = read_trace(trace)
    arch_v = load_arch(arch)
    fit_fields = [field_by_name(f) for f in (fields or DEFAULT_FIT)]
    test = split_mask(df, split)
    if test.all() or not test.any():
        raise SpecError(f"split rule {split!r} leaves {'no training' if test.all() else 'no held-out'} rows")
    meas = df["time_median_s"].to_numpy(float)
    arch_v, variants = select_variants(df, arch_v, meas, ~test, fit_fields)
    low = lower_trace(df, arch_v)
    values = fit(low, meas, ~test, fit_fields)
    before = np.full(len(df), np.nan)
    after = np.full(len(df), np.nan)
    before[low.index] = latencies(lower_trace(df, load_arch(arch)).points)
    after[low.index] = latencies(apply_values(low, values))
    for kernel, v in variants.items():
        values[f"efficiency.kernels.{kernel}.skip_masked_tiles"] = v["chosen"]
    held = df[test].reset_index(drop=True)
    result = {
        "trace": str(trace), "arch": arch, "split": split, "n_train": int((~test).sum()), "n_test": int(test.sum()),
        "fitted": values,
        "variants_selected_on_training_rows": variants,
        "held_out_before": error_summary(held, before[test]),
        "held_out_after": error_summary(held, after[test]),
        "train_after_fit_data_not_accuracy": error_summary(df[~test].reset_index(drop=True), after[~test]),
    }
    note = (f"fitted on {Path(trace).name} train split ({split}: {result['n_train']} rows); held-out "
            f"({result['n_test']} rows) median APE {100 * result['held_out_after']['overall']['median_ape']:.1f}%")
    _, text = calibrated_spec(arch_v, values, note)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{arch}_calibrated.yaml").write_text(f"# Generated by attnsim calibrate. {note}\n" + text)
    (out / "calibration.json").write_text(json.dumps(result, indent=2))
    md = [f"# Calibration of `{arch}` on `{Path(trace).name}`", "",
          f"Split rule `{split}`: {result['n_train']} training rows, {result['n_test']} held-out rows. "
          "Only the fields below were fitted, on the training rows only (mean squared log error).", "",
          "| field | fitted value |", "|---|---:|",
          *[f"| `{k}` | {v:.4g} |" if not isinstance(v, bool) else f"| `{k}` | {str(v).lower()} |"
            for k, v in values.items() if v is not None], "",
          *([ "Discrete kernel variants were chosen by training loss (mean squared log error) alone:", "",
              "| kernel | skip_masked_tiles: true | false | chosen |", "|---|---:|---:|---|",
              *[f"| {k} | {v['train_loss'][True]:.4f} | {v['train_loss'][False]:.4f} | {str(v['chosen']).lower()} |"
                for k, v in variants.items()], ""] if variants else []),
          "## Held-out error before calibration", "", *_summary_table(result["held_out_before"]), "",
          "## Held-out error after calibration (the accuracy figure)", "", *_summary_table(result["held_out_after"]),
          "", f"Calibrated spec: `{arch}_calibrated.yaml`."]
    (out / "README.md").write_text("\n".join(md) + "\n")
    return result
