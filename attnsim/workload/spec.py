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
from attnsim.workload.cascade import Cascade

WORKLOAD_DIR = Path(__file__).resolve().parents[2] / "workloads"
MASK_KINDS = ("full", "causal", "window", "block_sparse", "neighborhood", "block_counts")
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
                  `win[i]` positions along each axis, clipped at the borders; optionally per axis
                  `dilation`, `stride`, `axis_causal` and `border: shift` (NATTEN / GNA, see
                  attnsim.workload.masks.axis_windows), and `q_tile` / `kv_tile`: the boxes of
                  multi-dimensional tiling (empty: the flattened row-major order)
    block_counts  any mask, by its allowed pairs per 16 x 16 granule (`counts`, a
                  attnsim.workload.block_counts.BlockCounts; in YAML `file:` an .npz beside it)
    """

    kind: str = "full"
    window: int = 0
    sink: int = 0
    causal: bool = False
    density: float = 1.0
    grid: tuple[int, ...] = ()
    win: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()  # neighborhood, per axis; empty = 1 on every axis
    stride: tuple[int, ...] = ()  # neighborhood, per axis; empty = 1 on every axis
    border: str = "clip"  # neighborhood: 'clip' (the window is cut) or 'shift' (NATTEN)
    axis_causal: tuple[bool, ...] = ()  # neighborhood, per axis; empty = no causal axis
    q_tile: tuple[int, ...] = ()  # neighborhood: query box of nd tiling; empty = flattened tiles
    kv_tile: tuple[int, ...] = ()  # neighborhood: key box of nd tiling
    counts: object = None  # block_counts: a BlockCounts

    @property
    def is_causal(self) -> bool:
        if self.kind == "block_counts":  # derived from the element mask when it was converted
            return bool(self.counts is not None and self.counts.causal)
        return self.kind in ("causal", "window") or (self.kind == "block_sparse" and self.causal)

    def label(self) -> str:
        if self.kind == "window":
            return f"window{self.window}" + (f"+sink{self.sink}" if self.sink else "")
        if self.kind == "block_sparse":
            return f"blocksparse{self.density:g}" + ("-causal" if self.causal else "")
        if self.kind == "neighborhood":
            extra = [f"{k}{'x'.join(str(int(x)) for x in getattr(self, k))}" for k in
                     ("dilation", "stride", "axis_causal", "q_tile", "kv_tile") if getattr(self, k)]
            return ("nbhd" + "x".join(map(str, self.win)) + "-on-" + "x".join(map(str, self.grid))
                    + "".join("-" + e for e in extra) + ("-shift" if self.border == "shift" else ""))
        if self.kind == "block_counts" and self.counts is not None:
            return self.counts.label()
        return self.kind


@dataclass(frozen=True)
class Params:
    """A family's parameters: a frozen, hashable mapping (name -> value), sorted by name.

    Values are plain (int, float, bool, str, or tuples of those); ``Workload.params`` holds
    every parameter of the family, the defaults filled in by ``resolve_params``."""

    items: tuple = ()

    @classmethod
    def of(cls, values: dict | None) -> "Params":
        def freeze(v):
            return tuple(freeze(x) for x in v) if isinstance(v, (list, tuple)) else v
        return cls(tuple(sorted((str(k), freeze(v)) for k, v in (values or {}).items())))

    def __getitem__(self, key: str):
        for k, v in self.items:
            if k == key:
                return v
        raise KeyError(f"no parameter {key!r}; parameters: {[k for k, _ in self.items]}")

    def get(self, key: str, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: str) -> bool:
        return any(k == key for k, _ in self.items)

    def as_dict(self) -> dict:
        return dict(self.items)

    def label(self) -> str:
        def show(v):
            return "x".join(map(str, v)) if isinstance(v, tuple) else f"{v:g}" if isinstance(v, float) else str(v)
        return ",".join(f"{k}={show(v)}" for k, v in self.items if v is not None and v != () and v != "")


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
    params: Params = field(default_factory=Params)  # the family's own parameters (see attnsim.workload.families)

    @property
    def group(self) -> int:
        """G: query heads per KV head."""
        return self.heads // self.kv_heads

    @property
    def dtype_bytes(self) -> int:
        return {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1}[self.dtype]

    @property
    def cascade(self) -> Cascade:
        from attnsim.workload.families import family
        return family(self.family).cascade(self)

    def param(self, key: str):
        """One of the family's parameters (KeyError naming the known ones if absent)."""
        return self.params[key]

    def extents(self) -> dict[str, int]:
        return {"b": self.batch, "h": self.heads, "g": self.group, "m": self.seq_q,
                "n": self.seq_kv, "d": self.head_dim, "f": self.value_dim}

    def with_changes(self, **changes) -> "Workload":
        new = replace(self, **changes)
        check_workload(new)
        return new

    def label(self) -> str:
        if self.name:
            return self.name
        shape = (f"B{self.batch}-H{self.heads}-Hkv{self.kv_heads}-M{self.seq_q}-N{self.seq_kv}"
                 f"-D{self.head_dim}" + (f"-F{self.value_dim}" if self.value_dim != self.head_dim else "")
                 + f"-{self.mask.label()}-{self.dtype}")
        if self.family == "softmax":
            return shape
        return f"{self.family}({self.params.label()})-{shape}"


