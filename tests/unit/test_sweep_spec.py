"""Sweep specs: --vary parsing (every form), errors with did-you-mean, YAML sweep files with line
numbers, and the grid (order, sample, ids, pickling)."""
import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest

import attnsim
from attnsim.errors import SpecError
from attnsim.sweep.spec import Sample, build_sweep, extend_sweep, load_sweep_file, parse_vary

KiB = 1024


@pytest.fixture(scope="module")
def w():
    return attnsim.attention("softmax", batch=1, heads=32, kv_heads=8, seq=4096, head_dim=128, causal=True)


@pytest.mark.parametrize("text, column, values", [
    ("arch.levels.SMEM.capacity=64KiB..256KiB:x2", "arch.levels.SMEM.capacity_bytes",
     (64 * KiB, 128 * KiB, 256 * KiB)),
    ("arch.levels.HBM.bandwidth=2TB/s..4TB/s:+0.5TB/s", "arch.levels.HBM.bandwidth_bytes_per_s",
     (2e12, 2.5e12, 3e12, 3.5e12, 4e12)),
    ("workload.seq_kv=1k,4k,16k,64k", "workload.seq_kv", (1024, 4096, 16384, 65536)),
    ("workload.batch=1..128:x2", "workload.batch", (1, 2, 4, 8, 16, 32, 64, 128)),
    ("workload.heads=8..12", "workload.heads", (8, 9, 10, 11, 12)),  # integers: step +1 by default
    ("workload.seq=1.5k,1M", "workload.seq", (1536, 1024 ** 2)),
    ("arch.gpu.sm_count=66,132", "arch.gpu.sm_count", (66, 132)),
    ("arch.clock=1.4GHz,1.8GHz", "arch.clock_hz", (1.4e9, 1.8e9)),
    ("arch.clock_hz=1.4e9,1.8GHz", "arch.clock_hz", (1.4e9, 1.8e9)),  # SI-named path: plain numbers allowed
    ("arch.levels.SMEM.capacity_bytes=65536", "arch.levels.SMEM.capacity_bytes", (65536.0,)),
    ("arch.levels.HBM.read_energy_per_byte=10pJ..30pJ:+10pJ", "arch.levels.HBM.read_energy_pj_per_byte",
     (10.0, 20.0, 30.0)),  # stored in the unit the field names: pJ
    ("arch.efficiency.hbm_bandwidth=0.5..0.8:+0.1", "arch.efficiency.hbm_bandwidth", (0.5, 0.6, 0.7, 0.8)),
    ("arch.efficiency.launch_overhead=2us,4us", "arch.efficiency.launch_overhead_s", (2e-6, 4e-6)),
    ("arch.efficiency.kernels.flash3.hbm=0.8", "arch.efficiency.kernels.flash3.hbm", (0.8,)),
    ("arch.energy.static_power=0W,100W", "arch.energy.static_power_w", (0.0, 100.0)),
    ("arch.compute.matrix_flops_per_cycle.wgmma.bf16=2048,4096",
     "arch.compute.matrix_flops_per_cycle.wgmma.bf16", (2048.0, 4096.0)),
    ("arch.levels.SMEM.capacity=256KiB..64KiB:x0.5", "arch.levels.SMEM.capacity_bytes",
     (256 * KiB, 128 * KiB, 64 * KiB)),  # descending
    ("arch.levels.SMEM.capacity=16KiB,64KiB..256KiB:x4", "arch.levels.SMEM.capacity_bytes",
     (16 * KiB, 64 * KiB, 256 * KiB)),  # lists mix values and ranges
    ("workload.dtype=bf16,fp8", "workload.dtype", ("bf16", "fp8")),
    ("workload.mask.window=1k,4k", "workload.mask.window", (1024, 4096)),
    ("workload.mask.causal=true,false", "workload.mask.causal", (True, False)),
    ("mapping=flash2,flash3,unfused", "mapping", ("flash2", "flash3", "unfused")),
    ("mapping.block_n=64,128", "mapping.block_n", (64, 128)),
    ("mapping.instr=mma_sync,wgmma", "mapping.instr", ("mma_sync", "wgmma")),
])
def test_vary_forms(h100, text, column, values):
    ax = parse_vary(text, h100)
    assert ax.column == column
    assert ax.values == values
    assert len({type(v) for v in ax.values}) == 1  # one type per axis: float for quantities, int for shapes


def test_range_rounding_and_ends(h100):
    # 0.5 + 3 * 0.1 is 0.8000000000000002 in floats; generated values are rounded to 15 digits
    assert parse_vary("arch.efficiency.l2_bandwidth=0.5..0.9:+0.1", h100).values[3] == 0.8
    # the end is included only when a step lands on it
    assert parse_vary("workload.batch=1..100:x2", h100).values[-1] == 64


