"""Mapper and lower-bound speed (a benchmark reports; it never fails).

    .venv/bin/python benchmarks/bench_mapper.py           # full: best of 5
    .venv/bin/python benchmarks/bench_mapper.py --quick   # best of 2

Figures (the unit is in the key name):

    mapper_gpu_llama3_70b_prefill_8k_h100_s     search_gpu, Llama-3-70B prefill 8k (B 1, H 64, Hkv 8,
                                                causal, D 128) on H100, default space, warm (numba
                                                cache loaded), best of the runs. Target < 1 s.
    mapper_gpu_first_call_s                     the same search in a fresh process state: the first
                                                call, which loads (or compiles) the numba kernels
    mapper_gpu_points_per_s                     evaluated (legal) points per second of that search
    mapper_gpu_space_points_per_s               enumerated points (legal, illegal and pruned) per second
    mapper_spatial_fusemax_llama3_8b_prefill_8k_s
                                                search_spatial, Llama-3-8B prefill 8k on fusemax_like,
                                                all styles (the best is fused), mask statistics not
                                                cached (a first search). Target < 10 s.
    mapper_spatial_points_per_s                 evaluated spatial points per second
    bound_ski_slope_fusemax_llama3_8b_s         ski_slope over 64 KiB..64 MiB (x2, 11 capacities):
                                                the bounds plus a full spatial search per capacity
                                                (mask statistics not cached at the start)
"""
from __future__ import annotations

import json
import sys
import time

TARGETS = {"mapper_gpu_llama3_70b_prefill_8k_h100_s": 1.0, "mapper_spatial_fusemax_llama3_8b_prefill_8k_s": 10.0}


def _best(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def run(quick: bool = False) -> dict:
    import attnsim
    from attnsim.mapping.search import search_gpu
    from attnsim.mapping.spatial_search import search_spatial
    from attnsim.model.lower_bounds import _block_stats_many, _profile, ski_slope

    def cold(fn):  # the mask statistics are cached per workload: time a search that starts without them
        def call():
            _block_stats_many.cache_clear()
            _profile.cache_clear()
            return fn()
        return call

    repeats = 2 if quick else 5
    h100, fusemax = attnsim.load_arch("h100_sxm5_80gb"), attnsim.load_arch("fusemax_like")
    w70 = attnsim.load_workload("llama3_70b_prefill_8k")
    w8 = attnsim.load_workload("llama3_8b_prefill_8k")

    t0 = time.perf_counter()
    search_gpu(h100, w70)
    first = time.perf_counter() - t0
    gpu_s, r = _best(lambda: search_gpu(h100, w70), repeats)
    sp_s, rs = _best(cold(lambda: search_spatial(fusemax, w8)), repeats)
    caps = [65536.0 * 2 ** k for k in range(11)]
    ski_s, _ = _best(cold(lambda: ski_slope(w8, caps, arch=fusemax)), 1 if quick else 2)
    return {
        "mapper_gpu_llama3_70b_prefill_8k_h100_s": gpu_s,
        "mapper_gpu_first_call_s": first,
        "mapper_gpu_points_per_s": r.evaluated / gpu_s,
        "mapper_gpu_space_points_per_s": r.space_size / gpu_s,
        "mapper_spatial_fusemax_llama3_8b_prefill_8k_s": sp_s,
        "mapper_spatial_points_per_s": rs.evaluated / sp_s,
        "bound_ski_slope_fusemax_llama3_8b_s": ski_s,
        "runs": {"gpu": {"space_size": r.space_size, "evaluated": r.evaluated, "best": r.best.label(),
                         "best_latency_s": r.best_result.latency_s, "repeats": repeats},
                 "spatial": {"space_size": rs.space_size, "evaluated": rs.evaluated, "best": rs.best.label(),
                             "best_latency_s": rs.best_result.latency_s, "repeats": repeats}},
    }


def main(argv=None) -> int:
    quick = "--quick" in (argv if argv is not None else sys.argv[1:])
    res = run(quick=quick)
    for key, target in TARGETS.items():
        print(f"{key}: {res[key]:.3f} s (target < {target:g} s: {'met' if res[key] < target else 'TARGET MISSED'})")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
