"""Batch prediction from a cases CSV: one design point per row; a bad row gets its reason.

Input columns (README, "Cases CSV format"):
    arch,algorithm,batch,heads,kv_heads,seq_q,seq_kv,head_dim,causal,window,dtype
    optional: density, block_m, block_n, split_kv, params
``algorithm`` is a kernel (unfused, flash2, flash3, flash_decode, flash2_kvcache) or an attention
family (``attnsim list``; e.g. topk_blocks) whose parameters are in ``params`` as k=v;k=v.
Output: the input columns, then latency_s,tflops_per_s,hbm_bytes,l2_bytes,energy_j,bound,status
"""
from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

from attnsim.arch import load_arch
from attnsim.errors import AttnsimError, SpecError, Problem
from attnsim.mapping.kernel import ALGORITHMS, default_mapping
from attnsim.model.analytical import predict
from attnsim.workload.spec import attention

REQUIRED = ("arch", "algorithm", "batch", "heads", "kv_heads", "seq_q", "seq_kv", "head_dim", "causal",
            "window", "dtype")
OPTIONAL = ("density", "block_m", "block_n", "split_kv", "params")
OUTPUT = ("latency_s", "tflops_per_s", "hbm_bytes", "l2_bytes", "energy_j", "bound", "status")
TRUE, FALSE = ("1", "true", "yes", "y", "t"), ("0", "false", "no", "n", "f", "")


def _int(row: dict, key: str, default: int | None = None) -> int | None:
    text = (row.get(key) or "").strip()
    if text == "":
        if default is not None:
            return default
        raise ValueError(f"{key}: expected a positive integer, got an empty cell")
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{key}: expected an integer, got {text!r}") from None
    return value


def _bool(row: dict, key: str) -> bool:
    text = (row.get(key) or "").strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ValueError(f"{key}: expected true/false (or 1/0), got {text!r}")


@lru_cache(maxsize=32)
def _arch(name: str):
    return load_arch(name)


def predict_row(row: dict) -> dict:
    """Predict one case; raises ValueError/AttnsimError with a one-line reason on bad input."""
    from attnsim.variant import parse_params
    from attnsim.workload.families import family_names
    algorithm = (row.get("algorithm") or "").strip()
    families = [f for f in family_names() if f != "softmax"]
    if algorithm not in ALGORITHMS and algorithm not in families:
        from attnsim.spec.schema import did_you_mean
        hint = did_you_mean(algorithm, list(ALGORITHMS) + families)
        raise ValueError(f"algorithm: expected a kernel {list(ALGORITHMS)} or a family {families}, got {algorithm!r}"
                         + (f" ({hint})" if hint else ""))
    family = algorithm if algorithm in families else "softmax"
    params = parse_params(row.get("params") or "", where="params", sep=";")
    if params and family == "softmax":
        raise ValueError(f"params: kernel {algorithm!r} takes no parameters (a family does), got {row.get('params')!r}")
    arch = _arch((row.get("arch") or "").strip())
    window = _int(row, "window", default=0)
    density_text = (row.get("density") or "").strip()
    density = float(density_text) if density_text else None
    w = attention(family, params=params, batch=_int(row, "batch"), heads=_int(row, "heads"),
                  kv_heads=_int(row, "kv_heads"), seq_q=_int(row, "seq_q"), seq_kv=_int(row, "seq_kv"),
                  head_dim=_int(row, "head_dim"), causal=_bool(row, "causal"), window=window or None,
                  density=density, dtype=(row.get("dtype") or "bf16").strip())
    changes = {k: _int(row, k) for k in ("block_m", "block_n", "split_kv") if (row.get(k) or "").strip()}
    if family != "softmax":
        if changes:
            raise ValueError(f"block_m/block_n/split_kv: set a family's tiles through its params, not for {algorithm!r}")
        r = predict(arch, w)
    else:
        m = default_mapping(algorithm, arch, w)
        if changes:
            m = m.with_changes(**changes)
        r = predict(arch, w, m)
    return {"latency_s": r.latency_s, "tflops_per_s": r.tflops_per_s, "hbm_bytes": r.traffic_bytes["HBM"],
            "l2_bytes": r.traffic_bytes.get("L2", 0.0), "energy_j": r.energy_total_j, "bound": r.bound,
            "status": "ok"}


def read_cases(path: str | Path) -> tuple[list[str], list[dict]]:
    p = Path(path)
    if not p.exists():
        raise SpecError(f"{p}: cases file does not exist")
    with p.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise SpecError(Problem(f"missing column(s) {missing}; the header must hold {list(REQUIRED)} "
                                    f"(optional: {list(OPTIONAL)})", file=str(p), line=1))
        return list(header), list(reader)


def run_cases(path: str | Path, out: str | Path,
              progress: Callable[[Iterable], Iterable] | None = None) -> tuple[int, int]:
    """Predict every row of a cases CSV into `out`; returns (rows ok, rows failed)."""
    header, rows = read_cases(path)
    columns = header + [c for c in OUTPUT if c not in header]
    ok = bad = 0
    with Path(out).open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for i, row in enumerate(progress(rows) if progress else rows, start=2):
            try:
                result = predict_row(row)
                ok += 1
            except (AttnsimError, ValueError) as e:
                reason = str(e).replace("\n", "; ")
                result = {c: "" for c in OUTPUT}
                result["status"] = f"error (line {i}): {reason}"
                bad += 1
            writer.writerow({**row, **result})
    return ok, bad
