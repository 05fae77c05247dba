"""`attnsim simulate gemm|attention`, driven through add_parser on a bare argparse parser."""
import argparse
import json

import pytest

from attnsim.errors import AttnsimError, SpecError
from attnsim.sim.cli_simulate import add_parser
from attnsim.units import UnitError


def run(argv, capsys):
    p = argparse.ArgumentParser(prog="attnsim")
    add_parser(p.add_subparsers(dest="command", required=True))
    a = p.parse_args(argv)
    rc = a.func(a)
    return rc, capsys.readouterr().out


GEMM = ["simulate", "gemm", "--rows", "4", "--cols", "4", "--dataflow", "os", "--m", "7", "--n", "13", "--k", "5"]


def test_gemm_table(capsys):
    rc, out = run(GEMM, capsys)
    assert rc == 0
    assert "on a 4 x 4 os array" in out and "buffers: unlimited" in out
    assert "88  (compute 88 + stall 0)" in out  # 8 folds x (5 + 4 + 4 - 2) cycles
    assert "8 x 11 cycles" in out and "32.32%" in out and "71.09%" in out
    assert "ifmap 140, filter 130" in out


def test_gemm_json_with_buffers_and_bandwidth(capsys):
    argv = ["simulate", "gemm", "--rows", "128", "--cols", "128", "--dataflow", "ws", "--m", "512", "--n", "512",
            "--k", "512", "--sram-ifmap", "256 KiB", "--sram-filter", "256 KiB", "--sram-ofmap", "256KiB",
            "--dram-bw", "64", "--format", "json"]
    rc, out = run(argv, capsys)
    d = json.loads(out)
    assert rc == 0 and d["compute_cycles"] == 16 * 894
    assert d["cycles"] == d["compute_cycles"] + d["stall_cycles"] and d["stall_cycles"] > 0
    # 512 KiB operands overflow 256 KiB buffers: the ifmap is refetched for each of 4 column folds
    assert d["dram_reads_bytes"] == {"ifmap": 4 * 512 * 512 * 2, "filter": 512 * 512 * 2}
    assert d["dram_busy_cycles"] == (4 + 1 + 1) * 512 * 512 * 2 // 64


def test_gemm_errors(capsys):
    with pytest.raises(UnitError):
        run(GEMM + ["--sram-ifmap", "64 parsecs"], capsys)
    with pytest.raises(SpecError, match="give at least"):
        run(GEMM + ["--sram-ifmap", "8 B"], capsys)
    with pytest.raises(SystemExit):  # argparse rejects an unknown dataflow
        run(GEMM[:6] + ["rs"] + GEMM[7:], capsys)


def test_attention_table_and_json(capsys):
    base = ["simulate", "attention", "--arch", "fusemax_like", "--heads", "2", "--seq", "2048"]
    rc, out = run(base + ["--mapping", "fused", "--block-m", "512"], capsys)
    assert rc == 0 and "[fused-512x256]" in out and "2D busy cycles" in out
    rc, out = run(base + ["--mapping", "unfused", "--causal", "--format", "json"], capsys)
    d = json.loads(out)
    assert d["model"] == "spatial-cycle" and d["mapping"] == "unfused" and "causal" in d["workload"]


def test_attention_errors(capsys):
    with pytest.raises(AttnsimError, match="--seq"):
        run(["simulate", "attention", "--heads", "2"], capsys)
    with pytest.raises(AttnsimError, match="spatial schedule"):
        run(["simulate", "attention", "--arch", "h100_sxm5_80gb", "--seq", "1024", "--mapping", "fused"], capsys)
    with pytest.raises(AttnsimError, match="for GPU archs"):
        run(["simulate", "attention", "--arch", "fusemax_like", "--seq", "1024", "--algorithm", "flash3"], capsys)


def test_attention_on_a_gpu_arch_runs_the_gpu_simulator(capsys, tmp_path):
    rc, out = run(["simulate", "attention", "--arch", "h100_sxm5_80gb", "--seq", "1024", "--heads", "4",
               "--timeline", str(tmp_path / "t.png")], capsys)
    assert rc == 0 and "cycle / analytical" in out and (tmp_path / "t.png").stat().st_size > 5000