def _families() -> list[str]:
    from attnsim.workload.families import family_names
    return family_names()


def resolve_params(family_name: str, given: dict | None, file: str | None = None, lines: dict | None = None,
                   path: tuple = ("params",)) -> Params:
    """Check a family's parameters against its Field table; fill in the defaults.

    Raises one WorkloadError listing every problem (unknown keys with a did-you-mean, wrong
    types, out-of-range values), each naming the file, line and key where known."""
    from attnsim.spec.schema import Reader
    from attnsim.workload.families import family
    fam = family(family_name)
    given = dict(given or {})
    if not fam.params:
        if given:
            raise WorkloadError(Problem(f"family {family_name!r} takes no parameters, got {sorted(given)}",
                                        file=file, key=".".join(path)))
        return Params()
    data: dict = {}
    node = data
    for k in path[:-1]:
        node = node.setdefault(k, {})
    node[path[-1]] = given
    r = Reader(data, lines or {}, file)
    values = r.section(path, list(fam.params))
    if r.problems:
        raise WorkloadError(r.problems)
    return Params.of(values)


def check_workload(w: Workload, file: str | None = None) -> None:
    """Raise one WorkloadError listing every problem with a workload's values."""
    probs: list[Problem] = []

    def bad(key, msg, hint=None):
        probs.append(Problem(msg, file=file, key=key, hint=hint))

    known = _families()
    if w.family not in known:
        bad("family", f"unknown family {w.family!r}; known: {known}", did_you_mean(w.family, known))
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
        elif m.dilation or m.stride or m.axis_causal or m.q_tile or m.kv_tile or m.border != "clip":
            from attnsim.workload.masks import neighborhood_problems
            field_of = {"window": "win", "causal": "axis_causal"}  # the Mask's names for them
            for key, msg in neighborhood_problems(m.grid, m.win, m.dilation, m.stride, m.border, m.axis_causal,
                                                  m.q_tile, m.kv_tile):
                bad("mask." + field_of.get(key, key), msg)
    if m.kind == "block_counts":
        _check_block_counts(w, bad)
    if not probs and w.family != "softmax":
        from attnsim.workload.families import family
        fam = family(w.family)
        names = {f.name for f in fam.params}
        missing = sorted(names - {k for k, _ in w.params.items})
        if missing:
            bad("params", f"family {w.family!r} is missing parameters {missing}; build it with "
                          "attnsim.attention(family, params=...) so the defaults are filled in")
        elif fam.check is not None:
            for key, msg in fam.check(w):
                bad(key, msg)
    if probs:
        raise WorkloadError(probs)


