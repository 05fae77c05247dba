"""GPU kernel mappings: the vocabulary of FlashAttention-style kernels.

A kernel mapping says how one attention call runs on a GPU:

    grid = B x (H / q_heads_per_cta) x ceil(M / rows) x split_kv   CTAs
    each CTA: load a Q tile (block_m rows), then for every non-empty key tile
              (block_n keys): load K, V (pipelined over `stages` buffers),
              S = Q K^T (mma), online softmax (exp + vector), O += P V (mma);
              finally scale O by 1/l and store it.

``style`` is 'fused' (FlashAttention-2/3 forward), 'split_kv' (flash-decoding: the key range
is split over CTAs and a combine kernel merges the partial outputs) or 'unfused' (three
kernels: S = QK^T, softmax, O = PV, with S and P in HBM; block_m x block_n is the GEMM tile).
It lowers to the general loop-nest form in ``attnsim.mapping.loopnest``.

How the kernel reads the KV cache (the defaults are a plain bf16/fp16 cache):

    kv_bytes           bytes per K/V element as stored (None: the workload dtype); a
                       quantized cache, e.g. 0.625 for int4 with an fp16 scale and zero per 32
    dequant_ops        vector ops per loaded K/V element to turn it into the compute dtype
    shared_kv          V is the first value_dim channels of each K row (MLA's latent cache,
                       FlashMLA): one buffer per key tile, V costs no bytes of its own
    paged_block_table  K/V live in pages of Workload.kv_page tokens; each key tile reads its
                       int32 block-table entries (vLLM / flash_attn_with_kvcache block_table)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from attnsim.arch import KERNEL_NAMES, Arch
from attnsim.errors import MappingError, Problem
from attnsim.spec.schema import Field, Reader, did_you_mean
from attnsim.spec.yamlio import load_yaml
from attnsim.workload.spec import Workload

MAPPING_DIR = Path(__file__).resolve().parents[2] / "mappings"
STYLES = ("fused", "split_kv", "unfused")
LAUNCH_ORDERS = ("m_fastest", "longest_first", "head_fastest")
ALGORITHMS = KERNEL_NAMES
# Head dims a FlashAttention-style kernel is compiled for; others are padded up to the next.
SUPPORTED_HEAD_DIMS = (32, 64, 96, 128, 160, 192, 224, 256)
# FlashMLA is compiled for one shape: QK head dim 576 (latent 512 + RoPE 64), V head dim 512
# (deepseek-ai/FlashMLA csrc/kernels/traits.h: HEAD_DIM_K 576, HEAD_DIM_V 512, BLOCK_SIZE_M 64,
# PAGE_BLOCK_SIZE 64, 256 threads).
FLASH_MLA_HEAD_DIMS = (576, 512)
FLASH_MLA_BLOCK_M = 64
FLASH_MLA_BLOCK_N = 64
FLASH_MLA_WARPS = 8
BLOCK_TABLE_ENTRY_BYTES = 4  # int32 page index per page of a sequence


@dataclass(frozen=True)
class KernelMapping:
    style: str = "fused"
    block_m: int = 128  # CTA tile rows (query positions x packed heads)
    block_n: int = 64  # key tile
    warps: int = 4
    stages: int = 2  # K/V buffers in shared memory (2 = double buffering)
    split_kv: int = 1
    q_heads_per_cta: int = 1  # GQA packing: query heads of one KV head handled by one CTA
    launch_order: str = "m_fastest"
    instr: str = "mma_sync"  # 'mma_sync' | 'wgmma'
    softmax_overlap: bool = False  # FA3-style: softmax of one tile overlaps the MMAs of another
    registers_per_thread: int | None = None  # from ptxas when known, else estimated
    name: str = ""
    kv_bytes: float | None = None  # bytes per stored K/V element (None: the workload dtype)
    dequant_ops: float = 0.0  # vector ops per loaded K/V element (dequantization)
    shared_kv: bool = False  # V = the first value_dim channels of each K row (MLA latent cache)
    paged_block_table: bool = False  # K/V in pages of Workload.kv_page tokens, found through a block table

    def label(self) -> str:
        if self.name:
            return self.name
        cache = ((f"-kv{self.kv_bytes:g}B" if self.kv_bytes is not None else "")
                 + (f"-deq{self.dequant_ops:g}" if self.dequant_ops else "")
                 + ("-sharedkv" if self.shared_kv else "") + ("-paged" if self.paged_block_table else ""))
        return (f"{self.style}-{self.block_m}x{self.block_n}-w{self.warps}-s{self.stages}"
                f"-split{self.split_kv}-{self.instr}" + ("-overlap" if self.softmax_overlap else "") + cache)

    def with_changes(self, **changes) -> "KernelMapping":
        return replace(self, **changes)


def padded_head_dim(d: int) -> int:
    """The head dim the kernel computes with (the next compiled size; the padding is wasted work)."""
    for s in SUPPORTED_HEAD_DIMS:
        if d <= s:
            return s
    raise MappingError(Problem(f"no FlashAttention-style tile supports head_dim {d}; the largest is "
                               f"{SUPPORTED_HEAD_DIMS[-1]}", key="head_dim"))


def kernel_head_dims(m: KernelMapping, w: Workload) -> tuple[int, int]:
    """(D, F) a fused kernel computes with: the next compiled sizes, or FlashMLA's one shape
    for a shared (latent) K/V cache."""
    if m.shared_kv:
        return FLASH_MLA_HEAD_DIMS
    return padded_head_dim(w.head_dim), padded_head_dim(w.value_dim)


def smem_bytes_per_cta(m: KernelMapping, w: Workload) -> int:
    """Shared memory one CTA holds: the Q tile plus `stages` K and V tiles (input dtype).
    With a shared K/V cache a key tile is one buffer of K rows; V is read from it in place."""
    b = w.dtype_bytes
    if m.style == "unfused":  # GEMM tile: A and B operand tiles, `stages` deep, k-step 64
        return m.stages * (m.block_m + m.block_n) * 64 * b
    d, f = kernel_head_dims(m, w)
    if m.shared_kv:
        return m.block_m * d * b + m.stages * m.block_n * d * b
    return m.block_m * d * b + m.stages * m.block_n * (d + f) * b


def estimated_registers(m: KernelMapping, w: Workload) -> int:
    """Data registers per thread: the fp32 O accumulator and the fp32 S/P tile, spread over the
    CTA's threads (a lower bound; ptxas adds addresses and indices)."""
    threads = 32 * m.warps
    f = kernel_head_dims(m, w)[1] if m.style != "unfused" else 0
    return math.ceil(m.block_m * (f + m.block_n) / threads)


