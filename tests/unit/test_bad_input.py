"""Every kind of bad input gives one clear message naming where and what, never a traceback."""
import subprocess
import sys
from pathlib import Path

import pytest

import attnsim
from attnsim.cli import main
from attnsim.errors import MappingError, SpecError, WorkloadError

H100_YAML = Path(attnsim.arch.ARCH_DIR) / "h100_sxm5_80gb.yaml"


def _arch_text(**replacements):
    text = H100_YAML.read_text()
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def test_missing_unit_names_file_line_key_and_expected_form(tmp_path):
    p = tmp_path / "arch.yaml"
    p.write_text(_arch_text(**{"capacity: 80 GB": "capacity: 80"}))
    with pytest.raises(SpecError) as e:
        attnsim.load_arch(p)
    msg = str(e.value)
    line = next(i for i, l in enumerate(p.read_text().splitlines(), 1) if l.strip() == "capacity: 80")
    assert f"{p}:{line}" in msg
    assert "levels.0.capacity" in msg
    assert "expected a size like" in msg


def test_unknown_key_gets_did_you_mean(tmp_path):
    p = tmp_path / "arch.yaml"
    p.write_text(_arch_text(**{"  max_ctas_per_sm: 32": "  max_cta_per_sm: 32"}))
    with pytest.raises(SpecError) as e:
        attnsim.load_arch(p)
    assert "did you mean 'max_ctas_per_sm'" in str(e.value)


def test_every_problem_is_listed_at_once(tmp_path):
    p = tmp_path / "arch.yaml"
    p.write_text(_arch_text(**{"capacity: 80 GB": "capacity: 80", "  max_ctas_per_sm: 32": "  max_cta_per_sm: 32",
                               "sm_count: {value: 132": "sm_count: {value: 13.5"}))
    with pytest.raises(SpecError) as e:
        attnsim.load_arch(p)
    assert len(e.value.problems) >= 3


def test_efficiency_factor_without_its_own_source_is_an_error(tmp_path):
    p = tmp_path / "arch.yaml"
    p.write_text(_arch_text(**{"wgmma: {value: 0.71, source: VIDUR-GEMM}": "wgmma: 0.71"}))
    with pytest.raises(SpecError) as e:
        attnsim.load_arch(p)
    assert "efficiency.mma.wgmma" in str(e.value)


def test_unknown_preset_lists_presets_and_suggests():
    with pytest.raises(SpecError) as e:
        attnsim.load_arch("h100_sxm5")
    assert "did you mean 'h100_sxm5_80gb'" in str(e.value)


def test_non_integer_shape_in_workload_yaml(tmp_path):
    p = tmp_path / "w.yaml"
    p.write_text("batch: 1\nheads: 32\nseq_q: 8k\nseq_kv: 8192\nhead_dim: 128\n")
    with pytest.raises(SpecError) as e:
        attnsim.load_workload(p)
    assert f"{p}:3" in str(e.value) and "seq_q" in str(e.value)


def test_heads_not_multiple_of_kv_heads():
    with pytest.raises(WorkloadError, match="multiple of kv_heads"):
        attnsim.attention("softmax", heads=10, kv_heads=4, seq=128)


@pytest.mark.parametrize("head_dim,match", [(100, "multiples of 8"), (512, "supports head_dim 512")])
def test_head_dim_no_instruction_tile_supports(h100, head_dim, match):
    w = attnsim.attention("softmax", heads=8, seq=1024, head_dim=head_dim)
    with pytest.raises(MappingError, match=match):
        attnsim.predict(h100, w, "flash3")


def test_mapping_overflowing_shared_memory_says_by_how_much(h100):
    w = attnsim.attention("softmax", heads=8, seq=4096, head_dim=128)
    m = attnsim.KernelMapping(block_m=256, block_n=256, warps=8, stages=3, instr="wgmma")
    with pytest.raises(MappingError) as e:
        attnsim.predict(h100, w, m)
    # Q 256x128 + 3 stages x 256 keys x (128+128) x 2 B = 64 KiB + 384 KiB = 448 KiB vs 227 KiB
    assert "SMEM overflows by 221.0 KiB" in str(e.value)


def test_flash3_on_ampere_is_refused_with_a_hint(a100):
    w = attnsim.attention("softmax", heads=8, seq=1024)
    with pytest.raises(MappingError, match="flash3 needs wgmma"):
        attnsim.predict(a100, w, "flash3")


def test_cases_csv_broken_row_gets_reason_and_run_goes_on(tmp_path):
    cases = tmp_path / "cases.csv"
    cases.write_text(
        "arch,algorithm,batch,heads,kv_heads,seq_q,seq_kv,head_dim,causal,window,dtype\n"
        "h100_sxm5_80gb,flash3,1,32,8,8192,8192,128,true,,bf16\n"
        "h100_sxm5_80gb,flash3,1,32,8,8k,8192,128,true,,bf16\n"
        "h100_sxm5_80gb,flash9,1,32,8,8192,8192,128,true,,bf16\n"
        "h100_sxm5_80gb,flash_decode,16,32,8,1,32768,128,false,0,bf16\n")
    out = tmp_path / "out.csv"
    assert main(["predict", "--cases", str(cases), "-o", str(out)]) == 0
    import csv
    rows = list(csv.DictReader(out.open()))
    assert [r["status"] == "ok" for r in rows] == [True, False, False, True]
    assert "line 3" in rows[1]["status"] and "seq_q" in rows[1]["status"]
    assert "did you mean 'flash" in rows[2]["status"]
    assert float(rows[3]["latency_s"]) > 0


def test_cases_csv_missing_column(tmp_path):
    cases = tmp_path / "cases.csv"
    cases.write_text("arch,algorithm\nh100_sxm5_80gb,flash3\n")
    with pytest.raises(SpecError, match="missing column"):
        from attnsim.cases import read_cases
        read_cases(cases)


def test_cli_prints_one_line_error_and_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "attnsim.cli", "predict", "--arch", "h100_sxm5", "--seq", "1024"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("attnsim: error: unknown arch preset 'h100_sxm5'")
