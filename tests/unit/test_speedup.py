"""`attnsim speedup` and its error bands; variant parsing shared with `predict --family`."""
import json
from pathlib import Path

import pytest

import attnsim
from attnsim.cli import main
from attnsim.variant import parse_params, parse_variant
from attnsim.errors import AttnsimError
from attnsim.speedup import speedup
from attnsim.validate.band import error_band

VIDUR = (Path(__file__).resolve().parents[2].parent / "shared/data/measured/vidur"
         / "a100_llama2-70b_tp2_attention_flashattn_vllm_2024-05.csv")


def test_parse_params_reads_yaml_values_and_dims():
    assert parse_params("density=0.25,grid=[64,64],tiling=nd,win=13x13,causal=true") == \
        {"density": 0.25, "grid": [64, 64], "tiling": "nd", "win": [13, 13], "causal": True}
    assert parse_params("a=1;b=[1,2]", sep=";") == {"a": 1, "b": [1, 2]}
    with pytest.raises(AttnsimError, match="expected key=value"):
        parse_params("density")


def test_parse_variant_kernels_families_and_kernel_suffix():
    assert parse_variant("flash2", "x") == ("softmax", {}, "flash2")
    assert parse_variant("softmax@flash3", "x") == ("softmax", {}, "flash3")
    with pytest.raises(AttnsimError, match="did you mean 'flash2'"):
        parse_variant("flsh2", "--candidate")
    with pytest.raises(AttnsimError, match="unknown kernel 'fa9'"):
        parse_variant("softmax@fa9", "--candidate")


def test_speedup_of_kernels_is_the_ratio_of_predictions(h100):
    rep = speedup(h100, "flash2", ["flash3"], seq=8192, heads=32, kv_heads=8, causal=True)
    w = attnsim.attention(seq=8192, heads=32, kv_heads=8, causal=True)
    t2, t3 = attnsim.predict(h100, w, "flash2").latency_s, attnsim.predict(h100, w, "flash3").latency_s
    assert rep.baseline.latency_s == t2 and rep.candidates[0].latency_s == t3
    assert rep.speedup(rep.candidates[0]) == t2 / t3
    table = rep.table()
    assert "flash3" in table and f"{t2 / t3:.2f}x" in table
    # nothing was measured on H100: the band says so instead of inventing one
    assert rep.candidates[0].band is None
    assert "no validation data for this regime" in table


def test_speedup_cli_json_and_plot(tmp_path, capsys):
    png = tmp_path / "s.png"
    assert main(["speedup", "--arch", "h100_sxm5_80gb", "--baseline", "flash2", "--candidate", "flash3",
                 "--candidate", "unfused", "--seq", "4096", "--heads", "16", "--causal", "--format", "json",
                 "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    d = json.loads(out[:out.rindex("}") + 1])
    assert [v["variant"] for v in d["variants"]] == ["flash2", "flash3", "unfused"]
    assert d["variants"][0]["speedup"] == 1.0
    assert d["variants"][2]["speedup"] < 1.0  # three kernels with S and P in HBM lose to the fused one
    assert png.stat().st_size > 0


def test_speedup_cli_errors_are_one_line(capsys):
    assert main(["speedup", "--seq", "1024", "--candidate", "topk_blockz"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'topk_blocks'" in err and "Traceback" not in err
    assert main(["speedup", "--seq", "1024"]) == 2
    assert "at least one candidate" in capsys.readouterr().err


@pytest.fixture
def vidur():
    if not VIDUR.exists():
        pytest.skip("../shared/data/measured/vidur is not present (it sits beside this repository only in its CI)")
    return [VIDUR]


def test_band_comes_from_the_nearest_measured_rows(a100, vidur):
    w = attnsim.attention(seq_q=1, seq_kv=2000, batch=32, heads=32, kv_heads=4, dtype="fp16")
    band, note = error_band(a100, w, vidur, kernel="flash_decode")
    assert note == "" and band.n == 32 and band.regime == "a100_sxm4_80gb decode"
    assert band.kernels == "flash_decode"
    assert band.low <= band.high
    # the band is the P10-P90 of measured / predicted over those rows: recompute it from the trace
    import numpy as np
    from attnsim.validate.traces import read_trace
    df, _ = read_trace(VIDUR)
    df = df[(df.regime == "decode") & (df.algorithm == "flash_decode")]
    feats = np.log2(np.maximum(df[["batch", "heads", "kv_heads", "seq_q", "seq_kv"]].to_numpy(float), 1))
    point = np.log2([32, 32, 4, 1, 2000])
    near = df.iloc[np.argsort(np.linalg.norm(feats - point, axis=1), kind="stable")[:32]]
    pred = [attnsim.predict(a100, attnsim.attention(seq_q=int(r.seq_q), seq_kv=int(r.seq_kv), batch=int(r.batch),
                                                    heads=int(r.heads), kv_heads=int(r.kv_heads), dtype=r.dtype,
                                                    kv_page=int(r.paged_block)), "flash_decode").latency_s
            for r in near.itertuples()]
    ratio = near.time_median_s.to_numpy() / np.array(pred)
    assert (band.low, band.high) == pytest.approx(tuple(np.quantile(ratio, (0.1, 0.9))), rel=1e-12)


def test_band_is_none_for_an_unmeasured_regime(h100, vidur):
    band, note = error_band(h100, attnsim.attention(seq=4096), vidur)
    assert band is None and note.startswith("no validation data for this regime")


def test_band_states_extrapolation(a100, vidur):
    band, _ = error_band(a100, attnsim.attention(seq_q=1, seq_kv=65536, batch=8, heads=32, kv_heads=4), vidur)
    assert "seq_kv 65536" in band.outside and "extrapolated" in band.describe()


def test_speedup_band_brackets_the_speedup(a100, vidur):
    rep = speedup(a100, "flash_decode", ["flash2_kvcache"], traces=vidur, seq_q=1, seq_kv=2048, batch=32,
                  heads=32, kv_heads=4, dtype="fp16")
    c = rep.candidates[0]
    lo, hi = rep.speedup_band(c)
    b, s = rep.baseline.band, rep.speedup(c)
    assert (lo, hi) == (s * b.low / c.band.high, s * b.high / c.band.low)
    # no flash2_kvcache decode rows were measured: both bands come from the same flash_decode rows,
    # so the widest speedup range brackets the point prediction
    assert c.band == b and lo < s < hi


def test_predict_on_a_spatial_arch_prints_its_levels(capsys):
    # the summary line names the spatial design's own levels (DRAM, GLB), not a GPU's HBM
    assert main(["predict", "--arch", "fusemax_like", "--seq", "2048"]) == 0
    out = capsys.readouterr().out
    assert "DRAM" in out and "CTAs/SM" not in out
