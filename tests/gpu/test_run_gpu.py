"""attnsim.validate.run_gpu: the pure parts (grid, trace rows, tolerance, provenance) without a
GPU, and the kernels' numerics against PyTorch where a CUDA GPU and nvcc are present."""
from __future__ import annotations

import csv
import json
import math
import shutil

import numpy as np
import pytest

from attnsim.validate import run_gpu as rg

build = rg.load_build_module()
KERNEL_NAMES = {k.name for k in build.all_kernels()} | {k.variant for k in build.all_kernels()}


def test_grid_spans_the_brief():
    full, quick = rg.build_grid(), rg.build_grid(quick=True)
    assert len(quick) < len(full)
    pre = [c for c in full if c.regime == "prefill"]
    dec = [c for c in full if c.regime == "decode"]
    assert {c.seq_q for c in pre} == {512, 1024, 2048, 4096, 8192, 16384, 32768}
    assert {c.head_dim for c in pre} == {64, 128} and {c.causal for c in pre} == {False, True}
    assert {c.seq_kv for c in dec} == {1024, 4096, 16384, 65536, 131072} and {c.seq_q for c in dec} == {1}
    assert any(c.window for c in pre) and any(c.kv_heads < c.heads for c in pre)
    for c in full:
        assert c.heads % c.kv_heads == 0 and c.seq_q <= c.seq_kv
        if c.regime == "prefill":  # batch x heads fill the GPU: >= 2048 CTAs of 128 query rows
            assert c.batch * c.heads * math.ceil(c.seq_q / 128) >= 2048
    assert len({c for c in full}) == len(full)


def test_every_kernel_the_grid_names_is_built():
    for c in rg.build_grid():
        for algorithm, kernel in rg.kernels_for(c, 80 * 2**30):
            assert algorithm in ("flash2", "unfused", "flash_decode", "sdpa_flash")
            if algorithm != "sdpa_flash":
                assert kernel in KERNEL_NAMES, kernel


def test_kernels_for_masks_and_memory():
    causal = rg.Case("prefill", 1, 16, 16, 32768, 32768, 128, True)
    window = rg.Case("prefill", 1, 16, 16, 32768, 32768, 128, True, 4096)
    decode = rg.Case("decode", 8, 32, 8, 1, 131072, 128, False)
    algs = lambda c, mem: [a for a, _ in rg.kernels_for(c, mem)]  # noqa: E731
    assert algs(causal, 80e9) == ["flash2", "sdpa_flash"]  # S would be 34 GB
    assert algs(rg.Case("prefill", 1, 16, 16, 8192, 8192, 128, True), 80e9) == ["flash2", "unfused", "sdpa_flash"]
    assert "sdpa_flash" not in algs(window, 80e9)
    assert algs(decode, 80e9) == ["flash_decode", "sdpa_flash"]
    assert rg.flash_variant(window) == "flash_fwd_bf16_d128_m128_n64_w4_s2_window"
    assert rg.decode_variant(decode) == "flash_decode_bf16_d128_m16_n128_w4_s2"


def test_decode_splits_follow_the_models_heuristic():
    c = rg.Case("decode", 1, 32, 8, 1, 131072, 128, False)
    assert rg.decode_splits(c, 132) > 1  # 8 CTAs would leave most of 132 SMs idle
    big = rg.Case("decode", 64, 32, 8, 1, 1024, 128, False)
    assert rg.decode_splits(big, 132) == 1


def test_time_stats_and_trace_row():
    times = [i * 1e-4 for i in range(1, 21)]
    row = rg.trace_row(rg.Case("prefill", 2, 16, 16, 8192, 8192, 128, True), "h100_sxm5_80gb", "flash2",
                       "flash_fwd_bf16_d128_m128_n64_w4_s2_causal", times)
    assert tuple(row) == rg.TRACE_FIELDS
    assert row["causal"] == "true" and row["window"] == 0 and row["repeats"] == 20
    assert row["time_median_s"] == pytest.approx(10.5e-4)
    assert row["time_p10_s"] == pytest.approx(np.percentile(times, 10))
    assert row["time_p90_s"] == pytest.approx(np.percentile(times, 90))
    assert row["time_std_s"] == pytest.approx(np.std(times))
    with pytest.raises(ValueError):
        rg.time_stats([])
    with pytest.raises(ValueError):
        rg.time_stats([1e-3, float("nan")])


