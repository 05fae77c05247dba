"""Building blocks the family plans share: the softmax-attention call inside a family, stand-alone
GEMM kernels and memory-streaming kernels, with the traffic each one causes written beside it."""
from __future__ import annotations

import math
from dataclasses import replace

from attnsim.arch import Arch
from attnsim.mapping.kernel import ALGORITHMS, KernelMapping, default_mapping
from attnsim.model.plan import AttentionOp, Gemm, KernelOp
from attnsim.workload.spec import Mask, Params, Workload, check_workload

# Output tiles a GEMM library chooses among, per instruction class (CUTLASS's sm80 and sm90 tile
# configurations; cuBLAS's heuristics pick one per shape): the model takes the fastest, as the
# library's heuristic or autotuner does. docs/validation.md measures this on Vidur's GEMMs.
GEMM_TILES = {"mma_sync": ((128, 128), (64, 64), (128, 64), (256, 128)),
              "wgmma": ((128, 256), (64, 128), (128, 128), (256, 128)),
              "array": ((128, 128),)}
GEMM_K_STEP = 64  # reduction step staged in shared memory per pipeline stage
GEMM_STAGES = 3


def softmax_view(w: Workload, *, mask: Mask | None = None, **changes) -> Workload:
    """The family's attention call as a plain softmax-attention workload (same shape unless changed)."""
    v = replace(w, family="softmax", params=Params(), name="", mask=w.mask if mask is None else mask, **changes)
    check_workload(v)
    return v


def default_algorithm(arch: Arch, w: Workload) -> str:
    from attnsim.model.analytical import default_algorithm as da
    return da(arch, w)


def attention_mapping(arch: Arch, w: Workload, mapping=None, **tile) -> object:
    """The mapping of the attention kernel inside a plan.

    None -> the default kernel for the arch and shape; an algorithm name -> that kernel;
    a KernelMapping / SpatialMapping -> used as given. ``tile`` (block_m, block_n, ...) then
    overrides fields of a default GPU kernel (e.g. the routing block of a block-sparse kernel)."""
    if arch.kind == "spatial":
        from attnsim.mapping.spatial import SpatialMapping, resolve_spatial_mapping
        m = resolve_spatial_mapping(mapping, arch, w)
        if tile and not isinstance(mapping, SpatialMapping):
            m = replace(m, **{k: v for k, v in tile.items() if k in ("block_m", "block_n")})
        return m
    if isinstance(mapping, KernelMapping):
        return mapping
    alg = mapping if isinstance(mapping, str) else default_algorithm(arch, w)
    m = default_mapping(alg, arch, w)
    return m.with_changes(**tile) if tile else m


def attention_op(name: str, arch: Arch, w: Workload, mapping=None, count: int = 1, **tile) -> AttentionOp:
    return AttentionOp(name, w, attention_mapping(arch, w, mapping, **tile), count)


def gemm_op(name: str, count: float, m: int, n: int, k: int, dtype: str, elem_bytes: float, *,
            a_bytes: float | None = None, b_bytes: float | None = None, c_bytes: float | None = None,
            layers: int = 1, arch: Arch | None = None, tile: tuple[int, int] | None = None) -> KernelOp:
    """A stand-alone GEMM kernel: `count` products (m x k) @ (k x n).

    With ``arch`` (and no ``tile``) the output tile is the fastest of GEMM_TILES for the arch's
    instruction class; with ``tile`` that tile; with neither, the first (default) tile.
    HBM: A, B and C once each (operand re-reads across output tiles hit L2);
    L2 -> SM: A once per column of output tiles, B once per row of output tiles, C once.
    Byte counts may be given when operands are shared (one weight matrix for every instance)."""
    if tile is None and arch is not None and arch.kind == "gpu":
        from attnsim.model.plan import kernel_cost
        ops = [gemm_op(name, count, m, n, k, dtype, elem_bytes, a_bytes=a_bytes, b_bytes=b_bytes, c_bytes=c_bytes,
                       layers=layers, tile=t) for t in GEMM_TILES[arch.default_instr]]
        return min(ops, key=lambda op: kernel_cost(arch, op).latency_s)  # ties: the first (default) tile
    tm, tn = tile or GEMM_TILES["mma_sync"][0]
    a = count * m * k * elem_bytes if a_bytes is None else a_bytes  # read A
    b = count * k * n * elem_bytes if b_bytes is None else b_bytes  # read B
    c = count * m * n * elem_bytes if c_bytes is None else c_bytes  # write C
    col_tiles, row_tiles = math.ceil(n / tn), math.ceil(m / tm)
    l2 = a * col_tiles + b * row_tiles + c
    smem = GEMM_STAGES * (tm + tn) * GEMM_K_STEP * elem_bytes
    return KernelOp(name, ctas=count * row_tiles * col_tiles, gemms=(Gemm(count, m, n, k),), hbm_bytes=a + b + c,
                    l2_bytes=l2, smem_bytes_per_cta=smem, warps=8, dtype=dtype, count=layers,
                    detail=f"{tm}x{tn} output tiles")


def stream_op(name: str, read_bytes: float, write_bytes: float, *, vector_ops: float = 0.0, exps: float = 0.0,
              ctas: float | None = None, bytes_per_cta: float = 64 * 1024, layers: int = 1) -> KernelOp:
    """An elementwise / reduction kernel that streams its operands once (read + write bytes), with
    one CTA per `bytes_per_cta` of traffic unless the grid is given."""
    total = read_bytes + write_bytes
    grid = max(1.0, math.ceil(total / bytes_per_cta)) if ctas is None else ctas
    return KernelOp(name, ctas=grid, exps=exps, vector_ops=vector_ops, hbm_bytes=total, warps=4, count=layers)