def block_table_bytes(m: KernelMapping, w: Workload) -> tuple[float, float]:
    """(bytes of block-table entries one CTA reads per key tile, block-table bytes read from HBM)
    of a paged cache: a tile of block_n keys spans ceil(block_n / page) pages (pages and tiles
    nest, checked by check_mapping); each sequence's table is ceil(N / page) int32 entries."""
    page = w.kv_page
    if not m.paged_block_table or page < 1:  # (no pages: check_mapping refuses the mapping)
        return 0.0, 0.0
    per_tile = math.ceil(m.block_n / page) * BLOCK_TABLE_ENTRY_BYTES
    return float(per_tile), float(w.batch * math.ceil(w.seq_kv / page) * BLOCK_TABLE_ENTRY_BYTES)


def check_mapping(m: KernelMapping, w: Workload, arch: Arch, file: str | None = None) -> None:
    """Raise one MappingError listing everything that keeps this mapping from running."""
    probs: list[Problem] = []

    def bad(key, msg, hint=None):
        probs.append(Problem(msg, file=file, key=key, hint=hint))

    if m.style not in STYLES:
        bad("style", f"expected one of {list(STYLES)}, got {m.style!r}", did_you_mean(m.style, STYLES))
    if m.launch_order not in LAUNCH_ORDERS:
        bad("launch_order", f"expected one of {list(LAUNCH_ORDERS)}, got {m.launch_order!r}",
            did_you_mean(m.launch_order, LAUNCH_ORDERS))
    if arch.kind != "gpu":
        bad("arch", f"a kernel mapping needs a GPU arch; {arch.name!r} is {arch.kind}")
        raise MappingError(probs)
    if m.instr not in arch.compute.matrix_flops_per_cycle:
        bad("instr", f"arch {arch.name!r} has no {m.instr!r} instructions; it has "
                     f"{sorted(arch.compute.matrix_flops_per_cycle)}")
    elif w.dtype not in arch.compute.matrix_flops_per_cycle[m.instr]:
        bad("instr", f"{m.instr} on {arch.name} has no {w.dtype} rate; dtypes: "
                     f"{sorted(arch.compute.matrix_flops_per_cycle[m.instr])}")
    for key in ("block_m", "block_n"):
        v = getattr(m, key)
        if v < 16 or v % 16:
            bad(key, f"expected a multiple of 16 (the MMA tile edge), got {v}")
    if m.warps < 1 or m.warps * 32 > arch.gpu.max_threads_per_sm:
        bad("warps", f"expected 1..{arch.gpu.max_threads_per_sm // 32} warps, got {m.warps}")
    if m.instr == "wgmma" and m.warps % 4:
        bad("warps", f"wgmma runs on warpgroups of 4 warps; got {m.warps} warps")
    for key in ("stages", "split_kv", "q_heads_per_cta"):
        if getattr(m, key) < 1:
            bad(key, f"expected a positive integer, got {getattr(m, key)}")
    if m.q_heads_per_cta > 1 and w.group % m.q_heads_per_cta:
        bad("q_heads_per_cta", f"must divide the GQA group G = {w.group}; got {m.q_heads_per_cta}")
    if m.style != "unfused":
        if w.head_dim % 8 or w.value_dim % 8:
            bad("head_dim", f"head_dim and value_dim must be multiples of 8 (16-byte vector loads); "
                            f"got {w.head_dim} and {w.value_dim}")
        if m.shared_kv:
            if (w.head_dim, w.value_dim) != FLASH_MLA_HEAD_DIMS:
                bad("head_dim", f"a shared (latent) K/V kernel is compiled for head_dim, value_dim = "
                                f"{FLASH_MLA_HEAD_DIMS} (FlashMLA); got {w.head_dim}, {w.value_dim}")
        else:
            try:
                padded_head_dim(max(w.head_dim, w.value_dim))
            except MappingError as e:
                probs.extend(e.problems)
    _check_cache_format(m, w, bad)
    if not probs:
        smem = smem_bytes_per_cta(m, w)
        limit = arch.gpu.smem_per_cta_bytes
        if smem > limit:
            bad("block_m", f"SMEM overflows by {(smem - limit) / 1024:.1f} KiB: a {m.block_m}x{m.block_n} tile "
                           f"with {m.stages} stages needs {smem / 1024:.1f} KiB per CTA, {arch.name} allows "
                           f"{limit / 1024:.1f} KiB", "use a smaller block_n or fewer stages")
        regs = m.registers_per_thread or estimated_registers(m, w)
        if regs > arch.gpu.max_registers_per_thread:
            bad("block_m", f"registers overflow: a {m.block_m}x{m.block_n} tile over {m.warps} warps needs at "
                           f"least {regs} registers per thread, at most {arch.gpu.max_registers_per_thread}",
                "use more warps or a smaller tile")
    if probs:
        raise MappingError(probs)


