"""Measured traces: one row per measured attention configuration, times in seconds.

A trace is a pandas DataFrame whose config columns use the names of ``attnsim predict --cases``
(``arch, algorithm, batch, heads, kv_heads, seq_q, seq_kv, head_dim, causal, window, dtype``),
plus measured time statistics in **seconds**, optional measured traffic and provenance.
``TRACE_COLUMNS`` is the schema; docs/traces.md shows it as a table.

- ``validate_trace(df, file)`` coerces the types and collects every problem into one SpecError.
- ``read_trace(path)`` reads the project's own CSV (or hands a Vidur / Nsight Compute CSV or a
  PyTorch-profiler JSON to its importer) and the provenance sidecar beside it.
- ``write_trace(df, path, provenance)`` writes the CSV and ``<stem>.provenance.json``.

Other columns are allowed and kept (importers add some, e.g. ``time_output_reshape_s``).
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from attnsim.errors import Problem, SpecError


class Column(NamedTuple):
    """One schema column: its type ('str' | 'int' | 'bool' | 'float'), whether required, help."""

    dtype: str
    required: bool
    help: str


#: The trace schema, in the order write_trace writes the columns: name -> (dtype, required, help).
TRACE_COLUMNS: dict[str, Column] = {
    # -- config (same names as `predict --cases`) --
    "arch": Column("str", True, "attnsim arch preset the kernel ran on, e.g. 'a100_sxm4_80gb'"),
    "algorithm": Column("str", True, "kernel family, e.g. 'flash2', 'flash_decode' (new names are allowed)"),
    "batch": Column("int", True, "sequences in the batch"),
    "heads": Column("int", True, "query heads (per GPU, after any tensor-parallel split)"),
    "kv_heads": Column("int", True, "key/value heads (per GPU); divides heads"),
    "seq_q": Column("int", True, "query tokens per sequence [tokens]"),
    "seq_kv": Column("int", True, "key/value tokens attended per sequence, new ones included [tokens]"),
    "head_dim": Column("int", True, "head dimension"),
    "causal": Column("bool", True, "causal mask, bottom-right aligned when seq_q != seq_kv"),
    "window": Column("int", True, "sliding-window size [tokens]; 0 (or an empty cell) = none"),
    "dtype": Column("str", True, "element type of Q/K/V: fp16, bf16, fp8, fp32, ..."),
    # -- optional config --
    "density": Column("float", False, "block-sparse mask density in (0, 1]"),
    "paged_block": Column("int", False, "KV-cache page size [tokens] when the kernel reads a paged cache"),
    "regime": Column("str", False, "'prefill' or 'decode'; derived when absent: decode iff seq_q <= 16"),
    # -- time statistics, seconds --
    "time_median_s": Column("float", True, "median kernel time [s]"),
    "time_mean_s": Column("float", False, "mean kernel time [s]"),
    "time_min_s": Column("float", False, "fastest repeat [s]"),
    "time_max_s": Column("float", False, "slowest repeat [s]"),
    "time_std_s": Column("float", False, "standard deviation over the repeats [s]"),
    "time_p10_s": Column("float", False, "10th percentile [s]"),
    "time_p90_s": Column("float", False, "90th percentile [s]"),
    "repeats": Column("int", False, "timed repeats behind the statistics"),
    # -- measured traffic --
    "dram_read_bytes": Column("float", False, "DRAM (HBM) bytes read [B]"),
    "dram_write_bytes": Column("float", False, "DRAM (HBM) bytes written [B]"),
    "l2_hit_rate": Column("float", False, "L2 sector hit rate as a fraction in [0, 1] (not percent)"),
    # -- provenance (constant per trace; empty cells are filled from the provenance sidecar) --
    "source": Column("str", False, "where the numbers come from: 'vidur', 'torch_profiler', 'ncu', ..."),
    "device": Column("str", False, "the measured device as its owner names it, e.g. 'A100 80GB PCIe'"),
    "kernel": Column("str", False, "the measured kernel or library, e.g. 'flash_attn (vLLM wrapper)'"),
}

REQUIRED_COLUMNS = tuple(name for name, col in TRACE_COLUMNS.items() if col.required)
TIME_COLUMNS = tuple(name for name in TRACE_COLUMNS if name.startswith("time_"))
PROVENANCE_COLUMNS = ("source", "device", "kernel")
REGIMES = ("prefill", "decode")
DECODE_MAX_SEQ_Q = 16  # regime is 'decode' iff seq_q <= this
MAX_PLAUSIBLE_MEDIAN_S = 10.0  # a median above this means the times are not in seconds
MAX_PROBLEMS_PER_COLUMN = 10  # per column and kind of problem; the rest are counted in one line

TRUE = ("1", "true", "yes", "y", "t")
FALSE = ("0", "false", "no", "n", "f")
DTYPE_ALIASES = {"float16": "fp16", "half": "fp16", "f16": "fp16", "bfloat16": "bf16", "float32": "fp32",
                 "float": "fp32", "f32": "fp32", "float8": "fp8", "float8_e4m3fn": "fp8"}

# Names that suggest a units mistake, -> the hint to give when the schema column is missing.
_UNIT_MISTAKES = {"_ms": "milliseconds", "_us": "microseconds", "_ns": "nanoseconds"}


# ---- problem collection ------------------------------------------------------------------

class _Problems:
    """Collects problems; at most MAX_PROBLEMS_PER_COLUMN per (column, kind), then one summary."""

    def __init__(self, file: str | None):
        self.file = file
        self.items: list[Problem] = []
        self._counts: dict[tuple, int] = {}
        self._lines: dict[tuple, list[int]] = {}

    def add(self, message: str, *, line: int | None = None, key: str | None = None,
            hint: str | None = None, kind: str | None = None) -> None:
        group = (key, kind or message)
        n = self._counts.get(group, 0)
        self._counts[group] = n + 1
        if n < MAX_PROBLEMS_PER_COLUMN:
            self.items.append(Problem(message, file=self.file, line=line, key=key, hint=hint))
        elif line is not None:
            self._lines.setdefault(group, []).append(line)

    def raise_if_any(self) -> None:
        extra = []
        for (key, kind), lines in self._lines.items():
            shown = ", ".join(str(x) for x in lines[:5]) + (", ..." if len(lines) > 5 else "")
            extra.append(Problem(f"... and {len(lines)} more rows with this problem ({kind}): lines {shown}",
                                 file=self.file, key=key))
        if self.items:
            raise SpecError(self.items + extra)


def _row_lines(df: pd.DataFrame) -> np.ndarray:
    """The 1-based file line of each row: df.attrs['csv_lines'] when a reader set it, else row + 2."""
    lines = df.attrs.get("csv_lines")
    if lines is not None and len(lines) == len(df):
        return np.asarray(lines, dtype=np.int64)
    return np.arange(len(df), dtype=np.int64) + 2  # header is line 1


# ---- coercion ----------------------------------------------------------------------------

def _as_text(series: pd.Series) -> pd.Series:
    """Cells as stripped strings; missing cells (NaN, None, '') become ''."""
    if series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
        text = series.map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
        return text.str.strip()
    text = series.astype(str).str.strip()
    return text.where(series.notna(), "")


def _coerce_numeric(series: pd.Series, name: str, kind: str, lines: np.ndarray, out: _Problems,
                    required: bool) -> pd.Series:
    """Float or integer values; every non-numeric / non-integral / non-finite cell is a problem."""
    if pd.api.types.is_bool_dtype(series.dtype):
        series = series.astype(object)
    if pd.api.types.is_numeric_dtype(series.dtype):
        num = series.astype("float64")
        empty = num.isna().to_numpy()
        text = None
    else:
        text = _as_text(series)
        empty = (text == "").to_numpy()
        num = pd.to_numeric(text.where(~empty, None), errors="coerce").astype("float64")
    values = num.to_numpy()
    bad = ~empty & ~np.isfinite(values)  # a filled cell that is not a finite number ('abc', 'nan', 'inf')
    for i in np.flatnonzero(bad):
        got = text.iloc[i] if text is not None else values[i]
        out.add(f"expected {'an integer' if kind == 'int' else 'a number'}, got {_plain(got)!r}",
                line=int(lines[i]), key=name, kind="not a number")
    if kind == "int":
        frac = ~empty & ~bad & (np.mod(np.nan_to_num(values), 1.0) != 0)
        for i in np.flatnonzero(frac):
            out.add(f"expected an integer, got {float(values[i])!r}", line=int(lines[i]), key=name,
                    kind="not an integer")
        bad = bad | frac
    if required and name != "window":
        for i in np.flatnonzero(empty):
            out.add("empty cell; this column is required", line=int(lines[i]), key=name, kind="empty")
    values = np.where(bad, np.nan, values)
    if kind == "int":
        if name == "window":
            values = np.where(np.isnan(values), 0.0, values)
        if not np.isnan(values).any():
            return pd.Series(values.astype(np.int64), index=series.index, name=name)
        return pd.Series(pd.array(values, dtype="Float64"), index=series.index, name=name).astype("Int64")
    return pd.Series(values, index=series.index, name=name)


def _coerce_bool(series: pd.Series, name: str, lines: np.ndarray, out: _Problems) -> pd.Series:
    if pd.api.types.is_bool_dtype(series.dtype) and not series.isna().any():
        return series.astype(bool)
    text = _as_text(series).str.lower()
    is_true, is_false = text.isin(TRUE), text.isin(FALSE)
    for i in np.flatnonzero(~(is_true | is_false).to_numpy()):
        got = text.iloc[i]
        out.add(f"expected true/false (or 1/0), got {got!r}" if got else "empty cell; expected true/false",
                line=int(lines[i]), key=name, kind="not a bool")
    return pd.Series(is_true.to_numpy(), index=series.index, name=name)


def _coerce_str(series: pd.Series, name: str, lines: np.ndarray, out: _Problems, required: bool) -> pd.Series:
    text = _as_text(series)
    if required:
        for i in np.flatnonzero((text == "").to_numpy()):
            out.add("empty cell; this column is required", line=int(lines[i]), key=name, kind="empty")
    return text


# ---- validation --------------------------------------------------------------------------

def _missing_column_hint(name: str, present: list[str]) -> str:
    for suffix, unit in _UNIT_MISTAKES.items():
        stem = name[:-2] if name.endswith("_s") else name
        if stem + suffix in present:
            return (f"column '{stem + suffix}' is in {unit}; convert it to seconds and name it '{name}'; "
                    f"required columns: {', '.join(REQUIRED_COLUMNS)}")
    from attnsim.spec.schema import did_you_mean
    near = did_you_mean(name, [c for c in present if c not in TRACE_COLUMNS])
    return (near + "; " if near else "") + f"required columns: {', '.join(REQUIRED_COLUMNS)}"


def validate_trace(df: pd.DataFrame, file: str | Path | None = None) -> pd.DataFrame:
    """Check and coerce a trace; returns a new DataFrame with the schema's types.

    Every problem is collected (missing columns, non-numeric cells with their 1-based CSV line,
    non-positive times, a units mistake, ...) and raised together as one SpecError. Unknown
    ``algorithm`` names are allowed; ``arch`` must be non-empty. ``regime`` is derived where absent.
    Row lines come from ``df.attrs['csv_lines']`` when a reader set it, else row position + 2.
    """
    fname = str(file) if file is not None else df.attrs.get("file")
    out = _Problems(fname)
    if len(df.columns) == 0:
        raise SpecError(Problem("the trace is empty (no header); expected a CSV whose header holds "
                                f"{', '.join(REQUIRED_COLUMNS)}", file=fname, line=1))
    df = df.copy()
    df.columns = [str(c).strip() for c in df.columns]
    present = list(df.columns)
    dupes = sorted({c for c in present if present.count(c) > 1})
    if dupes:
        raise SpecError([Problem("column appears more than once in the header", file=fname, line=1, key=c)
                         for c in dupes])
    for name in REQUIRED_COLUMNS:
        if name not in df.columns:
            out.add(f"missing required column '{name}'", line=1, key=name, hint=_missing_column_hint(name, present))
    if len(df) == 0:
        out.add("the trace has a header but no data rows", line=1 if fname else None)
    out.raise_if_any()

    lines = _row_lines(df)
    for name, col in TRACE_COLUMNS.items():
        if name not in df.columns:
            continue
        if col.dtype in ("int", "float"):
            df[name] = _coerce_numeric(df[name], name, col.dtype, lines, out, col.required)
        elif col.dtype == "bool":
            df[name] = _coerce_bool(df[name], name, lines, out)
        else:
            df[name] = _coerce_str(df[name], name, lines, out, col.required)
    if "dtype" in df.columns:
        df["dtype"] = df["dtype"].str.lower().map(lambda d: DTYPE_ALIASES.get(d, d))

    _check_ranges(df, lines, out)
    _check_units(df, out)
    _derive_regime(df, lines, out)
    out.raise_if_any()
    df.attrs.pop("csv_lines", None)
    return df[column_order(df)]


def _bad_rows(df: pd.DataFrame, name: str, test) -> np.ndarray:
    """Row positions where column `name` is present, not missing and fails test(values)."""
    if name not in df.columns:
        return np.array([], dtype=np.int64)
    values = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        return np.flatnonzero(~np.isnan(values) & test(values))


def _plain(value):
    """A numpy scalar as the Python number it holds (for messages: 0.5, not np.float64(0.5))."""
    return value.item() if hasattr(value, "item") else value


def _check_ranges(df: pd.DataFrame, lines: np.ndarray, out: _Problems) -> None:
    def report(name, rows, expected):
        for i in rows:
            out.add(f"expected {expected}, got {_plain(df[name].iloc[i])!r}", line=int(lines[i]), key=name,
                    kind=f"range {expected}")

    for name in ("batch", "heads", "kv_heads", "seq_q", "seq_kv", "head_dim", "paged_block", "repeats"):
        report(name, _bad_rows(df, name, lambda v: v < 1), "a positive integer")
    report("window", _bad_rows(df, "window", lambda v: v < 0), "0 (no window) or a positive integer")
    report("density", _bad_rows(df, "density", lambda v: (v <= 0) | (v > 1)), "a density in (0, 1]")
    for name in TIME_COLUMNS:
        if name == "time_std_s":
            report(name, _bad_rows(df, name, lambda v: v < 0), "a standard deviation >= 0 s")
        else:
            report(name, _bad_rows(df, name, lambda v: v <= 0), "a time > 0 s")
    for name in ("dram_read_bytes", "dram_write_bytes"):
        report(name, _bad_rows(df, name, lambda v: v < 0), "a byte count >= 0")
    for i in _bad_rows(df, "l2_hit_rate", lambda v: (v < 0) | (v > 1)):
        value = _plain(df["l2_hit_rate"].iloc[i])
        out.add(f"expected a fraction in [0, 1], got {value!r}", line=int(lines[i]), key="l2_hit_rate",
                hint="the schema is a fraction, not percent: divide by 100" if 1 < value <= 100 else None,
                kind="range fraction")
    if {"heads", "kv_heads"} <= set(df.columns):
        h = pd.to_numeric(df["heads"], errors="coerce").to_numpy("float64", na_value=np.nan)
        kv = pd.to_numeric(df["kv_heads"], errors="coerce").to_numpy("float64", na_value=np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            rows = np.flatnonzero((kv >= 1) & (h >= 1) & (np.mod(h, kv) != 0))
        for i in rows:
            out.add(f"kv_heads {int(kv[i])} does not divide heads {int(h[i])}", line=int(lines[i]), key="kv_heads",
                    kind="gqa")
    # The statistics of one row must agree with each other (a swapped column shows up here).
    if "time_median_s" in df.columns:
        med = df["time_median_s"].to_numpy("float64", na_value=np.nan)
        tol = 1e-9 * np.abs(med)
        for name, sign in (("time_min_s", 1), ("time_max_s", -1)):
            if name in df.columns:
                other = df[name].to_numpy("float64", na_value=np.nan)
                with np.errstate(invalid="ignore"):
                    rows = np.flatnonzero(sign * (other - med) > tol)
                word = "above" if sign == 1 else "below"
                for i in rows:
                    out.add(f"{name} {float(other[i])!r} is {word} time_median_s {float(med[i])!r}", line=int(lines[i]),
                            key=name, kind="order")


def _check_units(df: pd.DataFrame, out: _Problems) -> None:
    if "time_median_s" not in df.columns:
        return
    median = float(np.nanmedian(df["time_median_s"].to_numpy("float64", na_value=np.nan))) \
        if df["time_median_s"].notna().any() else math.nan
    if median > MAX_PLAUSIBLE_MEDIAN_S:
        out.add(f"times look like milliseconds or microseconds; the schema is seconds (the median of the "
                f"column is {median:g}, i.e. {median:g} s per attention kernel)", key="time_median_s",
                hint="divide milliseconds by 1e3 and microseconds by 1e6", kind="units")


def _derive_regime(df: pd.DataFrame, lines: np.ndarray, out: _Problems) -> None:
    seq_q = pd.to_numeric(df["seq_q"], errors="coerce").to_numpy("float64", na_value=np.nan)
    derived = np.where(seq_q <= DECODE_MAX_SEQ_Q, "decode", "prefill")
    if "regime" not in df.columns:
        df["regime"] = derived
        return
    given = df["regime"].str.lower()
    for i in np.flatnonzero(~given.isin(REGIMES + ("",)).to_numpy()):
        out.add(f"expected one of {list(REGIMES)} (or an empty cell), got {given.iloc[i]!r}",
                line=int(lines[i]), key="regime", kind="regime")
    df["regime"] = given.where(given != "", pd.Series(derived, index=df.index))


# ---- reading and writing -----------------------------------------------------------------

def read_csv_cells(path: str | Path, *, what: str = "trace") -> pd.DataFrame:
    """A CSV as a DataFrame of stripped strings, with each row's 1-based line in attrs['csv_lines'].

    Blank lines are skipped (their line numbers still count); a row with more or fewer cells
    than the header is a problem. An empty file is one clear problem.
    """
    p = Path(path)
    if not p.exists():
        raise SpecError(Problem(f"{what} file does not exist", file=str(p)))
    out = _Problems(str(p))
    with p.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header: list[str] | None = None
        rows: list[list[str]] = []
        lines: list[int] = []
        try:
            for row in reader:
                if not row or all(not c.strip() for c in row):
                    continue
                if header is None:
                    header = [c.strip() for c in row]
                    continue
                if len(row) != len(header):
                    out.add(f"expected {len(header)} cells like the header, got {len(row)}",
                            line=reader.line_num, kind="cells")
                    row = (row + [""] * len(header))[: len(header)]
                rows.append([c.strip() for c in row])
                lines.append(reader.line_num)
        except csv.Error as e:
            raise SpecError(Problem(f"not a readable CSV: {e}", file=str(p), line=reader.line_num)) from None
    if header is None:
        raise SpecError(Problem(f"the {what} file is empty; expected a CSV header line", file=str(p), line=1))
    out.raise_if_any()
    df = pd.DataFrame(rows, columns=header, dtype=object) if rows else pd.DataFrame(columns=header, dtype=object)
    df.attrs["csv_lines"] = lines
    df.attrs["file"] = str(p)
    return df


def numeric_extras(df: pd.DataFrame) -> pd.DataFrame:
    """Columns outside the schema whose filled cells are all numbers become numbers: integers
    (int64, or Int64 with <NA> for empty cells) when every cell is written as an integer, else float64;
    other text columns become stripped strings, empty cells ''."""
    for name in df.columns:
        if name in TRACE_COLUMNS or not (pd.api.types.is_object_dtype(df[name].dtype)
                                          or pd.api.types.is_string_dtype(df[name].dtype)):
            continue
        text = _as_text(df[name])
        filled = text != ""
        num = pd.to_numeric(text.where(filled, None), errors="coerce")
        if not filled.any() or num[filled].isna().any():
            df[name] = text
            continue
        if text[filled].str.fullmatch(r"[+-]?\d+").all():
            df[name] = num.astype("Int64") if not filled.all() else num.astype(np.int64)
        else:
            df[name] = num.astype("float64")
    return df


def provenance_candidates(path: str | Path) -> list[Path]:
    """Where the provenance of a trace file may be, in the order they are tried: for 'x.pt.trace.json'
    'x.pt.trace.json.provenance.json', 'x.pt.trace.provenance.json', 'x.provenance.json', then 'PROVENANCE.md'."""
    p = Path(path)
    names = [p.name + ".provenance.json", p.stem + ".provenance.json", p.name.split(".")[0] + ".provenance.json"]
    paths = [p.with_name(n) for n in dict.fromkeys(names)]
    return paths + [p.with_name("PROVENANCE.md")]


def read_provenance(path: str | Path) -> dict:
    """The provenance beside a trace file: ``<file>.provenance.json``, ``<stem>.provenance.json`` or
    ``PROVENANCE.md`` (returned as its text), whichever is found first; {} when none is."""
    for cand in provenance_candidates(path):
        if not cand.is_file():
            continue
        if cand.suffix == ".md":
            return {"provenance_file": str(cand), "provenance_text": cand.read_text(encoding="utf-8")}
        try:
            data = json.loads(cand.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise SpecError(Problem(f"not valid JSON: {e.msg}", file=str(cand), line=e.lineno)) from None
        if not isinstance(data, dict):
            raise SpecError(Problem(f"expected a JSON object (key -> value), got {type(data).__name__}",
                                    file=str(cand), line=1))
        data.setdefault("provenance_file", str(cand))
        return data
    return {}


def fill_provenance_columns(df: pd.DataFrame, provenance: dict) -> pd.DataFrame:
    """Copy provenance 'source'/'device'/'kernel' into those columns where absent or empty."""
    for name in PROVENANCE_COLUMNS:
        value = provenance.get(name)
        if not isinstance(value, str) or not value:
            continue
        if name not in df.columns:
            df[name] = value
        else:
            df[name] = df[name].where(df[name].astype(str).str.strip() != "", value)
    return df


def _sniff_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        for line in fh:
            if line.strip() and not line.startswith("=="):  # ncu prints ==PROF== lines before its CSV
                return [c.strip() for c in next(csv.reader([line]))]
    return []


def find_sidecar(path: str | Path) -> Path | None:
    """The launch -> config sidecar of a profiler export: ``<file>.launches.csv`` or ``<stem>.launches.csv``."""
    p = Path(path)
    for name in (p.name + ".launches.csv", p.name.split(".")[0] + ".launches.csv"):
        cand = p.with_name(name)
        if cand.is_file() and cand != p:
            return cand
    return None


def read_trace(path: str | Path, *, sidecar: str | Path | None = None,
               arch: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Read a trace file into (validated DataFrame, provenance dict).

    Dispatch on the format: ``.json`` / ``.json.gz`` -> PyTorch-profiler Chrome trace (needs a
    sidecar); a CSV with Vidur's ``time_stats.*`` columns -> Vidur; a CSV with ncu's ``ID`` and
    ``Kernel Name`` columns -> Nsight Compute (needs a sidecar); any other CSV -> the own schema.
    A missing sidecar is looked for as ``<file>.launches.csv`` / ``<stem>.launches.csv``.
    ``arch`` sets the arch preset for importers that cannot know it (Vidur; default a100_sxm4_80gb).
    """
    from attnsim.validate import importers

    p = Path(path)
    if not p.exists():
        raise SpecError(Problem("trace file does not exist", file=str(p)))
    name = p.name.lower()
    if name.endswith(".json") or name.endswith(".json.gz"):
        side = sidecar or find_sidecar(p)
        if side is None:
            raise SpecError(Problem("a PyTorch-profiler trace needs a sidecar CSV mapping launches to configs",
                                    file=str(p), hint=f"pass sidecar= or put it beside the trace as "
                                                      f"'{p.name.split('.')[0]}.launches.csv'"))
        return importers.import_torch_profiler(p, side, arch=arch)
    if p.stat().st_size == 0:
        raise SpecError(Problem("the trace file is empty; expected a CSV header line", file=str(p), line=1))
    header = _sniff_header(p)
    if importers.is_vidur_header(header):
        return importers.import_vidur(p, arch=arch or importers.VIDUR_DEFAULT_ARCH)
    if importers.is_ncu_header(header):
        side = sidecar or find_sidecar(p)
        if side is None:
            raise SpecError(Problem("an Nsight Compute CSV needs a sidecar CSV mapping launches to configs",
                                    file=str(p), hint=f"pass sidecar= or put it beside the export as "
                                                      f"'{p.name.split('.')[0]}.launches.csv'"))
        return importers.import_ncu_csv(p, side, arch=arch)
    cells = read_csv_cells(p)
    provenance = read_provenance(p)
    df = validate_trace(cells, p)
    df = fill_provenance_columns(numeric_extras(df), provenance)
    return df, provenance


