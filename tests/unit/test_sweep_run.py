"""Sweep evaluation and runs: the fast path equals the per-point path and predict(); a bad point
is a row with its reason; a killed sweep resumes without recomputing; the CLI; the plots."""
import argparse
import importlib.util
import json

import numpy as np
import pandas as pd
import pytest

import attnsim
from attnsim.errors import SpecError
from attnsim.sweep import evaluate as E
from attnsim.sweep import build_sweep, run_sweep
from attnsim.sweep.evaluate import evaluate_chunk, evaluate_slow

COLUMNS_AFTER_PARAMS = ["latency_s", "tflops_per_s", "bound", "hbm_bytes", "l2_bytes", "smem_bytes", "energy_j",
                        "ctas_per_sm", "waves", "mapping_label", "status", "point_id"]


@pytest.fixture(scope="module")
def w():
    return attnsim.attention("softmax", batch=1, heads=32, kv_heads=8, seq=4096, head_dim=128, causal=True)


def small_sweep(w, **kw):
    return build_sweep("h100_sxm5_80gb", w, kw.pop("mapping", "flash3"),
                       kw.pop("vary", ["arch.levels.SMEM.capacity=64KiB..256KiB:+32KiB", "workload.seq=1k,4k,16k",
                                       "arch.levels.HBM.bandwidth=2TB/s..4TB/s:+1TB/s"]), **kw)


@pytest.mark.parametrize("mapping, vary", [
    ("flash3", ["arch.levels.SMEM.capacity=16KiB..256KiB:+48KiB", "workload.seq=1k,4k",
                "arch.levels.HBM.bandwidth=2TB/s,3TB/s", "arch.clock=1.4GHz,1.8GHz",
                "arch.levels.SMEM.bandwidth=20TB/s,30TB/s"]),
    (None, ["arch.gpu.sm_count=66,100,132", "workload.batch=1,4", "workload.seq=512,2k",
            "arch.levels.L2.capacity=10MB,50MB"]),
    ("flash_decode", ["arch.gpu.sm_count=66,132", "workload.seq_q=1", "workload.seq_kv=1k..64k:x4",
                      "workload.batch=1..64:x4"]),
    ("flash3", ["mapping.block_n=64,128,192", "arch.levels.SMEM.capacity=100KiB..250KiB:+50KiB",
                "arch.gpu.smem_per_cta=100KiB,227KiB", "arch.gpu.max_registers_per_thread=128,255"]),
    ("unfused", ["workload.heads=8,32", "workload.kv_heads=4,8,3", "arch.energy.matrix_per_flop=0.5pJ,1pJ"]),
    (None, ["mapping=flash2,flash3,unfused,flash_decode,flash3_h100_128x128",
            "arch.levels.HBM.bandwidth_bytes_per_s=0,3e12"]),
    (None, ["arch=h100_sxm5_80gb,a100_sxm4_80gb,fusemax_like", "workload.seq=1k,4k", "workload.dtype=bf16,fp8"]),
], ids=["capacity-clock-bw", "sm-count-split-heuristic", "decode", "smem-limits-registers", "gqa-bad-heads",
        "mappings-zero-bw", "archs-spatial-dtype"])
def test_fast_path_equals_per_point_path(w, mapping, vary):
    s = build_sweep("h100_sxm5_80gb", w, mapping, vary)
    slow = evaluate_slow(s, 0, len(s))
    fast = E.Evaluator(s)
    fast.small_group = 0  # every group probed and lowered in bulk, however few its points
    pd.testing.assert_frame_equal(fast.chunk(0, len(s)), slow)
    assert fast.slow_points < len(s)
    pd.testing.assert_frame_equal(E.Evaluator(s).chunk(0, len(s)), slow)  # the default mix of both paths


def test_rows_equal_predict(w, h100):
    s = build_sweep(h100, w, None, ["workload.seq=1,512,8k", "arch.levels.HBM.bandwidth=2TB/s,3TB/s",
                                    "arch.levels.SMEM.capacity=200KiB,228KiB"])
    t = evaluate_chunk(s, 0, len(s))
    assert list(t.columns) == list(s.params_frame(s.digits(0, 1)).columns) + COLUMNS_AFTER_PARAMS
    for i in range(len(s)):
        pt = s.point(i)
        arch = h100.with_level("HBM", bandwidth_bytes_per_s=pt["arch.levels.HBM.bandwidth_bytes_per_s"]) \
                   .with_level("SMEM", capacity_bytes=pt["arch.levels.SMEM.capacity_bytes"])
        r = attnsim.predict(arch, w.with_changes(seq_q=pt["workload.seq"], seq_kv=pt["workload.seq"]))
        row = t.iloc[i]
        assert (row.latency_s, row.tflops_per_s, row.energy_j, row.bound, row.mapping_label) == \
               (r.latency_s, r.tflops_per_s, r.energy_total_j, r.bound, r.mapping)
        assert (row.hbm_bytes, row.l2_bytes, row.smem_bytes) == tuple(r.traffic_bytes[k] for k in ("HBM", "L2", "SMEM"))
        assert (row.ctas_per_sm, row.waves) == (r.occupancy["ctas_per_sm"], r.occupancy["waves"])
        assert row.status == "ok"


