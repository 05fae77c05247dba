"""Speed of the family plans and of PyTorch capture (a benchmark reports; it never fails).

    .venv/bin/python benchmarks/bench_families.py           # full: best of 5
    .venv/bin/python benchmarks/bench_families.py --quick   # best of 2

Figures (the unit is in the key name):

    family_predict_calls_per_s      attnsim.predict calls/s over every family preset in workloads/
                                    (a plan of kernels each), on H100, warm, best of the runs
    capture_llama3_8b_two_layers_s  attnsim.torch.capture of the bundled two Llama-3-8B layers
                                    (8192 tokens, meta device) plus costing it on H100, best of the
                                    runs; absent when torch is not installed
"""
from __future__ import annotations

import json
import sys
import time


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(quick: bool = False) -> dict:
    import attnsim
    from attnsim.workload.spec import list_workload_presets
    repeats = 2 if quick else 5
    arch = attnsim.load_arch("h100_sxm5_80gb")
    presets = [w for w in (attnsim.load_workload(n) for n in list_workload_presets()) if w.family != "softmax"]

    def all_presets():
        for w in presets:
            attnsim.predict(arch, w)
    all_presets()  # warm: numba kernels and cached tile statistics
    out = {"family_predict_calls_per_s": len(presets) / _best(all_presets, repeats)}
    try:
        import torch  # noqa: F401
    except ImportError:
        return out
    from attnsim.cli_capture import run_factory
    from attnsim.torch import predict_capture

    def llama():
        predict_capture(run_factory("attnsim.torch.models.llama:llama3_8b", "meta"), arch)
    llama()
    out["capture_llama3_8b_two_layers_s"] = _best(llama, repeats)
    return out


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
