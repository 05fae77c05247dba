"""Calibration: fit named efficiency fields of an arch spec on a training split only.

A field is fitted by changing one column of the lowered design points (no re-lowering), so a
fit over ten thousand measured configurations takes seconds. The loss is the mean squared
log ratio of predicted to measured time: a 20% overprediction costs what a 20% underprediction
does. The held-out split is chosen by a stated rule before any fitting, and only held-out
errors are accuracy figures.
"""
from __future__ import annotations

import dataclasses
import math
import zlib
from types import MappingProxyType
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from attnsim.arch import KERNEL_NAMES, Arch, arch_from_data
from attnsim.errors import SpecError, Problem
from attnsim.model import gpu_kernel as K
from attnsim.spec.schema import did_you_mean
from attnsim.spec.yamlio import load_yaml
from attnsim.validate.predict_trace import Lowered, latencies

CONFIG_COLUMNS = ("arch", "algorithm", "batch", "heads", "kv_heads", "seq_q", "seq_kv", "head_dim", "causal",
                  "window", "dtype")


@dataclass(frozen=True)
class FitField:
    name: str  # dotted YAML path, e.g. 'efficiency.mma.mma_sync'
    column: int  # design-point column it sets
    lo: float
    hi: float

    def rows(self, low: Lowered) -> np.ndarray:
        """Which lowered points this field applies to."""
        parts = self.name.split(".")
        if parts[1] == "kernels":  # efficiency.kernels.<kernel>.<factor>
            return low.kernel == parts[2]
        if parts[1] == "mma":
            return low.instr == parts[2]
        if self.name == "efficiency.paged_kv_bandwidth":
            return low.paged
        if self.name == "efficiency.hbm_bandwidth":
            return ~low.paged
        return np.ones(len(low.index), dtype=bool)


FRACTION = (0.02, 1.0)
TIME = (0.0, 100e-6)
FIELDS = {
    "efficiency.mma.mma_sync": FitField("efficiency.mma.mma_sync", K.MMA_EFF, *FRACTION),
    "efficiency.mma.wgmma": FitField("efficiency.mma.wgmma", K.MMA_EFF, *FRACTION),
    "efficiency.hbm_bandwidth": FitField("efficiency.hbm_bandwidth", K.HBM_EFF, *FRACTION),
    "efficiency.paged_kv_bandwidth": FitField("efficiency.paged_kv_bandwidth", K.HBM_EFF, *FRACTION),
    "efficiency.l2_bandwidth": FitField("efficiency.l2_bandwidth", K.L2_EFF, *FRACTION),
    "efficiency.launch_overhead": FitField("efficiency.launch_overhead", K.LAUNCH_S, *TIME),
}
for _k in KERNEL_NAMES:
    FIELDS[f"efficiency.kernels.{_k}.mma"] = FitField(f"efficiency.kernels.{_k}.mma", K.MMA_EFF, *FRACTION)
    FIELDS[f"efficiency.kernels.{_k}.hbm"] = FitField(f"efficiency.kernels.{_k}.hbm", K.HBM_EFF, *FRACTION)
    FIELDS[f"efficiency.kernels.{_k}.launch_overhead"] = FitField(
        f"efficiency.kernels.{_k}.launch_overhead", K.LAUNCH_S, *TIME)
    FIELDS[f"efficiency.kernels.{_k}.combine_overhead"] = FitField(
        f"efficiency.kernels.{_k}.combine_overhead", K.COMBINE_S, *TIME)


def field_by_name(name: str) -> FitField:
    if name not in FIELDS:
        raise SpecError(Problem(f"cannot fit {name!r}; fittable fields: {sorted(FIELDS)}", key="--fit",
                                hint=did_you_mean(name, FIELDS)))
    return FIELDS[name]


# ---- held-out split rules ----

