"""`attnsim map` and `attnsim bound` through their own argparse parsers (cli_map.add_parsers)."""
from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest

import attnsim
from attnsim.cli_map import add_parsers, parse_capacities
from attnsim.errors import AttnsimError, SpecError


def run(argv):
    p = argparse.ArgumentParser(prog="attnsim")
    add_parsers(p.add_subparsers(dest="command", required=True))
    a = p.parse_args(argv)
    return a.func(a)


def test_parse_capacities():
    assert parse_capacities("64KiB..1MiB:x2") == [65536.0 * 2 ** k for k in range(5)]
    assert parse_capacities("64 KiB .. 200 KiB : x2") == [65536.0, 131072.0]
    assert parse_capacities("8 MiB, 1 MiB") == [2.0 ** 20, 8 * 2.0 ** 20]
    assert parse_capacities("1KiB..1KiB:x3") == [1024.0]
    for bad in ("64KiB..1MiB", "1MiB..64KiB:x2", "64KiB..1MiB:x1", "64..1MiB:x2", "1KiB..1GiB:x1.01", ""):
        with pytest.raises(SpecError):
            parse_capacities(bad)


def test_map_gpu_table(capsys):
    assert run(["map", "--arch", "h100_sxm5_80gb", "--seq-q", "1", "--seq-kv", "8192", "--heads", "32",
                "--kv-heads", "8", "--batch", "2", "--top-k", "4"]) == 0
    out = capsys.readouterr().out
    for part in ("best mapping for", "split_kv", "time terms", "top 4 by latency:", "points in the space",
                 "evaluated", "illegal:", "smem overflow", "pruned:"):
        assert part in out, part
    assert out.count("\n   ") >= 4  # four ranked rows


def test_map_json_matches_the_api(capsys):
    assert run(["map", "--arch", "h100_sxm5_80gb", "--seq", "2048", "--heads", "16", "--causal", "--objective",
                "energy", "--top-k", "3", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    from attnsim.mapping.search import search_gpu
    w = attnsim.attention("softmax", heads=16, seq=2048, causal=True)
    r = search_gpu("h100_sxm5_80gb", w, objective="energy", top_k=3)
    assert d["best"]["label"] == r.best.label() and d["objective"] == "energy"
    assert d["best"]["result"]["energy_total_j"] == r.best_result.energy_total_j
    assert [t["rank"] for t in d["top"]] == [1, 2, 3]
    assert d["evaluated"] + d["illegal"] + d["pruned"] + d["sampled_out"] == d["space_size"]
    assert d["illegal_reasons"] == r.illegal_reasons


def test_map_spatial_and_sampling(capsys, tmp_path):
    assert run(["map", "--arch", "fusemax_like", "--workload", "llama3_8b_prefill_8k", "--top-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "q_outer" in out and "GLB overflow" in out and "DRAM" in out
    assert run(["map", "--arch", "h100_sxm5_80gb", "--seq", "1024", "--max-points", "50", "--seed", "3",
                "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["evaluated"] == 50 and d["sampled_out"] > 0


def test_map_errors():
    with pytest.raises(AttnsimError, match="--seq"):
        run(["map", "--arch", "h100_sxm5_80gb"])
    with pytest.raises(SpecError, match="top-k"):
        run(["map", "--arch", "h100_sxm5_80gb", "--seq", "512", "--top-k", "0"])


def test_bound_writes_csv_and_png(tmp_path, capsys):
    out = tmp_path / "b"
    assert run(["bound", "--arch", "fusemax_like", "--seq", "2048", "--heads", "8", "--kv-heads", "2",
                "--head-dim", "64", "--causal", "--capacities", "64KiB..4MiB:x4", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    df = pd.read_csv(out / "ski_slope.csv")
    assert len(df) == 3 * 4 and {"bound_bytes", "mapper_bytes", "mapper_mapping"} <= set(df.columns)
    assert (out / "ski_slope.png").read_bytes()[:4] == b"\x89PNG"
    for part in ("compulsory", "fully_fused", "reaches compulsory traffic", "GLB capacity", "x bound"):
        assert part in text, part


def test_bound_on_a_gpu_has_no_mapper_points(tmp_path, capsys):
    assert run(["bound", "--arch", "h100_sxm5_80gb", "--seq", "1024", "--capacities", "1MiB,64MiB",
                "--out", str(tmp_path)]) == 0
    assert "no mapper points" in capsys.readouterr().out
    assert "mapper_bytes" not in pd.read_csv(tmp_path / "ski_slope.csv").columns
