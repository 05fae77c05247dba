"""Helpers shared by the app's pages: cached loaders and predictions over attnsim's public API.

Everything here is keyed by plain values (preset names, file paths, tuples of numbers), so
Streamlit's caches make a slider move cost one dictionary lookup once a point has been seen.
"""
from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import attnsim  # noqa: E402
from attnsim.errors import AttnsimError  # noqa: E402
from attnsim.units import fmt_si  # noqa: E402
from attnsim.workload.spec import list_workload_presets  # noqa: E402

VIDUR_TRACE = ROOT.parent / "shared/data/measured/vidur/a100_llama2-70b_tp2_attention_flashattn_vllm_2024-05.csv"
EDITED_SOURCE = "edited in attnsim app"
GPU_ALGORITHMS = ("default", "flash2", "flash3", "flash_decode", "unfused", "best")
SPATIAL_ALGORITHMS = ("unfused", "row_fused", "fused", "best")
MASKS = ("full", "causal", "window", "block_sparse")

# Slider label -> (sweep path of the field, display unit -> SI factor). The sweep's own path
# semantics apply the change (e.g. the SM count also scales the per-SM levels and compute).
GPU_KNOBS = {
    "SM count": ("arch.gpu.sm_count", 1),
    "Clock (MHz)": ("arch.clock", 1e6),
    "Shared memory per SM (KiB)": ("arch.levels.SMEM.capacity", 1024),
    "L2 size (MB)": ("arch.levels.L2.capacity", 1e6),
    "L2 bandwidth (TB/s)": ("arch.levels.L2.bandwidth", 1e12),
    "HBM bandwidth (TB/s)": ("arch.levels.HBM.bandwidth", 1e12),
}
SPATIAL_KNOBS = {
    "Array rows": ("arch.array.rows", 1),
    "Array cols": ("arch.array.cols", 1),
    "Clock (MHz)": ("arch.clock", 1e6),
    "GLB (MiB)": ("arch.levels.GLB.capacity", 2 ** 20),
    "DRAM bandwidth (TB/s)": ("arch.levels.DRAM.bandwidth", 1e12),
}


def show_error(e: BaseException) -> None:
    st.error(str(e))


# ---------------------------------------------------------------- arch


def arch_presets() -> list[str]:
    return attnsim.list_arch_presets()


def workload_presets() -> list[str]:
    return list_workload_presets()


@st.cache_resource(show_spinner=False)
def base_arch(source: str):
    """An Arch from a preset name or a YAML path (Arch values are not picklable: cache_resource)."""
    return attnsim.load_arch(source)


def save_uploaded_yaml(data: bytes) -> str:
    """Write uploaded YAML bytes to a temp file named by their hash; return the path."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / "attnsim_app" / f"uploaded_{digest}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)
    return str(path)


def load_uploaded_arch(data: bytes) -> tuple[str | None, str | None]:
    """(arch source path, None) when the upload is a valid arch; (None, error text) otherwise."""
    try:
        path = save_uploaded_yaml(data)
        base_arch(path)
        return path, None
    except AttnsimError as e:
        return None, str(e)


def knobs_for(arch) -> dict:
    return GPU_KNOBS if arch.kind == "gpu" else SPATIAL_KNOBS


def knob_value(arch, label: str) -> float:
    """The arch's current value of a knob, in the knob's display unit."""
    a = arch
    if label == "SM count":
        return a.gpu.sm_count
    if label == "Clock (MHz)":
        return a.clock_hz / 1e6
    if label in ("Array rows", "Array cols"):
        return getattr(a.array, "rows" if label == "Array rows" else "cols")
    path, scale = knobs_for(a)[label]
    _, _, level, fld = path.split(".")
    lv = a.level(level)
    return (lv.capacity_bytes if fld == "capacity" else lv.bandwidth_bytes_per_s) / scale


def apply_edits(arch, edits: tuple) -> object:
    """`arch` with ((knob label, display value), ...) applied through the sweep's path semantics."""
    from attnsim.sweep.params import apply_arch, lookup
    knobs = knobs_for(arch)
    items = []
    for label, value in edits:
        path, scale = knobs[label]
        p = lookup(path, arch)
        v = value * scale
        items.append((p, int(round(v)) if p.kind == "int" else float(v)))
    return apply_arch(arch, items)