def test_trace_csv_matches_the_schema(tmp_path):
    rows = [rg.trace_row(rg.Case("decode", 8, 32, 8, 1, 4096, 128, False), "a100_sxm4_80gb", "flash_decode",
                         "flash_decode_bf16_d128_m16_n128_w4_s2", [2e-5, 3e-5, 2.5e-5])]
    path = tmp_path / "trace.csv"
    rg.write_trace_csv(rows, path)
    with open(path) as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == list(rg.TRACE_FIELDS)
    assert float(got[0]["time_median_s"]) == pytest.approx(2.5e-5)
    traces = pytest.importorskip("attnsim.validate.traces")
    pd = pytest.importorskip("pandas")
    df = traces.validate_trace(pd.read_csv(path), str(path))
    assert len(df) == 1


def test_tolerance_rule():
    assert rg.tolerance(0.001) == pytest.approx(0.003)
    assert rg.within_tolerance(0.003, 0.001)
    assert not rg.within_tolerance(0.0031, 0.001)
    assert rg.within_tolerance(0.0009, 0.0)  # the absolute slack
    assert not rg.within_tolerance(float("nan"), 0.01)
    assert not rg.within_tolerance(float("inf"), 0.01)


def test_samples():
    r = rg.sample_rows(32768, 64)
    assert len(r) == 64 and r[0] == 0 and r[-1] == 32767 and np.all(np.diff(r) > 0)
    assert rg.sample_rows(1).tolist() == [0]
    assert rg.sample_rows(10, 64).tolist() == list(range(10))
    pairs = rg.sample_heads(2, 16, 4)
    assert pairs[0] == (0, 0) and pairs[-1] == (1, 15) and len(pairs) == 4
    assert rg.sample_heads(1, 1) == [(0, 0)]


def test_device_names_and_nvidia_smi():
    assert rg.arch_preset_for("NVIDIA H100 80GB HBM3") == "h100_sxm5_80gb"
    assert rg.arch_preset_for("NVIDIA A100-SXM4-80GB") == "a100_sxm4_80gb"
    assert rg.arch_preset_for("NVIDIA H200") == "h200_sxm"
    assert rg.arch_preset_for("NVIDIA H100 PCIe") == "nvidia_h100_pcie"
    assert rg.arch_preset_for("NVIDIA GeForce RTX 4090") == "nvidia_geforce_rtx_4090"
    smi = rg.parse_nvidia_smi("NVIDIA H100 80GB HBM3, 1980, 2619, 1980, 2619, 550.54.15\n")
    assert smi == {"name": "NVIDIA H100 80GB HBM3", "sm_clock_mhz": 1980, "mem_clock_mhz": 2619,
                   "max_sm_clock_mhz": 1980, "max_mem_clock_mhz": 2619, "driver": "550.54.15"}
    assert rg.parse_nvidia_smi("X, [N/A], 1593, [N/A], 1593, 535.1")["sm_clock_mhz"] is None
    assert rg.parse_nvidia_smi("") == {}


