"""Predicted vs measured: a trace (uploaded, a path, or the bundled Vidur one) against the model."""
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from app.app_pages import common as C  # noqa: E402
from attnsim.errors import AttnsimError  # noqa: E402

st.title("Validate against measurements")


@st.cache_data(show_spinner=False, max_entries=16)
def predicted(path: str, mtime: float, arch_override: str | None):
    """(trace frame, predicted latency per row, {row: reason}) — cached by path and mtime."""
    del mtime
    from attnsim.arch import load_arch
    from attnsim.validate.predict_trace import latencies, lower_trace
    from attnsim.validate.traces import read_trace
    df, _ = read_trace(path)
    pred = np.full(len(df), np.nan)
    errors = {}
    names = [arch_override] if arch_override else sorted(df["arch"].unique())
    for name in names:
        sel = np.arange(len(df)) if arch_override else np.flatnonzero(df["arch"].to_numpy() == name)
        low = lower_trace(df.iloc[sel], load_arch(name))
        if len(low.index):
            pred[sel[low.index]] = latencies(low.points)
        errors.update({int(sel[i]): e for i, e in low.errors.items()})
    return df, pred, errors


default_path = str(C.VIDUR_TRACE) if C.VIDUR_TRACE.exists() else ""
up = st.file_uploader("Upload a trace CSV", type=["csv"], key="val_upload")
path = st.text_input("...or a trace path", default_path, key="val_path")
arch_opt = st.selectbox("Arch", ["(from the trace)"] + C.arch_presets(), key="val_arch")
arch_override = None if arch_opt == "(from the trace)" else arch_opt
if up is not None:
    import hashlib
    import tempfile
    p = Path(tempfile.gettempdir()) / "attnsim_app" / f"trace_{hashlib.sha256(up.getvalue()).hexdigest()[:16]}.csv"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(up.getvalue())
    path = str(p)
if not path:
    st.info("Load a trace: upload a CSV or give a path (the bundled Vidur trace is used when ../shared exists).")
    st.stop()
try:
    with st.spinner("predicting every row..."):
        df, pred, errors = predicted(path, Path(path).stat().st_mtime if Path(path).exists() else 0.0, arch_override)
except AttnsimError as e:
    C.show_error(e)
    st.stop()

from attnsim.validate.metrics import summarize  # noqa: E402

meas = df["time_median_s"].to_numpy(float)
ok = np.isfinite(pred)
rows = []
for regime in ["overall"] + sorted(df["regime"].unique()):
    sel = ok & ((df["regime"].to_numpy() == regime) if regime != "overall" else True)
    s = summarize(pred[sel], meas[sel])
    rows.append({"regime": regime, "n": s["n"],
                 "median APE (%)": round(100 * s["median_ape"], 1) if s["n"] else np.nan,
                 "P90 APE (%)": round(100 * s["p90_ape"], 1) if s["n"] else np.nan,
                 "Spearman": round(s["spearman"], 3) if s["n"] else np.nan})
st.subheader("Error by regime")
st.dataframe(pd.DataFrame(rows), hide_index=True, key="val_errors")
st.caption(f"{len(df)} rows, {int(ok.sum())} predicted, {len(errors)} could not be predicted.")

import matplotlib  # noqa: E402
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, ax = plt.subplots(figsize=(6, 5.5))
for regime in sorted(df["regime"].unique()):
    sel = ok & (df["regime"].to_numpy() == regime)
    ax.scatter(meas[sel] * 1e3, pred[sel] * 1e3, s=6, alpha=0.5, label=f"{regime} ({int(sel.sum())})")
if ok.any():
    lo, hi = np.nanmin(meas[ok]) * 1e3 / 2, np.nanmax(meas[ok]) * 1e3 * 2
    ax.plot([lo, hi], [lo, hi], "k-", lw=1, label="y = x")
ax.set(xscale="log", yscale="log", xlabel="measured (ms)", ylabel="predicted (ms)", title="predicted vs measured")
ax.grid(True, which="both", alpha=0.2)
ax.legend(fontsize=8)
fig.tight_layout()
st.pyplot(fig)
if errors:
    with st.expander(f"{len(errors)} rows not predicted"):
        st.dataframe(pd.DataFrame({"row": list(errors), "reason": list(errors.values())}).head(500))