def test_fast_path_lowers_once_per_group(w, monkeypatch):
    """Column axes are probed, not lowered per point: 3 seq groups x (1 base + probes of 16 + 9 values)."""
    calls = []
    real = E.lower_gpu
    monkeypatch.setattr(E, "lower_gpu", lambda *a, **k: calls.append(1) or real(*a, **k))
    s = build_sweep("h100_sxm5_80gb", w, "flash3", ["workload.seq=1k,2k,4k",
                                                    "arch.levels.SMEM.capacity=160KiB..400KiB:+16KiB",
                                                    "arch.levels.HBM.bandwidth=1TB/s..5TB/s:+0.5TB/s"])
    t = E.Evaluator(s).chunk(0, len(s))
    assert len(t) == 3 * 16 * 9 and (t.status == "ok").all()
    assert len(calls) == 3 * (1 + 16 + 9)


def test_bad_points_are_rows_with_reasons(w):
    s = build_sweep("h100_sxm5_80gb", w, "flash3", ["arch.levels.SMEM.capacity=64KiB,228KiB",
                                                    "workload.kv_heads=8,5", "mapping.block_n=128,512"])
    t = run_sweep(s, progress=False).table
    assert len(t) == 8
    keys = zip(t["arch.levels.SMEM.capacity_bytes"], t["workload.kv_heads"], t["mapping.block_n"])
    status = dict(zip(keys, t.status))
    assert status[(228 * 1024, 8, 128)] == "ok"
    assert "kv_heads: heads (32) must be a multiple of kv_heads (5)" in status[(228 * 1024, 5, 128)]
    assert "SMEM overflows" in status[(64 * 1024, 8, 128)] and "allows 64.0 KiB" in status[(64 * 1024, 8, 128)]
    assert "block_n" in status[(228 * 1024, 8, 512)]
    bad = t[t.status != "ok"]
    assert bad[["latency_s", "energy_j", "hbm_bytes"]].isna().all().all() and bad.bound.isna().all()
    assert t.loc[t.status == "ok", "mapping_label"].str.startswith("flash3 (fused-128x128").all()


