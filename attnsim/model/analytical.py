"""The analytical model's public face: predict one design point, or many at once.

The arithmetic lives in ``gpu_kernel`` (numba, arrays of design points) and
``spatial`` (spatial arrays); this module turns specs into arrays and arrays into Results.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from attnsim import __version__
from attnsim.arch import Arch, load_arch
from attnsim.errors import MappingError, Problem
from attnsim.mapping.kernel import ALGORITHMS, KernelMapping, default_mapping, load_mapping
from attnsim.model import gpu_kernel as K
from attnsim.model.lower import BOUND_NAMES, lower_gpu
from attnsim.model.result import Result
from attnsim.workload.spec import Workload, load_workload

DECODE_MAX_QUERIES = 16  # at or below this many query positions, the default kernel is flash-decoding


def default_algorithm(arch: Arch, w: Workload) -> str:
    if w.seq_q <= DECODE_MAX_QUERIES:
        return "flash_decode"
    return "flash3" if "wgmma" in arch.compute.matrix_flops_per_cycle else "flash2"


def resolve(arch, workload, mapping=None):
    """Accept names, paths or values; return (Arch, Workload, mapping value)."""
    arch = arch if isinstance(arch, Arch) else load_arch(arch)
    w = workload if isinstance(workload, Workload) else load_workload(workload)
    if arch.kind == "spatial":
        from attnsim.mapping.spatial import resolve_spatial_mapping
        return arch, w, resolve_spatial_mapping(mapping, arch, w)
    if mapping is None:
        mapping = default_mapping(default_algorithm(arch, w), arch, w)
    elif isinstance(mapping, str) and mapping in ALGORITHMS:
        mapping = default_mapping(mapping, arch, w)
    elif isinstance(mapping, (str, Path)):
        mapping = load_mapping(mapping)
    if not isinstance(mapping, KernelMapping):
        raise MappingError(Problem(f"expected a KernelMapping, an algorithm name {list(ALGORITHMS)} or a "
                                   f"mapping file, got {mapping!r}", key="mapping"))
    return arch, w, mapping


def predict(arch, workload, mapping=None, tile_stats=None) -> Result:
    """Predict latency, traffic, utilization and energy of one attention call.

    ``arch``: an Arch or a preset name / YAML path. ``workload``: a Workload (see
    ``attnsim.attention``) or a YAML path. ``mapping``: a KernelMapping, an algorithm name
    ('unfused', 'flash2', 'flash3', 'flash_decode'), a mapping YAML, or None for the default.
    A workload of another family (linear attention, top-k routing, KV compression, ...) is
    costed through its plan of kernels (``attnsim.model.plan``); ``mapping`` then applies to
    the family's main kernel, as its module documents. ``tile_stats``: (rows per query tile,
    keys per key tile) -> ``workload.tiles.TileStats`` replacing the mask's own counts, per
    (b, head group) averaged over heads (masks that differ between heads; ``plan.AttentionOp``).
    """
    arch = arch if isinstance(arch, Arch) else load_arch(arch)
    w = workload if isinstance(workload, Workload) else load_workload(workload)
    if w.family != "softmax":
        from attnsim.model.plan import predict_family
        return predict_family(arch, w, mapping)
    arch, w, m = resolve(arch, w, mapping)
    if arch.kind == "spatial":
        from attnsim.model.spatial import predict_spatial
        return predict_spatial(arch, w, m, tile_stats)
    row = lower_gpu(arch, w, m, tile_stats=tile_stats)
    out = K.evaluate_points(row[None, :])[0]
    return result_from_row(arch, w, m, out)


def evaluate(points: np.ndarray) -> np.ndarray:
    """Evaluate lowered design points [n, N_IN] -> [n, N_OUT] (the batch entry point)."""
    return K.evaluate_points(np.ascontiguousarray(points, dtype=np.float64))


def result_from_row(arch: Arch, w: Workload, m: KernelMapping, o: np.ndarray) -> Result:
    if o[K.O_STATUS] != K.ST_OK:
        raise MappingError(Problem(f"mapping {m.label()} fits no CTA on an SM of {arch.name} "
                                   "(shared memory, registers or warps)", key="mapping"))
    times = {"compute (SM makespan)": o[K.O_T_COMPUTE], "hbm": o[K.O_T_HBM], "l2": o[K.O_T_L2],
             "launch": o[K.O_T_LAUNCH]}
    if o[K.O_T_COMBINE] > 0:
        times["split-KV combine"] = o[K.O_T_COMBINE]
    main = sorted([o[K.O_T_COMPUTE], o[K.O_T_HBM], o[K.O_T_L2]], reverse=True)
    margin = main[0] / main[1] if main[1] > 0 else float("inf")
    if m.style != "unfused":
        times["per tile: mma"] = o[K.O_T_MMA_TILE] / arch.clock_hz
        times["per tile: softmax"] = o[K.O_T_SOFT_TILE] / arch.clock_hz
        times["per tile: total"] = o[K.O_T_TILE] / arch.clock_hz
    return Result(
        arch=arch.name, workload=w.label(), mapping=m.label(), model="analytical",
        latency_s=float(o[K.O_LATENCY]), bound=BOUND_NAMES[int(o[K.O_BOUND])], bound_margin=float(margin),
        useful_flops=float(o[K.O_USEFUL_FLOPS]), executed_flops=float(o[K.O_MMA_FLOPS]),
        traffic_bytes={"HBM": float(o[K.O_HBM_BYTES]), "L2": float(o[K.O_L2_BYTES]),
                       "SMEM": float(o[K.O_SMEM_BYTES])},
        utilization={"mma": float(o[K.O_UTIL_MMA]), "exp (SFU)": float(o[K.O_UTIL_EXP]),
                     "vector (FP32)": float(o[K.O_UTIL_VEC]), "HBM": float(o[K.O_UTIL_HBM]),
                     "L2": float(o[K.O_UTIL_L2])},
        energy_j={"HBM": float(o[K.O_E_HBM]), "L2": float(o[K.O_E_L2]), "SMEM": float(o[K.O_E_SMEM]),
                  "mma": float(o[K.O_E_MMA]), "exp": float(o[K.O_E_EXP]), "vector": float(o[K.O_E_VEC]),
                  "static": float(o[K.O_E_STATIC])},
        times_s={k: float(v) for k, v in times.items()},
        occupancy={"ctas_per_sm": float(o[K.O_CTAS_PER_SM]), "waves": float(o[K.O_WAVES]),
                   "n_ctas": float(o[K.O_N_CTAS]), "n_kernels": float(o[K.O_N_KERNELS])},
        counts={"tile visits": float(o[K.O_TILES]), "exps": float(o[K.O_EXPS]),
                "vector ops": float(o[K.O_VEC_OPS]), "allowed (m,n) pairs per (b,h)": float(o[K.O_ALLOWED])},
        provenance={"attnsim": __version__, "model": "analytical", "arch_hash": arch.spec_hash,
                    "arch_file": arch.file, "mapping": repr(m)},
    )
