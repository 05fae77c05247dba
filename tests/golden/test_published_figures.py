"""What the model predicts for figures the papers publish. The efficiency factors come from
measured GEMMs (arch YAMLs), not from these papers, so these are checks, not fits.
docs/model.md section 5 explains each."""
import pytest

import attnsim


def utilization(arch_name, alg, seq, causal=False, head_dim=128):
    arch = attnsim.load_arch(arch_name)
    w = attnsim.attention("softmax", batch=max(1, 16384 // seq), heads=16, seq=seq, head_dim=head_dim,
                          causal=causal)
    r = attnsim.predict(arch, w, alg)
    return r.tflops_per_s * 1e12 / arch.peak_matrix_flops_per_s(arch.default_instr, "bf16"), r


@pytest.mark.parametrize("seq", [1024, 4096, 16384])
def test_flash2_forward_on_a100_is_within_the_papers_50_to_73_percent(seq):
    u, r = utilization("a100_sxm4_80gb", "flash2", seq)
    assert 0.50 <= u <= 0.73
    assert r.bound == "mma"


@pytest.mark.parametrize("seq", [8192, 16384])
def test_flash3_on_h100_head_dim_128_long_sequence_is_near_the_papers_75_percent(seq):
    u, _ = utilization("h100_sxm5_80gb", "flash3", seq)
    assert 0.65 <= u <= 0.80


def test_flash2_on_h100_is_near_the_flash3_papers_35_percent():
    u, _ = utilization("h100_sxm5_80gb", "flash2", 8192)
    assert 0.30 <= u <= 0.45


@pytest.mark.parametrize("batch,kv", [(16, 8192), (64, 32768)])
def test_decode_is_bound_by_hbm_bandwidth(batch, kv):
    w = attnsim.attention("softmax", batch=batch, heads=32, kv_heads=8, seq_q=1, seq_kv=kv, head_dim=128)
    r = attnsim.predict("h100_sxm5_80gb", w)
    assert r.bound == "hbm bandwidth"