@pytest.mark.parametrize("text, message, hint", [
    ("arch.levels.SMEM.capcity=64KiB", "no 'capcity' under arch.levels.SMEM", "did you mean 'capacity'?"),
    ("arch.levels.SMEMS.capacity=64KiB", "no 'SMEMS' under arch.levels", "did you mean 'SMEM'?"),
    ("workload.seqkv=1k", "no 'seqkv' under workload", "did you mean 'seq_kv'?"),
    ("workload.window=1k", "no 'window' under workload", "did you mean 'workload.mask.window'?"),
    ("mapping.blockn=64", "no 'blockn' under mapping", "did you mean 'block_n'?"),
    ("archh.clock=1GHz", "a path starts with arch, workload or mapping", "did you mean 'arch.clock'?"),
    ("arch.levels.SMEM.capacity=64", "the unit is required", None),
    ("arch.levels.SMEM.capacity=64KiB..256KiB", "needs a step", None),
    ("arch.levels.SMEM.capacity=64KiB..256KiB:x1", "factor > 0 other than 1", None),
    ("arch.levels.SMEM.capacity=64KiB..256KiB:+1GHz", "'GHz' is a frequency unit", None),
    ("arch.levels.SMEM.capacity=256KiB..64KiB:x2", "moves away from the end", None),
    ("workload.batch=1..100:x1.5", "not a whole number", None),
    ("workload.batch=1,2,2", "appears twice", None),
    ("workload.batch=one", "expected a whole number of tokens", None),
    ("workload.dtype=bf61", "expected one of", "did you mean 'bf16'?"),
    ("arch.efficiency.hbm_bandwidth=1.5", "expected a fraction in (0, 1]", None),
    ("mapping=flash4", "unknown mapping 'flash4'", "did you mean 'flash3'?"),
    ("arch=h100_sxm5", "unknown arch preset", "did you mean 'h100_sxm5_80gb'?"),
    ("arch.levels.SMEM.capacity", "expected PATH=VALUES", None),
    ("workload.batch=1..2000000", "at most 1000000 per axis", None),
])
def test_vary_errors(h100, text, message, hint):
    with pytest.raises(SpecError) as e:
        parse_vary(text, h100)
    assert message in str(e.value)
    if hint:
        assert hint in str(e.value)


def test_best_needs_the_mapper_module(h100, w, monkeypatch):
    from attnsim.sweep import params
    monkeypatch.setattr(params, "SEARCH_MODULE", "attnsim.mapping.no_such_mapper")
    with pytest.raises(SpecError, match="mapping=best needs attnsim.mapping.no_such_mapper"):
        build_sweep(h100, w, None, ["mapping=best"])
    with pytest.raises(SpecError, match="mapping=best needs attnsim.mapping.no_such_mapper"):
        build_sweep(h100, w, "best", ["workload.seq=1k,2k"])


def test_best_with_mapping_fields_is_refused(h100, w):
    if importlib.util.find_spec("attnsim.mapping.search") is None:
        pytest.skip("no attnsim.mapping.search")
    with pytest.raises(SpecError, match="mapping=best chooses every mapping field"):
        build_sweep(h100, w, "best", ["mapping.block_n=64,128"])
    with pytest.raises(SpecError, match="unknown mapper objective 'energi'") as e:
        build_sweep(h100, w, None, ["mapping=best,best:energi"])
    assert "did you mean 'energy'?" in str(e.value)


def test_build_sweep_lists_every_problem(h100, w):
    with pytest.raises(SpecError) as e:
        build_sweep(h100, w, "flash3", ["arch.levels.SMEM.capcity=64KiB", "workload.batch=0..x", "workload.seq=1k",
                                        "workload.seq_q=1", "workload.batch=1,2", "arch.clock_hz=1e9",
                                        "arch.clock=1GHz"])
    text = str(e.value)
    for part in ("capcity", "workload.batch", "seq sets both lengths", "varied twice"):
        assert part in text, part
    assert text.startswith("4 problems:")  # the bad batch axis is not also 'varied twice'


def test_grid_order_ids_and_values(h100, w):
    s = build_sweep(h100, w, "flash3", ["workload.seq=1k,2k", "arch.levels.HBM.bandwidth=2TB/s,3TB/s,4TB/s"])
    assert len(s) == 6
    assert [s.point(i) for i in (0, 1, 3)] == [
        {"workload.seq": 1024, "arch.levels.HBM.bandwidth_bytes_per_s": 2e12},
        {"workload.seq": 1024, "arch.levels.HBM.bandwidth_bytes_per_s": 3e12},  # last axis fastest
        {"workload.seq": 2048, "arch.levels.HBM.bandwidth_bytes_per_s": 2e12}]
    ids = s.point_ids(s.digits())
    assert len(set(ids)) == 6 and all(len(i) == 16 for i in ids)
    # the id hashes the values, not the axis order or the sweep
    t = build_sweep(h100, w, "flash2", ["arch.levels.HBM.bandwidth=2TB/s,3TB/s,4TB/s", "workload.seq=1k,2k"])
    assert sorted(t.point_ids(t.digits())) == sorted(ids)
    assert s.spec_hash != t.spec_hash
    frame = s.params_frame(s.digits())
    assert list(frame.columns) == ["workload.seq", "arch.levels.HBM.bandwidth_bytes_per_s"]
    assert str(frame.dtypes.iloc[0]) == "int64" and str(frame.dtypes.iloc[1]) == "float64"