def column_order(df: pd.DataFrame) -> list[str]:
    """Schema columns in schema order, then the others in their order."""
    return [c for c in TRACE_COLUMNS if c in df.columns] + [c for c in df.columns if c not in TRACE_COLUMNS]


def write_trace(df: pd.DataFrame, path: str | Path, provenance: dict | None = None) -> tuple[Path, Path]:
    """Validate `df`, then write it as CSV (schema columns first) and ``<stem>.provenance.json``.

    Floats are written with full precision, so read_trace gives back the same numbers.
    Constant 'source'/'device'/'kernel' columns are copied into the provenance when it lacks them.
    Returns (csv path, provenance path).
    """
    p = Path(path)
    clean = validate_trace(df, p)
    prov = dict(provenance or {})
    prov.pop("provenance_file", None)
    for name in PROVENANCE_COLUMNS:
        if name in clean.columns and name not in prov:
            values = clean[name].fillna("").astype(str).str.strip().unique()
            if len(values) == 1 and values[0]:  # the same on every row, none empty
                prov[name] = values[0]
    p.parent.mkdir(parents=True, exist_ok=True)
    clean[column_order(clean)].to_csv(p, index=False, float_format=None)
    prov_path = p.with_name(p.stem + ".provenance.json")
    prov_path.write_text(json.dumps(prov, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return p, prov_path
