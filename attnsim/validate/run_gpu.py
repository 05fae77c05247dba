"""Measure the bundled CUDA kernels (and PyTorch's flash SDPA) on this machine's GPU.

    python -m attnsim.validate.run_gpu --out validate/traces/<gpu>/ [--quick] [--lib LIB.so]

Builds ``validate/kernels`` into a shared library for the device's SM (``validate/build.py``,
nvcc needed; or ``--lib`` names a library built elsewhere with ``build.py --shared``), loads it
with ctypes and, for every case of the grid (prefill: sequence 512..32k, head dim 64 and 128,
causal or not, a sliding window, batch x heads filling the GPU; decode: KV 1k..128k):

1. runs each kernel once and checks its output against a float32 PyTorch reference on sampled
   query rows; the tolerance is PyTorch's own bf16 SDPA error on the same rows and the same
   inputs: a kernel passes when its max abs error <= 2 x SDPA's + 1e-3;
2. times it with CUDA events: 3 warm-up calls, 20 timed calls; median, p10, p90 and std;
3. times ``torch.nn.functional.scaled_dot_product_attention`` with the flash backend on the same
   shapes (full and causal masks; the flash backend takes no other mask).

Writes ``trace.csv`` (the project's trace schema, times in seconds) and
``trace.provenance.json`` (GPU, clocks, driver, CUDA and torch versions, sha256 of the kernel
sources, the timing method, the accuracy checks, the date). Kernels that fail their check are
left out of trace.csv, listed in the provenance, and make the exit code 1.

Without torch or a CUDA device it prints one line and exits 3. The pure parts (grid, CSV rows,
statistics, tolerance, provenance) are importable and tested without a GPU.
"""
from __future__ import annotations

import argparse
import csv
import ctypes
import datetime as _dt
import hashlib
import importlib.util
import json
import math
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
KERNEL_DIR = REPO / "validate" / "kernels"
BUILD_SCRIPT = REPO / "validate" / "build.py"
NEEDS_MSG = "needs a CUDA GPU and the validate extra: pip install -e '.[validate]'"
TRACE_FIELDS = ("arch", "algorithm", "batch", "heads", "kv_heads", "seq_q", "seq_kv", "head_dim", "causal", "window",
                "dtype", "kernel", "time_median_s", "time_p10_s", "time_p90_s", "time_std_s", "repeats")
WARMUP = 3
REPEATS = 20
ABS_SLACK = 1e-3  # tolerance: err <= REL_FACTOR * sdpa_err + ABS_SLACK
REL_FACTOR = 2.0
PREFILL_SEQS = (512, 1024, 2048, 4096, 8192, 16384, 32768)
QUICK_PREFILL_SEQS = (512, 2048, 8192)
DECODE_KV = (1024, 4096, 16384, 65536, 131072)
QUICK_DECODE_KV = (1024, 16384, 131072)
TOKENS_PER_BATCH = 16384  # prefill: batch = 16k / seq (FlashAttention's benchmark convention)
HIDDEN = 2048  # prefill: heads = 2048 / head_dim
WINDOW = 4096
DECODE_BATCH, DECODE_HEADS, DECODE_KV_HEADS = 8, 32, 8
NAIVE_MEMORY_FRACTION = 0.4  # the unfused kernel runs only where S and P fit in this share of the GPU
TIMING_METHOD = (f"CUDA events around each call on the current stream: {WARMUP} warm-up calls, then {REPEATS} "
                 "timed calls, each between its own start/end event pair, synchronised once at the end; "
                 "median, 10th and 90th percentile (linear interpolation), standard deviation (ddof=0) of the "
                 "per-call times; no L2 flush between calls; inputs from torch.randn (seed 0). Decode times "
                 "cover the partial and the combine kernel, unfused times the three kernels.")
GPU_PRESETS = (("H200", "h200_sxm"), ("H100", "h100_sxm5_80gb"), ("A100", "a100_sxm4_80gb"), ("L40S", "l40s"))


# ---------------------------------------------------------------------------- the grid (pure)

@dataclass(frozen=True)
class Case:
    regime: str  # 'prefill' | 'decode'
    batch: int
    heads: int
    kv_heads: int
    seq_q: int
    seq_kv: int
    head_dim: int
    causal: bool
    window: int = 0
    dtype: str = "bf16"

    def label(self) -> str:
        mask = f"window{self.window}" if self.window else ("causal" if self.causal else "full")
        return (f"{self.regime} B{self.batch} H{self.heads}/{self.kv_heads} M{self.seq_q} N{self.seq_kv} "
                f"D{self.head_dim} {mask} {self.dtype}")


