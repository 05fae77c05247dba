"""Run a small sweep live (or load a sweep Parquet): latency and HBM traffic vs one arch parameter."""
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import io  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from app.app_pages import common as C  # noqa: E402
from attnsim.errors import AttnsimError  # noqa: E402

st.title("Sweep")

GPU_PARAMS = {"arch.levels.SMEM.capacity": "128KiB..512KiB:x2", "arch.levels.L2.capacity": "10MB..80MB:x2",
              "arch.levels.HBM.bandwidth": "1TB/s..8TB/s:x2", "arch.levels.L2.bandwidth": "4TB/s..16TB/s:x2",
              "arch.gpu.sm_count": "33,66,132", "arch.clock": "1GHz,1.5GHz,2GHz"}
SPATIAL_PARAMS = {"arch.levels.GLB.capacity": "1MiB..32MiB:x2", "arch.levels.DRAM.bandwidth": "0.5TB/s..4TB/s:x2",
                  "arch.array.rows": "64,128,256", "arch.array.cols": "64,128,256"}

mode = st.radio("Source", ["run live", "load Parquet"], horizontal=True, key="sw_mode")
if mode == "run live":
    presets = C.arch_presets()
    c = st.columns(3)
    source = c[0].selectbox("Arch preset", presets, index=presets.index("h100_sxm5_80gb")
                            if "h100_sxm5_80gb" in presets else 0, key="sw_arch")
    arch = C.base_arch(source)
    params = GPU_PARAMS if arch.kind == "gpu" else SPATIAL_PARAMS
    param = c[1].selectbox("Parameter to vary", list(params), key="sw_param")
    algs = ("default", "flash2", "flash3", "unfused", "best") if arch.kind == "gpu" else C.SPATIAL_ALGORITHMS
    alg = c[2].selectbox("Algorithm", algs, index=0 if arch.kind == "gpu" else algs.index("fused"), key="sw_alg")
    c = st.columns(2)
    rng = c[0].text_input("Values (e.g. 64KiB..256KiB:x2 or a list)", params[param], key=f"sw_range::{param}")
    seqs = c[1].text_input("Sequence lengths", "1k,4k,16k", key="sw_seqs")
    c = st.columns(4)
    heads = c[0].number_input("heads", 1, 1024, 32, key="sw_heads")
    kv_heads = c[1].number_input("kv heads", 1, 1024, 8, key="sw_kv_heads")
    head_dim = c[2].number_input("head dim", 1, 512, 128, key="sw_head_dim")
    causal = c[3].checkbox("causal", True, key="sw_causal")
    if st.button("Run sweep", key="sw_run"):
        import attnsim
        from attnsim.sweep import build_sweep, run_sweep
        try:
            w = attnsim.attention(seq=8192, heads=int(heads), kv_heads=int(kv_heads), head_dim=int(head_dim),
                                  causal=causal)
            s = build_sweep(arch, w, None if alg == "default" else alg,
                            [f"{param}={rng}", f"workload.seq={seqs}"])
            bar = st.progress(0.0, text=f"{len(s)} points")
            n = len(s)
            chunk = max(1, n // 10)
            done = [0]

            def on_chunk(_cid, frame):
                done[0] += len(frame)
                bar.progress(min(1.0, done[0] / n), text=f"{done[0]} / {n} points")

            table = run_sweep(s, chunk_size=chunk, progress=False, on_chunk=on_chunk).table
            st.session_state["sw_table"] = table
            st.session_state["sw_x"] = next(col for col in table.columns if col.startswith(param))
        except AttnsimError as e:
            C.show_error(e)
else:
    up = st.file_uploader("Sweep Parquet", type=["parquet"], key="sw_upload")
    if up is not None:
        try:
            table = pd.read_parquet(io.BytesIO(up.getvalue()))
            cols = list(table.columns[: list(table.columns).index("latency_s")]) if "latency_s" in table else []
            if not cols:
                raise ValueError("not a sweep table: no 'latency_s' column after the parameter columns")
            st.session_state["sw_table"] = table
            st.session_state["sw_x"] = next((c for c in cols if c.startswith("arch.")), cols[0])
        except Exception as e:  # a malformed file: say so and keep going
            st.error(f"could not read the Parquet file: {e}")

table = st.session_state.get("sw_table")
if table is None:
    st.info("Run a sweep or load a Parquet table.")
    st.stop()

xcol = st.session_state["sw_x"]
pcols = list(table.columns[: list(table.columns).index("latency_s")])
group_cols = [c for c in pcols if c != xcol]
ok = table[table["status"] == "ok"].copy()
st.write(f"{len(table)} points, {len(ok)} ok, {len(table) - len(ok)} failed")
if ok.empty:
    st.dataframe(table, key="sw_table_view")
    st.stop()

import matplotlib  # noqa: E402
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from attnsim.sweep.plots import pareto_mask  # noqa: E402

x = pd.to_numeric(ok[xcol], errors="coerce")
fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
groups = ok.groupby(group_cols) if group_cols else [("all", ok)]
for g, sub in groups:
    sub = sub.sort_values(xcol)
    lab = ", ".join(f"{c.split('.')[-1]}={v}" for c, v in zip(group_cols, g if isinstance(g, tuple) else (g,)))
    xs = pd.to_numeric(sub[xcol], errors="coerce")
    axes[0].plot(xs, sub["latency_s"] * 1e3, "o-", label=lab)
    axes[1].plot(xs, sub["hbm_bytes"] / 1e6, "o-", label=lab)
axes[0].set(xlabel=xcol, ylabel="latency (ms)", xscale="log", yscale="log", title="latency")
axes[1].set(xlabel=xcol, ylabel="HBM / DRAM traffic (MB)", xscale="log", yscale="log", title="off-chip traffic")
axes[0].legend(fontsize=7)
e = ok["energy_j"].to_numpy(float) * 1e3
lat = ok["latency_s"].to_numpy(float) * 1e3
front = pareto_mask(e, lat)
axes[2].scatter(e, lat, s=12, alpha=0.5, label="points")
order = np.argsort(e[front])
axes[2].plot(e[front][order], lat[front][order], "r.-", label="Pareto front")
axes[2].set(xlabel="energy (mJ)", ylabel="latency (ms)", title="latency vs energy", xscale="log", yscale="log")
axes[2].legend(fontsize=7)
for a in axes:
    a.grid(True, which="both", alpha=0.2)
fig.tight_layout()
st.pyplot(fig)

st.dataframe(table, key="sw_table_view")
labels = [f"{i}: " + ", ".join(f"{c.split('.')[-1]}={table.at[i, c]}" for c in pcols) for i in table.index]
pick = st.selectbox("point", labels, key="sw_point")
i = table.index[labels.index(pick)]
st.dataframe(table.loc[[i]].T.astype(str).rename(columns={i: "value"}), key="sw_point_view")