@st.cache_resource(show_spinner=False)
def edited_arch(source: str, edits: tuple):
    return apply_edits(base_arch(source), edits)


def changed_edits(arch, values: dict) -> tuple:
    """Only the knobs whose value differs from the arch's own (sorted, hashable)."""
    out = []
    for label, v in values.items():
        if abs(float(v) - float(knob_value(arch, label))) > 1e-9 * max(1.0, abs(float(v))):
            out.append((label, float(v)))
    return tuple(sorted(out))


def arch_yaml(source: str, edits: tuple) -> str:
    """The arch's YAML with edited values replaced (each marked with its own source)."""
    import yaml
    from attnsim.spec.yamlio import load_yaml
    arch = base_arch(source)
    data, _ = load_yaml(arch.file)
    new = edited_arch(source, edits)

    def mark(value):
        return {"value": value, "source": EDITED_SOURCE}

    def level(name):
        for lv in data.get("levels", []):
            if lv.get("name") == name:
                return lv
        raise KeyError(name)

    for label, _ in edits:
        path, _ = knobs_for(arch)[label]
        parts = path.split(".")
        if parts[1] == "clock":
            data["clock"] = mark(f"{new.clock_hz / 1e6:g} MHz")
        elif parts[1] == "gpu":
            data["gpu"]["sm_count"] = mark(new.gpu.sm_count)
            for lv in arch.levels:  # per-SM levels follow the SM count
                if lv.instances == arch.gpu.sm_count:
                    nl = new.level(lv.name)
                    level(lv.name)["instances"] = mark(nl.instances)
                    level(lv.name)["bandwidth"] = mark(f"{nl.bandwidth_bytes_per_s / 1e12:g} TB/s")
        elif parts[1] == "array":
            data["array"][parts[2]] = mark(getattr(new.array, parts[2]))
        else:
            nl = new.level(parts[2])
            if parts[3] == "capacity":
                level(parts[2])["capacity"] = mark(f"{nl.capacity_bytes:.0f} B")
                if parts[2] == "SMEM" and new.gpu is not None:
                    data["gpu"]["smem_per_sm"] = mark(f"{new.gpu.smem_per_sm_bytes:.0f} B")
                    data["gpu"]["smem_per_cta"] = mark(f"{new.gpu.smem_per_cta_bytes:.0f} B")
            else:
                level(parts[2])["bandwidth"] = mark(f"{nl.bandwidth_bytes_per_s / 1e12:g} TB/s")
    return yaml.safe_dump(data, sort_keys=False)


# ---------------------------------------------------------------- workload


def custom_workload_key(batch, heads, kv_heads, seq_q, seq_kv, head_dim, mask, window=0, density=1.0,
                        dtype="bf16") -> tuple:
    return ("custom", int(batch), int(heads), int(kv_heads), int(seq_q), int(seq_kv), int(head_dim), str(mask),
            int(window), float(density), str(dtype))


def family_workload_key(spec: str, base: tuple) -> tuple:
    """A family variant ('topk_blocks:density=0.25') on the shape and mask of a custom_workload_key."""
    return ("family", spec) + base[1:]


def family_kernel(spec: str) -> str:
    """The attention kernel a variant names after '@' ('default' when none)."""
    from attnsim.variant import parse_variant
    return parse_variant(spec, f"variant {spec!r}")[2] or "default"


def make_workload(key: tuple):
    """A Workload from ('preset', name), a custom_workload_key or a family_workload_key tuple."""
    if key[0] == "preset":
        return attnsim.load_workload(key[1])
    family, params = "softmax", None
    if key[0] == "family":
        from attnsim.variant import parse_variant
        family, params, _ = parse_variant(key[1], f"variant {key[1]!r}")
        key = ("custom",) + key[2:]
    _, b, h, hkv, sq, skv, d, mask, window, density, dtype = key
    kw = dict(batch=b, heads=h, kv_heads=hkv, seq_q=sq, seq_kv=skv, head_dim=d, dtype=dtype)
    if mask == "causal":
        kw["causal"] = True
    elif mask == "window":
        kw["window"] = window
    elif mask == "block_sparse":
        kw["density"] = density
    return attnsim.attention(family, params=params, **kw)


