"""Predicted speedup of candidate attention algorithms over a baseline, with error bands.

    >>> from attnsim.speedup import speedup
    >>> rep = speedup("h100_sxm5_80gb", "flash2", ["topk_blocks:density=0.25"], seq=8192, heads=32, causal=True)
    >>> print(rep.table())

A variant is written ``NAME[:k=v,k=v][@KERNEL]``: a kernel name alone (``flash2``, ``flash3``,
``unfused``, ``flash_decode``, ``flash2_kvcache``) is softmax attention with that kernel; a family
name with its parameters is that family with its default kernels, or with the attention kernel
named after ``@`` (``topk_blocks:density=0.25@flash2``). Every variant gets the same shape.

The error band of each prediction comes from the model's residuals on the nearest measured
regime (``attnsim.validate.band``), stated as such; a family other than softmax attention has
no measurements of its own, so its band is that of the measured attention kernels nearest to it
and says so. Where nothing was measured the band reads "no validation data for this regime".
"""
from __future__ import annotations

from dataclasses import dataclass

from attnsim.arch import Arch, load_arch
from attnsim.errors import AttnsimError
from attnsim.model.analytical import predict
from attnsim.model.result import Result
from attnsim.units import fmt_si
from attnsim.validate.band import Band, error_band
from attnsim.variant import parse_variant
from attnsim.workload.spec import Workload, attention


@dataclass(frozen=True)
class Variant:
    spec: str  # as written: "topk_blocks:density=0.25"
    workload: Workload
    kernel: str | None  # the attention kernel asked for after '@', or the bare kernel name
    result: Result
    band: Band | None
    band_note: str  # why there is no band, or what it covers

    @property
    def latency_s(self) -> float:
        return self.result.latency_s


@dataclass(frozen=True)
class SpeedupReport:
    arch: str
    baseline: Variant
    candidates: tuple

    def speedup(self, v: Variant) -> float:
        return self.baseline.latency_s / v.latency_s

    def speedup_band(self, v: Variant) -> tuple[float, float] | None:
        """The speedup's range when each latency may sit anywhere in its own band (the widest
        case: the two errors taken as independent extremes)."""
        b, c = self.baseline.band, v.band
        if b is None or c is None:
            return None
        base = self.baseline.latency_s
        return base * b.low / (v.latency_s * c.high), base * b.high / (v.latency_s * c.low)

    def rows(self) -> list[dict]:
        out = []
        for v in (self.baseline,) + self.candidates:
            sb = self.speedup_band(v) if v is not self.baseline else None
            out.append({"variant": v.spec, "workload": v.workload.label(), "mapping": v.result.mapping,
                        "latency_s": v.latency_s, "bound": v.result.bound, "speedup": self.speedup(v),
                        "speedup_low": sb[0] if sb else None, "speedup_high": sb[1] if sb else None,
                        "band_low": v.band.low if v.band else None, "band_high": v.band.high if v.band else None,
                        "band": v.band.describe() if v.band else v.band_note,
                        "kernels": list(v.result.kernels)})
        return out

    def table(self) -> str:
        lines = [f"on {self.arch}: {self.baseline.workload.label()}", ""]
        w = max(len(v.spec) for v in (self.baseline,) + self.candidates) + 2
        lines.append(f"{'variant':{w}s} {'latency':>10s}  {'speedup':>8s}  bound")
        for v in (self.baseline,) + self.candidates:
            lines.append(f"{v.spec:{w}s} {fmt_si(v.latency_s, 's'):>10s}  {self.speedup(v):7.2f}x  {v.result.bound}")
        lines.append("")
        for v in (self.baseline,) + self.candidates:
            lines.append(f"{v.spec}: {v.result.mapping}")
            for k in v.result.kernels:
                lines.append(f"    {k['kernel']:34s} {fmt_si(k['latency_s'], 's'):>10s}  bound by {k['bound']}")
        lines.append("")
        lines.append("error bands (measured / predicted, from validation residuals):")
        for v in (self.baseline,) + self.candidates:
            if v.band is None:
                lines.append(f"  {v.spec}: {v.band_note}")
                continue
            lo, hi = v.latency_s * v.band.low, v.latency_s * v.band.high
            lines.append(f"  {v.spec}: {fmt_si(lo, 's')} .. {fmt_si(hi, 's')}; {v.band.describe()}"
                         + (f"; {v.band_note}" if v.band_note else ""))
        for v in self.candidates:
            sb = self.speedup_band(v)
            lines.append(f"  speedup of {v.spec}: " + (f"{sb[0]:.2f}x .. {sb[1]:.2f}x (each latency anywhere in its "
                                                       "band)" if sb else "no band (a latency has none)"))
        return "\n".join(lines)


def variant(arch: Arch, text: str, shape: dict, traces=None) -> Variant:
    family, params, kernel = parse_variant(text, where=f"variant {text!r}")
    w = attention(family, params=params, **shape)
    r = predict(arch, w, kernel)
    main = getattr(r, "mapping", None) if family == "softmax" else None
    band, note = error_band(arch, w, traces, kernel=main)
    if band is not None and family != "softmax":
        note = f"{family} itself was never measured: the band is that of the nearest measured attention kernels"
    return Variant(text, w, kernel, r, band, note)


def speedup(arch, baseline: str, candidates: list[str], traces=None, **shape) -> SpeedupReport:
    """Predict a baseline and candidates on one shape (``attnsim.attention``'s keyword arguments)."""
    arch = arch if isinstance(arch, Arch) else load_arch(arch)
    if not candidates:
        raise AttnsimError("give at least one candidate, e.g. --candidate topk_blocks:density=0.25")
    base = variant(arch, baseline, shape, traces)
    return SpeedupReport(arch.name, base, tuple(variant(arch, c, shape, traces) for c in candidates))
