"""Held-out accuracy on the measured Vidur A100 attention data (../shared/data/measured/vidur).

Calibration fits named kernel factors on the training split (config hash mod 5 != 0) only;
every figure asserted here is on the held-out rows. Targets from issue 3; docs/validation.md
explains the one that is missed.
"""
from pathlib import Path

import pytest

from attnsim.validate.report import calibrate

VIDUR = (Path(__file__).resolve().parents[2].parent / "shared/data/measured/vidur"
         / "a100_llama2-70b_tp2_attention_flashattn_vllm_2024-05.csv")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    if not VIDUR.exists():
        pytest.skip("../shared/data/measured/vidur is not present (it sits beside this repository only in its CI)")
    return calibrate(VIDUR, "a100_sxm4_80gb", split="hash:5", out=tmp_path_factory.mktemp("cal"))


def test_split_is_disjoint_and_sized(result):
    assert result["n_train"] + result["n_test"] == 14_658
    assert 0.15 < result["n_test"] / 14_658 < 0.25


def test_prefill_held_out_meets_targets(result):
    p = result["held_out_after"]["prefill"]
    assert p["median_ape"] <= 0.10 and p["p90_ape"] <= 0.25 and p["spearman"] >= 0.95


def test_decode_held_out_rank(result):
    assert result["held_out_after"]["decode"]["spearman"] >= 0.95


@pytest.mark.xfail(strict=True, reason="decode held-out median APE is 8.6% (target 8%) and P90 21.8% (target 20%): "
                                       "the model charges the "
                                       "split-KV and combine kernels one fixed cost each and has no DRAM-latency "
                                       "term for CTAs with few key tiles (docs/validation.md)")
def test_decode_held_out_error_targets(result):
    d = result["held_out_after"]["decode"]
    assert d["median_ape"] <= 0.08 and d["p90_ape"] <= 0.20


def test_calibration_improves_every_regime(result):
    for regime in ("prefill", "decode"):
        assert result["held_out_after"][regime]["median_ape"] < result["held_out_before"][regime]["median_ape"]
