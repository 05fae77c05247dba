"""Importers: measured attention timings from other tools, as traces (see attnsim.validate.traces).

- ``import_vidur``: Vidur's attention profiling CSV (sarathi-serve / vLLM wrapper of flash-attn).
- ``import_torch_profiler``: a PyTorch-profiler (Kineto) Chrome-trace JSON plus a sidecar CSV.
- ``import_ncu_csv``: an Nsight Compute ``--csv --page raw`` export plus a sidecar CSV.

A profiler export knows kernel names and times, not the attention shapes, so its sidecar CSV maps
launches to configs: one row per output row, with ``name_pattern`` (a substring of the kernel
name, or a regular expression searched in it), optional ``occurrence`` (0-based index among the
matching launches in time order; empty = all of them, aggregated) or, for ncu, ``ID``, and the
trace's config columns. Every importer returns (validated trace, provenance dict).
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from attnsim.errors import Problem, SpecError
from attnsim.validate.traces import (_Problems, column_order, fill_provenance_columns, numeric_extras,
                                     read_csv_cells, read_provenance, validate_trace)

# ---- Vidur -------------------------------------------------------------------------------

VIDUR_DEFAULT_ARCH = "a100_sxm4_80gb"
VIDUR_KERNEL = "flash_attn (vLLM wrapper)"
VIDUR_SKU_NOTE = "SKU not stated: A100 80GB, PCIe or SXM"
VIDUR_REPEATS = 5  # PROVENANCE.md: statistics over 5 active iterations after 2 warm-ups
_VIDUR_STATS = ("min", "max", "mean", "median", "std")
_VIDUR_OPS = ("attn_prefill", "attn_decode", "attn_input_reshape", "attn_output_reshape")
VIDUR_CONFIG_COLUMNS = ("n_embd", "n_q_head", "n_kv_head", "block_size", "num_tensor_parallel_workers",
                        "batch_size", "prefill_chunk_size", "kv_cache_size", "is_prefill")
VIDUR_TIME_COLUMNS = tuple(f"time_stats.{op}.{s}" for op in ("attn_prefill", "attn_decode") for s in _VIDUR_STATS)

# Facts of the 2024-05 A100 snapshot, used when PROVENANCE.md is not beside the file.
_VIDUR_FALLBACK = {
    "upstream": "github.com/microsoft/vidur",
    "license": "MIT License, Copyright (c) Microsoft Corporation",
}


def is_vidur_header(header: list[str]) -> bool:
    return "time_stats.attn_decode.median" in header or "time_stats.attn_prefill.median" in header


def _md_section(text: str, filename: str) -> str:
    """The '### `<filename>`' section of a PROVENANCE.md, or '' when it has none."""
    start = text.find(f"### `{filename}`")
    if start < 0:
        return ""
    end = text.find("\n### ", start + 1)
    return text[start: end if end > 0 else len(text)]


def _vidur_provenance(path: Path, df: pd.DataFrame, arch: str) -> dict:
    prov: dict = {"source": "vidur", "kernel": VIDUR_KERNEL, **_VIDUR_FALLBACK}
    md = path.with_name("PROVENANCE.md")
    text = md.read_text(encoding="utf-8") if md.is_file() else ""
    section = _md_section(text, path.name)
    if text:
        prov["provenance_file"] = str(md)
        if m := re.search(r"Upstream:\s*(\S+?)[\s(]", text):
            prov["upstream"] = m.group(1)
        if m := re.search(r"^Upstream:\s*\S+\s*\((.*)\)\.?\s*$", text, re.M):
            prov["license"] = m.group(1)
        if m := re.search(r"Snapshot inspected:\s*HEAD\s+([0-9a-f]{40})\s*\(([^)]*)\)", text):
            prov["snapshot_commit"], prov["snapshot_date"] = m.group(1), m.group(2)
    if section:
        for key, pattern in (("upstream_path", r"Upstream path:\s*`([^`]+)`"),
                             ("upstream_blob", r"blob\s*`([0-9a-f]{40})`"),
                             ("introduced_in_commit", r"introduced in commit\s*`([0-9a-f]{40})`"),
                             ("sha256_expected", r"sha256\s+([0-9a-f]{64})")):
            if m := re.search(pattern, section):
                prov[key] = m.group(1)
        if m := re.search(r"- Hardware:\s*(.+?)(?=\n- )", section, re.S):
            prov["hardware_note"] = " ".join(m.group(1).split())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    prov["sha256"] = digest
    if "sha256_expected" in prov:
        prov["sha256_matches"] = digest == prov["sha256_expected"]
    prov["device"] = "A100 80GB (PCIe or SXM: not stated)"
    prov["sku_note"] = VIDUR_SKU_NOTE
    prov["arch_assumed"] = arch
    prov["profile_method"] = ", ".join(sorted({str(v).split(".")[-1] for v in df.get("profile_method", [])})) \
        or "KINETO"
    prov["attention_backend"] = ", ".join(sorted({str(v).split(".")[-1] for v in df.get("attention_backend", [])}))
    prov["time_unit_upstream"] = "ms (converted to s here)"
    prov["statistics"] = (f"{VIDUR_REPEATS} active iterations after 2 warm-ups; std is the population std "
                          "(ddof=0); times are rounded to 1 us upstream")
    prov["decode_seq_kv"] = "kv_cache_size + 1: the cached tokens plus the new token the decode kernel appends"
    prov["prefill_seq_kv"] = "kv_cache_size + prefill_chunk_size, causal bottom-right aligned"
    return prov


def _vidur_bool(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(values, bad) for Vidur's is_prefill column ('True'/'False' or a bool dtype)."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.to_numpy(bool), np.zeros(len(series), bool)
    text = series.astype(str).str.strip().str.lower()
    return text.isin(("true", "1")).to_numpy(), ~text.isin(("true", "false", "1", "0")).to_numpy()


def import_vidur(path: str | Path, arch: str = VIDUR_DEFAULT_ARCH) -> tuple[pd.DataFrame, dict]:
    """Vidur's attention profile (e.g. a100_llama2-70b_tp2_attention_flashattn_vllm_2024-05.csv) as a trace.

    One output row per input row, in the input order (duplicated configs are kept; the column
    ``source_line`` is the row's line in the Vidur file). Per GPU: heads = n_q_head / TP,
    kv_heads = n_kv_head / TP, head_dim = n_embd / n_q_head, dtype fp16, paged_block = block_size.

    - Prefill rows (is_prefill True): batch = batch_size (always 1), seq_q = prefill_chunk_size,
      seq_kv = kv_cache_size + prefill_chunk_size (the chunk attends the cached context and itself),
      causal (bottom-right aligned), algorithm 'flash2_kvcache' (sarathi-serve's wrapper calls
      flash_attn_with_kvcache with a block table for prefill too: the split-KV kernel path), time = time_stats.attn_prefill.*.
    - Decode rows: batch = batch_size, seq_q = 1, seq_kv = kv_cache_size + 1, causal False,
      algorithm 'flash_decode', time = time_stats.attn_decode.*. Vidur's kv_cache_size counts the
      tokens already in the cache; the decode kernel appends the new token's K/V and attends to the
      cache plus that token, hence the +1 (at most 1/32 = 3 % on the shortest context).

    Times are converted from milliseconds to seconds. The reshape ops are not added to the kernel
    time; their medians are kept as ``time_input_reshape_s`` and ``time_output_reshape_s``.
    ``arch`` is the attnsim preset to compare with; Vidur does not say whether the A100 80GB was
    the PCIe or the SXM4 card (the provenance says so in ``sku_note``).
    """
    p = Path(path)
    if not p.is_file():
        raise SpecError(Problem("Vidur profile does not exist", file=str(p)))
    if p.stat().st_size == 0:
        raise SpecError(Problem("the Vidur profile is empty; expected a CSV header line", file=str(p), line=1))
    try:
        raw = pd.read_csv(p)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise SpecError(Problem(f"not a readable CSV: {e}", file=str(p))) from None
    out = _Problems(str(p))
    for name in VIDUR_CONFIG_COLUMNS + VIDUR_TIME_COLUMNS:
        if name not in raw.columns:
            out.add(f"missing Vidur column '{name}'", line=1, key=name,
                    hint="expected Vidur's attention.csv with time_stats.attn_{prefill,decode}.{min,max,mean,median,"
                         "std} (ms) and the model/batch columns")
    if raw.empty:
        out.add("the Vidur profile has a header but no data rows", line=1)
    out.raise_if_any()

    lines = np.arange(len(raw)) + 2
    ints = {}
    for name in VIDUR_CONFIG_COLUMNS[:-1]:
        values = pd.to_numeric(raw[name], errors="coerce").to_numpy("float64")
        for i in np.flatnonzero(~np.isfinite(values) | (np.mod(np.nan_to_num(values), 1) != 0)):
            out.add(f"expected an integer, got {raw[name].iloc[i]!r}", line=int(lines[i]), key=name, kind="int")
        ints[name] = np.nan_to_num(values).astype(np.int64)
    prefill, bad = _vidur_bool(raw["is_prefill"])
    for i in np.flatnonzero(bad):
        out.add(f"expected True/False, got {raw['is_prefill'].iloc[i]!r}", line=int(lines[i]), key="is_prefill")
    out.raise_if_any()

    tp, nq, nkv, embd = (ints[k] for k in ("num_tensor_parallel_workers", "n_q_head", "n_kv_head", "n_embd"))
    for name, num, den in (("n_q_head", nq, tp), ("n_kv_head", nkv, tp), ("n_embd", embd, nq)):
        for i in np.flatnonzero((den <= 0) | (num % np.maximum(den, 1) != 0)):
            what = "num_tensor_parallel_workers" if name != "n_embd" else "n_q_head"
            out.add(f"{name} {num[i]} is not divisible by {what} {den[i]}", line=int(lines[i]), key=name, kind="div")
    out.raise_if_any()

    chunk, kv, bs = ints["prefill_chunk_size"], ints["kv_cache_size"], ints["batch_size"]
    stats = {}
    for s in _VIDUR_STATS:
        pre = pd.to_numeric(raw[f"time_stats.attn_prefill.{s}"], errors="coerce").to_numpy("float64")
        dec = pd.to_numeric(raw[f"time_stats.attn_decode.{s}"], errors="coerce").to_numpy("float64")
        stats[s] = np.where(prefill, pre, dec) / 1e3  # ms -> s
    for i in np.flatnonzero(~np.isfinite(stats["median"])):
        op = "attn_prefill" if prefill[i] else "attn_decode"
        out.add(f"no time: time_stats.{op}.median is empty or not a number on this "
                f"{'prefill' if prefill[i] else 'decode'} row", line=int(lines[i]), key=f"time_stats.{op}.median",
                kind="no time")
    out.raise_if_any()

    def extra(op: str) -> np.ndarray:
        col = f"time_stats.{op}.median"
        return pd.to_numeric(raw[col], errors="coerce").to_numpy("float64") / 1e3 if col in raw else np.nan

    df = pd.DataFrame({
        "arch": arch,
        "algorithm": np.where(prefill, "flash2_kvcache", "flash_decode"),
        "batch": bs,
        "heads": nq // tp,
        "kv_heads": nkv // tp,
        "seq_q": np.where(prefill, chunk, 1),
        "seq_kv": np.where(prefill, kv + chunk, kv + 1),
        "head_dim": embd // nq,
        "causal": prefill,
        "window": 0,
        "dtype": "fp16",
        "paged_block": ints["block_size"],
        "regime": np.where(prefill, "prefill", "decode"),
        "time_median_s": stats["median"],
        "time_mean_s": stats["mean"],
        "time_min_s": stats["min"],
        "time_max_s": stats["max"],
        "time_std_s": stats["std"],
        "repeats": VIDUR_REPEATS,
        "time_input_reshape_s": extra("attn_input_reshape"),
        "time_output_reshape_s": extra("attn_output_reshape"),
        "kv_cache_size": kv,
        "source_line": lines,
    })
    provenance = _vidur_provenance(p, raw, arch)
    df = fill_provenance_columns(df, provenance)
    return validate_trace(df, p), provenance


# ---- sidecars (launch -> config) ---------------------------------------------------------

def _compile(pattern: str):
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _matches(names: list[str], pattern: str) -> np.ndarray:
    """Launches whose kernel name holds `pattern` as a substring or, if it is a regex, where it is found."""
    rx = _compile(pattern)
    return np.array([pattern in n or (rx is not None and rx.search(n) is not None) for n in names], dtype=bool)


def _read_sidecar(path: str | Path, id_column: str | None = None) -> pd.DataFrame:
    side = read_csv_cells(path, what="sidecar")
    has_id = id_column is not None and id_column in side.columns
    if "name_pattern" not in side.columns and not has_id:
        need = "'name_pattern'" + (f" or '{id_column}'" if id_column else "")
        raise SpecError(Problem(f"missing column {need}: each sidecar row names the launches it describes",
                                file=str(path), line=1, key="name_pattern",
                                hint="columns: name_pattern, occurrence (0-based, empty = all), then the trace "
                                     "config columns arch, algorithm, batch, heads, ..."))
    if len(side) == 0:
        raise SpecError(Problem("the sidecar has a header but no rows", file=str(path), line=1))
    return side


def _select(side: pd.DataFrame, i: int, names: list[str], ids: list[str] | None, sidecar: str,
            out: _Problems, id_column: str | None) -> np.ndarray | None:
    """Indices of the launches sidecar row i describes, or None after recording why there are none."""
    line = int(side.attrs["csv_lines"][i])
    row = side.iloc[i]
    if ids is not None and id_column in side.columns and row.get(id_column, ""):
        wanted = str(row[id_column]).strip()
        hits = np.flatnonzero(np.array([x == wanted for x in ids]))
        if len(hits) == 0:
            out.add(f"sidecar row (line {line}) names launch {id_column} {wanted!r}, which the export lacks",
                    line=line, key=id_column)
            return None
        return hits
    pattern = str(row.get("name_pattern", ""))
    if not pattern:
        out.add("empty name_pattern" + (f" and empty {id_column}" if id_column else ""), line=line,
                key="name_pattern")
        return None
    hits = np.flatnonzero(_matches(names, pattern))
    if len(hits) == 0:
        kinds = sorted(set(names))
        shown = ", ".join(repr(k[:60]) for k in kinds[:5]) + (", ..." if len(kinds) > 5 else "")
        out.add(f"sidecar row (line {line}) name_pattern {pattern!r} matches no kernel; kernels are {shown}",
                line=line, key="name_pattern", kind="no match")
        return None
    occ = str(row.get("occurrence", "") or "").strip()
    if occ:
        try:
            k = int(occ)
            if k < 0:
                raise ValueError
        except ValueError:
            out.add(f"expected a 0-based launch index or an empty cell, got {occ!r}", line=line, key="occurrence")
            return None
        if k >= len(hits):
            out.add(f"occurrence {k} but name_pattern {pattern!r} matches only {len(hits)} launch(es)",
                    line=line, key="occurrence")
            return None
        return hits[k: k + 1]
    return hits


def _time_stats(times_s: np.ndarray) -> dict:
    """Statistics over launches, seconds; std is the population std (ddof=0), as Vidur's."""
    t = np.asarray(times_s, dtype=np.float64)
    return {"time_median_s": float(np.median(t)), "time_mean_s": float(np.mean(t)),
            "time_min_s": float(np.min(t)), "time_max_s": float(np.max(t)), "time_std_s": float(np.std(t)),
            "time_p10_s": float(np.percentile(t, 10)), "time_p90_s": float(np.percentile(t, 90)),
            "repeats": int(len(t))}


def _assemble(side: pd.DataFrame, rows: list[dict], sidecar: Path, provenance: dict) -> pd.DataFrame:
    """Sidecar cells + measured columns, validated with the sidecar's file name and lines."""
    measured = pd.DataFrame(rows, index=side.index)
    df = pd.concat([side.drop(columns=[c for c in measured.columns if c in side.columns]), measured], axis=1)
    df.attrs["csv_lines"] = side.attrs["csv_lines"]
    df = fill_provenance_columns(df, provenance)
    df = numeric_extras(validate_trace(df, sidecar))
    return df[column_order(df)]


# ---- PyTorch profiler (Kineto Chrome trace) ----------------------------------------------

def _load_json(path: Path):
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(Problem(f"cannot read the trace: {e}", file=str(path))) from None
    if not text.strip():
        raise SpecError(Problem("the profiler trace is empty; expected a Chrome-trace JSON object with "
                                "'traceEvents'", file=str(path), line=1))
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise SpecError(Problem(f"not valid JSON: {e.msg}", file=str(path), line=e.lineno)) from None


def import_torch_profiler(json_path: str | Path, sidecar_csv: str | Path, *,
                          arch: str | None = None) -> tuple[pd.DataFrame, dict]:
    """A PyTorch-profiler Chrome trace (``prof.export_chrome_trace``) plus a sidecar CSV -> trace.

    Kernel events are the ``traceEvents`` with ``cat`` 'kernel' (any case; complete events), their
    ``dur`` in microseconds. Each sidecar row selects launches by ``name_pattern`` and
    ``occurrence`` (0-based in time order; empty = every match, aggregated) and gives one output
    row with the time statistics over them (seconds) and the sidecar's config columns.
    ``arch`` fills an ``arch`` column the sidecar leaves out or empty.
    """
    jp, sp = Path(json_path), Path(sidecar_csv)
    if not jp.is_file():
        raise SpecError(Problem("profiler trace does not exist", file=str(jp)))
    data = _load_json(jp)
    events = data.get("traceEvents") if isinstance(data, dict) else data if isinstance(data, list) else None
    if not isinstance(events, list):
        raise SpecError(Problem("expected a JSON object with a 'traceEvents' list (a Chrome trace from "
                                "torch.profiler ... export_chrome_trace)", file=str(jp), key="traceEvents"))
    kernels = [e for e in events if isinstance(e, dict) and str(e.get("cat", "")).lower() == "kernel"
               and e.get("ph", "X") == "X"]
    out = _Problems(str(jp))
    for k, e in enumerate(kernels):
        if not isinstance(e.get("name"), str) or not isinstance(e.get("dur"), (int, float)) or e["dur"] < 0:
            out.add(f"kernel event #{k} lacks a name or a non-negative 'dur' (microseconds): "
                    f"{json.dumps(e)[:120]}", key="traceEvents", kind="event")
    out.raise_if_any()
    if not kernels:
        cats = sorted({str(e.get("cat")) for e in events if isinstance(e, dict)})
        raise SpecError(Problem(f"no kernel events (cat 'kernel') among {len(events)} trace events; "
                                f"categories present: {cats}", file=str(jp), key="traceEvents",
                                hint="profile with activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]"))
    kernels.sort(key=lambda e: float(e.get("ts", 0.0)))
    names = [e["name"] for e in kernels]
    dur_s = np.array([float(e["dur"]) for e in kernels]) / 1e6  # microseconds -> seconds

    side = _read_sidecar(sp)
    sout = _Problems(str(sp))
    rows = []
    for i in range(len(side)):
        hits = _select(side, i, names, None, str(sp), sout, None)
        if hits is None:
            rows.append({})
            continue
        matched = sorted({names[h] for h in hits})
        rows.append({**_time_stats(dur_s[hits]), "matched_kernels": " | ".join(matched)})
    sout.raise_if_any()

    provenance = {"source": "torch_profiler", "trace_file": str(jp), "sidecar_file": str(sp),
                  "kernel_events": len(kernels), "time_unit_upstream": "us (converted to s here)",
                  "statistics": "over the matched launches; std is the population std (ddof=0)"}
    if isinstance(data, dict):
        props = data.get("deviceProperties")
        if isinstance(props, list) and props and isinstance(props[0], dict) and props[0].get("name"):
            provenance["device"] = str(props[0]["name"])
        for key in ("schemaVersion", "distributedInfo"):
            if key in data:
                provenance[key] = data[key]
    provenance = {**provenance, **read_provenance(jp)}
    if arch:
        provenance.setdefault("arch", arch)
        if "arch" not in side.columns:
            side["arch"] = arch
        else:
            side["arch"] = side["arch"].where(side["arch"] != "", arch)
    return _assemble(side, rows, sp, provenance), provenance


# ---- Nsight Compute (ncu --csv --page raw) -----------------------------------------------

NCU_TIME = "gpu__time_duration.sum"
NCU_DRAM_READ = "dram__bytes_read.sum"
NCU_DRAM_WRITE = "dram__bytes_write.sum"
NCU_L2_HIT = "lts__t_sector_hit_rate.pct"

# ncu writes decimal prefixes ('Kbyte' = 1e3 bytes); binary spellings are accepted if spelled so.
_TIME_UNITS = {"second": 1.0, "msecond": 1e-3, "usecond": 1e-6, "nsecond": 1e-9,
               "s": 1.0, "ms": 1e-3, "us": 1e-6, "\u00b5s": 1e-6, "ns": 1e-9}
_BYTE_UNITS = {"byte": 1.0, "kbyte": 1e3, "mbyte": 1e6, "gbyte": 1e9, "tbyte": 1e12,
               "b": 1.0, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
               "kibyte": 2.0**10, "mibyte": 2.0**20, "gibyte": 2.0**30, "kib": 2.0**10, "mib": 2.0**20,
               "gib": 2.0**30}
_PCT_UNITS = {"%": 0.01, "pct": 0.01, "percent": 0.01, "fraction": 1.0, "ratio": 1.0}
_NCU_METRICS = {NCU_TIME: ("time", _TIME_UNITS, "time_s"), NCU_DRAM_READ: ("size", _BYTE_UNITS, "dram_read_bytes"),
                NCU_DRAM_WRITE: ("size", _BYTE_UNITS, "dram_write_bytes"),
                NCU_L2_HIT: ("percentage", _PCT_UNITS, "l2_hit_rate")}
_UNIT_IN_NAME = re.compile(r"^(?P<base>.*?)\s*[\[(](?P<unit>[^\])]*)[\])]\s*$")


def _metric_base(column: str) -> str:
    m = _UNIT_IN_NAME.match(column)
    return m.group("base") if m else column


def _metric_name_unit(column: str) -> str | None:
    m = _UNIT_IN_NAME.match(column)
    return m.group("unit").strip() if m else None


def _is_blank(cell: str) -> bool:
    return cell.strip().lower() in ("", "n/a", "na", "nan")


def is_ncu_header(header: list[str]) -> bool:
    return "Kernel Name" in header and ("ID" in header or any(h.startswith("gpu__") for h in header))


def _unit_scale(unit: str, table: dict) -> float | None:
    u = unit.strip()
    if u in table:
        return table[u]
    if u.lower() in table:
        return table[u.lower()]
    return None


def _ncu_number(text: str) -> float:
    """'12,345.5' -> 12345.5 (ncu groups thousands); 'n/a' and '' -> NaN; anything else raises."""
    t = text.strip().replace(",", "") if re.fullmatch(r"[\d,]+(\.\d*)?([eE][+-]?\d+)?", text.strip()) else text.strip()
    if t == "" or t.lower() in ("n/a", "na", "nan"):
        return float("nan")
    return float(t)


def import_ncu_csv(path: str | Path, sidecar_csv: str | Path, *,
                   arch: str | None = None) -> tuple[pd.DataFrame, dict]:
    """An Nsight Compute raw-page CSV (``ncu --csv --page raw``, or a report exported so) -> trace.

    The header names the metrics; the row after it gives their units (ncu's default). Without a
    unit row every used metric must carry its unit in its name ('gpu__time_duration.sum [nsecond]',
    '... (ns)'); the '.pct' suffix itself says percent. Times become seconds, bytes (decimal
    prefixes, as ncu prints them) bytes, the L2 hit rate a fraction. Each sidecar row selects
    launches by ``ID`` (ncu's launch ID) or by ``name_pattern`` / ``occurrence`` and yields one
    output row: time statistics over them, and the median of each traffic metric.
    Leading '==PROF==' lines (ncu's console messages) are skipped.
    """
    p, sp = Path(path), Path(sidecar_csv)
    if not p.is_file():
        raise SpecError(Problem("Nsight Compute export does not exist", file=str(p)))
    raw_lines = p.read_text(encoding="utf-8-sig").splitlines()
    skip = 0
    while skip < len(raw_lines) and (not raw_lines[skip].strip() or raw_lines[skip].startswith("==")):
        skip += 1
    if skip == len(raw_lines):
        raise SpecError(Problem("the Nsight Compute export is empty; expected `ncu --csv --page raw` output",
                                file=str(p), line=1))
    table = list(csv.reader(raw_lines[skip:]))
    header = [h.strip() for h in table[0]]
    out = _Problems(str(p))
    if "Metric Name" in header and "Metric Value" in header:
        raise SpecError(Problem("this is the 'details' page (one row per metric); export with "
                                "`ncu --csv --page raw` (one row per launch)", file=str(p), line=skip + 1))
    if "Kernel Name" not in header:
        raise SpecError(Problem("missing column 'Kernel Name'; expected `ncu --csv --page raw` output",
                                file=str(p), line=skip + 1, key="Kernel Name"))
    body = table[1:]
    first_line = skip + 2
    col_id = header.index("ID") if "ID" in header else None
    units: list[str] | None = None
    if body and (col_id is None or not body[0][col_id].strip()):
        # The unit row: its ID cell is empty and its metric cells are unit names, not numbers.
        cand = body[0]
        metric_cells = [cand[k] for k, h in enumerate(header) if _metric_base(h) in _NCU_METRICS and k < len(cand)]
        if metric_cells and not any(re.fullmatch(r"[\d.,eE+-]+", c.strip() or "x") for c in metric_cells):
            units = [c.strip() for c in cand] + [""] * (len(header) - len(cand))
            body, first_line = body[1:], first_line + 1

    # Locate the metrics and their unit scales.
    where: dict[str, tuple[int, float]] = {}
    for k, h in enumerate(header):
        base, name_unit = _metric_base(h), _metric_name_unit(h)
        if base not in _NCU_METRICS:
            continue
        kind, scales, _ = _NCU_METRICS[base]
        unit = units[k] if units is not None and units[k] else name_unit
        if unit is None and base.endswith(".pct"):
            unit = "%"
        if unit is None:
            example = f"{base} [{'nsecond' if kind == 'time' else 'byte'}]"
            out.add(f"no unit for '{base}': the export has no unit row and the column name gives none",
                    line=skip + 1, key=base, hint="export with `ncu --csv --page raw` (it writes a unit row) "
                                                  f"or name the column like '{example}'")
            continue
        scale = _unit_scale(unit, scales)
        if scale is None:
            out.add(f"expected a {kind} unit ({', '.join(k2 for k2 in scales if k2[0].islower())[:80]}), got {unit!r}",
                    line=skip + (2 if units is not None and units[k] else 1), key=base, kind="unit")
            continue
        where[base] = (k, scale)
    if NCU_TIME not in [_metric_base(h) for h in header]:
        out.add(f"missing column '{NCU_TIME}' (kernel duration)", line=skip + 1, key=NCU_TIME,
                hint=f"collect it: ncu --metrics {NCU_TIME},{NCU_DRAM_READ},{NCU_DRAM_WRITE},{NCU_L2_HIT} "
                     "--csv --page raw")
    if not body:
        out.add("the export has no kernel launches (no rows after the header)", line=skip + 1)
    out.raise_if_any()

    names, ids, values = [], [], {base: [] for base in where}
    col_name = header.index("Kernel Name")
    for r, row in enumerate(body):
        line = first_line + r
        row = row + [""] * (len(header) - len(row))
        names.append(row[col_name])
        ids.append(row[col_id].strip() if col_id is not None else str(r))
        for base, (k, scale) in where.items():
            try:
                v = _ncu_number(row[k])
            except ValueError:
                out.add(f"expected a number, got {row[k]!r}", line=line, key=base, kind="number")
                v = float("nan")
            if base == NCU_TIME and not math.isnan(v) and v <= 0:
                out.add(f"expected a duration > 0, got {row[k]!r}", line=line, key=base, kind="time")
            elif base == NCU_TIME and math.isnan(v) and _is_blank(row[k]):
                out.add(f"no duration ({row[k].strip() or 'empty cell'})", line=line, key=base, kind="time empty")
            values[base].append(v * scale)
    out.raise_if_any()
    arrays = {base: np.array(v, dtype=np.float64) for base, v in values.items()}

    side = _read_sidecar(sp, id_column="ID")
    sout = _Problems(str(sp))
    rows = []
    for i in range(len(side)):
        hits = _select(side, i, names, ids, str(sp), sout, "ID")
        if hits is None:
            rows.append({})
            continue
        rec = {**_time_stats(arrays[NCU_TIME][hits]), "matched_kernels": " | ".join(sorted({names[h] for h in hits}))}
        for base, target in ((NCU_DRAM_READ, "dram_read_bytes"), (NCU_DRAM_WRITE, "dram_write_bytes"),
                             (NCU_L2_HIT, "l2_hit_rate")):
            if base in arrays:
                vals = arrays[base][hits]
                rec[target] = float(np.nanmedian(vals)) if np.isfinite(vals).any() else np.nan
        rows.append(rec)
    sout.raise_if_any()

    provenance = {"source": "ncu", "export_file": str(p), "sidecar_file": str(sp), "launches": len(body),
                  "units": {b: (units[k] if units is not None and units[k] else "from column name")
                            for b, (k, _) in where.items()},
                  "note": "ncu serializes kernels, flushes caches (--cache-control all) and locks clocks to base "
                          "(--clock-control base) by default; durations are longer than in production"}
    for col in ("device__attribute_display_name", "Device"):
        if col in header:
            k = header.index(col)
            found = {(row + [""] * len(header))[k].strip() for row in body} - {""}
            if len(found) == 1 and not next(iter(found)).isdigit():
                provenance["device"] = next(iter(found))
                break
    provenance = {**provenance, **read_provenance(p)}
    if arch:
        if "arch" not in side.columns:
            side["arch"] = arch
        else:
            side["arch"] = side["arch"].where(side["arch"] != "", arch)
    return _assemble(side, rows, sp, provenance), provenance
