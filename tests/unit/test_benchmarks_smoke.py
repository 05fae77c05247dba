"""benchmarks/run.py runs and writes what it promises. It asserts no speed: speed goals live in
the benchmarks (docs/benchmarks.md), not in the tests."""
import json
import math
import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"
FIGURES = ("analytical_gpu_points_per_s", "analytical_gpu_prefill_points_per_s",
           "analytical_gpu_points_per_s_with_lowering", "lower_gpu_rows_per_s", "numba_compile_s")


def run_bench(*args, timeout=120):
    return subprocess.run([sys.executable, str(RUN), "--quick", "--no-modules", "--points", "4000", "--calls", "50", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_quick_run_writes_results_and_docs(tmp_path):
    results, docs = tmp_path / "results.json", tmp_path / "benchmarks.md"
    results.write_text(json.dumps({"some_other_benchmark_per_s": 12.5}))  # merged into, not dropped
    r = run_bench("--write", "--results", str(results), "--docs", str(docs))
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(results.read_text())
    for key in FIGURES:
        assert isinstance(data[key], float) and math.isfinite(data[key]) and data[key] > 0, key
        assert key in r.stdout
    assert data["some_other_benchmark_per_s"] == 12.5
    assert data["machine"]["cpu_count"] >= 1 and data["machine"]["platform"]
    assert data["date"].endswith("+00:00") and data["python"] and data["numba"]
    assert data["runs"]["analytical_gpu_points_per_s"]["n_points"] == 4000
    assert data["runs"]["analytical_gpu_points_per_s"]["n_ok"] == 4000  # every sweep point is a valid mapping
    text = docs.read_text()
    begin, end = text.index("<!-- bench-table -->"), text.index("<!-- /bench-table -->")
    tbl = text[begin:end]
    assert "| benchmark | figure | unit | target | met? | machine | date |" in tbl
    for key in FIGURES + ("some_other_benchmark_per_s",):
        assert f"`{key}`" in tbl

    # a second run regenerates the table in place and keeps the prose around it
    docs.write_text(text.replace("# Benchmarks", "# Benchmarks\n\nHand-written note."))
    r = run_bench("--write", "--results", str(results), "--docs", str(docs))
    assert r.returncode == 0, r.stdout + r.stderr
    text2 = docs.read_text()
    assert "Hand-written note." in text2
    assert text2.count("<!-- bench-table -->") == 1 and text2.count("<!-- /bench-table -->") == 1


def test_quick_run_without_write_writes_nothing(tmp_path):
    results, docs = tmp_path / "results.json", tmp_path / "benchmarks.md"
    r = run_bench("--results", str(results), "--docs", str(docs))
    assert r.returncode == 0, r.stdout + r.stderr
    assert not results.exists() and not docs.exists()
