"""Speed of light: the least time any schedule could take, per resource.

compute: useful matrix FLOPs at the arch's best matrix peak; exponentials at the SFU peak.
memory:  compulsory DRAM traffic (Q, O, and the K/V each query row must see at least once)
         at peak DRAM bandwidth. Every model's latency is at or above the largest of these.
"""
from __future__ import annotations

from attnsim.arch import Arch
from attnsim.workload.spec import Workload


def compulsory_dram_bytes(w: Workload, allowed_pairs: float) -> float:
    eb = w.dtype_bytes
    q = w.batch * w.heads * w.seq_q * w.head_dim * eb
    o = w.batch * w.heads * w.seq_q * w.value_dim * eb
    # each KV head's keys seen by at least one query: at least the average row's count
    keys = min(w.seq_kv, allowed_pairs / w.seq_q)
    kv = w.batch * w.kv_heads * keys * (w.head_dim + w.value_dim) * eb
    return q + o + kv


def speed_of_light(arch: Arch, w: Workload, allowed_pairs: float) -> dict[str, float]:
    """Lower bounds in seconds per resource, and 'max', the binding one."""
    flops = 2.0 * w.batch * w.heads * allowed_pairs * (w.head_dim + w.value_dim)
    peak = max(arch.matrix_flops_per_cycle(i, w.dtype) for i, t in arch.compute.matrix_flops_per_cycle.items()
               if w.dtype in t) * arch.clock_hz * arch.compute.instances
    exps = w.batch * w.heads * allowed_pairs
    dram = arch.levels[0]
    out = {
        "matrix": flops / peak,
        "exp": exps / (arch.compute.exp_per_cycle * arch.clock_hz * arch.compute.instances),
        "dram": compulsory_dram_bytes(w, allowed_pairs) / dram.bandwidth_bytes_per_s,
    }
    out["max"] = max(out.values())
    return out
