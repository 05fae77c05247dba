"""Metrics, split rules and calibration. The key property: held-out rows never influence a fit."""
import json

import numpy as np
import pandas as pd
import pytest

import attnsim
from attnsim.errors import SpecError
from attnsim.validate.calibrate import FIELDS, apply_values, calibrated_spec, fit, split_mask
from attnsim.validate.metrics import sign_accuracy, spearman, summarize
from attnsim.validate.predict_trace import latencies, lower_trace
from attnsim.validate.report import calibrate, validate
from attnsim.validate.traces import write_trace


def test_metrics_on_hand_computed_values():
    pred = np.array([1.0, 2.0, 3.0, 8.0])
    meas = np.array([1.0, 2.5, 3.0, 4.0])
    s = summarize(pred, meas)
    # APE: 0, 0.2, 0, 1.0 -> median 0.1, max 1.0
    assert s["median_ape"] == pytest.approx(0.1)
    assert s["max_ape"] == pytest.approx(1.0)
    assert spearman(pred, meas) == pytest.approx(1.0)
    assert sign_accuracy(pred, meas) == 1.0
    # reversing the prediction order gets every pair wrong
    assert sign_accuracy(pred[::-1].copy(), meas) == 0.0
    assert spearman(-pred, meas) == pytest.approx(-1.0)


def synthetic_trace(arch, true_hbm=0.6, true_launch=9e-6, n=160, seed=0):
    """Decode configurations 'measured' by the model itself with known kernel factors."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        rows.append(dict(arch=arch.name, algorithm="flash_decode", batch=int(rng.integers(1, 129)), heads=32,
                         kv_heads=8, seq_q=1, seq_kv=int(rng.integers(64, 32768)), head_dim=128, causal=False,
                         window=0, dtype="bf16", regime="decode"))
    df = pd.DataFrame(rows)
    low = lower_trace(df, arch)
    truth = {"efficiency.kernels.flash_decode.hbm": true_hbm,
             "efficiency.kernels.flash_decode.launch_overhead": true_launch}
    df["time_median_s"] = latencies(apply_values(low, truth))
    return df, low, truth


def test_fit_recovers_known_factors(h100):
    df, low, truth = synthetic_trace(h100)
    train = ~split_mask(df, "hash:4")
    fields = [FIELDS[k] for k in truth]
    values = fit(low, df["time_median_s"].to_numpy(), train, fields)
    for k, v in truth.items():
        assert values[k] == pytest.approx(v, rel=0.02, abs=2e-7)


def test_held_out_rows_never_influence_the_fit(h100):
    df, low, truth = synthetic_trace(h100)
    test = split_mask(df, "hash:4")
    assert 0 < test.sum() < len(df)
    fields = [FIELDS[k] for k in truth]
    meas = df["time_median_s"].to_numpy()
    a = fit(low, meas, ~test, fields)
    corrupted = meas.copy()
    corrupted[test] *= 7.0  # wildly wrong held-out measurements
    b = fit(low, corrupted, ~test, fields)
    assert a == b


def test_split_rules():
    df = pd.DataFrame({"arch": ["x"] * 6, "algorithm": ["flash2"] * 6, "seq_kv": [1, 2, 3, 4, 5, 6],
                       "batch": [1] * 6})
    assert split_mask(df, "range:seq_kv>4").tolist() == [False] * 4 + [True] * 2
    assert split_mask(df, "range:seq_kv<=2").tolist() == [True] * 2 + [False] * 4
    h = split_mask(df, "hash:2")
    assert (h == split_mask(df, "hash:2")).all()  # deterministic
    with pytest.raises(SpecError, match="did you mean 'seq_kv'"):
        split_mask(df, "range:seq_k>4")
    with pytest.raises(SpecError, match="unknown split rule"):
        split_mask(df, "random")


def test_unknown_fit_field_suggests():
    from attnsim.validate.calibrate import field_by_name
    with pytest.raises(SpecError, match="did you mean"):
        field_by_name("efficiency.kernels.flash_decode.hmb")


def test_calibrated_spec_loads_and_carries_sources(h100):
    arch, text = calibrated_spec(h100, {"efficiency.kernels.flash_decode.hbm": 0.7,
                                        "efficiency.kernels.flash_decode.launch_overhead": 1.2e-5}, "unit test")
    assert arch.efficiency.for_kernel("flash_decode", "hbm", 0) == 0.7
    assert arch.efficiency.for_kernel("flash_decode", "launch_overhead", 0) == pytest.approx(1.2e-5)
    assert "attnsim calibrate: unit test" in text
    w = attnsim.attention("softmax", batch=8, heads=32, kv_heads=8, seq_q=1, seq_kv=8192)
    assert attnsim.predict(arch, w).latency_s > attnsim.predict(h100, w).latency_s  # 0.7 < 0.9 bandwidth


def test_validate_and_calibrate_end_to_end(h100, tmp_path):
    df, _, truth = synthetic_trace(h100, n=120)
    path = tmp_path / "trace.csv"
    write_trace(df, path, {"source": "synthetic: the model itself with known factors"})
    summary = validate(path, out=tmp_path / "v")
    assert summary["overall"]["n"] == 120
    assert (tmp_path / "v" / "scatter.png").stat().st_size > 5000
    assert json.loads((tmp_path / "v" / "summary.json").read_text())["decode"]["n"] == 120
    r = calibrate(path, "h100_sxm5_80gb", fields=list(truth), split="hash:4", out=tmp_path / "c")
    assert r["held_out_after"]["overall"]["median_ape"] < 0.01  # the truth is in the model family
    assert attnsim.load_arch(tmp_path / "c" / "h100_sxm5_80gb_calibrated.yaml").name == "h100_sxm5_80gb_calibrated"