def split_mask(df: pd.DataFrame, rule: str) -> np.ndarray:
    """True for held-out rows. Rules:
    hash:K          a row is held out when crc32 of its configuration is 0 mod K (about 1/K)
    range:COL>V     held out where COL > V (also <, >=, <=): extrapolation to unseen sizes
    """
    kind, _, arg = rule.partition(":")
    if kind == "hash":
        k = int(arg or 5)
        cols = [c for c in CONFIG_COLUMNS if c in df.columns]
        keys = df[cols].astype(str).agg("|".join, axis=1)
        return np.array([zlib.crc32(s.encode()) % k == 0 for s in keys])
    if kind == "range":
        for op in (">=", "<=", ">", "<"):
            if op in arg:
                col, val = arg.split(op, 1)
                if col not in df.columns:
                    raise SpecError(Problem(f"split rule names column {col!r}, which the trace lacks",
                                            key="--split", hint=did_you_mean(col, list(df.columns))))
                v = df[col].astype(float).to_numpy()
                x = float(val)
                return {">": v > x, "<": v < x, ">=": v >= x, "<=": v <= x}[op]
    raise SpecError(Problem(f"unknown split rule {rule!r}; expected hash:K or range:COLUMN>VALUE", key="--split"))


# ---- fitting ----

def _loss(points, meas, rows):
    pred = latencies(points[rows])
    r = np.log(pred / meas[rows])
    r = r[np.isfinite(r)]
    return float(np.mean(r * r)) if len(r) else math.inf


def _golden(f, lo, hi, iters=40):
    """Minimize a one-dimensional function on [lo, hi] by golden-section search."""
    g = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iters):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    return (c, fc) if fc < fd else (d, fd)


def fit(low: Lowered, meas: np.ndarray, train: np.ndarray, fields: list[FitField], sweeps: int = 4) -> dict:
    """Coordinate descent over the fields on the training rows; returns {field name: value}."""
    points = low.points.copy()
    train_rows = train[low.index]
    values = {}
    for f in fields:
        applies = f.rows(low)
        values[f.name] = float(np.median(points[applies, f.column])) if applies.any() else None
    for _ in range(sweeps):
        for f in fields:
            applies = f.rows(low)
            if not (applies & train_rows).any():
                continue

            def loss_at(v, f=f, applies=applies):
                points[applies, f.column] = v
                return _loss(points, meas[low.index], train_rows)

            best, _ = _golden(loss_at, f.lo, f.hi)
            points[applies, f.column] = best
            values[f.name] = best
    return values


def training_loss(low: Lowered, meas: np.ndarray, train: np.ndarray, values: dict) -> float:
    return _loss(apply_values(low, values), meas[low.index], train[low.index])


def with_kernel_property(arch: Arch, kernel: str, key: str, value) -> Arch:
    """A copy of `arch` whose efficiency.kernels.<kernel>.<key> is `value`."""
    kernels = {k: dict(v) for k, v in arch.efficiency.kernels.items()}
    kernels.setdefault(kernel, {})[key] = value
    eff = dataclasses.replace(arch.efficiency, kernels=MappingProxyType(kernels))
    return dataclasses.replace(arch, efficiency=eff)


def apply_values(low: Lowered, values: dict) -> np.ndarray:
    points = low.points.copy()
    for name, v in values.items():
        if v is not None:
            f = FIELDS[name]
            points[f.rows(low), f.column] = v
    return points


def calibrated_spec(arch: Arch, values: dict, note: str) -> tuple[Arch, str]:
    """The arch YAML with the fitted fields replaced, each with a source saying how it was fitted."""
    if not arch.file:
        raise SpecError("calibration needs an arch loaded from a YAML file")
    data, _ = load_yaml(arch.file)
    for name, v in values.items():
        if v is None:
            continue
        keys = name.split(".")
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        if isinstance(v, bool):
            text = v
        elif name.endswith("_overhead"):
            text = f"{v * 1e6:.4g} us"
        else:
            text = round(float(v), 4)
        node[keys[-1]] = {"value": text, "source": f"attnsim calibrate: {note}"}
    data["name"] = f"{arch.name}_calibrated"
    data["description"] = f"{arch.description} (calibrated: {note})"
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)
    _, lines = load_yaml(Path(arch.file).name, text=text)
    return arch_from_data(yaml.safe_load(text), lines, None), text
