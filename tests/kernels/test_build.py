"""validate/build.py: the variant list, ptxas parsing, error exits, and (where nvcc is
installed) a real build for sm_80 and sm_90 whose resources feed the model."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import attnsim
from attnsim.mapping.kernel import KernelMapping, smem_bytes_per_cta
from attnsim.validate.kernels_meta import bundled_mapping, kernel_entries, load_resources, variant_names
from attnsim.validate.run_gpu import load_build_module

REPO = Path(__file__).resolve().parents[2]
build = load_build_module()
ARCHS = ("sm_80", "sm_90")
PRESET = {"sm_80": "a100_sxm4_80gb", "sm_90": "h100_sxm5_80gb"}

PTXAS_SAMPLE = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'kern_b' for 'sm_80'
ptxas info    : Function properties for kern_b
    8 bytes stack frame, 12 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 10 registers, used 1 barriers, 512 bytes smem, 360 bytes cmem[0]
ptxas info    : Compile time = 9.771 ms
ptxas info    : Function properties for some_device_fn
    64 bytes stack frame, 64 bytes spill stores, 64 bytes spill loads
ptxas info    : Compiling entry function 'kern_a' for 'sm_90'
ptxas info    : Function properties for kern_a
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 440 bytes cmem[0]
"""


# ---------------------------------------------------------------------------- no nvcc needed

def test_parse_ptxas_reads_each_entry_and_arch():
    got = build.parse_ptxas(PTXAS_SAMPLE)
    assert got["kern_b"]["sm_80"] == {"registers": 10, "smem_static_bytes": 512, "spill_stores": 12,
                                      "spill_loads": 4, "stack_frame_bytes": 8}
    assert got["kern_a"]["sm_90"] == {"registers": 255, "smem_static_bytes": 0, "spill_stores": 0,
                                      "spill_loads": 0, "stack_frame_bytes": 0}
    assert "some_device_fn" not in got


def test_variant_list_covers_the_brief():
    names = [k.name for k in build.all_kernels()]
    assert len(names) == len(set(names))
    for d, tile in ((64, "m128_n128_w4_s2"), (128, "m128_n64_w4_s2")):
        for dt in ("fp16", "bf16"):
            for mask in ("full", "causal", "window", "block_sparse"):
                assert f"flash_fwd_{dt}_d{d}_{tile}_{mask}" in names
    for part in ("qk", "softmax", "pv"):
        assert f"naive_{part}_bf16" in names
    for d in (64, 128):
        assert f"flash_decode_bf16_d{d}_m16_n128_w4_s2" in names
        assert f"flash_decode_combine_bf16_d{d}" in names
    assert "linear_attn_bf16_d128_c64" in names


def test_few_translation_units():
    units = build.units(2)
    assert len(units) <= 6  # nvcc runs: flash_fwd split in two, one per other family
    assert sum(len(u.kernels) for u in units) == len(build.all_kernels())
    for u in units:
        src = build.unit_source(u)
        assert f'#include "{u.source}"' in src and all(k.name in src for k in u.kernels)


def test_flash_fwd_dynamic_smem_is_the_models_formula():
    for k in build.flash_fwd_kernels():
        b = k.block
        w = attnsim.attention("softmax", heads=8, seq=1024, head_dim=b["head_dim"], dtype=b["dtype"])
        m = KernelMapping(block_m=b["block_m"], block_n=b["block_n"], warps=b["warps"], stages=b["stages"])
        assert k.smem_dynamic_bytes == smem_bytes_per_cta(m, w), k.name


def test_bad_arch_exits_2(capsys):
    assert build.main(["--arch", "sm_75"]) == 2
    assert build.main(["--arch", "compute_80"]) == 2
    assert "sm_80" in capsys.readouterr().err


def test_missing_nvcc_exits_3(monkeypatch, tmp_path, capsys):
    def missing(explicit=None):
        raise build.NvccMissing("nvcc not found")
    monkeypatch.setattr(build, "find_nvcc", missing)
    assert build.main(["--out", str(tmp_path)]) == 3
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nvcc not found" in err
    assert not (tmp_path / "resources.json").exists()


def test_resources_json_missing_is_a_clear_error(tmp_path):
    with pytest.raises(attnsim.SpecError, match="build.py"):
        load_resources(tmp_path / "nope.json")


# ---------------------------------------------------------------------------- with nvcc

needs_nvcc = pytest.mark.skipif(
    shutil.which("nvcc") is None, reason="nvcc not found")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not found: the CUDA kernels are compiled only where the CUDA toolkit is installed")
    out = tmp_path_factory.mktemp("kernels")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "validate" / "build.py"), "--out", str(out),
                           "--arch", ",".join(ARCHS), "--quiet"], capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = load_resources(out / "resources.json")
    return res, seconds


