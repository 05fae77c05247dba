"""Predict every configuration of a measured trace, through the batch kernel.

Rows are lowered once (one KernelMapping per row, the algorithm's default unless the trace
names block sizes); calibration then varies efficiency columns of the lowered array without
lowering again. A row that cannot be predicted keeps its reason.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from attnsim.arch import Arch
from attnsim.errors import AttnsimError
from attnsim.mapping.kernel import ALGORITHMS, default_mapping
from attnsim.model import gpu_kernel as K
from attnsim.model.lower import lower_gpu
from attnsim.workload.spec import attention


@dataclass
class Lowered:
    points: np.ndarray  # [n_ok, N_IN]
    index: np.ndarray  # trace row of each point
    instr: np.ndarray  # instruction class of each point's mapping
    paged: np.ndarray  # bool: K/V from a paged cache
    kernel: np.ndarray  # kernel family (mapping name) of each point
    errors: dict  # trace row -> reason, for rows that could not be lowered


def _workload(row) -> object:
    window = int(row.get("window", 0) or 0)
    density = row.get("density")
    density = None if density is None or pd.isna(density) else float(density)
    page = row.get("paged_block", 0)
    page = 0 if page is None or pd.isna(page) else int(page)
    return attention("softmax", batch=int(row["batch"]), heads=int(row["heads"]), kv_heads=int(row["kv_heads"]),
                     seq_q=int(row["seq_q"]), seq_kv=int(row["seq_kv"]), head_dim=int(row["head_dim"]),
                     causal=bool(row["causal"]), window=window or None, density=density,
                     dtype=str(row["dtype"]), kv_page=page)


def lower_trace(df: pd.DataFrame, arch: Arch) -> Lowered:
    pts, idx, instr, paged, kernel, errors = [], [], [], [], [], {}
    for i, row in enumerate(df.to_dict("records")):
        alg = str(row["algorithm"])
        try:
            if alg not in ALGORITHMS:
                raise AttnsimError(f"no attnsim algorithm for measured kernel {alg!r}; known: {list(ALGORITHMS)}")
            w = _workload(row)
            m = default_mapping(alg, arch, w)
            pts.append(lower_gpu(arch, w, m))
        except (AttnsimError, ValueError) as e:
            errors[i] = str(e)
            continue
        idx.append(i)
        instr.append(m.instr)
        paged.append(w.kv_page > 0)
        kernel.append(m.name)
    points = np.vstack(pts) if pts else np.zeros((0, K.N_IN))
    return Lowered(points, np.array(idx, dtype=int), np.array(instr), np.array(paged, dtype=bool),
                   np.array(kernel), errors)


def latencies(points: np.ndarray) -> np.ndarray:
    out = K.evaluate_points(np.ascontiguousarray(points))
    lat = out[:, K.O_LATENCY].copy()
    lat[out[:, K.O_STATUS] != K.ST_OK] = np.nan
    return lat
