"""AppTest checks of the Streamlit explorer (app/): every page renders, and its numbers are the API's."""
import dataclasses

import pandas as pd
import pytest

import attnsim
from attnsim.units import fmt_si

ROOT_APP = "app/streamlit_app.py"


def _no_exceptions(at):
    assert not at.exception, [e.value for e in at.exception]


def _metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def _slider(at, label):
    return next(s for s in at.slider if s.label == label)


@pytest.mark.parametrize("name", ["explore", "compare", "sweep", "validate"])
def test_page_renders(page, name):
    at = page(name)
    at.run()
    _no_exceptions(at)


def test_router_switches_pages():
    from streamlit.testing.v1 import AppTest
    from tests.app.conftest import ROOT
    at = AppTest.from_file(str(ROOT / ROOT_APP), default_timeout=30)
    at.run()
    _no_exceptions(at)
    assert any(m.label == "Latency" for m in at.metric)
    at.switch_page(str(ROOT / "app/app_pages/compare.py")).run()
    _no_exceptions(at)
    assert at.title[0].value == "Compare variants"


def test_explore_sm_count_moves_latency_as_the_api_says(page):
    at = page("explore")
    at.run()
    at.selectbox(key="arch_preset").set_value("h100_sxm5_80gb")
    at.selectbox(key="wl_preset").set_value("llama3_8b_prefill_8k").run()
    w = attnsim.load_workload("llama3_8b_prefill_8k")
    base = attnsim.predict("h100_sxm5_80gb", w)
    assert base.bound == "mma"  # compute-bound prefill
    assert _metric(at, "Latency") == fmt_si(base.latency_s, "s")

    _slider(at, "SM count").set_value(66).run()
    _no_exceptions(at)
    # halve the SMs with the API itself: per-SM compute and per-SM levels follow the SM count
    h100 = attnsim.load_arch("h100_sxm5_80gb")
    levels = tuple(dataclasses.replace(lv, instances=66, bandwidth_bytes_per_s=lv.bandwidth_bytes_per_s / 2)
                   if lv.instances == 132 else lv for lv in h100.levels)
    half = dataclasses.replace(h100, gpu=dataclasses.replace(h100.gpu, sm_count=66),
                               compute=dataclasses.replace(h100.compute, instances=66), levels=levels)
    expected = attnsim.predict(half, w)
    assert expected.latency_s > base.latency_s
    assert _metric(at, "Latency") == fmt_si(expected.latency_s, "s")


def test_explore_algorithm_and_spatial(page):
    at = page("explore")
    at.run()
    at.selectbox(key="algorithm").set_value("flash2").run()
    w = attnsim.load_workload("llama3_8b_prefill_8k")
    assert _metric(at, "Latency") == fmt_si(attnsim.predict("h100_sxm5_80gb", w, "flash2").latency_s, "s")
    at.selectbox(key="arch_preset").set_value("fusemax_like").run()
    _no_exceptions(at)
    assert {s.label for s in at.slider} >= {"Array rows", "Array cols", "GLB (MiB)", "DRAM bandwidth (TB/s)"}
    assert _metric(at, "Latency") == fmt_si(attnsim.predict("fusemax_like", w, "fused").latency_s, "s")


def test_bad_yaml_upload_gives_the_spec_error_and_the_preset_still_works():
    # AppTest cannot set a file_uploader's files, so the upload handler is tested directly;
    # the page shows its error text with st.error and goes on with the preset.
    from app.app_pages import common as C
    bad = b"name: broken\nkind: gpu\nclock: 1 parsec\n"
    path, err = C.load_uploaded_arch(bad)
    assert path is None and err
    with pytest.raises(attnsim.SpecError) as e:
        attnsim.load_arch(C.save_uploaded_yaml(bad))
    assert err == str(e.value) and "clock" in err
    good = (C.ROOT / "arch_specs/h100_sxm5_80gb.yaml").read_bytes()
    path, err = C.load_uploaded_arch(good)
    assert err is None and C.base_arch(path).name == "h100_sxm5_80gb"