def test_random_sample_is_seeded_sorted_and_distinct(h100, w):
    vary = ["workload.seq=1k..64k:x2", "arch.levels.HBM.bandwidth=1TB/s..5TB/s:+0.1TB/s",
            "arch.levels.SMEM.capacity=16KiB..256KiB:+16KiB"]
    a = build_sweep(h100, w, None, vary, sample=Sample(100, seed=3))
    b = build_sweep(h100, w, None, vary, sample=Sample(100, seed=3))
    c = build_sweep(h100, w, None, vary, sample=Sample(100, seed=4))
    assert len(a) == 100 and a.grid_size == 7 * 41 * 16
    fa = a.flat_indices(0, 100)
    assert np.array_equal(fa, b.flat_indices(0, 100)) and not np.array_equal(fa, c.flat_indices(0, 100))
    assert np.all(np.diff(fa) > 0)
    assert a.spec_hash == b.spec_hash != c.spec_hash
    assert len(build_sweep(h100, w, None, vary[:1], sample=Sample(100))) == 7  # the whole grid when smaller


def test_sweep_pickles_with_its_arch(h100, w):
    s = build_sweep(h100, w, "flash3", ["arch.levels.SMEM.capacity=64KiB..256KiB:x2"], sample=Sample(2, 1))
    t = pickle.loads(pickle.dumps(s))
    assert t.arch == s.arch and t.arch.spec_hash == s.arch.spec_hash
    assert t.spec_hash == s.spec_hash and np.array_equal(t.digits(), s.digits())


def test_extend_sweep_adds_axes(h100, w):
    s = build_sweep(h100, w, "flash3", ["workload.seq=1k,2k"])
    t = extend_sweep(s, ["arch.clock=1GHz,2GHz"])
    assert [a.column for a in t.axes] == ["workload.seq", "arch.clock_hz"] and len(t) == 4
    with pytest.raises(SpecError, match="varied twice"):
        extend_sweep(s, ["workload.seq=4k"])


def test_sweep_file(tmp_path):
    (tmp_path / "w.yaml").write_text("batch: 2\nheads: 16\nkv_heads: 4\nseq_q: 2048\nseq_kv: 2048\nhead_dim: 64\n")
    f = tmp_path / "s.yaml"
    f.write_text("description: demo\n"
                 "base:\n  arch: h100_sxm5_80gb\n  workload: w.yaml\n  mapping: flash2\n"
                 "vary:\n  arch.levels.SMEM.capacity: 64KiB..256KiB:x2\n  workload.seq_kv: [1k, 4k]\n"
                 "  mapping.block_n: 64\n"
                 "sample: {random: 4, seed: 1}\n")
    s = load_sweep_file(f)
    assert s.workload.heads == 16 and s.mapping == "flash2" and s.description == "demo"
    assert [a.values for a in s.axes] == [(65536.0, 131072.0, 262144.0), (1024, 4096), (64,)]
    assert len(s) == 4 and s.grid_size == 6


def test_sweep_file_with_inline_shape(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("base:\n  arch: a100_sxm4_80gb\n  workload: {batch: 4, seq: 2048, heads: 16, causal: true}\n"
                 "vary:\n  workload.batch: 1..8:x2\n")
    s = load_sweep_file(f)
    assert s.workload.batch == 4 and s.workload.mask.kind == "causal" and len(s) == 4


def test_sweep_file_errors_name_lines(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("base:\n"
                 "  arch: h100_sxm5_80gb\n"
                 "  workload: {batch: 1, seq: 1024, head_dimm: 64}\n"
                 "vary:\n"
                 "  arch.levels.SMEM.capcity: 64KiB..256KiB:x2\n"
                 "  workload.seq_kv: 1k..4k\n"
                 "  arch.levels.HBM.bandwidth: 3\n"
                 "sample: {random: 0}\n")
    with pytest.raises(SpecError) as e:
        load_sweep_file(f)
    text = str(e.value)
    assert text.startswith("4 problems:"), text
    assert f"{f}:3: base.workload.head_dimm: unknown key 'head_dimm' (did you mean 'head_dim'?)" in text
    assert f"{f}:5: vary.arch.levels.SMEM.capcity:" in text and "did you mean 'capacity'?" in text
    assert f"{f}:7: vary.arch.levels.HBM.bandwidth:" in text and "the unit is required" in text
    assert f"{f}:8: sample.random: must be at least 1" in text
    # seq_kv 1k..4k is fine: integer ranges step by 1 (3073 values)


def test_sweep_file_unknown_arch_and_missing_vary(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("base:\n  arch: h100\n  workload: llama3_8b_prefill_8k\n")
    with pytest.raises(SpecError) as e:
        load_sweep_file(f)
    text = str(e.value)
    assert f"{f}:2: base.arch: unknown arch preset 'h100'" in text
    assert "vary: missing section 'vary'" in text


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "examples" / "sweeps").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_example_sweep_files_load(path):
    if "best" in path.stem and importlib.util.find_spec("attnsim.mapping.search") is None:
        pytest.skip("no attnsim.mapping.search")
    s = load_sweep_file(path)
    assert len(s) > 0 and s.axes