def test_provenance_with_a_fake_device():
    dev = {"name": "NVIDIA H100 80GB HBM3", "sm_clock_mhz": 1980, "mem_clock_mhz": 2619, "driver": "550.54.15",
           "capability": "9.0", "sm_count": 132, "memory_bytes": 85 * 10**9}
    checks = [{"case": "a", "kernel": "k1", "ok": True}, {"case": "b", "kernel": "k2", "ok": False}]
    prov = rg.provenance_dict(dev, {"torch": "2.13.0", "cuda": "13.0", "nvcc": "13.0.88"},
                              rg.kernel_sources_sha256(), checks, [{"case": "c", "reason": "oom"}],
                              {"quick": True}, date="2025-01-01T00:00:00Z")
    assert prov["device"] == dev["name"] and prov["sm_clock_mhz"] == 1980 and prov["mem_clock_mhz"] == 2619
    assert prov["driver"] == "550.54.15" and prov["torch"] == "2.13.0" and prov["cuda"] == "13.0"
    assert prov["failed"] == [checks[1]] and prov["skipped"][0]["reason"] == "oom"
    assert "flash_fwd.cu" in prov["kernel_sources_sha256"]
    assert all(len(h) == 64 for h in prov["kernel_sources_sha256"].values())
    assert "CUDA events" in prov["timing_method"] and prov["date"] == "2025-01-01T00:00:00Z"
    json.dumps(prov)


def test_without_cuda_one_line_and_exit_3(tmp_path, capsys):
    try:
        import torch
        if torch.cuda.is_available():
            pytest.skip("a CUDA GPU is present")
    except ImportError:
        pass
    assert rg.main(["--out", str(tmp_path / "t")]) == 3
    out = capsys.readouterr().out
    assert out.strip() == rg.NEEDS_MSG


# ---------------------------------------------------------------------------- on a GPU

@pytest.fixture(scope="module")
def gpu_lib(tmp_path_factory):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not found: the kernels are compiled where the CUDA toolkit is installed")
    major, minor = torch.cuda.get_device_capability(0)
    if major < 8:
        pytest.skip("the kernels need sm_80 or newer")
    return rg.KernelLibrary(rg.build_library(tmp_path_factory.mktemp("lib"), f"sm_{major}{minor}"))


def _inputs(torch, B, H, Hkv, M, N, D, dtype, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    mk = lambda *s: torch.randn(*s, device="cuda", dtype=dtype, generator=g)  # noqa: E731
    return mk(B, H, M, D), mk(B, Hkv, N, D), mk(B, Hkv, N, D)


@pytest.mark.gpu
@pytest.mark.parametrize("dt", ["bf16", "fp16"])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("mask", ["full", "causal", "window", "block_sparse"])
@pytest.mark.parametrize("shape", [(2, 8, 2, 1000, 1000), (1, 4, 4, 300, 777), (1, 4, 1, 777, 300)])
def test_flash_fwd_matches_torch(gpu_lib, dt, d, mask, shape):
    torch = pytest.importorskip("torch")
    from attnsim.workload.masks import block_sparse_from_density, expand_block_grid, window_mask
    B, H, Hkv, M, N = shape
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dt]
    q, k, v = _inputs(torch, B, H, Hkv, M, N, d, dtype)
    bm, bn, w, s = rg.fa2_tile(d)
    name = f"flash_fwd_{dt}_d{d}_m{bm}_n{bn}_w{w}_s{s}_{mask}"
    o = torch.empty_like(q)
    scale = 1 / math.sqrt(d)
    allowed, kw = None, {}
    if mask == "window":
        kw = {"window": 200, "sink": 4}
        allowed = torch.as_tensor(window_mask(M, N, 200, 4), device="cuda")
    if mask == "block_sparse":
        grid = block_sparse_from_density(M, N, bm, bn, 0.5, causal=True)
        allowed = torch.as_tensor(expand_block_grid(grid, M, N, bm, bn, causal=True), device="cuda")
        counts = grid.sum(1)
        row_ptr = torch.as_tensor(np.concatenate([[0], np.cumsum(counts)]), dtype=torch.int32, device="cuda")
        col_idx = torch.as_tensor(np.nonzero(grid)[1], dtype=torch.int32, device="cuda")
        kw = {"causal": 1, "row_ptr": row_ptr, "col_idx": col_idx}
    gpu_lib.flash_fwd(name, q, k, v, o, scale, **kw)
    torch.cuda.synchronize()
    pairs, rows = rg.sample_heads(B, H, 8), rg.sample_rows(M, 128)
    causal = mask == "causal"
    ref = rg.reference_rows(q, k, v, pairs, rows, causal, allowed=allowed)
    err = rg.max_abs_err(rg.sampled(o, pairs, rows), ref)
    base = rg.sdpa_rows_error(q, k, v, pairs, rows, ref, causal, 0) if allowed is None else 0.0
    assert err <= max(rg.tolerance(base), 1e-2), (name, err, base)