# ---------------------------------------------------------------- predictions


def _mapping_for(arch, w, algorithm):
    if algorithm in (None, "default"):
        return None
    return algorithm


@st.cache_data(show_spinner=False, max_entries=4096)
def predict_cached(source: str, edits: tuple, wkey: tuple, algorithm: str, mapping_changes: tuple = ()):
    """Result of one design point. algorithm 'best' runs the mapper (latency objective)."""
    from attnsim.mapping.kernel import default_mapping
    from attnsim.model.analytical import default_algorithm
    arch = edited_arch(source, edits)
    w = make_workload(wkey)
    if algorithm == "best":
        if arch.kind == "gpu":
            from attnsim.mapping.search import search_gpu
            return search_gpu(arch, w, objective="latency", top_k=1).best_result
        from attnsim.mapping.spatial_search import search_spatial
        return search_spatial(arch, w, objective="latency", top_k=1).best_result
    if mapping_changes:
        alg = default_algorithm(arch, w) if algorithm in (None, "default") else algorithm
        m = default_mapping(alg, arch, w).with_changes(**dict(mapping_changes))
        return attnsim.predict(arch, w, m)
    return attnsim.predict(arch, w, _mapping_for(arch, w, algorithm))


def fmt_latency(seconds: float) -> str:
    return fmt_si(seconds, "s")


def result_csv(result) -> str:
    """The Result flattened to key,value lines (nested dicts as dotted keys)."""
    import io
    import csv
    buf = io.StringIO()
    wr = csv.writer(buf)
    wr.writerow(["key", "value"])

    def walk(prefix, v):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)
        else:
            wr.writerow([prefix, v])
    walk("", result.to_dict())
    return buf.getvalue()


def roofline_figure(arch, result, dtype: str = "bf16"):
    """Roofs from the arch's peak matrix FLOP/s and outermost-level bandwidth; the point placed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    instr = arch.default_instr
    try:
        peak = arch.peak_matrix_flops_per_s(instr, dtype)
    except AttnsimError:
        peak = arch.peak_matrix_flops_per_s(instr, next(iter(arch.compute.matrix_flops_per_cycle[instr])))
    outer = arch.levels[0]
    bw = outer.bandwidth_bytes_per_s
    dram = result.traffic_bytes.get(outer.name, 0) or 1.0
    ai = result.useful_flops / dram
    perf = result.useful_flops / result.latency_s
    knee = peak / bw
    lo, hi = min(ai, knee) / 20, max(ai, knee) * 20
    x = np.logspace(np.log10(lo), np.log10(hi), 200)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(x, np.minimum(peak, bw * x) / 1e12, "k-", lw=1.5, label=f"roof: {instr} peak, {outer.name} bandwidth")
    ax.scatter([ai], [perf / 1e12], color="tab:red", zorder=3, label=f"this point ({result.bound}-bound)")
    ax.set(xscale="log", yscale="log", xlabel=f"arithmetic intensity (FLOP per {outer.name} byte)",
           ylabel="TFLOP/s", title=f"roofline: {arch.name}")
    ax.grid(True, which="both", alpha=0.2)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def regime_of(w) -> str:
    return "decode" if w.seq_q <= 16 else "prefill"


def shape_inputs(prefix: str):
    """The six shape inputs (batch, heads, kv heads, seq q, seq kv, head dim) in one row; widget
    keys are '<prefix>_batch' and so on."""
    c = st.columns(6)
    return (c[0].number_input("batch", 1, 4096, 1, key=f"{prefix}_batch"),
            c[1].number_input("heads", 1, 1024, 32, key=f"{prefix}_heads"),
            c[2].number_input("kv heads", 1, 1024, 8, key=f"{prefix}_kv_heads"),
            c[3].number_input("seq q", 1, 1 << 22, 8192, key=f"{prefix}_seq_q"),
            c[4].number_input("seq kv", 1, 1 << 22, 8192, key=f"{prefix}_seq_kv"),
            c[5].number_input("head dim", 1, 512, 128, key=f"{prefix}_head_dim"))