def test_build_is_quick_and_complete(built):
    res, seconds = built
    assert seconds < 180, f"the build took {seconds:.0f} s"
    entries = kernel_entries(res)
    assert set(entries) == {k.name for k in build.all_kernels()}
    assert res["archs"] == list(ARCHS) and res["nvcc_version"] and res["date"]
    assert set(res["sources_sha256"]) >= {"flash_fwd.cu", "flash_decode.cu", "naive_attention.cu",
                                          "linear_attention.cu", "common.cuh"}


def test_every_kernel_has_sane_registers(built):
    res, _ = built
    for name, e in kernel_entries(res).items():
        for a in ARCHS:
            assert 0 < e[a]["registers"] <= 255, (name, a, e[a])


def test_no_spills_anywhere(built):
    """The flash_fwd kernels consume each key tile in sub-tiles sized so that S and O fit the
    255 registers (flash_fwd.cu, SUB_N); with CUDA 13.0 no kernel spills at all."""
    res, _ = built
    spills = {(n, a): (e[a]["spill_stores"], e[a]["spill_loads"]) for n, e in kernel_entries(res).items()
              for a in ARCHS if e[a]["spill_stores"] or e[a]["spill_loads"]}
    fwd_spills = {k: v for k, v in spills.items() if k[0].startswith("flash_fwd")}
    assert not fwd_spills, fwd_spills
    assert not spills, spills


def test_head_dim_128_needs_at_least_the_registers_of_64(built):
    res, _ = built
    e = kernel_entries(res)
    pairs = [("flash_fwd_bf16_d64_m128_n64_w4_s2_full", "flash_fwd_bf16_d128_m128_n64_w4_s2_full"),
             ("flash_fwd_bf16_d64_m128_n64_w4_s2_causal", "flash_fwd_bf16_d128_m128_n64_w4_s2_causal")]
    for dt in ("fp16", "bf16"):
        for bm in (16, 64):
            pairs.append((f"flash_decode_{dt}_d64_m{bm}_n128_w4_s2", f"flash_decode_{dt}_d128_m{bm}_n128_w4_s2"))
        pairs.append((f"linear_attn_{dt}_d64_c64", f"linear_attn_{dt}_d128_c64"))
    for small, big in pairs:
        for a in ARCHS:
            assert e[big][a]["registers"] >= e[small][a]["registers"], (small, big, a)


def test_static_smem_of_the_naive_gemms_is_the_models_formula(built):
    res, _ = built
    for name, e in kernel_entries(res).items():
        if e["family"] == "naive" and e["block"]["kernel"] in ("qk", "pv"):
            b = e["block"]
            for a in ARCHS:  # stages * (block_m + block_n) * 64 * 2 bytes
                assert e[a]["smem_static_bytes"] == b["stages"] * (b["block_m"] + b["block_n"]) * 64 * 2


@pytest.mark.parametrize("variant", ["flash_fwd_bf16_d128_m128_n64_w4_s2_causal",
                                     "flash_fwd_fp16_d64_m128_n128_w4_s2_full", "naive_bf16",
                                     "flash_decode_bf16_d128_m16_n128_w4_s2"])
def test_bundled_mapping_feeds_the_model(built, variant):
    res, _ = built
    for a in ARCHS:
        m = bundled_mapping(variant, a, resources=res, split_kv=4 if "decode" in variant else 1,
                            q_heads_per_cta=4 if "decode" in variant else 1)
        assert isinstance(m, KernelMapping) and m.registers_per_thread > 0
        d = 64 if "d64" in variant else 128
        if "decode" in variant:
            w = attnsim.attention("softmax", batch=8, heads=32, kv_heads=8, seq_q=1, seq_kv=16384, head_dim=d)
        else:
            w = attnsim.attention("softmax", batch=2, heads=16, seq=4096, head_dim=d, causal="causal" in variant,
                                  dtype="fp16" if "fp16" in variant else "bf16")
        r = attnsim.predict(PRESET[a], w, m)
        assert r.latency_s > 0


def test_bundled_mapping_unknown_names(built):
    res, _ = built
    with pytest.raises(attnsim.SpecError, match="did you mean 'flash_fwd_bf16_d128_m128_n64_w4_s2_causal'"):
        bundled_mapping("flash_fwd_bf16_d128_m128_n64_w4_s2_casual", resources=res)
    with pytest.raises(attnsim.SpecError, match="not compiled for"):
        bundled_mapping("naive_bf16", "sm_86", resources=res)
    with pytest.raises(attnsim.SpecError, match="combine"):
        bundled_mapping("flash_decode_combine_bf16_d128", resources=res)
    assert "naive_bf16" in variant_names(res)
    assert bundled_mapping("naive_qk_bf16", "h100_sxm5_80gb", resources=res).style == "unfused"


@needs_nvcc
def test_compile_error_exits_1_with_nvcc_stderr(monkeypatch, tmp_path, capsys):
    bad = build.Unit("broken", "common.cuh", ("this is not C++;",), ())
    monkeypatch.setattr(build, "units", lambda jobs=2: [bad])
    assert build.main(["--out", str(tmp_path), "--arch", "sm_80"]) == 1
    err = capsys.readouterr().err
    assert "nvcc failed on broken" in err and "error" in err
