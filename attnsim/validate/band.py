"""Error bands for predictions, from the model's residuals on the nearest measured regime.

A *regime* is an arch and a phase (prefill, or decode: seq_q <= 16). For a predicted design
point, the band comes from the measured configurations of the same regime nearest to it in
shape (log2 of batch, heads, kv_heads, seq_q and seq_kv): the model (the default spec, which was
not fitted to these traces) predicts each of them, and the P10-P90 range of measured / predicted
scales the point's prediction. Where no trace measures the regime the band is None, and the
reason says so: "no validation data for this regime".

Traces searched: the project's ``validate/traces/**.csv`` and the measured attention traces in
``../shared/data/measured/`` beside the repository (absent outside the project's CI).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd


REPO_ROOT = Path(__file__).resolve().parents[2]
NEAREST = 32  # measured configurations the band is taken over
QUANTILES = (0.10, 0.90)
DECODE_MAX_QUERIES = 16


@dataclass(frozen=True)
class Band:
    low: float  # measured / predicted, the low quantile
    high: float
    n: int  # measured configurations used
    regime: str  # "a100_sxm4_80gb decode"
    source: str  # trace file(s)
    kernels: str  # the measured kernels' names
    span: str  # the measured configurations' range, e.g. "batch 8-64, seq_kv 833-4096"
    outside: str = ""  # the shape features on which the point lies outside the regime's measured range

    def describe(self) -> str:
        text = (f"{self.low:.2f}x-{self.high:.2f}x (P10-P90 of measured/predicted over the {self.n} nearest "
                f"measured configurations of {self.regime}, {self.kernels}, {self.span}; {self.source})")
        return text + (f"; extrapolated: {self.outside} outside the measured range" if self.outside else "")


def default_traces() -> list[Path]:
    found = sorted((REPO_ROOT / "validate" / "traces").glob("**/*.csv"))
    shared = REPO_ROOT.parent / "shared" / "data" / "measured"
    found += sorted(p for p in shared.glob("**/*.csv") if "attention" in p.name)
    return found


@lru_cache(maxsize=8)
def _trace(path: str) -> pd.DataFrame:
    from attnsim.validate.traces import read_trace
    df, _ = read_trace(path)
    df = df.copy()
    df["trace_file"] = Path(path).name
    return df


def _features(df: pd.DataFrame) -> np.ndarray:
    cols = ["batch", "heads", "kv_heads", "seq_q", "seq_kv"]
    return np.log2(np.maximum(df[cols].to_numpy(float), 1.0))


def phase(seq_q: int) -> str:
    return "decode" if seq_q <= DECODE_MAX_QUERIES else "prefill"


def error_band(arch, w, traces: list[Path] | None = None, kernel: str | None = None) -> tuple[Band | None, str]:
    """(Band, "") for the nearest measured regime of (arch, workload), or (None, reason).

    With `kernel` (a kernel family such as 'flash_decode'), rows measuring that kernel are used
    when the regime has any; otherwise every kernel of the regime."""
    from attnsim.validate.report import _predicted
    files = default_traces() if traces is None else list(traces)
    regime = f"{arch.name} {phase(w.seq_q)}"
    frames = [d for d in (_trace(str(p)) for p in files if Path(p).exists()) if len(d)]
    if not frames:
        return None, "no validation data for this regime (no measured trace found)"
    df = pd.concat(frames, ignore_index=True)
    df = df[(df["arch"] == arch.name) & (df["regime"] == phase(w.seq_q))]
    if df.empty:
        return None, f"no validation data for this regime ({regime} was never measured)"
    if kernel is not None and (df["algorithm"] == kernel).any():
        df = df[df["algorithm"] == kernel]
    point = _features(pd.DataFrame([{"batch": w.batch, "heads": w.heads, "kv_heads": w.kv_heads,
                                     "seq_q": w.seq_q, "seq_kv": w.seq_kv}]))
    dist = np.linalg.norm(_features(df) - point, axis=1)
    near = df.iloc[np.argsort(dist, kind="stable")[:NEAREST]].reset_index(drop=True)
    pred, _, _ = _predicted(near, arch.name)
    ok = np.isfinite(pred) & (pred > 0)
    if ok.sum() < 2:
        return None, f"no validation data for this regime (the measured {regime} rows could not be predicted)"
    ratio = near["time_median_s"].to_numpy(float)[ok] / pred[ok]
    lo, hi = np.quantile(ratio, QUANTILES)
    n = near[ok]
    span = (f"batch {int(n.batch.min())}-{int(n.batch.max())}, seq_kv {int(n.seq_kv.min())}-{int(n.seq_kv.max())}, "
            f"heads {int(n.heads.min())}/{int(n.kv_heads.min())} kv")
    kernels = ", ".join(sorted(set(n["algorithm"].astype(str))))
    given = {"batch": w.batch, "heads": w.heads, "kv_heads": w.kv_heads, "seq_q": w.seq_q, "seq_kv": w.seq_kv}
    outside = [f"{k} {v}" for k, v in given.items() if not df[k].min() <= v <= df[k].max()]
    return Band(float(lo), float(hi), int(ok.sum()), regime, ", ".join(sorted(set(n["trace_file"]))),
                kernels, span, ", ".join(outside)), ""