def test_resume_after_kill_recomputes_nothing(w, tmp_path, monkeypatch):
    s = small_sweep(w)  # 7 x 3 x 3 = 63 points
    reference = run_sweep(s, chunk_size=10, progress=False).table
    out = tmp_path / "sweep.parquet"
    evaluated = []
    real = E.evaluate_chunk
    monkeypatch.setattr(E, "evaluate_chunk", lambda sw, a, b: evaluated.append(a // 10) or real(sw, a, b))

    class Killed(Exception):
        pass

    def kill_after_three(chunk_id, frame):
        if len(evaluated) == 3:
            raise Killed

    with pytest.raises(Killed):
        run_sweep(s, out, chunk_size=10, progress=False, on_chunk=kill_after_three)
    mpath = tmp_path / "sweep.parquet.d" / "manifest.json"
    manifest = json.loads(mpath.read_text())
    assert manifest["completed"] == [0, 1, 2] and manifest["chunks"] == 7 and not out.exists()
    # a whole part the manifest does not list yet (killed between rename and manifest) is kept;
    # a broken one is recomputed
    manifest["completed"] = [0, 1]
    mpath.write_text(json.dumps(manifest))
    (tmp_path / "sweep.parquet.d" / "part-00004.parquet").write_bytes(b"garbage")
    evaluated.clear()
    run = run_sweep(s, out, chunk_size=10, progress=False)
    assert evaluated == [3, 4, 5, 6] and run.computed == [3, 4, 5, 6] and run.reused == [0, 1, 2]
    assert json.loads(mpath.read_text())["completed"] == list(range(7))
    pd.testing.assert_frame_equal(run.table, reference)
    pd.testing.assert_frame_equal(pd.read_parquet(out), reference)
    evaluated.clear()
    again = run_sweep(s, out, chunk_size=10, progress=False, csv=True)  # finished: nothing to do
    assert evaluated == [] and again.reused == list(range(7))
    csv = pd.read_csv(again.csv_path, dtype={"point_id": str})
    assert list(csv.columns) == list(reference.columns) and (csv.point_id == reference.point_id).all()
    assert np.allclose(csv.latency_s, reference.latency_s, rtol=1e-15, equal_nan=True)


def test_another_sweep_at_the_same_path_is_refused(w, tmp_path):
    out = tmp_path / "s.parquet"
    run_sweep(small_sweep(w), out, chunk_size=30, progress=False)
    other = small_sweep(w, mapping="flash2")
    with pytest.raises(SpecError, match="holds results of a different sweep") as e:
        run_sweep(other, out, chunk_size=30, progress=False)
    assert "--overwrite" in str(e.value)
    with pytest.raises(SpecError, match="checkpointed with --chunk-size 30"):
        run_sweep(small_sweep(w), out, chunk_size=20, progress=False)
    run = run_sweep(other, out, chunk_size=30, progress=False, overwrite=True)
    assert run.reused == [] and (run.table.mapping_label == "flash2").all()
    (tmp_path / "plain.parquet").write_bytes(b"x")
    with pytest.raises(SpecError, match="not written by a checkpointed attnsim sweep"):
        run_sweep(other, tmp_path / "plain.parquet", progress=False)


def test_processes_executor_matches_inprocess(w, tmp_path):
    s = small_sweep(w)
    ref = run_sweep(s, chunk_size=16, progress=False).table
    got = run_sweep(s, tmp_path / "p.parquet", executor="processes", workers=2, chunk_size=16, progress=False)
    pd.testing.assert_frame_equal(got.table, ref)
    assert sorted(got.computed) == [0, 1, 2, 3]


def test_executor_errors():
    from attnsim.sweep.executors import make_executor
    with pytest.raises(SpecError, match="did you mean 'processes'"):
        make_executor("process")
    with pytest.raises(SpecError, match="needs --executor dask"):
        make_executor("processes", scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(SpecError, match="not both"):
        make_executor("dask", workers=2, scheduler="tcp://127.0.0.1:8786")


@pytest.mark.skipif(importlib.util.find_spec("attnsim.mapping.search") is None, reason="no mapper module")
def test_mapping_best_runs_the_mapper_per_point(w, h100):
    from attnsim.mapping.search import search_gpu
    s = build_sweep(h100, w, "best", ["arch.levels.SMEM.capacity=32KiB,228KiB", "workload.seq=1k,4k"])
    t = evaluate_chunk(s, 0, len(s))
    pd.testing.assert_frame_equal(t, evaluate_slow(s, 0, len(s)))
    for i in range(len(s)):
        pt = s.point(i)
        arch = h100.with_level("SMEM", capacity_bytes=pt["arch.levels.SMEM.capacity_bytes"])
        best = search_gpu(arch, w.with_changes(seq_q=pt["workload.seq"], seq_kv=pt["workload.seq"])).best
        assert t.mapping_label[i] == best.label()


def sweep_parser():
    from attnsim.cli_sweep import add_parser
    p = argparse.ArgumentParser(prog="attnsim")
    add_parser(p.add_subparsers(dest="command", required=True))
    return p


def test_cli_sweep_flags_csv_and_plots(tmp_path, capsys):
    out, plots = tmp_path / "smem.parquet", tmp_path / "plots"
    a = sweep_parser().parse_args([
        "sweep", "--arch", "h100_sxm5_80gb", "--seq", "4096", "--heads", "32", "--kv-heads", "8", "--causal",
        "--algorithm", "flash3", "--vary", "arch.levels.SMEM.capacity=64KiB..256KiB:x2",
        "--vary", "workload.seq=1k,4k", "--vary", "mapping.block_n=64,128", "-o", str(out), "--csv",
        "--plot", str(plots), "--quiet"])
    assert a.func(a) == 0
    text = capsys.readouterr().out
    assert "sweep: 12 points over 3 axes" in text and "12 rows" in text
    t = pd.read_parquet(out)
    assert len(t) == 12 and (tmp_path / "smem.csv").exists()
    assert sorted(p.name for p in plots.iterdir()) == ["capacity.png", "pareto_capacity.png", "pareto_energy.png"]
    assert all(p.stat().st_size > 10_000 for p in plots.iterdir())


def test_cli_sweep_file_and_errors(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text("base:\n  arch: a100_sxm4_80gb\n  workload: {seq: 2048, heads: 16}\n  mapping: flash2\n"
                 "vary:\n  workload.batch: 1..4:x2\n")
    p = sweep_parser()
    a = p.parse_args(["sweep", "--file", str(f), "--vary", "arch.levels.HBM.bandwidth=1TB/s,2TB/s",
                      "-o", str(tmp_path / "o.parquet"), "--quiet"])
    assert a.func(a) == 0
    assert len(pd.read_parquet(tmp_path / "o.parquet")) == 6
    from attnsim.errors import AttnsimError
    for argv, message in ((["--file", str(f), "--arch", "h100_sxm5_80gb"], "drop --arch"),
                          (["--arch", "h100_sxm5_80gb", "--seq", "1024"], "at least one --vary"),
                          (["--arch", "h100_sxm5_80gb", "--vary", "workload.batch=1,2"], "--seq"),
                          (["--arch", "h100_sxm5_80gb", "--seq", "1024", "--vary", "arch.levels.SMEM.capcity=1KiB"],
                           "did you mean 'capacity'?")):
        a = p.parse_args(["sweep", *argv, "-o", str(tmp_path / "x.parquet"), "--quiet"])
        with pytest.raises(AttnsimError, match=message):
            a.func(a)


def test_pareto_mask():
    from attnsim.sweep.plots import pareto_mask
    x = np.array([1, 2, 2, 3, 4, 1])
    y = np.array([5, 3, 4, 3, 1, 6])
    assert pareto_mask(x, y).tolist() == [True, True, False, False, True, False]