def _check_block_counts(w: Workload, bad) -> None:
    from attnsim.workload.block_counts import BlockCounts
    c = w.mask.counts
    if not isinstance(c, BlockCounts):
        bad("mask.counts", f"a block_counts mask needs a BlockCounts, got {c!r}",
            "in YAML: mask: {kind: block_counts, file: NAME.npz}")
    elif (c.seq_q, c.seq_kv) != (w.seq_q, w.seq_kv):
        bad("mask.counts", f"the counts are for seq_q={c.seq_q}, seq_kv={c.seq_kv}; the workload has "
                           f"seq_q={w.seq_q}, seq_kv={w.seq_kv}")
    elif c.counts.shape[0] not in (1, w.batch) or c.counts.shape[1] not in (1, w.heads):
        bad("mask.counts", f"the counts vary over {c.counts.shape[0]} batches x {c.counts.shape[1]} heads; "
                           f"expected 1 or batch={w.batch}, and 1 or heads={w.heads}")


def attention(family: str = "softmax", *, batch: int = 1, heads: int = 32, kv_heads: int | None = None,
              seq_q: int | None = None, seq_kv: int | None = None, seq: int | None = None,
              head_dim: int = 128, value_dim: int | None = None, dtype: str = "bf16",
              causal: bool = False, window: int | None = None, sink: int = 0,
              density: float | None = None, grid: tuple[int, ...] | None = None,
              win: tuple[int, ...] | None = None, name: str = "", kv_page: int = 0,
              params: dict | None = None) -> Workload:
    """Build a workload. ``seq`` sets both lengths; ``seq_q=1`` is a decode step.

    The mask follows from the flags: ``window`` -> sliding window (causal), ``density`` ->
    block-sparse, ``grid``/``win`` -> neighborhood, else ``causal`` or full. ``params`` are the
    family's own parameters (``attnsim.workload.families``); omitted ones take their defaults.
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
    known = _families()
    if family not in known:
        raise WorkloadError(Problem(f"unknown family {family!r}; known: {known}", key="family",
                                    hint=did_you_mean(family, known)))
    w = Workload(family=family, batch=batch, heads=heads, kv_heads=kv_heads or heads, seq_q=seq_q,
                 seq_kv=seq_kv, head_dim=head_dim, value_dim=value_dim or head_dim, dtype=dtype,
                 mask=mask, name=name, kv_page=kv_page, params=resolve_params(family, params))
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
    Field("file", "str", required=False, default="", help="block_counts: the .npz of counts, beside the YAML"),
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
    top = r.section((), WORKLOAD_FIELDS, extra_ok=("mask", "params"))
    mk = r.section(("mask",), MASK_FIELDS) if isinstance(data, dict) and "mask" in data else None
    known = _families()
    if top["family"] is not None and top["family"] not in known:
        r.problem(("family",), f"unknown family {top['family']!r}; known: {', '.join(known)}",
                  did_you_mean(top["family"], known))
    r.raise_if_problems()
    given = data.get("params") if isinstance(data, dict) else None
    if given is not None and not isinstance(given, dict):
        raise WorkloadError(Problem("expected a mapping of the family's parameters", file=str(p),
                                    line=lines.get(("params",)), key="params"))
    params = resolve_params(top["family"], given, file=str(p), lines=lines)
    counts = None
    if mk is not None and mk["kind"] == "block_counts":
        from attnsim.workload.block_counts import load_block_counts
        if not mk["file"]:
            raise WorkloadError(Problem("a block_counts mask needs file: NAME.npz (its counts, beside the YAML)",
                                        file=str(p), line=lines.get(("mask",)), key="mask.file"))
        counts = load_block_counts(p.parent / mk["file"])
    mask = Mask() if mk is None else Mask(kind=mk["kind"], window=mk["window"], sink=mk["sink"],
                                          causal=mk["causal"], density=mk["density"],
                                          grid=tuple(mk["grid"] or ()), win=tuple(mk["win"] or ()), counts=counts)
    w = Workload(family=top["family"], batch=top["batch"], heads=top["heads"],
                 kv_heads=top["kv_heads"] or top["heads"], seq_q=top["seq_q"], seq_kv=top["seq_kv"],
                 head_dim=top["head_dim"], value_dim=top["value_dim"] or top["head_dim"],
                 dtype=top["dtype"], mask=mask, name=top["name"] or p.stem, kv_page=top["kv_page"],
                 params=params)
    check_workload(w, file=str(p))
    return w
