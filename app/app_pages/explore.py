"""Explore one design point: arch knobs, a workload, a mapping -> latency, bound, traffic, energy."""
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import json  # noqa: E402

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from app.app_pages import common as C  # noqa: E402
from attnsim.errors import AttnsimError  # noqa: E402

st.title("Explore a design point")

# ---- arch
presets = C.arch_presets()
with st.sidebar:
    st.header("Architecture")
    preset = st.selectbox("Arch preset", presets, index=presets.index("h100_sxm5_80gb")
                          if "h100_sxm5_80gb" in presets else 0, key="arch_preset")
    upload = st.file_uploader("...or upload an arch YAML", type=["yaml", "yml"], key="arch_upload")
source = preset
if upload is not None:
    path, err = C.load_uploaded_arch(upload.getvalue())
    if err:
        st.error(err)
        st.caption(f"Using the preset {preset!r} instead.")
    else:
        source = path
arch = C.base_arch(source)
st.caption(f"**{arch.name}** ({arch.kind}): {arch.description}")

# ---- arch knobs
values = {}
with st.sidebar:
    st.header("Parameters")
    for label in C.knobs_for(arch):
        v0 = C.knob_value(arch, label)
        key = f"knob::{source}::{label}"
        if label in ("SM count", "Array rows", "Array cols"):
            values[label] = st.slider(label, 1, int(max(4 * v0, 8)), int(v0), key=key)
        elif label == "Clock (MHz)":
            values[label] = st.slider(label, 100.0, float(round(3 * v0)), float(round(v0)), step=10.0, key=key)
        else:
            top = float(f"{4 * v0:.3g}")
            step = float(f"{v0 / 20:.2g}") or 0.01
            values[label] = st.slider(label, step, max(top, step * 2), float(f"{v0:.4g}"), step=step, key=key)
edits = C.changed_edits(arch, values)

# ---- workload
st.subheader("Workload")
wl_mode = st.radio("Workload", ["preset", "custom"], horizontal=True, label_visibility="collapsed", key="wl_mode")
if wl_mode == "preset":
    wpresets = C.workload_presets()
    wname = st.selectbox("Model preset", wpresets, index=wpresets.index("llama3_8b_prefill_8k")
                         if "llama3_8b_prefill_8k" in wpresets else 0, key="wl_preset")
    wkey = ("preset", wname)
else:
    batch, heads, kv_heads, seq_q, seq_kv, head_dim = C.shape_inputs("w")
    c = st.columns(3)
    mask = c[0].selectbox("mask", C.MASKS, index=1, key="w_mask")
    window = c[1].number_input("window", 1, 1 << 22, 4096, key="w_window") if mask == "window" else 0
    density = (c[2].number_input("block-sparse density", 0.01, 1.0, 0.25, step=0.05, key="w_density")
               if mask == "block_sparse" else 1.0)
    wkey = C.custom_workload_key(batch, heads, kv_heads, seq_q, seq_kv, head_dim, mask, window, density)
try:
    w = C.make_workload(wkey)
except AttnsimError as e:
    C.show_error(e)
    st.stop()
st.caption(w.label())

# ---- mapping
algs = C.GPU_ALGORITHMS if arch.kind == "gpu" else C.SPATIAL_ALGORITHMS
algorithm = st.selectbox("Algorithm", algs, index=0 if arch.kind == "gpu" else algs.index("fused"), key="algorithm")

try:
    with st.spinner("evaluating..."):
        r = C.predict_cached(source, edits, wkey, algorithm)
except AttnsimError as e:
    C.show_error(e)
    st.stop()
arch_now = C.edited_arch(source, edits)

# ---- headline
m = st.columns(4)
m[0].metric("Latency", C.fmt_latency(r.latency_s))
m[1].metric("TFLOP/s", f"{r.tflops_per_s:.1f}")
m[2].metric("Bound", r.bound, help=f"binding term is {r.bound_margin:.2f}x the next")
m[3].metric("Energy", C.fmt_si(r.energy_total_j, "J"))
st.caption(f"mapping: {r.mapping}" + (f" | edited: {', '.join(f'{k} = {v:g}' for k, v in edits)}" if edits else ""))

# ---- breakdowns
c1, c2 = st.columns(2)
with c1:
    st.markdown("**Utilization per unit** (fraction of peak)")
    st.bar_chart(pd.Series(r.utilization, name="utilization"))
    st.markdown("**Energy by component** (mJ)")
    st.bar_chart(pd.Series({k: v * 1e3 for k, v in r.energy_j.items()}, name="energy (mJ)"))
with c2:
    st.markdown("**Traffic per level** (MB)")
    st.bar_chart(pd.Series({k: v / 1e6 for k, v in r.traffic_bytes.items()}, name="traffic (MB)"))
    st.markdown("**Occupancy and waves**")
    st.dataframe(pd.DataFrame({"value": {k: float(v) for k, v in r.occupancy.items()}}))
st.markdown("**Roofline**")
st.pyplot(C.roofline_figure(arch_now, r, w.dtype))
with st.expander("Explain"):
    st.code(r.explain(), language=None)

# ---- downloads
d = st.columns(3)
d[0].download_button("Result (JSON)", json.dumps(r.to_dict(), indent=2, sort_keys=True, default=str),
                     file_name="result.json", mime="application/json")
d[1].download_button("Result (CSV)", C.result_csv(r), file_name="result.csv", mime="text/csv")
try:
    d[2].download_button("Arch (YAML)", C.arch_yaml(source, edits), file_name=f"{arch.name}_edited.yaml",
                         mime="application/x-yaml")
except (AttnsimError, KeyError, TypeError) as e:
    d[2].caption(f"arch export unavailable: {e}")