def _check_cache_format(m: KernelMapping, w: Workload, bad) -> None:
    """The KV-cache fields: positive byte counts, and kernels that can read the format."""
    if m.kv_bytes is not None and not m.kv_bytes > 0:
        bad("kv_bytes", f"expected a positive number of bytes per K/V element, got {m.kv_bytes!r}")
    if m.dequant_ops < 0:
        bad("dequant_ops", f"expected a non-negative number of vector ops per element, got {m.dequant_ops!r}")
    if m.style == "unfused" and (m.kv_bytes is not None or m.dequant_ops or m.shared_kv or m.paged_block_table):
        bad("style", "the unfused model reads a plain contiguous K/V cache at the workload dtype; "
                     "kv_bytes, dequant_ops, shared_kv and paged_block_table need a fused or split_kv kernel")
    if m.paged_block_table:
        if w.kv_page < 1:
            bad("paged_block_table", f"a block-table kernel needs a paged cache (Workload.kv_page >= 1); "
                                     f"got kv_page={w.kv_page}")
        elif m.block_n % w.kv_page and w.kv_page % m.block_n:
            bad("block_n", f"key tiles and pages must nest (one a multiple of the other); got block_n="
                           f"{m.block_n}, kv_page={w.kv_page}")


def flash_splits_heuristic(ctas_without_split: int, slots: int, n_key_tiles: int, max_splits: int = 128) -> int:
    """The split-KV count flash-attention's own heuristic picks (num_splits_heuristic in its
    flash_api.cpp, called with 2 x SMs as `slots`): no split when the grid already fills 80% of
    the slots; else the smallest split whose wave efficiency is within 85% of the best, skipping
    splits that leave the key tiles per split unchanged."""
    if ctas_without_split >= 0.8 * slots:
        return 1
    max_splits = min(max_splits, slots, n_key_tiles)

    def eligible(s: int) -> bool:  # a split that leaves the tiles per split unchanged is no new split
        return s == 1 or math.ceil(n_key_tiles / s) != math.ceil(n_key_tiles / (s - 1))

    effs = {}
    for s in range(1, max_splits + 1):
        if eligible(s):
            waves = ctas_without_split * s / slots
            effs[s] = waves / math.ceil(waves)
    best = max(effs.values())
    for s, e in effs.items():
        if e >= 0.85 * best:
            return s
    return 1


