"""Workloads: an attention family, a shape, a mask and a dtype, as one frozen value.

Shape ranks (see the README glossary): B batch, H query heads, Hkv KV heads
(G = H / Hkv query heads share a KV head), M query positions (seq_q), N key positions
(seq_kv), D head dim, F value dim.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from attnsim.errors import WorkloadError, Problem
from attnsim.spec.schema import Field, Reader, did_you_mean
from attnsim.spec.yamlio import load_yaml
from attnsim.workload.cascade import Cascade, softmax_attention_cascade

WORKLOAD_DIR = Path(__file__).resolve().parents[2] / "workloads"
MASK_KINDS = ("full", "causal", "window", "block_sparse", "neighborhood")
DTYPES = ("fp16", "bf16", "fp8", "fp32")


@dataclass(frozen=True)
class Mask:
    """Which (m, n) pairs are computed.

    full          every pair
    causal        n <= m + (N - M)             (bottom-right aligned when M != N)
    window        causal, and only the last `window` keys, plus `sink` first keys
    block_sparse  `density` of the key tiles of each query tile (of those the causal
                  mask allows when `causal`), at the kernel's tile size
    neighborhood  tokens on a grid (`grid`, e.g. (T, H, W)); each query sees a window of
                  `win[i]` positions along each axis, clipped at the borders
    """

    kind: str = "full"
    window: int = 0
    sink: int = 0
    causal: bool = False
    density: float = 1.0
    grid: tuple[int, ...] = ()
    win: tuple[int, ...] = ()

    @property
    def is_causal(self) -> bool:
        return self.kind in ("causal", "window") or (self.kind == "block_sparse" and self.causal)

    def label(self) -> str:
        if self.kind == "window":
            return f"window{self.window}" + (f"+sink{self.sink}" if self.sink else "")
        if self.kind == "block_sparse":
            return f"blocksparse{self.density:g}" + ("-causal" if self.causal else "")
        if self.kind == "neighborhood":
            return "nbhd" + "x".join(map(str, self.win)) + "-on-" + "x".join(map(str, self.grid))
        return self.kind


@dataclass(frozen=True)
class Workload:
    family: str
    batch: int
    heads: int
    kv_heads: int
    seq_q: int
    seq_kv: int
    head_dim: int
    value_dim: int
    dtype: str = "bf16"
    mask: Mask = field(default_factory=Mask)
    name: str = ""
    kv_page: int = 0  # tokens per page of a paged KV cache (vLLM-style); 0 = contiguous K/V

    @property
    def group(self) -> int:
        """G: query heads per KV head."""
        return self.heads // self.kv_heads

    @property
    def dtype_bytes(self) -> int:
        return {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1}[self.dtype]

    @property
    def cascade(self) -> Cascade:
        return FAMILIES[self.family].cascade()

    def extents(self) -> dict[str, int]:
        return {"b": self.batch, "h": self.heads, "g": self.group, "m": self.seq_q,
                "n": self.seq_kv, "d": self.head_dim, "f": self.value_dim}

    def with_changes(self, **changes) -> "Workload":
        new = replace(self, **changes)
        check_workload(new)
        return new

    def label(self) -> str:
        return self.name or (f"B{self.batch}-H{self.heads}-Hkv{self.kv_heads}-M{self.seq_q}-N{self.seq_kv}"
                             f"-D{self.head_dim}-{self.mask.label()}-{self.dtype}")


@dataclass(frozen=True)
class Family:
    name: str
    cascade: object  # () -> Cascade
    doc: str


FAMILIES: dict[str, Family] = {
    "softmax": Family("softmax", softmax_attention_cascade,
                      "masked softmax attention (MHA, GQA, MQA; prefill or decode)"),
}


def check_workload(w: Workload, file: str | None = None) -> None:
    """Raise one WorkloadError listing every problem with a workload's values."""
    probs: list[Problem] = []

    def bad(key, msg, hint=None):
        probs.append(Problem(msg, file=file, key=key, hint=hint))

    if w.family not in FAMILIES:
        bad("family", f"unknown family {w.family!r}; known: {sorted(FAMILIES)}", did_you_mean(w.family, FAMILIES))
    for key in ("batch", "heads", "kv_heads", "seq_q", "seq_kv", "head_dim", "value_dim"):
        v = getattr(w, key)
        if isinstance(v, bool) or not isinstance(v, int):
            bad(key, f"expected a positive integer, got {v!r}")
        elif v < 1:
            bad(key, f"expected a positive integer, got {v}")
    if not probs and w.heads % w.kv_heads:
        bad("kv_heads", f"heads ({w.heads}) must be a multiple of kv_heads ({w.kv_heads})")
    if w.dtype not in DTYPES:
        bad("dtype", f"expected one of {list(DTYPES)}, got {w.dtype!r}", did_you_mean(str(w.dtype), DTYPES))
    m = w.mask
    if m.kind not in MASK_KINDS:
        bad("mask.kind", f"expected one of {list(MASK_KINDS)}, got {m.kind!r}", did_you_mean(str(m.kind), MASK_KINDS))
    if m.kind == "window" and (not isinstance(m.window, int) or m.window < 1):
        bad("mask.window", f"expected a positive integer number of keys, got {m.window!r}")
    if not isinstance(w.kv_page, int) or w.kv_page < 0:
        bad("kv_page", f"expected a non-negative integer (tokens per page), got {w.kv_page!r}")
    if m.sink < 0:
        bad("mask.sink", f"expected a non-negative integer, got {m.sink!r}")
    if m.kind == "block_sparse" and not (0 < m.density <= 1):
        bad("mask.density", f"expected a fraction in (0, 1], got {m.density!r}")
    if m.kind == "neighborhood":
        import math
        if not m.grid or len(m.grid) != len(m.win) or len(m.grid) not in (1, 2, 3):
            bad("mask.grid", "expected grid and win of the same length (1, 2 or 3 axes), e.g. grid: [64, 64], win: [13, 13]")
        elif not probs and (math.prod(m.grid) != w.seq_q or math.prod(m.grid) != w.seq_kv):
            bad("mask.grid", f"grid {list(m.grid)} has {math.prod(m.grid)} tokens but seq_q={w.seq_q}, seq_kv={w.seq_kv}")
    if probs:
        raise WorkloadError(probs)


