"""The stand-alone GEMM kernel model (projections, MLPs, pre-passes) and its check against
Vidur's measured projection GEMMs (../shared/data/measured/vidur/attn_proj)."""
from pathlib import Path

import pytest

import attnsim
from attnsim.model.families.common import GEMM_TILES, gemm_op
from attnsim.model.plan import kernel_cost

ATTN_PROJ = Path(__file__).resolve().parents[2].parent / "shared/data/measured/vidur/attn_proj"


@pytest.mark.parametrize("arch", ["h100_sxm5_80gb", "a100_sxm4_80gb"])
@pytest.mark.parametrize("m,n,k", [(4096, 10240, 8192), (17, 4096, 4096), (1000, 333, 2048)],
                         ids=["M4096-N10240-K8192", "M17-N4096-K4096", "M1000-N333-K2048"])
def test_gemm_takes_the_fastest_tile_of_the_library(arch, m, n, k):
    a = attnsim.load_arch(arch)
    chosen = kernel_cost(a, gemm_op("g", 1, m, n, k, "bf16", 2, arch=a))
    each = [kernel_cost(a, gemm_op("g", 1, m, n, k, "bf16", 2, tile=t)).latency_s
            for t in GEMM_TILES[a.default_instr]]
    assert chosen.latency_s == min(each)


def test_gemm_counts(h100):
    # 3 x (100 x 64) @ (64 x 200) on 128x128 tiles: 3 x 1 x 2 CTAs; HBM = A + B + C once, 2 B each
    op = gemm_op("g", 3, 100, 200, 64, "bf16", 2, tile=(128, 128))
    assert op.ctas == 6
    assert op.hbm_bytes == 3 * (100 * 64 + 64 * 200 + 100 * 200) * 2
    # L2 -> SM: A once per column of tiles (2), B once per row of tiles (1), C once
    assert op.l2_bytes == 3 * (100 * 64 * 2 + 64 * 200 * 1 + 100 * 200) * 2
    assert op.useful_flops == 2 * 3 * 100 * 200 * 64
    # wgmma computes m in steps of 64: the 100 rows are padded to 128
    assert kernel_cost(h100, op).mma_flops == 2 * 3 * 128 * 200 * 64


def test_a_large_gemm_runs_at_the_arch_efficiency(h100):
    # the efficiency.mma source row (Vidur, H100, Llama-2-70B TP1 QKV at 4096 tokens: 699 TFLOP/s)
    c = kernel_cost(h100, gemm_op("qkv", 1, 4096, 10240, 8192, "fp16", 2, arch=h100))
    tflops = 2 * 4096 * 10240 * 8192 / c.latency_s / 1e12
    assert c.bound == "mma"
    # 0.71 x 989 TFLOP/s less the launch overhead and the last partial wave
    assert 600 < tflops < 0.71 * 989.4


def test_gemm_on_a_spatial_array_runs_on_the_systolic_array():
    a = attnsim.load_arch("tpu_like_128x128")
    c = kernel_cost(a, gemm_op("g", 1, 4096, 4096, 4096, "bf16", 2, arch=a))
    assert c.bound == "2D array"


@pytest.fixture
def proj_files():
    files = sorted(ATTN_PROJ.glob("*_attn_proj_rope.csv"))
    if not files:
        pytest.skip("../shared/data/measured/vidur/attn_proj is not present (it sits beside this repository "
                    "only in its CI)")
    return files


def test_attn_proj_shapes(proj_files):
    from attnsim.validate.gemm import read_attn_proj
    df = read_attn_proj(ATTN_PROJ / "h100_meta-llama_Llama-2-70b-hf_attn_proj_rope.csv")
    row = df[(df.op == "qkv") & (df.tokens == 4096) & (df.tp == 1)].iloc[0]
    # fused QKV of Llama-2-70B: (64 + 2 x 8) heads x 128 = 10240 outputs over n_embd 8192
    assert (row.m, row.n, row.k) == (4096, 10240, 8192) and row.fit
    out = df[(df.op == "out") & (df.tokens == 4096) & (df.tp == 2)].iloc[0]
    assert (out.n, out.k) == (8192, 32 * 128) and not out.fit


def test_gemm_model_on_held_out_vidur_gemms(proj_files):
    """Regression guard of docs/validation.md's GEMM table (held-out rows only)."""
    from attnsim.validate.gemm import validate_gemms
    res = validate_gemms(proj_files)
    assert res["n_fit_rows"] == 2
    for gpu in ("a100", "h100"):
        big = res[f"{gpu} >= 512 tokens"]
        assert big["n"] > 5000
        assert big["median_ape"] <= 0.10 and big["p90_ape"] <= 0.25
        assert big["spearman"] >= 0.98