@pytest.mark.gpu
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("bm", [16, 64])
@pytest.mark.parametrize("m,n,splits,causal", [(1, 5000, 7, 0), (1, 100, 1, 0), (3, 4096, 4, 1)])
def test_flash_decode_matches_torch(gpu_lib, d, bm, m, n, splits, causal):
    torch = pytest.importorskip("torch")
    B, H, Hkv = 3, 32, 8
    q, k, v = _inputs(torch, B, H, Hkv, m, n, d, torch.bfloat16)
    o = torch.empty_like(q)
    o_part = torch.empty(splits, B * H * m, d, device="cuda")
    lse = torch.empty(splits, B * H * m, device="cuda")
    gpu_lib.flash_decode(f"flash_decode_bf16_d{d}_m{bm}_n128_w4_s2", q, k, v, o, o_part, lse, 1 / math.sqrt(d),
                         splits, causal=causal)
    torch.cuda.synchronize()
    pairs, rows = rg.sample_heads(B, H, 16), rg.sample_rows(m)
    ref = rg.reference_rows(q, k, v, pairs, rows, bool(causal))
    err = rg.max_abs_err(rg.sampled(o, pairs, rows), ref)
    base = rg.sdpa_rows_error(q, k, v, pairs, rows, ref, bool(causal), 0)
    assert err <= rg.tolerance(base), (err, base)


@pytest.mark.gpu
@pytest.mark.parametrize("group", ["naive_bf16", "naive_bf16_s32"])
@pytest.mark.parametrize("mask", ["full", "causal", "window"])
def test_naive_matches_torch(gpu_lib, group, mask):
    torch = pytest.importorskip("torch")
    B, H, Hkv, M, N, D = 2, 8, 4, 520, 1024, 128
    q, k, v = _inputs(torch, B, H, Hkv, M, N, D, torch.bfloat16)
    o = torch.empty_like(q)
    s_dtype = torch.float32 if group.endswith("s32") else torch.bfloat16
    s = torch.empty(B, H, M, N, device="cuda", dtype=s_dtype)
    p = torch.empty(B, H, M, N, device="cuda", dtype=torch.bfloat16)
    window = 300 if mask == "window" else 0
    gpu_lib.naive(group, q, k, v, o, s, p, 1 / math.sqrt(D), mask=rg.MASK_CODES[mask], window=window)
    torch.cuda.synchronize()
    pairs, rows = rg.sample_heads(B, H, 8), rg.sample_rows(M, 128)
    ref = rg.reference_rows(q, k, v, pairs, rows, mask != "full", window)
    err = rg.max_abs_err(rg.sampled(o, pairs, rows), ref)
    base = rg.sdpa_rows_error(q, k, v, pairs, rows, ref, mask != "full", window)
    assert err <= max(rg.tolerance(base), 2e-2), (err, base)  # S rounded to bf16 before the softmax


@pytest.mark.gpu
@pytest.mark.parametrize("d", [64, 128])
def test_linear_attention_matches_torch(gpu_lib, d):
    torch = pytest.importorskip("torch")
    B, H, N = 2, 4, 300
    q, k, v = _inputs(torch, B, H, H, N, N, d, torch.bfloat16)
    q, k = q * 0.1, k * 0.1
    o = torch.empty_like(q)
    gpu_lib.linear_attn(f"linear_attn_bf16_d{d}_c64", q, k, v, o)
    torch.cuda.synchronize()
    a = (q.float() @ k.float().transpose(-1, -2)).tril()
    ref = a @ v.float()
    rel = (o.float() - ref).abs().max() / ref.abs().max()
    assert rel < 2e-2, float(rel)