def test_arch_yaml_export_marks_edits():
    from app.app_pages import common as C
    from attnsim.spec.yamlio import load_yaml
    edits = (("HBM bandwidth (TB/s)", 5.0), ("SM count", 66.0))
    text = C.arch_yaml("h100_sxm5_80gb", edits)
    data, _ = load_yaml("edited.yaml", text=text)
    hbm = next(lv for lv in data["levels"] if lv["name"] == "HBM")
    assert hbm["bandwidth"]["source"] == C.EDITED_SOURCE
    assert data["gpu"]["sm_count"]["value"] == 66
    assert data["sources"]  # the original sources are kept


def test_compare_baseline_speedup_is_one(page):
    at = page("compare")
    at.run()
    _no_exceptions(at)
    df = at.dataframe[0].value
    baseline = at.selectbox(key="cmp_baseline").value
    assert df.loc[df["variant"] == baseline, "speedup"].iloc[0] == "1.00"
    at.selectbox(key="cmp_baseline").set_value("causal, flash2").run()
    df = at.dataframe[0].value
    assert df.loc[df["variant"] == "causal, flash2", "speedup"].iloc[0] == "1.00"
    assert [i.value for i in at.info] == ["no validation data for this regime"]


def test_sweep_runs_and_shows_chart_and_table(page):
    at = page("sweep")
    at.run()
    at.text_input(key="sw_seqs").set_value("1k,4k")
    at.button(key="sw_run").click().run()
    _no_exceptions(at)
    assert not at.error
    assert any(type(e).__name__ == "Image" for e in at.main)  # the matplotlib figure
    table = at.dataframe[0].value
    assert len(table) == 6 and (table["status"] == "ok").any()
    assert len(at.dataframe) == 2  # the table and the chosen point's breakdown


def test_validate_error_table_from_a_synthetic_trace(page, tmp_path):
    from attnsim.validate.traces import write_trace
    rows = []
    for i, (sq, skv, b) in enumerate([(1, 4096, 8), (1, 16384, 16), (1, 1024, 4), (2048, 2048, 1), (4096, 4096, 1),
                                      (1024, 1024, 2)]):
        w = attnsim.attention(batch=b, heads=32, kv_heads=8, seq_q=sq, seq_kv=skv, head_dim=128, causal=sq > 1)
        alg = "flash_decode" if sq == 1 else "flash2"
        t = attnsim.predict("a100_sxm4_80gb", w, alg).latency_s * (1.1 + 0.05 * i)
        rows.append(dict(arch="a100_sxm4_80gb", algorithm=alg, batch=b, heads=32, kv_heads=8, seq_q=sq, seq_kv=skv,
                         head_dim=128, causal=sq > 1, window=0, dtype="bf16", time_median_s=t))
    csv, _ = write_trace(pd.DataFrame(rows), tmp_path / "tiny.csv", {"source": "synthetic"})
    at = page("validate")
    at.run()
    at.text_input(key="val_path").set_value(str(csv)).run()
    _no_exceptions(at)
    table = at.dataframe[0].value
    assert list(table["regime"]) == ["overall", "decode", "prefill"]
    assert table.loc[table["regime"] == "overall", "n"].iloc[0] == 6
    assert table["median APE (%)"].between(5, 40).all()


def test_compare_predicts_families_as_the_api_does(page):
    at = page("compare")
    at.run()
    at.text_area(key="cmp_families").set_value("topk_blocks:density=0.25\nlinear_chunked@flash2\ntopk_blockz").run()
    _no_exceptions(at)
    df = at.dataframe[0].value.set_index("variant")
    shape = dict(batch=int(at.number_input(key="cmp_batch").value), heads=int(at.number_input(key="cmp_heads").value),
                 kv_heads=int(at.number_input(key="cmp_kv_heads").value),
                 seq_q=int(at.number_input(key="cmp_seq_q").value), seq_kv=int(at.number_input(key="cmp_seq_kv").value),
                 head_dim=int(at.number_input(key="cmp_head_dim").value), causal=True)
    r = attnsim.predict("h100_sxm5_80gb", attnsim.attention("topk_blocks", params={"density": 0.25}, **shape))
    assert df.loc["topk_blocks:density=0.25", "latency"] == fmt_si(r.latency_s, "s")
    assert df.loc["topk_blocks:density=0.25", "bound"] == r.bound
    assert "did you mean 'topk_blocks'" in df.loc["topk_blockz", "note"]
