"""Predicted time of a captured forward pass: per distinct call, per layer, in total.

    attention call   attnsim.predict(arch, workload, mapping): the default kernel for the arch
                     and shape (FlashAttention-3 on Hopper, -2 elsewhere, flash-decoding for
                     seq_q <= 16) with the call's mask
    GEMM             model.families.common.gemm_op, costed by model.plan.kernel_cost: one kernel at
                     the fastest of the GEMM library's output tiles; A, B and C cross HBM once (a
                     weight once for all rows); checked on Vidur's measured GEMMs (docs/validation.md)

Kernels run one after another; a layer's time is the sum of its calls' times. Elementwise
kernels (norms, RoPE, activations, residual adds) are not costed and are listed as such.
Torch-free: it reads a ``Capture`` (``attnsim.torch.calls``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from attnsim.arch import Arch, load_arch
from attnsim.errors import AttnsimError, SpecError
from attnsim.model.families.common import gemm_op
from attnsim.model.plan import DTYPE_BYTES, kernel_cost
from attnsim.torch.calls import Capture, GemmCall, layer_of
from attnsim.units import fmt_si


@dataclass(frozen=True)
class KernelRow:
    """One distinct call: what it is, how many times it ran, one call's predicted time."""

    kind: str  # 'attention' | 'gemm'
    label: str
    count: int
    latency_s: float
    bound: str
    modules: tuple

    @property
    def total_s(self) -> float:
        return self.latency_s * self.count


@dataclass(frozen=True)
class LayerRow:
    layer: str
    attention_s: float
    gemm_s: float
    attention_calls: int
    gemm_calls: int

    @property
    def total_s(self) -> float:
        return self.attention_s + self.gemm_s