def build_grid(quick: bool = False, dtype: str = "bf16") -> list[Case]:
    """The measured shapes. Prefill: batch x seq = 16k tokens and heads x head_dim = 2048 (MHA),
    so every point launches >= 2048 CTAs of 128 rows; plus GQA (32/8 heads) and a 4k sliding
    window at head dim 128. Decode: one query token, 32 query / 8 KV heads, batch 8."""
    cases: list[Case] = []
    seqs = QUICK_PREFILL_SEQS if quick else PREFILL_SEQS
    for d in (64, 128):
        heads = HIDDEN // d
        for seq in seqs:
            b = max(1, TOKENS_PER_BATCH // seq)
            for causal in (False, True):
                cases.append(Case("prefill", b, heads, heads, seq, seq, d, causal, 0, dtype))
    for seq in seqs[1::2]:  # GQA
        cases.append(Case("prefill", max(1, TOKENS_PER_BATCH // seq), 32, 8, seq, seq, 128, True, 0, dtype))
    for seq in seqs:
        if seq > WINDOW:
            cases.append(Case("prefill", max(1, TOKENS_PER_BATCH // seq), HIDDEN // 128, HIDDEN // 128, seq, seq,
                              128, True, WINDOW, dtype))
    for d in (64, 128):
        for kv in (QUICK_DECODE_KV if quick else DECODE_KV):
            cases.append(Case("decode", DECODE_BATCH, DECODE_HEADS, DECODE_KV_HEADS, 1, kv, d, False, 0, dtype))
    return cases


def fa2_tile(head_dim: int) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_N, warps, stages) of the bundled FA2-default flash_fwd variant."""
    return {64: (128, 128, 4, 2), 128: (128, 64, 4, 2)}[head_dim]


def flash_variant(case: Case) -> str:
    bm, bn, w, s = fa2_tile(case.head_dim)
    mask = "window" if case.window else ("causal" if case.causal else "full")
    return f"flash_fwd_{case.dtype}_d{case.head_dim}_m{bm}_n{bn}_w{w}_s{s}_{mask}"


def decode_block_m(case: Case) -> int:
    return 16 if (case.heads // case.kv_heads) * case.seq_q <= 16 else 64


def decode_variant(case: Case) -> str:
    return f"flash_decode_{case.dtype}_d{case.head_dim}_m{decode_block_m(case)}_n128_w4_s2"


def naive_group(case: Case) -> str:
    return f"naive_{case.dtype}"


def naive_fits(case: Case, gpu_memory_bytes: int) -> bool:
    """S (input type) fits in NAIVE_MEMORY_FRACTION of the GPU (P is written over S in place)."""
    s_bytes = case.batch * case.heads * case.seq_q * case.seq_kv * 2
    return s_bytes <= NAIVE_MEMORY_FRACTION * gpu_memory_bytes


def kernels_for(case: Case, gpu_memory_bytes: int) -> list[tuple[str, str]]:
    """(algorithm, kernel) pairs measured for a case, in the trace's names."""
    if case.regime == "decode":
        return [("flash_decode", decode_variant(case)), ("sdpa_flash", "sdpa_flash")]
    out = [("flash2", flash_variant(case))]
    if naive_fits(case, gpu_memory_bytes):
        out.append(("unfused", naive_group(case)))
    if not case.window:
        out.append(("sdpa_flash", "sdpa_flash"))
    return out


def sample_rows(m: int, n: int = 64, seed: int = 0) -> np.ndarray:
    """Sorted query rows to check: the first and last, and n - 2 others drawn without replacement."""
    if m <= n:
        return np.arange(m)
    rng = np.random.default_rng(seed)
    mid = rng.choice(np.arange(1, m - 1), size=n - 2, replace=False)
    return np.unique(np.concatenate([[0, m - 1], mid]))


def sample_heads(batch: int, heads: int, n: int = 4) -> list[tuple[int, int]]:
    """Up to n (b, h) pairs spread over the batch and the heads, first and last included."""
    total = batch * heads
    idx = sorted(set(np.linspace(0, total - 1, num=min(n, total)).round().astype(int).tolist()))
    return [(i // heads, i % heads) for i in idx]


def decode_splits(case: Case, sm_count: int) -> int:
    """flash-attention's split heuristic on the bundled decode kernel's grid (what the model assumes)."""
    from attnsim.mapping.kernel import flash_splits_heuristic
    bm = decode_block_m(case)
    rows = (case.heads // case.kv_heads) * case.seq_q
    ctas = case.batch * case.kv_heads * math.ceil(rows / bm)
    return flash_splits_heuristic(ctas, sm_count, math.ceil(case.seq_kv / 128))


# ---------------------------------------------------------------------------- statistics and rows (pure)

def time_stats(times_s) -> dict[str, float]:
    t = np.asarray(list(times_s), dtype=np.float64)
    if t.size == 0 or not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise ValueError(f"expected positive finite times, got {t.tolist()}")
    return {"time_median_s": float(np.median(t)), "time_p10_s": float(np.percentile(t, 10)),
            "time_p90_s": float(np.percentile(t, 90)), "time_std_s": float(np.std(t)), "repeats": int(t.size)}


def trace_row(case: Case, arch: str, algorithm: str, kernel: str, times_s) -> dict:
    """One trace.csv row (TRACE_FIELDS order); times in seconds."""
    row = {"arch": arch, "algorithm": algorithm, "batch": case.batch, "heads": case.heads,
           "kv_heads": case.kv_heads, "seq_q": case.seq_q, "seq_kv": case.seq_kv, "head_dim": case.head_dim,
           "causal": "true" if case.causal else "false", "window": case.window, "dtype": case.dtype,
           "kernel": kernel}
    row.update(time_stats(times_s))
    return {k: row[k] for k in TRACE_FIELDS}


def format_cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.6e}"
    return str(v)


def write_trace_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(TRACE_FIELDS)
        for r in rows:
            w.writerow([format_cell(r[k]) for k in TRACE_FIELDS])


def tolerance(sdpa_err: float) -> float:
    return REL_FACTOR * float(sdpa_err) + ABS_SLACK


def within_tolerance(err: float, sdpa_err: float) -> bool:
    """A kernel's max abs error vs fp32 is acceptable when <= 2 x PyTorch bf16 SDPA's + 1e-3."""
    return bool(np.isfinite(err)) and float(err) <= tolerance(sdpa_err)


def arch_preset_for(gpu_name: str) -> str:
    """The attnsim preset of a GPU name ('NVIDIA H100 80GB HBM3' -> 'h100_sxm5_80gb'); otherwise
    the name lower-cased with non-alphanumerics as '_' (no preset: the trace still records it)."""
    up = gpu_name.upper()
    for key, preset in GPU_PRESETS:
        if key in up:
            if key == "H100" and ("PCIE" in up or "NVL" in up):
                break  # not the SXM5 part the preset describes
            return preset
    return "".join(c if c.isalnum() else "_" for c in gpu_name.lower()).strip("_") or "unknown_gpu"


def parse_nvidia_smi(text: str) -> dict:
    """First line of `nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem,
    driver_version --format=csv,noheader,nounits` -> dict (MHz as ints; missing/[N/A] -> None)."""
    keys = ("name", "sm_clock_mhz", "mem_clock_mhz", "max_sm_clock_mhz", "max_mem_clock_mhz", "driver")
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return {}
    cells = [c.strip() for c in lines[0].split(",")]
    out: dict = {}
    for k, c in zip(keys, cells):
        if k.endswith("_mhz"):
            try:
                out[k] = int(float(c))
            except ValueError:
                out[k] = None
        else:
            out[k] = c
    return out


def kernel_sources_sha256(kernel_dir: Path = KERNEL_DIR) -> dict[str, str]:
    files = sorted(p for p in Path(kernel_dir).iterdir() if p.suffix in (".cu", ".cuh"))
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def provenance_dict(device: dict, versions: dict, sources_sha256: dict, checks: list[dict],
                    skipped: list[dict], grid: dict, date: str | None = None) -> dict:
    """The trace's provenance sidecar. `device`: name, sm_clock_mhz, mem_clock_mhz (as measured
    at start), max clocks, driver, capability, sm_count, memory_bytes; `versions`: torch, cuda,
    nvcc, python."""
    return {
        "source": "attnsim.validate.run_gpu",
        "device": device.get("name", "unknown"),
        "gpu": dict(device),
        "sm_clock_mhz": device.get("sm_clock_mhz"),
        "mem_clock_mhz": device.get("mem_clock_mhz"),
        "driver": device.get("driver"),
        "cuda": versions.get("cuda"),
        "torch": versions.get("torch"),
        "nvcc": versions.get("nvcc"),
        "python": versions.get("python", platform.python_version()),
        "kernel_sources_sha256": dict(sources_sha256),
        "timing_method": TIMING_METHOD,
        "tolerance_rule": f"max abs error vs a float32 reference on sampled rows <= {REL_FACTOR:g} x PyTorch "
                          f"bf16 SDPA's max abs error on the same rows + {ABS_SLACK:g}",
        "grid": dict(grid),
        "checks": list(checks),
        "failed": [c for c in checks if not c.get("ok", False)],
        "skipped": list(skipped),
        "date": date or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


# ---------------------------------------------------------------------------- the library

def load_build_module():
    """validate/build.py as a module (it is a script, not part of the package)."""
    name = "attnsim_validate_build"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BUILD_SCRIPT)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"cannot load {BUILD_SCRIPT}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


class KernelLibrary:
    """The bundled kernels' launchers, through ctypes. Every launcher returns a cudaError_t."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.lib = ctypes.CDLL(str(self.path))
        self._fns: dict[str, object] = {}

    def _fn(self, name: str, argtypes):
        if name not in self._fns:
            try:
                f = getattr(self.lib, f"launch_{name}")
            except AttributeError:
                raise KeyError(f"{self.path.name} has no launcher launch_{name}") from None
            f.argtypes = argtypes
            f.restype = ctypes.c_int
            self._fns[name] = f
        return self._fns[name]

    @staticmethod
    def _check(name: str, err: int) -> None:
        if err != 0:
            raise RuntimeError(f"launch_{name} failed with cudaError_t {err}")

    def flash_fwd(self, name, q, k, v, o, scale, window=0, sink=0, causal=0, row_ptr=None, col_idx=None,
                  stream=None):
        i, f, p = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
        fn = self._fn(name, [p, p, p, p, i, i, i, i, i, f, i, i, i, p, p, p])
        B, H, M, _ = q.shape
        Hkv, N = k.shape[1], k.shape[2]
        self._check(name, fn(q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), B, H, Hkv, M, N, scale,
                             window, sink, causal, row_ptr.data_ptr() if row_ptr is not None else None,
                             col_idx.data_ptr() if col_idx is not None else None, _stream(stream)))

    def flash_decode(self, name, q, k, v, o, o_partial, lse_partial, scale, n_splits, causal=0, stream=None):
        i, f, p = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
        fn = self._fn(name, [p, p, p, p, p, p, i, i, i, i, i, f, i, i, p])
        B, H, M, _ = q.shape
        Hkv, N = k.shape[1], k.shape[2]
        self._check(name, fn(q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), o_partial.data_ptr(),
                             lse_partial.data_ptr(), B, H, Hkv, M, N, scale, causal, n_splits, _stream(stream)))

    def naive(self, group, q, k, v, o, s, p_buf, scale, mask=0, window=0, sink=0, stream=None):
        i, f, p = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
        fn = self._fn(group, [p, p, p, p, p, p, i, i, i, i, i, i, f, i, i, i, p])
        B, H, M, D = q.shape
        Hkv, N = k.shape[1], k.shape[2]
        self._check(group, fn(q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), s.data_ptr(),
                              p_buf.data_ptr(), B, H, Hkv, M, N, D, scale, mask, window, sink, _stream(stream)))

    def linear_attn(self, name, q, k, v, o, stream=None):
        i, p = ctypes.c_int, ctypes.c_void_p
        fn = self._fn(name, [p, p, p, p, i, i, i, i, p])
        B, H, N, _ = q.shape
        self._check(name, fn(q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), B, H, k.shape[1], N,
                             _stream(stream)))


def _stream(stream):
    import torch
    s = stream if stream is not None else torch.cuda.current_stream()
    return ctypes.c_void_p(s.cuda_stream)


MASK_CODES = {"full": 0, "causal": 1, "window": 2, "block_sparse": 3}


# ---------------------------------------------------------------------------- torch helpers (need a GPU)

def reference_rows(q, k, v, pairs, rows, causal: bool, window: int = 0, sink: int = 0, scale: float | None = None,
                   allowed=None):
    """float32 attention for the sampled (b, h) pairs and query rows: [len(pairs), len(rows), D].
    Bottom-right aligned masks; `allowed` (a bool [M, N] tensor) overrides causal/window."""
    import torch
    M, D = q.shape[2], q.shape[3]
    N = k.shape[2]
    G = q.shape[1] // k.shape[1]
    scale = scale if scale is not None else 1.0 / math.sqrt(D)
    r = torch.as_tensor(rows, device=q.device, dtype=torch.long)
    out = []
    for b, h in pairs:
        qs = q[b, h, r].float()  # [R, D]
        ks, vs = k[b, h // G].float(), v[b, h // G].float()  # [N, D]
        s = qs @ ks.T * scale  # [R, N]
        if allowed is not None:
            ok = allowed[r]
        else:
            pos = (r + (N - M))[:, None]
            n = torch.arange(N, device=q.device)[None, :]
            ok = torch.ones_like(s, dtype=torch.bool)
            if causal or window:
                ok = n <= pos
            if window:
                ok = ok & ((n > pos - window) | (n < sink))
        s = s.masked_fill(~ok, float("-inf"))
        p = torch.softmax(s, dim=-1).nan_to_num(0.0)  # rows that see no key -> 0
        out.append(p @ vs)
    return torch.stack(out)


def sampled(o, pairs, rows):
    import torch
    r = torch.as_tensor(rows, device=o.device, dtype=torch.long)
    return torch.stack([o[b, h, r].float() for b, h in pairs])


def max_abs_err(a, b) -> float:
    return float((a.float() - b.float()).abs().max().item())


def sdpa(q, k, v, causal: bool, flash: bool = True, attn_mask=None):
    """torch SDPA (flash backend when `flash`), GQA through enable_gqa."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    gqa = q.shape[1] != k.shape[1]
    backends = [SDPBackend.FLASH_ATTENTION] if flash else [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    with sdpa_kernel(backends):
        if attn_mask is not None:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, enable_gqa=gqa)
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)


def sdpa_output(q, k, v, causal: bool):
    """Flash SDPA's output (K/V expanded for GQA if the backend refuses enable_gqa)."""
    try:
        return sdpa(q, k, v, causal)
    except RuntimeError:
        if q.shape[1] == k.shape[1]:
            raise
        g = q.shape[1] // k.shape[1]
        return sdpa(q, k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1), causal)


def sdpa_runner(q, k, v, causal: bool):
    """A zero-argument callable running flash SDPA. GQA goes through enable_gqa; should this torch's
    flash backend refuse it, K and V are expanded to the query heads once, outside the timed call."""
    import torch
    try:
        sdpa(q, k, v, causal)
        kk, vv = k, v
    except RuntimeError:
        if q.shape[1] == k.shape[1]:
            raise
        g = q.shape[1] // k.shape[1]
        kk, vv = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
        sdpa(q, kk, vv, causal)
    torch.cuda.synchronize()

    def run():
        sdpa(q, kk, vv, causal)
    return run


def sdpa_rows_error(q, k, v, pairs, rows, ref, causal, window, sink=0) -> float:
    """PyTorch bf16 SDPA's error on the sampled rows, for masks the flash backend cannot take
    (an explicit boolean mask over the sampled rows; memory-efficient or math backend)."""
    import torch
    M, N = q.shape[2], k.shape[2]
    G = q.shape[1] // k.shape[1]
    r = torch.as_tensor(rows, device=q.device, dtype=torch.long)
    pos = (r + (N - M))[:, None]
    n = torch.arange(N, device=q.device)[None, :]
    ok = n <= pos if (causal or window) else torch.ones(len(rows), N, dtype=torch.bool, device=q.device)
    if window:
        ok = ok & ((n > pos - window) | (n < sink))
    outs = []
    for b, h in pairs:
        qs = q[b:b + 1, h:h + 1, r]
        ks, vs = k[b:b + 1, h // G:h // G + 1], v[b:b + 1, h // G:h // G + 1]
        outs.append(sdpa(qs, ks, vs, causal=False, flash=False, attn_mask=ok[None, None])[0, 0].float())
    return max_abs_err(torch.stack(outs), ref)


def cuda_times(fn, warmup: int = WARMUP, repeats: int = REPEATS) -> list[float]:
    """Per-call seconds from CUDA events (see TIMING_METHOD)."""
    import torch
    for _ in range(warmup):
        fn()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    for s, e in zip(starts, ends):
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    return [s.elapsed_time(e) / 1e3 for s, e in zip(starts, ends)]


def device_info() -> dict:
    import torch
    props = torch.cuda.get_device_properties(0)
    info = {"name": props.name, "capability": f"{props.major}.{props.minor}", "sm_count": props.multi_processor_count,
            "memory_bytes": int(props.total_memory)}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem,"
                              "driver_version", "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, timeout=30, check=False).stdout
        smi = parse_nvidia_smi(out)
        smi.pop("name", None)
        info.update(smi)
    except (OSError, subprocess.SubprocessError):
        pass
    if info.get("sm_clock_mhz") is None:
        info["sm_clock_mhz"] = getattr(props, "clock_rate", 0) // 1000 or None  # kHz (older torch only)
    if info.get("mem_clock_mhz") is None:
        info["mem_clock_mhz"] = getattr(props, "memory_clock_rate", 0) // 1000 or None
    return info


def make_inputs(case: Case, seed: int = 0):
    import torch
    dt = {"bf16": torch.bfloat16, "fp16": torch.float16}[case.dtype]
    g = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(case.batch, case.heads, case.seq_q, case.head_dim, device="cuda", dtype=dt, generator=g)
    k = torch.randn(case.batch, case.kv_heads, case.seq_kv, case.head_dim, device="cuda", dtype=dt, generator=g)
    v = torch.randn(case.batch, case.kv_heads, case.seq_kv, case.head_dim, device="cuda", dtype=dt, generator=g)
    return q, k, v


def runner_for(lib: KernelLibrary, algorithm: str, kernel: str, case: Case, q, k, v, sm_count: int):
    """A zero-argument callable that runs one kernel (allocating its buffers once) and its output."""
    import torch
    scale = 1.0 / math.sqrt(case.head_dim)
    o = torch.empty_like(q)
    if algorithm == "flash2":
        def run():
            lib.flash_fwd(kernel, q, k, v, o, scale, window=case.window, causal=int(case.causal))
        return run, o
    if algorithm == "flash_decode":
        splits = decode_splits(case, sm_count)
        rows = case.batch * case.heads * case.seq_q
        o_part = torch.empty(splits, rows, case.head_dim, device="cuda", dtype=torch.float32)
        lse = torch.empty(splits, rows, device="cuda", dtype=torch.float32)

        def run():
            lib.flash_decode(kernel, q, k, v, o, o_part, lse, scale, splits, causal=int(case.causal))
        return run, o
    if algorithm == "unfused":
        s = torch.empty(case.batch, case.heads, case.seq_q, case.seq_kv, device="cuda", dtype=q.dtype)
        mask = MASK_CODES["window" if case.window else ("causal" if case.causal else "full")]

        def run():
            lib.naive(kernel, q, k, v, o, s, s, scale, mask=mask, window=case.window)  # P over S, in place
        return run, o
    if algorithm == "sdpa_flash":
        return sdpa_runner(q, k, v, causal=case.causal and case.seq_q > 1), None
    raise ValueError(f"unknown algorithm {algorithm!r}")


def measure_case(lib: KernelLibrary, case: Case, arch: str, dev: dict, warmup: int, repeats: int):
    """(trace rows, check records) for one case."""
    import torch
    q, k, v = make_inputs(case)
    pairs = sample_heads(case.batch, case.heads)
    rows_idx = sample_rows(case.seq_q)
    ref = reference_rows(q, k, v, pairs, rows_idx, case.causal, case.window)
    flash_sdpa_ok = not case.window
    if flash_sdpa_ok:
        o_sdpa = sdpa_output(q, k, v, causal=case.causal and case.seq_q > 1)
        sdpa_err = max_abs_err(sampled(o_sdpa, pairs, rows_idx), ref)
        del o_sdpa
        baseline = "sdpa flash backend"
    else:
        sdpa_err = sdpa_rows_error(q, k, v, pairs, rows_idx, ref, case.causal, case.window)
        baseline = "sdpa with a boolean mask (efficient/math backend) on the sampled rows"
    rows, checks = [], []
    for algorithm, kernel in kernels_for(case, dev.get("memory_bytes", 0)):
        run, o = runner_for(lib, algorithm, kernel, case, q, k, v, dev.get("sm_count", 1))
        run()
        torch.cuda.synchronize()
        if o is not None:
            err = max_abs_err(sampled(o, pairs, rows_idx), ref)
            ok = within_tolerance(err, sdpa_err)
            checks.append({"case": case.label(), "kernel": kernel, "max_abs_err": err, "sdpa_max_abs_err": sdpa_err,
                           "tolerance": tolerance(sdpa_err), "baseline": baseline, "ok": ok})
            if not ok:
                continue
        times = cuda_times(run, warmup, repeats)
        rows.append(trace_row(case, arch, algorithm, kernel, times))
        del run, o
    del q, k, v
    torch.cuda.empty_cache()
    return rows, checks


def build_library(out_dir: Path, sm: str) -> Path:
    b = load_build_module()
    return b.build_shared_library(out_dir / "build", [sm])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m attnsim.validate.run_gpu", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for trace.csv and trace.provenance.json")
    ap.add_argument("--quick", action="store_true", help="a smaller grid (3 sequence lengths, 3 KV lengths)")
    ap.add_argument("--lib", type=Path, default=None,
                    help="a prebuilt library (python validate/build.py --shared --arch sm_XX --out DIR) instead "
                         "of compiling here")
    ap.add_argument("--dtype", choices=("bf16", "fp16"), default="bf16")
    ap.add_argument("--warmup", type=int, default=WARMUP)
    ap.add_argument("--repeats", type=int, default=REPEATS)
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print(NEEDS_MSG)
        return 3
    if not torch.cuda.is_available():
        print(NEEDS_MSG)
        return 3
    dev = device_info()
    major, minor = torch.cuda.get_device_capability(0)
    if major < 8:
        print(f"the bundled kernels need sm_80 or newer; {dev['name']} is sm_{major}{minor}")
        return 3
    sm = f"sm_{major}{minor}"
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    nvcc_ver = None
    if args.lib is not None:
        lib_path = args.lib
    else:
        b = load_build_module()
        try:
            nvcc_ver = b.nvcc_version(b.find_nvcc())
            t0 = time.perf_counter()
            lib_path = build_library(out, sm)
            print(f"built {lib_path} for {sm} in {time.perf_counter() - t0:.0f} s")
        except b.NvccMissing as e:
            print(f"{e}; or pass --lib with a library built elsewhere")
            return 3
        except b.BuildError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    lib = KernelLibrary(lib_path)
    arch = arch_preset_for(dev["name"])
    grid = build_grid(args.quick, args.dtype)
    all_rows, checks, skipped = [], [], []
    for i, case in enumerate(grid):
        t0 = time.perf_counter()
        try:
            rows, chk = measure_case(lib, case, arch, dev, args.warmup, args.repeats)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as e:  # a launch error or no memory: go on
            skipped.append({"case": case.label(), "reason": str(e).splitlines()[0][:300]})
            torch.cuda.empty_cache()
            print(f"[{i + 1}/{len(grid)}] {case.label()}: skipped ({skipped[-1]['reason']})")
            continue
        all_rows += rows
        checks += chk
        bad = [c["kernel"] for c in chk if not c["ok"]]
        print(f"[{i + 1}/{len(grid)}] {case.label()}: {len(rows)} timed"
              + (f", FAILED check: {', '.join(bad)}" if bad else "") + f" ({time.perf_counter() - t0:.1f} s)")
    write_trace_csv(all_rows, out / "trace.csv")
    versions = {"torch": torch.__version__, "cuda": torch.version.cuda, "nvcc": nvcc_ver,
                "python": platform.python_version()}
    grid_info = {"quick": args.quick, "dtype": args.dtype, "cases": [asdict(c) for c in grid],
                 "warmup": args.warmup, "repeats": args.repeats, "library": str(lib_path), "sm": sm}
    prov = provenance_dict(dev, versions, kernel_sources_sha256(), checks, skipped, grid_info)
    (out / "trace.provenance.json").write_text(json.dumps(prov, indent=1) + "\n")
    n_bad = len(prov["failed"])
    print(f"{len(all_rows)} rows -> {out / 'trace.csv'}; {len(checks) - n_bad}/{len(checks)} checks passed"
          + (f", {len(skipped)} cases skipped" if skipped else ""))
    return 1 if n_bad else 0


if __name__ == "__main__":
    sys.exit(main())
