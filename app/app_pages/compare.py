"""Compare algorithms and variants on one shape: predicted speedup over a chosen baseline."""
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

st.title("Compare variants")

presets = C.arch_presets()
c = st.columns(3)
source = c[0].selectbox("Arch preset", presets, index=presets.index("h100_sxm5_80gb")
                        if "h100_sxm5_80gb" in presets else 0, key="cmp_arch")
arch = C.base_arch(source)
batch, heads, kv_heads, seq_q, seq_kv, head_dim = C.shape_inputs("cmp")
c3 = st.columns(3)
window = c3[0].number_input("sliding window", 1, 1 << 22, 4096, key="cmp_window")
density = c3[1].number_input("block-sparse density", 0.01, 1.0, 0.25, step=0.05, key="cmp_density")
splits = c3[2].multiselect("split-KV counts", [1, 2, 4, 8, 16, 32], default=[1, 4, 16], key="cmp_splits")
families = st.text_area("Attention families, one per line: NAME[:k=v,k=v][@KERNEL] (attnsim list shows them; "
                        "each runs on the causal shape above)",
                        "topk_blocks:density=0.25\nlinear_chunked\nhead_mix", key="cmp_families")


def key(mask):
    return C.custom_workload_key(batch, heads, kv_heads, seq_q, seq_kv, head_dim, mask, window, density)


# variant name -> (workload key, algorithm, mapping changes)
variants = {}
if arch.kind == "gpu":
    has_wgmma = "wgmma" in arch.compute.matrix_flops_per_cycle
    algs = ["flash2"] + (["flash3"] if has_wgmma else []) + ["unfused"]
    if seq_q <= 16:
        algs.append("flash_decode")
    for a in algs:
        variants[f"causal, {a}"] = (key("causal"), a, ())
    for s in splits:
        variants[f"causal, flash2 split_kv={s}"] = (key("causal"), "flash2", (("split_kv", int(s)),))
    base_alg = "default"
else:
    for a in C.SPATIAL_ALGORITHMS[:-1]:
        variants[f"causal, {a}"] = (key("causal"), a, ())
    base_alg = "fused"
variants["dense (full)"] = (key("full"), base_alg, ())
variants["causal"] = (key("causal"), base_alg, ())
variants[f"sliding window {window}"] = (key("window"), base_alg, ())
variants[f"block-sparse {density:g}"] = (key("block_sparse"), base_alg, ())
for spec in [line.strip() for line in families.splitlines() if line.strip()]:
    try:
        variants[spec] = (C.family_workload_key(spec, key("causal")), C.family_kernel(spec), ())
    except AttnsimError as e:
        variants[spec] = (None, str(e).splitlines()[0], ())

rows = []
for name, (wk, alg, changes) in variants.items():
    if wk is None:  # a family line that does not parse: its reason is in place of the algorithm
        rows.append({"variant": name, "latency_s": np.nan, "latency": "", "TFLOP/s": np.nan, "bound": "",
                     "mapping": "", "note": alg})
        continue
    try:
        r = C.predict_cached(source, (), wk, alg, changes)
        rows.append({"variant": name, "latency_s": r.latency_s, "latency": C.fmt_latency(r.latency_s),
                     "TFLOP/s": round(r.tflops_per_s, 1), "bound": r.bound, "mapping": r.mapping, "note": ""})
    except AttnsimError as e:
        rows.append({"variant": name, "latency_s": np.nan, "latency": "", "TFLOP/s": np.nan, "bound": "",
                     "mapping": "", "note": str(e).splitlines()[0]})
df = pd.DataFrame(rows)
ok_names = df.loc[df["latency_s"].notna(), "variant"].tolist()
if not ok_names:
    st.error("no variant could be predicted for this shape")
    st.dataframe(df)
    st.stop()
baseline = st.selectbox("Baseline", ok_names, index=ok_names.index("causal") if "causal" in ok_names else 0,
                        key="cmp_baseline")
base_lat = float(df.loc[df["variant"] == baseline, "latency_s"].iloc[0])
df["speedup"] = (base_lat / df["latency_s"]).map(lambda x: f"{x:.2f}" if np.isfinite(x) else "")
st.dataframe(df[["variant", "latency", "TFLOP/s", "bound", "speedup", "mapping", "note"]], hide_index=True,
             key="cmp_table")
chart = df[df["latency_s"].notna()].set_index("variant")
st.bar_chart((base_lat / chart["latency_s"]).rename(f"speedup over {baseline}"))

# ---- error band
st.subheader("Error band")
regime = "decode" if seq_q <= 16 else "prefill"
if arch.name.startswith("a100") and C.VIDUR_TRACE.exists():
    st.write(f"Validation data exists for a100 {regime} (Vidur trace). Held-out errors come from a calibration "
             "run (about 10 s).")
    if st.button("Run calibration", key="cmp_calibrate"):
        import tempfile

        from attnsim.validate.report import calibrate
        with st.spinner("calibrating..."):
            res = calibrate(C.VIDUR_TRACE, "a100_sxm4_80gb", out=tempfile.mkdtemp(prefix="attnsim_cal_"))
        for label, k in (("before calibration", "held_out_before"), ("after calibration", "held_out_after")):
            s = res[k].get(regime, {})
            if s.get("n"):
                st.write(f"{regime}, held out, {label}: median APE {100 * s['median_ape']:.1f}%, "
                         f"P90 APE {100 * s['p90_ape']:.1f}% (n={s['n']})")
            else:
                st.write(f"{label}: no held-out {regime} rows")
else:
    st.info("no validation data for this regime")