def attention(family: str = "softmax", *, batch: int = 1, heads: int = 32, kv_heads: int | None = None,
              seq_q: int | None = None, seq_kv: int | None = None, seq: int | None = None,
              head_dim: int = 128, value_dim: int | None = None, dtype: str = "bf16",
              causal: bool = False, window: int | None = None, sink: int = 0,
              density: float | None = None, grid: tuple[int, ...] | None = None,
              win: tuple[int, ...] | None = None, name: str = "", kv_page: int = 0) -> Workload:
    """Build a workload. ``seq`` sets both lengths; ``seq_q=1`` is a decode step.

    The mask follows from the flags: ``window`` -> sliding window (causal), ``density`` ->
    block-sparse, ``grid``/``win`` -> neighborhood, else ``causal`` or full.
    """
    if seq is not None:
        seq_q = seq if seq_q is None else seq_q
        seq_kv = seq if seq_kv is None else seq_kv
    if seq_q is None or seq_kv is None:
        raise WorkloadError(Problem("give seq (both lengths) or seq_q and seq_kv", key="seq"))
    if window:
        mask = Mask("window", window=window, sink=sink, causal=True)
    elif density is not None and density < 1:
        mask = Mask("block_sparse", density=density, causal=causal)
    elif grid:
        mask = Mask("neighborhood", grid=tuple(grid), win=tuple(win or ()))
    else:
        mask = Mask("causal" if causal else "full")
    w = Workload(family=family, batch=batch, heads=heads, kv_heads=kv_heads or heads, seq_q=seq_q,
                 seq_kv=seq_kv, head_dim=head_dim, value_dim=value_dim or head_dim, dtype=dtype,
                 mask=mask, name=name, kv_page=kv_page)
    check_workload(w)
    return w


WORKLOAD_FIELDS = [
    Field("name", "str", required=False, default=""),
    Field("family", "str", required=False, default="softmax"),
    Field("batch", "int", min=1),
    Field("heads", "int", min=1),
    Field("kv_heads", "int", min=1, required=False),
    Field("seq_q", "int", min=1),
    Field("seq_kv", "int", min=1),
    Field("head_dim", "int", min=1),
    Field("value_dim", "int", min=1, required=False),
    Field("dtype", "enum", choices=DTYPES, required=False, default="bf16"),
    Field("description", "str", required=False, default=""),
    Field("kv_page", "int", min=0, required=False, default=0, help="tokens per KV-cache page; 0 = contiguous"),
]
MASK_FIELDS = [
    Field("kind", "enum", choices=MASK_KINDS),
    Field("window", "int", min=1, required=False, default=0),
    Field("sink", "int", min=0, required=False, default=0),
    Field("causal", "bool", required=False, default=False),
    Field("density", "fraction", required=False, default=1.0),
    Field("grid", "list", required=False, default=()),
    Field("win", "list", required=False, default=()),
]


def list_workload_presets() -> list[str]:
    return sorted(p.stem for p in WORKLOAD_DIR.glob("*.yaml"))


def load_workload(name_or_path: str | Path) -> Workload:
    """Load a workload YAML file (or a preset name from workloads/)."""
    p = Path(name_or_path)
    if not p.exists():
        cand = WORKLOAD_DIR / f"{name_or_path}.yaml"
        if cand.exists():
            p = cand
        elif p.suffix in (".yaml", ".yml"):
            raise WorkloadError(f"{p}: workload file does not exist")
        else:
            names = list_workload_presets()
            hint = did_you_mean(str(name_or_path), names)
            raise WorkloadError(f"unknown workload {str(name_or_path)!r}" + (f" ({hint})" if hint else "")
                                + f"; presets: {', '.join(names)}")
    data, lines = load_yaml(p)
    r = Reader(data, lines, str(p))
    top = r.section((), WORKLOAD_FIELDS, extra_ok=("mask",))
    mk = r.section(("mask",), MASK_FIELDS) if isinstance(data, dict) and "mask" in data else None
    r.raise_if_problems()
    mask = Mask() if mk is None else Mask(kind=mk["kind"], window=mk["window"], sink=mk["sink"],
                                          causal=mk["causal"], density=mk["density"],
                                          grid=tuple(mk["grid"] or ()), win=tuple(mk["win"] or ()))
    w = Workload(family=top["family"], batch=top["batch"], heads=top["heads"],
                 kv_heads=top["kv_heads"] or top["heads"], seq_q=top["seq_q"], seq_kv=top["seq_kv"],
                 head_dim=top["head_dim"], value_dim=top["value_dim"] or top["head_dim"],
                 dtype=top["dtype"], mask=mask, name=top["name"] or p.stem, kv_page=top["kv_page"])
    check_workload(w, file=str(p))
    return w
