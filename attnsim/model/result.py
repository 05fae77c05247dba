"""Result: what a model says about one design point. A value, never mutable model state."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from attnsim.units import fmt_si


@dataclass(frozen=True)
class Result:
    arch: str
    workload: str
    mapping: str
    model: str  # 'analytical' | 'spatial-analytical' | ...
    latency_s: float
    bound: str  # the binding resource
    bound_margin: float  # binding time / next-largest time (1.0 = tie)
    useful_flops: float  # FLOPs of the (m, n) pairs the mask allows (the papers' convention)
    executed_flops: float  # matrix FLOPs actually issued (empty-row padding, partial tiles, head-dim padding)
    traffic_bytes: dict  # level -> bytes moved out of it (HBM reads+writes, L2->SM, SMEM reads+writes)
    utilization: dict  # unit -> busy fraction of peak over the kernel's time
    energy_j: dict  # component -> joules
    times_s: dict  # named time terms: compute, hbm, l2, launch, combine ...
    occupancy: dict  # ctas_per_sm, waves, n_ctas, n_kernels (GPU); array use (spatial)
    counts: dict  # tiles, exps, vector ops ...
    provenance: dict = field(default_factory=dict)
    # a family of several kernels (attnsim.model.plan): one row per kernel, in launch order
    kernels: tuple = ()

    @property
    def tflops_per_s(self) -> float:
        return self.useful_flops / self.latency_s / 1e12

    @property
    def energy_total_j(self) -> float:
        return sum(self.energy_j.values())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tflops_per_s"] = self.tflops_per_s
        d["energy_total_j"] = self.energy_total_j
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def summary(self) -> str:
        return (f"{self.workload} on {self.arch} [{self.mapping}]: {fmt_si(self.latency_s, 's')}, "
                f"{self.tflops_per_s:.1f} TFLOP/s, bound by {self.bound}")

    def explain(self) -> str:
        """The breakdown a kernel engineer needs: time terms, traffic per level, occupancy, what binds."""
        lines = [self.summary(), ""]
        lines.append("time terms (the kernel takes the largest, plus launch):")
        for k, v in self.times_s.items():
            lines.append(f"  {k:24s} {fmt_si(v, 's'):>12s}")
        lines.append(f"binding: {self.bound}, {self.bound_margin:.2f}x the next term")
        if self.kernels:
            lines.append("")
            lines.append("kernels (in launch order):")
            for k in self.kernels:
                lines.append(f"  {k['kernel']:32s} {fmt_si(k['latency_s'], 's'):>10s}  bound by {k['bound']}")
                lines.append(f"    {k['mapping']}")
        lines.append("")
        lines.append("traffic per level:")
        for k, v in self.traffic_bytes.items():
            lines.append(f"  {k:24s} {fmt_si(v, 'B'):>12s}")
        lines.append("utilization (fraction of peak over the kernel's time):")
        for k, v in self.utilization.items():
            lines.append(f"  {k:24s} {100 * v:11.1f}%")
        lines.append("occupancy:")
        for k, v in self.occupancy.items():
            lines.append(f"  {k:24s} {v:12.4g}")
        lines.append("work:")
        lines.append(f"  {'useful FLOPs':24s} {self.useful_flops:12.4g}")
        lines.append(f"  {'executed matrix FLOPs':24s} {self.executed_flops:12.4g}")
        for k, v in self.counts.items():
            lines.append(f"  {k:24s} {v:12.4g}")
        lines.append(f"energy: {fmt_si(self.energy_total_j, 'J')} = " + ", ".join(
            f"{k} {fmt_si(v, 'J')}" for k, v in self.energy_j.items() if v > 0))
        return "\n".join(lines)
