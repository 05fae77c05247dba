"""Families through every front door: YAML, `predict --family`, `--cases`, sweeps, `speedup`, `list`."""
import csv
import json

import pytest

import attnsim
from attnsim.cli import main
from attnsim.errors import WorkloadError
from attnsim.speedup import speedup

TOPK = dict(seq=2000, heads=16, kv_heads=4, causal=True)


def test_predict_family_flags_equal_the_python_api(capsys):
    assert main(["predict", "--family", "topk_blocks", "--params", "density=0.25,block_k=64", "--seq", "2000",
                 "--heads", "16", "--kv-heads", "4", "--causal", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    w = attnsim.attention("topk_blocks", params={"density": 0.25, "block_k": 64}, **TOPK)
    r = attnsim.predict("h100_sxm5_80gb", w)
    assert d["latency_s"] == r.latency_s
    assert [k["kernel"] for k in d["kernels"]] == [k["kernel"] for k in r.kernels]
    assert len(d["kernels"]) == 3  # pool, score + top-k, block-sparse attention


def test_predict_family_table_lists_the_kernels(capsys):
    assert main(["predict", "--family", "linear_chunked", "--seq", "8192", "--heads", "16", "--causal"]) == 0
    out = capsys.readouterr().out
    assert "kernels (--explain for the breakdown)" in out and "bound by" in out


@pytest.mark.parametrize("params,message", [
    ("densty=0.25", "did you mean 'density'"),
    ("density=2", "expected a fraction in (0, 1]"),
    ("density", "expected key=value"),
], ids=["typo", "out-of-range", "no-value"])
def test_bad_family_params_are_one_line_errors(params, message, capsys):
    assert main(["predict", "--family", "topk_blocks", "--params", params, "--seq", "1024", "--causal"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_family_yaml_with_params_and_its_errors(tmp_path):
    good = tmp_path / "w.yaml"
    good.write_text("family: topk_blocks\nbatch: 1\nheads: 16\nkv_heads: 4\nseq_q: 2000\nseq_kv: 2000\n"
                    "head_dim: 128\nmask: {kind: causal}\nparams: {density: 0.25}\n")
    w = attnsim.load_workload(good)
    assert w.param("density") == 0.25 and w.param("block_k") == 64  # the default filled in
    bad = tmp_path / "bad.yaml"
    bad.write_text("family: topk_blocks\nbatch: 1\nheads: 16\nseq_q: 2000\nseq_kv: 2000\nhead_dim: 128\n"
                   "params:\n  density: 0.25\n  blok_k: 32\n")
    with pytest.raises(WorkloadError) as e:
        attnsim.load_workload(bad)
    assert f"{bad}:9: params.blok_k: unknown key 'blok_k' (did you mean 'block_k'?)" in str(e.value)
    fam = tmp_path / "fam.yaml"
    fam.write_text("family: topk_block\nbatch: 1\nheads: 16\nseq_q: 20\nseq_kv: 20\nhead_dim: 128\n")
    with pytest.raises(Exception, match=r"fam.yaml:1: family: unknown family 'topk_block'.*did you mean 'topk_blocks'"):
        attnsim.load_workload(fam)


def test_every_family_preset_loads_and_predicts(h100):
    names = [n for n in attnsim.workload.spec.list_workload_presets()
             if attnsim.load_workload(n).family != "softmax"]
    assert len(names) >= 15
    for n in names:
        r = attnsim.predict(h100, n)
        assert r.latency_s > 0 and r.kernels, n


def test_cases_csv_with_families(tmp_path):
    cases = tmp_path / "cases.csv"
    header = "arch,algorithm,batch,heads,kv_heads,seq_q,seq_kv,head_dim,causal,window,dtype,params"
    rows = ["h100_sxm5_80gb,topk_blocks,1,16,4,2000,2000,128,true,,bf16,density=0.25;block_k=64",
            "h100_sxm5_80gb,flash3,1,16,4,2000,2000,128,true,,bf16,",
            "h100_sxm5_80gb,topk_blocks,1,16,4,2000,2000,128,true,,bf16,densty=0.25",
            "h100_sxm5_80gb,flash3,1,16,4,2000,2000,128,true,,bf16,density=0.5",
            "h100_sxm5_80gb,topk_blockz,1,16,4,2000,2000,128,true,,bf16,"]
    cases.write_text("\n".join([header] + rows) + "\n")
    out = tmp_path / "out.csv"
    from attnsim.cases import run_cases
    ok, bad = run_cases(cases, out)
    assert (ok, bad) == (2, 3)
    got = list(csv.DictReader(out.open()))
    w = attnsim.attention("topk_blocks", params={"density": 0.25, "block_k": 64}, **TOPK)
    assert float(got[0]["latency_s"]) == attnsim.predict("h100_sxm5_80gb", w).latency_s
    assert "did you mean 'density'" in got[2]["status"] and got[2]["status"].startswith("error (line 4)")
    assert "takes no parameters" in got[3]["status"]
    assert "did you mean 'topk_blocks'" in got[4]["status"]


def test_sweep_over_a_family_parameter_equals_predict(tmp_path):
    from attnsim.sweep.run import run_sweep
    from attnsim.sweep.spec import build_sweep
    w = attnsim.attention("topk_blocks", params={"density": 0.25}, **TOPK)
    sw = build_sweep("h100_sxm5_80gb", w, None, ["workload.params.density=0.125,0.25,1.0", "workload.seq=1k,2k"])
    run = run_sweep(sw, tmp_path / "s.parquet", progress=False)
    t = run.table
    assert len(t) == 6 and (t.status == "ok").all()
    for row in t.to_dict("records"):
        v = attnsim.attention("topk_blocks", params={"density": row["workload.params.density"]},
                              seq=int(row["workload.seq"]), heads=16, kv_heads=4, causal=True)
        assert row["latency_s"] == attnsim.predict("h100_sxm5_80gb", v).latency_s


def test_sweep_bad_family_parameter_is_a_row_with_its_reason(tmp_path):
    from attnsim.sweep.run import run_sweep
    from attnsim.sweep.spec import build_sweep
    w = attnsim.attention("topk_blocks", **TOPK)
    sw = build_sweep("h100_sxm5_80gb", w, None, ["workload.params.densty=0.5"])
    run = run_sweep(sw, tmp_path / "s.parquet", progress=False)
    assert "did you mean 'density'" in run.table.status.iloc[0]


def test_speedup_of_the_issue_example(h100, capsys):
    assert main(["speedup", "--arch", "h100_sxm5_80gb", "--baseline", "flash2", "--candidate",
                 "topk_blocks:density=0.25", "--seq", "8192", "--heads", "32", "--kv-heads", "8", "--causal"]) == 0
    out = capsys.readouterr().out
    rep = speedup(h100, "flash2", ["topk_blocks:density=0.25"], seq=8192, heads=32, kv_heads=8, causal=True)
    cand = rep.candidates[0]
    assert f"{rep.speedup(cand):.2f}x" in out
    assert cand.result.bound in out and rep.baseline.result.bound in out  # the binding resource of each
    assert "no validation data for this regime" in out
    # the candidate's attention kernel runs the baseline's own kernel style when named after '@'
    rep2 = speedup(h100, "flash2", ["topk_blocks:density=0.25@flash2"], seq=8192, heads=32, kv_heads=8, causal=True)
    assert "flash2" in rep2.candidates[0].result.mapping


def test_list_shows_families(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("topk_blocks", "linear_chunked", "mamba2_ssd", "kv_quant", "mla_decode", "neighborhood",
                 "token_prune", "head_mix", "routing_clusters"):
        assert name in out
