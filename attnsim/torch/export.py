"""Write a capture to a folder: one workload YAML per distinct attention call, the GEMM list,
a Markdown summary and a JSON sidecar with the counts.

    attention_01.yaml    a plain attnsim workload (``attnsim predict --workload``); its mask is a
                         closed form (full, causal, window) or ``{kind: block_counts, file:
                         attention_01.npz}`` with the counts beside it
    gemms.csv            op, modules, count of identical calls, products per call, M, N, K, dtype
    summary.md           the tables below (also printed by ``attnsim capture``)
    capture.json         every distinct call with its file and count: the counts live here (and in
                         each YAML's description), so the workload schema stays as it is

Torch-free: it reads a ``Capture``.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

from attnsim.torch.calls import Capture
from attnsim.workload.spec import Mask, Workload


def _mask_yaml(mask: Mask, npz_name: str) -> dict:
    if mask.kind == "window":
        return {"kind": "window", "window": mask.window} | ({"sink": mask.sink} if mask.sink else {})
    if mask.kind == "block_counts":
        return {"kind": "block_counts", "file": npz_name}
    return {"kind": mask.kind}


def workload_yaml(w: Workload, name: str, description: str, npz_name: str) -> dict:
    return {"name": name, "description": description, "batch": w.batch, "heads": w.heads, "kv_heads": w.kv_heads,
            "seq_q": w.seq_q, "seq_kv": w.seq_kv, "head_dim": w.head_dim, "value_dim": w.value_dim,
            "dtype": w.dtype, "mask": _mask_yaml(w.mask, npz_name)}


def _modules(modules: tuple, most: int = 4) -> str:
    shown = ", ".join(m or "(model)" for m in modules[:most])
    return shown + (f", ... ({len(modules)} modules)" if len(modules) > most else "")


def write_capture(cap: Capture, out: str | Path, source: str = "") -> dict:
    """Write the folder; returns the sidecar's content (what capture.json holds)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    attention = []
    for i, g in enumerate(cap.distinct_attention(), start=1):
        c, w = g.call, g.call.workload
        name = f"attention_{i:02d}"
        npz = f"{name}.npz"
        if w.mask.kind == "block_counts":
            w.mask.counts.save(out / npz)
        desc = f"{c.op} x{g.count} at {_modules(g.modules)}; mask: {c.mask_note}" + (f" [from {source}]" if source else "")
        header = (f"# captured by attnsim capture{' from ' + source if source else ''}\n"
                  f"# {c.op}: {g.count} identical call(s) at {_modules(g.modules, 8)}\n"
                  f"# mask: {c.mask_note}\n" + "".join(f"# note: {n}\n" for n in c.notes))
        (out / f"{name}.yaml").write_text(header + yaml.safe_dump(workload_yaml(w, name, desc, npz), sort_keys=False))
        attention.append({"file": f"{name}.yaml", "op": c.op, "count": g.count, "modules": list(g.modules),
                          "workload": w.label(), "batch": w.batch, "heads": w.heads, "kv_heads": w.kv_heads,
                          "seq_q": w.seq_q, "seq_kv": w.seq_kv, "head_dim": w.head_dim, "value_dim": w.value_dim,
                          "dtype": w.dtype, "mask": w.mask.label(), "causal": w.mask.is_causal,
                          "is_causal_flag": c.causal_flag, "gqa": c.gqa, "scale": c.scale, "dropout": c.dropout,
                          "mask_note": c.mask_note, "notes": list(c.notes)})
    gemms = []
    for g in cap.distinct_gemms():
        c = g.call
        gemms.append({"op": c.op, "count": g.count, "products": c.count, "m": c.m, "n": c.n, "k": c.k,
                      "dtype": c.dtype, "shared_b": c.shared_b, "modules": list(g.modules)})
    with open(out / "gemms.csv", "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["op", "modules", "count", "products", "m", "n", "k", "dtype", "shared_b"])
        for g in gemms:
            wr.writerow([g["op"], ";".join(g["modules"]), g["count"], g["products"], g["m"], g["n"], g["k"],
                         g["dtype"], g["shared_b"]])
    side = {"source": source, "device": cap.device, "attention": attention, "gemms": gemms,
            "not_costed": cap.not_costed, "layers": list(cap.layer_order)}
    (out / "capture.json").write_text(json.dumps(side, indent=2))
    (out / "summary.md").write_text(summary_markdown(side))
    return side


def summary_markdown(side: dict) -> str:
    lines = [f"# Capture{' of ' + side['source'] if side['source'] else ''} ({side['device']} device)", "",
             "## Attention calls", "",
             "| file | op | count | B | H | Hkv | M | N | D | F | dtype | mask | scale | modules |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---|"]
    for a in side["attention"]:
        scale = "?" if a["scale"] is None else f"{a['scale']:.4g}"
        lines.append(f"| {a['file']} | {a['op']} | {a['count']} | {a['batch']} | {a['heads']} | {a['kv_heads']} | "
                     f"{a['seq_q']} | {a['seq_kv']} | {a['head_dim']} | {a['value_dim']} | {a['dtype']} | "
                     f"{a['mask']} | {scale} | {_modules(tuple(a['modules']))} |")
    lines += ["", "Masks:", ""] + [f"- {a['file']}: {a['mask_note']}" + "".join(f"; {n}" for n in a["notes"])
                                   for a in side["attention"]]
    lines += ["", "## GEMMs", "", "| op | count | products | M | N | K | dtype | modules |",
              "|---|---:|---:|---:|---:|---:|---|---|"]
    for g in side["gemms"]:
        lines.append(f"| {g['op']} | {g['count']} | {g['products']} | {g['m']} | {g['n']} | {g['k']} | {g['dtype']} | "
                     f"{_modules(tuple(g['modules']))} |")
    items = sorted(side["not_costed"].items(), key=lambda kv: (-kv[1], kv[0]))
    lines += ["", "## Not costed", "", "Elementwise, normalisation, RoPE, activation and copy ops: "
              + (", ".join(f"{k} x{v}" for k, v in items) if items else "none"), ""]
    return "\n".join(lines)