@dataclass(frozen=True)
class ModelPrediction:
    arch: str
    dtype: str  # 'as captured' or the dtype every call was costed in
    layers: tuple  # LayerRow, in order of first call
    kernels: tuple  # KernelRow, largest total first
    not_costed: str
    notes: tuple

    @property
    def attention_s(self) -> float:
        return sum(r.attention_s for r in self.layers)

    @property
    def gemm_s(self) -> float:
        return sum(r.gemm_s for r in self.layers)

    @property
    def total_s(self) -> float:
        return self.attention_s + self.gemm_s

    def to_dict(self) -> dict:
        return {"arch": self.arch, "dtype": self.dtype, "total_s": self.total_s, "attention_s": self.attention_s,
                "gemm_s": self.gemm_s,
                "layers": [{"layer": r.layer, "attention_s": r.attention_s, "gemm_s": r.gemm_s, "total_s": r.total_s,
                            "attention_calls": r.attention_calls, "gemm_calls": r.gemm_calls} for r in self.layers],
                "kernels": [{"kind": k.kind, "kernel": k.label, "count": k.count, "latency_s": k.latency_s,
                             "total_s": k.total_s, "bound": k.bound, "modules": list(k.modules)} for k in self.kernels],
                "not_costed": self.not_costed, "notes": list(self.notes)}

    def table(self, top_kernels: int = 8) -> str:
        def share(a, t):
            return f"{100 * a / t:.1f}%" if t > 0 else "-"
        lines = [f"predicted on {self.arch} ({self.dtype}), kernels one after another:", "",
                 f"{'layer':16s} {'attention':>11s} {'GEMM':>11s} {'total':>11s} {'attn share':>10s}  calls (attn+GEMM)"]
        for r in self.layers:
            lines.append(f"{r.layer:16s} {fmt_si(r.attention_s, 's'):>11s} {fmt_si(r.gemm_s, 's'):>11s} "
                         f"{fmt_si(r.total_s, 's'):>11s} {share(r.attention_s, r.total_s):>10s}  "
                         f"{r.attention_calls}+{r.gemm_calls}")
        lines.append(f"{'total':16s} {fmt_si(self.attention_s, 's'):>11s} {fmt_si(self.gemm_s, 's'):>11s} "
                     f"{fmt_si(self.total_s, 's'):>11s} {share(self.attention_s, self.total_s):>10s}")
        lines += ["", f"attention {share(self.attention_s, self.total_s)}, GEMM {share(self.gemm_s, self.total_s)} "
                      "of the costed time", "", f"largest kernels (of {len(self.kernels)} distinct):"]
        for k in self.kernels[:top_kernels]:
            lines.append(f"  {k.count:4d} x {fmt_si(k.latency_s, 's'):>9s} = {fmt_si(k.total_s, 's'):>9s}  "
                         f"{k.label}  [{k.bound}]")
        lines += ["", self.not_costed] + [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _gemm_label(g: GemmCall) -> str:
    shape = f"{g.m}x{g.n}x{g.k}" + (f" x{g.count}" if g.count > 1 else "")
    return f"{g.op} GEMM {shape} (MxNxK) {g.dtype}"


def _costed(what: str, dtype: str, fn):
    try:
        return fn()
    except SpecError as e:
        if "has no dtype" in str(e) or "no " + dtype in str(e):
            raise AttnsimError(f"{what}: {e}; cost the model in another dtype (--dtype bf16)") from None
        raise AttnsimError(f"{what}: {e}") from None


def predict_capture(cap: Capture, arch, mapping=None, dtype: str | None = None) -> ModelPrediction:
    """Predict every captured call on ``arch`` (a preset name, YAML path or Arch); ``dtype``
    ('bf16', ...) costs every call in that dtype instead of the captured one; ``mapping`` is
    passed to ``attnsim.predict`` for the attention calls (None: each call's default kernel)."""
    from attnsim.model.analytical import predict
    arch = arch if isinstance(arch, Arch) else load_arch(arch)
    per_call: dict = {}  # id(call) -> (layer, kind, seconds)
    kernels = []
    for g in cap.distinct_attention():
        w = g.call.workload if dtype is None else replace(g.call.workload, dtype=dtype)
        r = _costed(f"{g.call.op} at {g.modules[0] or '(model)'}", w.dtype, lambda: predict(arch, w, mapping))
        kernels.append(KernelRow("attention", f"{g.call.op} {w.label()}", g.count, r.latency_s, r.bound, g.modules))
        per_call[g.call.key()] = r.latency_s
    for g in cap.distinct_gemms():
        c = g.call if dtype is None else replace(g.call, dtype=dtype)
        eb = DTYPE_BYTES[c.dtype]
        kc = _costed(f"{c.op} GEMM at {g.modules[0] or '(model)'}", c.dtype, lambda: kernel_cost(arch, gemm_op(
            _gemm_label(c), c.count, c.m, c.n, c.k, c.dtype, eb, b_bytes=c.k * c.n * eb if c.shared_b else None,
            arch=arch)))
        kernels.append(KernelRow("gemm", _gemm_label(c), g.count, kc.latency_s, kc.bound, g.modules))
        per_call[g.call.key()] = kc.latency_s
    layers: dict = {}
    for kind, calls in (("attention", cap.attention), ("gemm", cap.gemms)):
        for c in calls:
            row = layers.setdefault(layer_of(c.module), [0.0, 0.0, 0, 0])
            i = 0 if kind == "attention" else 1
            row[i] += per_call[c.key()]
            row[i + 2] += 1
    order = [n for n in cap.layer_order if n in layers] + sorted(set(layers) - set(cap.layer_order))
    rows = tuple(LayerRow(name, *layers[name]) for name in order)
    notes = tuple(dict.fromkeys(n for c in cap.attention for n in c.notes)) + _mask_notes(cap)
    return ModelPrediction(arch=arch.name, dtype=dtype or "as captured", layers=rows,
                           kernels=tuple(sorted(kernels, key=lambda k: -k.total_s)),
                           not_costed=cap.not_costed_line(), notes=notes)


def _mask_notes(cap: Capture) -> tuple:
    return tuple(dict.fromkeys(f"{c.op} mask: {c.mask_note}" for c in cap.attention
                               if "costed as full" in c.mask_note or "upper bound" in c.mask_note))