def _flash2_split_mapping(arch: Arch, w: Workload, rows: int, name: str) -> KernelMapping | None:
    """flash-attn 2's split-KV path (its set_params_splitkv): 64-row tiles, key tiles of 256 /
    128 / 64 for head dims <= 64 / 128 / larger, used when the grid is small. None: no split."""
    d = padded_head_dim(max(w.head_dim, w.value_dim))
    bn = 256 if d <= 64 else 128 if d <= 128 else 64
    qpc = w.group if rows == w.seq_q * w.group else 1
    ctas = w.batch * (w.heads // qpc) * math.ceil(rows / 64)
    split = flash_splits_heuristic(ctas, 2 * arch.gpu.sm_count, math.ceil(w.seq_kv / bn))
    if split == 1 and name == "flash2":
        return None
    m = KernelMapping(style="split_kv", block_m=64, block_n=bn, warps=4, stages=2, split_kv=split,
                      q_heads_per_cta=qpc, instr="mma_sync", name=name)
    if smem_bytes_per_cta(m, w) > arch.gpu.smem_per_cta_bytes:  # e.g. L40S (99 KiB): single-buffer K/V
        m = m.with_changes(stages=1)
    return m


def default_mapping(algorithm: str, arch: Arch, w: Workload) -> KernelMapping:
    """What the well-known kernels do for this algorithm, arch and shape."""
    if algorithm not in ALGORITHMS:
        raise MappingError(Problem(f"unknown algorithm {algorithm!r}; known: {list(ALGORITHMS)}",
                                   key="algorithm", hint=did_you_mean(algorithm, ALGORITHMS)))
    d = padded_head_dim(max(w.head_dim, w.value_dim))
    has_wgmma = "wgmma" in arch.compute.matrix_flops_per_cycle
    order = "longest_first" if w.mask.is_causal else "m_fastest"
    if algorithm == "unfused":
        return KernelMapping(style="unfused", block_m=128, block_n=128, warps=8, stages=3,
                             instr=arch.default_instr, name="unfused")
    if algorithm == "flash2":
        split = _flash2_split_mapping(arch, w, w.seq_q, "flash2")
        if split is not None:
            return split
        # flash-attention 2's sm80 forward kernel traits: (block_m, block_n, warps) per head dim.
        bm, bn = (128, 128) if d <= 64 else (128, 64) if d <= 160 else (64, 64)
        return KernelMapping(style="fused", block_m=bm, block_n=bn, warps=4, stages=2, instr="mma_sync",
                             launch_order=order, name="flash2")
    if algorithm == "flash3":
        if not has_wgmma:
            raise MappingError(Problem(f"flash3 needs wgmma (Hopper); {arch.name} has only "
                                       f"{sorted(arch.compute.matrix_flops_per_cycle)}", key="algorithm",
                                       hint="use --algorithm flash2"))
        bm, bn = (192, 128) if d <= 64 else (128, 128) if d <= 128 else (128, 80) if d <= 192 else (128, 64)
        return KernelMapping(style="fused", block_m=bm, block_n=bn, warps=12, stages=2, instr="wgmma",
                             softmax_overlap=True, launch_order=order, name="flash3")
    if algorithm == "flash2_kvcache":
        # flash_attn_with_kvcache always takes the split-KV kernel, whatever the query count
        return _flash2_split_mapping(arch, w, w.seq_q, "flash2_kvcache")
    # flash_decode: flash-attn 2 with one query token and GQA swaps the G query heads of a KV head
    # into the query rows (seqlenq_ngroups_swapped), then takes its split-KV path.
    rows = w.seq_q * w.group if w.seq_q == 1 else w.seq_q
    return _flash2_split_mapping(arch, w, rows, "flash_decode")


def flash_mla_mapping(arch: Arch, w: Workload) -> KernelMapping:
    """FlashMLA's dense decode kernel (deepseek-ai/FlashMLA): MQA over the latent cache, the
    s_q * H / Hkv query rows of a KV head in 64-row blocks (h_q = 128 -> two CTAs per sequence),
    64-key pages shared by K and V, 2 warpgroups with softmax overlapped with the MMAs
    ("seesaw" schedule), double-buffered K, split-KV with a combine kernel.

    Its tile scheduler (get_mla_metadata) gives each of num_sm_parts = SMs / Hkv /
    ceil(rows / 64) persistent CTAs an equal share of all sequences' key blocks; for equal
    lengths that is split_kv = max(1, num_sm_parts // batch) splits of each sequence (one wave).
    On a GPU without wgmma (no FlashMLA build) the same tiling on mma.sync is assumed,
    single-buffered where shared memory is short."""
    rows = w.seq_q * w.group
    qpc = max(q for q in range(1, min(w.group, FLASH_MLA_BLOCK_M) + 1) if w.group % q == 0)
    parts = max(1, arch.gpu.sm_count // w.kv_heads // math.ceil(rows / FLASH_MLA_BLOCK_M))
    has_wgmma = "wgmma" in arch.compute.matrix_flops_per_cycle
    m = KernelMapping(style="split_kv", block_m=FLASH_MLA_BLOCK_M, block_n=FLASH_MLA_BLOCK_N,
                      warps=FLASH_MLA_WARPS, stages=2, split_kv=max(1, parts // w.batch), q_heads_per_cta=qpc,
                      instr="wgmma" if has_wgmma else "mma_sync", softmax_overlap=has_wgmma, shared_kv=True,
                      name="flash_mla")
    if smem_bytes_per_cta(m, w) > arch.gpu.smem_per_cta_bytes:
        m = m.with_changes(stages=1)
    return m


MAPPING_FIELDS = [
    Field("name", "str", required=False, default=""),
    Field("style", "enum", choices=STYLES),
    Field("block_m", "int", min=16),
    Field("block_n", "int", min=16),
    Field("warps", "int", min=1, required=False, default=4),
    Field("stages", "int", min=1, required=False, default=2),
    Field("split_kv", "int", min=1, required=False, default=1),
    Field("q_heads_per_cta", "int", min=1, required=False, default=1),
    Field("launch_order", "enum", choices=LAUNCH_ORDERS, required=False, default="m_fastest"),
    Field("instr", "enum", choices=("mma_sync", "wgmma"), required=False, default="mma_sync"),
    Field("softmax_overlap", "bool", required=False, default=False),
    Field("registers_per_thread", "int", min=1, required=False),
    Field("kv_bytes", "float", min=0, required=False, help="bytes per stored K/V element (quantized cache)"),
    Field("dequant_ops", "float", min=0, required=False, default=0.0,
          help="vector ops per loaded K/V element (dequantization)"),
    Field("shared_kv", "bool", required=False, default=False, help="V is part of the K rows (MLA latent cache)"),
    Field("paged_block_table", "bool", required=False, default=False,
          help="K/V in pages found through a block table (needs Workload.kv_page)"),
    Field("description", "str", required=False, default=""),
]


def load_mapping(name_or_path: str | Path) -> KernelMapping:
    p = Path(name_or_path)
    if not p.exists():
        cand = MAPPING_DIR / f"{name_or_path}.yaml"
        if not cand.exists():
            names = sorted(q.stem for q in MAPPING_DIR.glob("*.yaml"))
            hint = did_you_mean(str(name_or_path), names)
            raise MappingError(Problem(f"no mapping file or preset {str(name_or_path)!r}"
                                       + f"; presets: {', '.join(names)}", hint=hint))
        p = cand
    data, lines = load_yaml(p)
    r = Reader(data, lines, str(p))
    v = r.section((), MAPPING_FIELDS)
    r.raise_if_problems()
    v.pop("description", None)
    return KernelMapping(**{k: val for k, val in v.items()}) if v["name"] else \
        KernelMapping(**{**v, "name": p.stem})
