"""Measured traces: the schema, read/write round trips, the importers, and every malformed input."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attnsim.errors import SpecError
from attnsim.validate.importers import import_ncu_csv, import_torch_profiler, import_vidur
from attnsim.validate.traces import (MAX_PROBLEMS_PER_COLUMN, REQUIRED_COLUMNS, TRACE_COLUMNS, read_trace,
                                     validate_trace, write_trace)

DATA = Path(__file__).resolve().parents[1] / "data" / "traces"
REPO = Path(__file__).resolve().parents[2]
VIDUR = (REPO.parent / "shared" / "data" / "measured" / "vidur"
         / "a100_llama2-70b_tp2_attention_flashattn_vllm_2024-05.csv")
CONFIG = ["arch", "algorithm", "batch", "heads", "kv_heads", "seq_q", "seq_kv", "head_dim", "causal", "window",
          "dtype"]


def spec_error(fn, *args, **kwargs) -> SpecError:
    with pytest.raises(SpecError) as info:
        fn(*args, **kwargs)
    return info.value


def good_rows(n: int = 2) -> pd.DataFrame:
    return pd.DataFrame({"arch": ["h100_sxm5_80gb"] * n, "algorithm": ["flash3"] * n, "batch": [1] * n,
                         "heads": [32] * n, "kv_heads": [8] * n, "seq_q": [4096] * n, "seq_kv": [4096] * n,
                         "head_dim": [128] * n, "causal": [True] * n, "window": [0] * n, "dtype": ["bf16"] * n,
                         "time_median_s": [1e-4] * n})


# ---- schema ------------------------------------------------------------------------------

def test_schema_table():
    assert set(REQUIRED_COLUMNS) == set(CONFIG) | {"time_median_s"}
    for name, (dtype, required, help_text) in TRACE_COLUMNS.items():
        assert dtype in ("str", "int", "bool", "float"), name
        assert isinstance(required, bool) and help_text
        if name.startswith("time_"):
            assert name.endswith("_s")  # the schema is seconds


def test_docs_table_lists_every_column():
    docs = (REPO / "docs" / "traces.md").read_text()
    for name, col in TRACE_COLUMNS.items():
        row = next((line for line in docs.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, name
        assert f"| {col.dtype} |" in row and ("| yes |" in row) == col.required, name


# ---- the project's own CSV ---------------------------------------------------------------

def test_read_own_csv():
    df, prov = read_trace(DATA / "own_5rows.csv")
    assert len(df) == 5
    assert list(df.columns[:11]) == CONFIG
    assert df["batch"].dtype == np.int64 and df["causal"].dtype == bool
    assert df["causal"].tolist() == [True, True, False, True, False]
    assert df["window"].tolist() == [0, 0, 0, 256, 0]  # an empty window cell is 0
    assert df["dtype"].tolist()[-1] == "fp16"  # 'float16' is normalized
    assert df["algorithm"].tolist()[-1] == "my_new_kernel"  # unknown kernels are allowed
    assert df["regime"].tolist() == ["prefill", "prefill", "decode", "prefill", "prefill"]  # derived
    assert df["paged_block"].isna().sum() == 4 and df["paged_block"].iloc[2] == 16
    assert df["time_median_s"].iloc[0] == pytest.approx(1.52e-3)
    assert df["l2_hit_rate"].iloc[2] == pytest.approx(0.12)
    # provenance sidecar own_5rows.provenance.json fills the provenance columns
    assert prov["source"] == "hand-made test fixture"
    assert set(df["source"]) == {"hand-made test fixture"}
    assert df["kernel"].tolist() == ["", "", "", "", "custom_fa_v0"]


@pytest.mark.parametrize("source", ["own_5rows.csv", "torch_trace.json", "ncu_raw.csv"])
def test_round_trip(tmp_path, source):
    df, prov = read_trace(DATA / source)
    csv_path, prov_path = write_trace(df, tmp_path / "trace.csv", prov)
    assert prov_path == tmp_path / "trace.provenance.json" and prov_path.is_file()
    back, prov_back = read_trace(csv_path)
    pd.testing.assert_frame_equal(df, back[list(df.columns)])
    assert prov_back.pop("provenance_file") == str(prov_path)
    assert {k: v for k, v in prov.items() if k != "provenance_file"} == prov_back


def test_round_trip_dataframe_in_memory(tmp_path):
    df = good_rows(3)
    df["time_p90_s"] = [1.1e-4, 1.2e-4, 1.3e-4]
    df["note"] = ["a", "b", "c"]
    write_trace(df, tmp_path / "t.csv", {"source": "unit test", "device": "nowhere"})
    back, prov = read_trace(tmp_path / "t.csv")
    assert back["time_p90_s"].tolist() == [1.1e-4, 1.2e-4, 1.3e-4]  # exact
    assert back["note"].tolist() == ["a", "b", "c"] and set(back["source"]) == {"unit test"}
    assert json.loads((tmp_path / "t.provenance.json").read_text())["device"] == "nowhere"


def test_write_refuses_a_bad_trace(tmp_path):
    df = good_rows()
    df.loc[1, "time_median_s"] = -1.0
    err = spec_error(write_trace, df, tmp_path / "bad.csv", {})
    assert "time_median_s" in str(err) and not (tmp_path / "bad.csv").exists()


def test_provenance_lookup_order(tmp_path):
    shutil.copy(DATA / "own_5rows.csv", tmp_path / "x.csv")
    (tmp_path / "PROVENANCE.md").write_text("# measured by hand\n")
    assert "measured by hand" in read_trace(tmp_path / "x.csv")[1]["provenance_text"]
    (tmp_path / "x.provenance.json").write_text('{"source": "stem"}')
    assert read_trace(tmp_path / "x.csv")[1]["source"] == "stem"
    (tmp_path / "x.csv.provenance.json").write_text('{"source": "full name"}')
    assert read_trace(tmp_path / "x.csv")[1]["source"] == "full name"
    (tmp_path / "x.csv.provenance.json").write_text('["not", "an", "object"]')
    assert "JSON object" in str(spec_error(read_trace, tmp_path / "x.csv"))


# ---- malformed own CSVs --------------------------------------------------------------------

def test_missing_columns_named_with_the_required_list():
    err = spec_error(read_trace, DATA / "broken_missing_columns.csv")
    text = str(err)
    assert len(err.problems) == 2
    assert {p.key for p in err.problems} == {"heads", "time_median_s"}
    assert all(p.line == 1 and p.file.endswith("broken_missing_columns.csv") for p in err.problems)
    assert "required columns: arch, algorithm, batch, heads" in text
    assert "'time_median_ms' is in milliseconds" in text


def test_bad_values_all_reported_with_lines():
    err = spec_error(read_trace, DATA / "broken_values.csv")
    where = {(p.line, p.key) for p in err.problems}
    # header = line 1; line 4 is blank and still counts
    assert where == {(2, "batch"), (3, "causal"), (5, "arch"), (5, "time_median_s"), (6, "time_median_s"),
                     (7, "time_median_s")}
    text = str(err)
    assert "broken_values.csv:2: batch: expected an integer, got 'two'" in text
    assert "broken_values.csv:5: time_median_s: expected a number, got 'fast'" in text
    assert "broken_values.csv:6: time_median_s: expected a time > 0 s, got -0.002" in text
    assert "broken_values.csv:7: time_median_s: expected a time > 0 s, got 0.0" in text
    assert "'maybe'" in text


def test_units_guard():
    err = spec_error(read_trace, DATA / "broken_microseconds.csv")
    assert "times look like milliseconds or microseconds; the schema is seconds" in str(err)
    assert err.problems[0].key == "time_median_s"


@pytest.mark.parametrize("name, words", [("broken_empty.csv", "empty"), ("broken_header_only.csv", "no data rows")])
def test_empty_files_one_clear_problem(name, words):
    err = spec_error(read_trace, DATA / name)
    assert len(err.problems) == 1 and words in str(err) and name in str(err)


def test_missing_file():
    assert "does not exist" in str(spec_error(read_trace, DATA / "no_such_trace.csv"))


def test_ragged_row(tmp_path):
    lines = (DATA / "own_5rows.csv").read_text().splitlines()
    lines[3] += ",extra"
    (tmp_path / "ragged.csv").write_text("\n".join(lines) + "\n")
    err = spec_error(read_trace, tmp_path / "ragged.csv")
    assert err.problems[0].line == 4 and "cells" in str(err)


def test_validate_dataframe_checks():
    df = good_rows(6)
    df["l2_hit_rate"] = [0.5, 42.0, 0.5, 0.5, 0.5, 0.5]
    df.loc[2, "kv_heads"] = 5
    df["time_min_s"] = [1e-4, 1e-4, 1e-4, 2e-4, 1e-4, 1e-4]
    df["regime"] = ["", "decode", "prefill", "prefill", "warmup", ""]
    df.loc[5, "window"] = -1
    df.loc[1, "arch"] = ""
    err = spec_error(validate_trace, df, "mem.csv")
    got = {(p.line, p.key) for p in err.problems}
    assert got == {(3, "l2_hit_rate"), (4, "kv_heads"), (5, "time_min_s"), (6, "regime"), (7, "window"),
                   (3, "arch")}
    assert "not percent" in str(err)


def test_validate_accepts_typed_frame_and_derives_regime():
    df = good_rows(2)
    df.loc[1, "seq_q"] = 16
    out = validate_trace(df)
    assert out["regime"].tolist() == ["prefill", "decode"]
    assert out["causal"].dtype == bool and out["time_median_s"].dtype == np.float64


def test_many_bad_rows_are_counted_not_listed():
    df = good_rows(30)
    df["time_median_s"] = ["x"] * 30
    err = spec_error(validate_trace, df, "many.csv")
    assert len(err.problems) == MAX_PROBLEMS_PER_COLUMN + 1
    assert "20 more rows" in str(err.problems[-1]) and "lines 12, 13" in str(err.problems[-1])


# ---- PyTorch profiler ----------------------------------------------------------------------

def test_torch_profiler_import():
    df, prov = read_trace(DATA / "torch_trace.json")  # finds torch_trace.launches.csv beside it
    assert len(df) == 3
    assert df["time_median_s"].tolist() == pytest.approx([51e-6, 52e-6, 12.5e-6])
    assert df["repeats"].tolist() == [2, 1, 1]
    assert df["time_std_s"].iloc[0] == pytest.approx(1e-6)  # population std of 50, 52 us
    assert df["time_min_s"].iloc[0] == pytest.approx(50e-6) and df["time_max_s"].iloc[0] == pytest.approx(52e-6)
    assert df["regime"].tolist() == ["prefill", "prefill", "decode"]
    assert "splitkv" in df["matched_kernels"].iloc[2]
    assert prov["device"] == "NVIDIA H100 80GB HBM3" and prov["kernel_events"] == 3
    assert set(df["source"]) == {"torch_profiler"}


def test_torch_profiler_no_kernel_events():
    err = spec_error(import_torch_profiler, DATA / "torch_no_kernels.json", DATA / "torch_trace.launches.csv")
    assert "no kernel events" in str(err) and "torch_no_kernels.json" in str(err)


def test_torch_profiler_row_matching_nothing():
    err = spec_error(import_torch_profiler, DATA / "torch_trace.json", DATA / "torch_nomatch.launches.csv")
    assert len(err.problems) == 1
    p = err.problems[0]
    assert p.line == 3 and p.key == "name_pattern" and p.file.endswith("torch_nomatch.launches.csv")
    assert "'paged_attention_v2_kernel' matches no kernel" in str(err)


def test_torch_profiler_bad_inputs(tmp_path):
    (tmp_path / "bad.json").write_text('{"traceEvents": [\n{"ph": "X",,}]}')
    err = spec_error(import_torch_profiler, tmp_path / "bad.json", DATA / "torch_trace.launches.csv")
    assert "not valid JSON" in str(err) and err.problems[0].line == 2
    (tmp_path / "empty.json").write_text("")
    assert "empty" in str(spec_error(import_torch_profiler, tmp_path / "empty.json",
                                     DATA / "torch_trace.launches.csv"))
    side = (DATA / "torch_trace.launches.csv").read_text()
    (tmp_path / "nopattern.csv").write_text(side.replace("name_pattern,", "pattern,", 1))
    err = spec_error(import_torch_profiler, DATA / "torch_trace.json", tmp_path / "nopattern.csv")
    assert err.problems[0].key == "name_pattern"
    (tmp_path / "occ.csv").write_text(side.replace("flash_fwd_kernel<,1,", "flash_fwd_kernel<,5,", 1))
    err = spec_error(import_torch_profiler, DATA / "torch_trace.json", tmp_path / "occ.csv")
    assert err.problems[0].line == 3 and "matches only 2" in str(err)
    (tmp_path / "cfg.csv").write_text(side.replace("flash_decode,8,", "flash_decode,eight,"))
    err = spec_error(import_torch_profiler, DATA / "torch_trace.json", tmp_path / "cfg.csv")
    assert (err.problems[0].line, err.problems[0].key) == (4, "batch") and "cfg.csv" in str(err)
    solo = tmp_path / "solo.json"
    shutil.copy(DATA / "torch_trace.json", solo)
    assert "sidecar" in str(spec_error(read_trace, solo))


# ---- Nsight Compute ------------------------------------------------------------------------

def test_ncu_import():
    df, prov = read_trace(DATA / "ncu_raw.csv")  # skips the ==PROF== lines, uses the unit row
    assert len(df) == 2
    flash, decode = df.iloc[0], df.iloc[1]
    assert flash["repeats"] == 2 and flash["time_median_s"] == pytest.approx(61.0e-6)
    assert flash["dram_read_bytes"] == pytest.approx(134.26e6)  # Mbyte = 1e6 B
    assert flash["dram_write_bytes"] == pytest.approx(512.05e3)  # Kbyte = 1e3 B
    assert flash["l2_hit_rate"] == pytest.approx(0.423)  # percent -> fraction
    assert decode["ID"] == 2 and decode["time_median_s"] == pytest.approx(291.5e-6)
    assert decode["dram_read_bytes"] == pytest.approx(1073.74e6)  # '1,073.74' with a thousands separator
    assert decode["regime"] == "decode"
    assert prov["device"] == "NVIDIA H100 80GB HBM3" and prov["units"]["gpu__time_duration.sum"] == "usecond"


def test_ncu_units_in_column_names(tmp_path):
    text = (DATA / "ncu_no_units.csv").read_text()
    for metric, unit in (("dram__bytes_read.sum", "Mbyte"), ("dram__bytes_write.sum", "Kbyte"),
                         ("gpu__time_duration.sum", "ns")):
        text = text.replace(f'"{metric}"', f'"{metric} [{unit}]"', 1)
    (tmp_path / "named.csv").write_text(text)
    df, _ = import_ncu_csv(tmp_path / "named.csv", DATA / "ncu_raw.launches.csv")
    assert df["time_median_s"].tolist() == pytest.approx([61.0e-9, 291.5e-9])
    assert df["l2_hit_rate"].tolist() == pytest.approx([0.423, 0.032])  # '.pct' says percent


def test_ncu_without_units_names_the_columns():
    err = spec_error(import_ncu_csv, DATA / "ncu_no_units.csv", DATA / "ncu_raw.launches.csv")
    assert {p.key for p in err.problems} == {"gpu__time_duration.sum", "dram__bytes_read.sum",
                                              "dram__bytes_write.sum"}
    assert "no unit row" in str(err) and "ncu_no_units.csv" in str(err)


def test_ncu_wrong_unit():
    err = spec_error(import_ncu_csv, DATA / "ncu_bad_unit.csv", DATA / "ncu_raw.launches.csv")
    p = err.problems[0]
    assert (p.key, p.line) == ("gpu__time_duration.sum", 2) and "got 'byte'" in str(err)


def test_ncu_missing_time_column():
    err = spec_error(import_ncu_csv, DATA / "ncu_missing_time.csv", DATA / "ncu_raw.launches.csv")
    assert err.problems[0].key == "gpu__time_duration.sum" and "missing column" in str(err)


def test_ncu_other_malformed(tmp_path):
    (tmp_path / "details.csv").write_text('"ID","Kernel Name","Section Name","Metric Name","Metric Unit",'
                                          '"Metric Value"\n"0","k","SOL","Duration","usecond","61.25"\n')
    assert "--page raw" in str(spec_error(import_ncu_csv, tmp_path / "details.csv", DATA / "ncu_raw.launches.csv"))
    (tmp_path / "empty.csv").write_text("==PROF== Disconnected\n")
    assert "empty" in str(spec_error(import_ncu_csv, tmp_path / "empty.csv", DATA / "ncu_raw.launches.csv"))
    text = (DATA / "ncu_raw.csv").read_text().replace('"60.75"', '"sixty"')
    (tmp_path / "nan.csv").write_text(text)
    err = spec_error(import_ncu_csv, tmp_path / "nan.csv", DATA / "ncu_raw.launches.csv")
    assert (err.problems[0].line, err.problems[0].key) == (6, "gpu__time_duration.sum")
    (tmp_path / "id.csv").write_text((DATA / "ncu_raw.launches.csv").read_text().replace("\n2,", "\n7,"))
    err = spec_error(import_ncu_csv, DATA / "ncu_raw.csv", tmp_path / "id.csv")
    assert (err.problems[0].line, err.problems[0].key) == (3, "ID") and "'7'" in str(err)
    shutil.copy(DATA / "ncu_raw.csv", tmp_path / "alone.csv")
    assert "sidecar" in str(spec_error(read_trace, tmp_path / "alone.csv"))


# ---- Vidur ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vidur():
    if not VIDUR.is_file():
        pytest.skip("../shared/data/measured/vidur not present (it is only beside this repository in its CI)")
    return import_vidur(VIDUR)


def test_vidur_shape_and_counts(vidur):
    df, prov = vidur
    assert len(df) == 14_658
    assert (df["regime"] == "prefill").sum() == 4_418 and (df["regime"] == "decode").sum() == 10_240
    assert set(df["heads"]) == {32} and set(df["kv_heads"]) == {4} and set(df["head_dim"]) == {128}
    assert set(df["dtype"]) == {"fp16"} and set(df["paged_block"]) == {16} and set(df["arch"]) == {"a100_sxm4_80gb"}
    pre, dec = df[df["regime"] == "prefill"], df[df["regime"] == "decode"]
    assert set(pre["algorithm"]) == {"flash2_kvcache"}  # flash_attn_with_kvcache: the split-KV kernel path and pre["causal"].all() and set(pre["batch"]) == {1}
    assert set(dec["algorithm"]) == {"flash_decode"} and not dec["causal"].any() and set(dec["seq_q"]) == {1}
    assert (pre["seq_kv"] == pre["seq_q"] + pre["kv_cache_size"]).all()  # chunk + cached context
    assert (dec["seq_kv"] == dec["kv_cache_size"] + 1).all()  # cached context + the new token
    assert set(df["kernel"]) == {"flash_attn (vLLM wrapper)"} and set(df["source"]) == {"vidur"}


def test_vidur_times_in_seconds(vidur):
    df, _ = vidur
    assert df["time_median_s"].max() < 3e-3 and df["time_median_s"].min() >= 9e-6  # 9 us .. 2.3 ms
    dec = df[(df["regime"] == "decode") & (df["batch"] == 128) & (df["kv_cache_size"] == 4032)]
    assert dec["time_median_s"].tolist() == pytest.approx([0.667e-3], rel=1e-9)  # PROVENANCE.md check
    pre = df[(df["regime"] == "prefill") & (df["seq_q"] == 2048)]
    assert pre.loc[pre["kv_cache_size"] == 2048, "time_median_s"].tolist() == pytest.approx([1.027e-3])
    assert pre.loc[pre["kv_cache_size"] == 0, "time_median_s"].tolist() == pytest.approx([0.681e-3])
    assert (df["time_min_s"] <= df["time_median_s"]).all() and (df["time_median_s"] <= df["time_max_s"]).all()
    # reshape ops are recorded beside the kernel time, not added to it
    assert (df["time_input_reshape_s"] == 0).all() and (df["time_output_reshape_s"] > 0).all()


def test_vidur_provenance_and_duplicates(vidur):
    df, prov = vidur
    assert prov["upstream"] == "github.com/microsoft/vidur" and prov["profile_method"] == "KINETO"
    assert prov["snapshot_commit"] == "7d47513363ec447a741ac5e47241580b47724fbf"
    assert prov["sha256_matches"] is True
    assert prov["sku_note"] == "SKU not stated: A100 80GB, PCIe or SXM"
    config = ["batch", "seq_q", "seq_kv", "regime"]
    assert df.duplicated(config).sum() == 340  # upstream sweeps overlap; kept, with their source_line


def test_vidur_read_trace_dispatch(vidur):
    df, _ = read_trace(VIDUR, arch="a100_pcie_80gb_if_you_have_one")
    assert len(df) == len(vidur[0]) and set(df["arch"]) == {"a100_pcie_80gb_if_you_have_one"}


def test_vidur_malformed(tmp_path):
    (tmp_path / "v.csv").write_text("time_stats.attn_decode.median,n_embd\n0.1,8192\n")
    err = spec_error(import_vidur, tmp_path / "v.csv")
    keys = {p.key for p in err.problems}
    assert "kv_cache_size" in keys and "time_stats.attn_prefill.median" in keys and "v.csv" in str(err)
