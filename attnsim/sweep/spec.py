"""A sweep: a base design point (arch, workload, mapping), the parameters varied around it, and
the deterministic list of points they span.

``--vary`` strings are ``PATH=VALUES``; VALUES is a comma-separated list whose items are single
values or ranges:

    arch.levels.SMEM.capacity=64KiB..256KiB:x2      geometric: 64, 128, 256 KiB
    arch.levels.HBM.bandwidth=2TB/s..4TB/s:+0.5TB/s arithmetic, the step in the field's unit
    workload.seq_kv=1k,4k,16k,64k                   a list; k = 1024 tokens, M = 1024^2
    workload.batch=1..128:x2                        1, 2, 4, ..., 128
    workload.heads=8..32                            integers: the step defaults to +1
    arch.clock=1.4GHz,1.8GHz   mapping=flash2,flash3   mapping.block_n=64,128   mapping=best

A range includes its end when the steps land on it (to 15 significant digits). The points are
the cartesian product of the axes (the last axis varies fastest) or a seeded random sample of
it (sorted, without repeats). Each point has a stable id: a hash of its varied values, the
same whatever the order of the axes or the sweep it belongs to.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from attnsim import __version__
from attnsim.arch import Arch, load_arch
from attnsim.errors import AttnsimError, Problem, SpecError
from attnsim.mapping.kernel import KernelMapping
from attnsim.spec.schema import Field, Reader
from attnsim.spec.yamlio import load_yaml
from attnsim.sweep import params as P
from attnsim.workload.spec import DTYPES, Workload, attention, load_workload

MAX_VALUES_PER_AXIS = 1_000_000
MAX_GRID = 2 ** 62  # flat point indices are int64
SIGNIFICANT_DIGITS = 15  # generated range values are rounded to this (0.5 + 3 * 0.1 -> 0.8)
_NOT_RANGED = ("bool", "enum", "name")


@dataclass(frozen=True)
class Axis:
    """One varied parameter: its path, its values (stored units: SI, or pJ for energies) and the text given."""

    param: P.Param
    values: tuple
    text: str

    @property
    def column(self) -> str:
        return self.param.column

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class Sample:
    """Evaluate `n` points drawn without repeats from the grid (all of it when n >= its size)."""

    n: int
    seed: int = 0


# ---------------------------------------------------------------- parsing values

def parse_values(param: P.Param, spec) -> tuple:
    """The values of one axis from a string ('1k,4k', '64KiB..256KiB:x2'), a list, or a scalar."""
    if isinstance(spec, (list, tuple)):
        items = list(spec)
    elif isinstance(spec, str):
        items = [s for s in (x.strip() for x in spec.split(",")) if s != ""] if param.kind != "name" \
            else [s.strip() for s in spec.split(",")]
    else:
        items = [spec]
    if not items:
        raise ValueError("no values given")
    values: list = []
    for item in items:
        if isinstance(item, str) and ".." in item and param.kind not in _NOT_RANGED:
            values.extend(expand_range(param, item))
        else:
            values.append(P.parse_value(param, item))
    seen = set()
    for v in values:
        if v in seen:
            raise ValueError(f"value {v!r} appears twice")
        seen.add(v)
    if len(values) > MAX_VALUES_PER_AXIS:
        raise ValueError(f"{len(values)} values; at most {MAX_VALUES_PER_AXIS} per axis")
    return tuple(values)


def expand_range(param: P.Param, text: str) -> list:
    """'A..B:xF' or 'A..B:+S' (or 'A..B' for integers, step 1) -> the values from A toward B."""
    body, _, step = text.partition(":")
    ends = body.split("..")
    if len(ends) != 2 or not ends[0].strip() or not ends[1].strip():
        raise ValueError(f"expected a range 'A..B:STEP', got {text!r}")
    a, b = (P.parse_value(param, e) for e in ends)
    if step.strip():
        op, s = P.parse_step(param, step)
    elif param.integral:
        op, s = "+", (1.0 if b >= a else -1.0)
    else:
        raise ValueError(f"a range of {param.kind} values needs a step: {text}:x2 (geometric) or "
                         f"{text}:+STEP (arithmetic)")
    if a == b:
        return [a]
    if op == "x":
        if a <= 0 or b <= 0:
            raise ValueError(f"a geometric range needs positive ends, got {text!r}")
        if (b > a) != (s > 1):
            raise ValueError(f"the step {step!r} moves away from the end of {text!r}")
        n = math.floor(math.log(b / a) / math.log(s) + 1e-9) + 1
        raw = (a * s ** k for k in range(min(n, MAX_VALUES_PER_AXIS + 1)))
    else:
        if (b - a) * s < 0:
            raise ValueError(f"the step {step!r} moves away from the end of {text!r}")
        n = math.floor((b - a) / s + 1e-9) + 1
        raw = (a + k * s for k in range(min(n, MAX_VALUES_PER_AXIS + 1)))
    if n > MAX_VALUES_PER_AXIS:
        raise ValueError(f"{text!r} has {n} values; at most {MAX_VALUES_PER_AXIS} per axis")
    out = []
    for v in raw:
        v = float(f"{v:.{SIGNIFICANT_DIGITS}g}")
        if param.integral:
            if abs(v - round(v)) > 1e-9 * max(1.0, abs(v)):
                raise ValueError(f"{text!r} reaches {v:g}, not a whole number")
            v = int(round(v))
        out.append(v)
    return out


def parse_vary(text: str, arch: Arch) -> Axis:
    """One ``PATH=VALUES`` string -> an Axis (SpecError naming the path, with a did-you-mean)."""
    path, eq, spec = text.partition("=")
    if not eq or not path.strip():
        raise SpecError(Problem(f"expected PATH=VALUES, e.g. arch.levels.SMEM.capacity=64KiB..256KiB:x2, "
                                f"got {text!r}", key="--vary"))
    return make_axis(path.strip(), spec, arch)


def make_axis(path: str, spec, arch: Arch) -> Axis:
    param = P.lookup(path, arch)
    try:
        values = parse_values(param, spec)
    except ValueError as e:
        raise SpecError(Problem(str(e), key=path)) from None
    _check_names(param, values)
    return Axis(param, values, spec if isinstance(spec, str) else ",".join(map(str, spec if isinstance(
        spec, (list, tuple)) else [spec])))


def _check_names(param: P.Param, values: tuple) -> None:
    """Presets, files and mapping names must exist before the sweep starts."""
    if param.kind != "name":
        return
    for v in values:
        if param.section == "mapping":
            P.check_mapping_choice(v)
        elif param.section == "arch":
            P.load_arch_cached(v)
        else:
            P.load_workload_cached(v)


def check_axes(axes: list[Axis], base_mapping) -> list[Problem]:
    """Problems between axes: a field varied twice, seq with seq_q/seq_kv, 'best' with mapping fields."""
    probs = []
    seen: dict[str, str] = {}
    for ax in axes:
        if ax.column in seen:
            probs.append(Problem(f"varied twice (as {seen[ax.column]!r} and {ax.param.path!r})", key=ax.param.path))
        seen[ax.column] = ax.param.path
    cols = set(seen)
    if "workload.seq" in cols and cols & {"workload.seq_q", "workload.seq_kv"}:
        probs.append(Problem("workload.seq sets both lengths: vary it or seq_q/seq_kv, not both", key="workload.seq"))
    choices = [base_mapping] + [v for ax in axes if ax.column == "mapping" for v in ax.values]
    uses_best = any(isinstance(c, str) and (c == "best" or c.startswith("best:")) for c in choices)
    fields = [ax.param.path for ax in axes if ax.param.section == "mapping" and ax.column != "mapping"]
    if uses_best and fields:
        probs.append(Problem(f"mapping=best chooses every mapping field; do not also vary {', '.join(fields)}",
                             key=fields[0]))
    return probs


# ---------------------------------------------------------------- the sweep

class Sweep:
    """A base design point, the axes varied around it and the points they span (immutable).

    ``len(sweep)`` points; ``digits(start, stop)`` gives each point's value index per axis;
    ``params_frame`` and ``point_ids`` turn those into the varied values and ids.
    """

    def __init__(self, arch: Arch, workload: Workload, mapping=None, axes: Iterable[Axis] = (),
                 sample: Sample | None = None, description: str = ""):
        self.arch = arch
        self.workload = workload
        self.mapping = mapping
        self.axes = tuple(axes)
        self.sample = sample
        self.description = description
        self._setup()

    def _setup(self, flat: np.ndarray | None = None) -> None:
        self.radices = np.array([len(a) for a in self.axes], dtype=np.int64)
        self.grid_size = math.prod(len(a) for a in self.axes)
        if self.grid_size > MAX_GRID:
            raise SpecError(Problem(f"the grid has {self.grid_size:.3g} points, more than {MAX_GRID:.3g}; "
                                    "vary fewer values", key="vary"))
        strides = [math.prod(len(a) for a in self.axes[j + 1:]) for j in range(len(self.axes))]
        self.strides = np.array(strides, dtype=np.int64)
        self._flat = flat
        if flat is None and self.sample is not None and self.sample.n < self.grid_size:
            rng = np.random.default_rng(self.sample.seed)
            self._flat = np.sort(rng.choice(self.grid_size, size=self.sample.n, replace=False)).astype(np.int64)
        self._hashes = [_value_hashes(a) for a in self.axes]
        self._arrays = [np.array(a.values, dtype=object if a.param.pandas_dtype == "str" else None)
                        for a in self.axes]

    def __len__(self) -> int:
        return self.grid_size if self._flat is None else len(self._flat)

    def __repr__(self) -> str:
        return (f"Sweep({self.arch.name}, {self.workload.label()}, mapping={self.mapping!r}, "
                f"{len(self.axes)} axes, {len(self)} points)")

    # ---- points

    def flat_indices(self, start: int, stop: int) -> np.ndarray:
        """Grid positions of points start..stop-1."""
        if self._flat is None:
            return np.arange(start, stop, dtype=np.int64)
        return self._flat[start:stop]

    def digits(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """[k, n_axes] value index per axis of points start..stop-1 (last axis fastest)."""
        stop = len(self) if stop is None else stop
        flat = self.flat_indices(start, stop)
        if not self.axes:
            return np.zeros((len(flat), 0), dtype=np.int64)
        return (flat[:, None] // self.strides[None, :]) % self.radices[None, :]

    def values(self, axis: int, digits: np.ndarray) -> np.ndarray:
        return self._arrays[axis][digits]

    def point_ids(self, digits: np.ndarray) -> list[str]:
        """16 hex digits per point: a hash of its (column, value) pairs, independent of axis order."""
        acc = np.zeros(len(digits), dtype=np.uint64)
        for j, h in enumerate(self._hashes):
            acc += h[digits[:, j]]
        return [f"{x:016x}" for x in _mix64(acc).tolist()]

    def params_frame(self, digits: np.ndarray) -> pd.DataFrame:
        """The varied values of these points, one column per axis (named for its field and unit)."""
        return pd.DataFrame({a.column: pd.Series(self.values(j, digits[:, j]), dtype=a.param.pandas_dtype)
                             for j, a in enumerate(self.axes)})

    def point(self, i: int) -> dict:
        """{column: value} of point i (for reading and tests)."""
        d = self.digits(i, i + 1)[0]
        return {a.column: a.values[d[j]] for j, a in enumerate(self.axes)}

    # ---- identity

    @property
    def spec_hash(self) -> str:
        """Changes whenever any result could: the base specs and every spec an axis names (their
        contents, not their file names), the axes, the sample, the attnsim version."""
        if not hasattr(self, "_spec_hash"):
            h = hashlib.sha256()
            named = [_contents(a.param.section, v) for a in self.axes if a.param.kind == "name" for v in a.values]
            for part in (__version__, repr(replace(self.arch, file=None)), repr(self.workload),
                         _contents("mapping", self.mapping), repr([(a.column, a.values) for a in self.axes]),
                         repr(named), repr(self.sample)):
                h.update(part.encode())
                h.update(b"\0")
            if self._flat is not None:
                h.update(self._flat.tobytes())
            self._spec_hash = h.hexdigest()[:16]
        return self._spec_hash

    def describe(self) -> dict:
        """What a person needs to recognise the sweep (written into the checkpoint manifest)."""
        m = self.mapping.label() if isinstance(self.mapping, KernelMapping) else self.mapping
        return {"arch": self.arch.name, "workload": self.workload.label(), "mapping": m,
                "vary": {a.param.path: a.text for a in self.axes},
                "sample": None if self.sample is None else {"random": self.sample.n, "seed": self.sample.seed},
                "points": len(self), "description": self.description}

    # ---- pickling: Arch holds mappingproxy fields, which do not pickle

    def __getstate__(self):
        state = {k: v for k, v in self.__dict__.items() if k not in ("_hashes", "_arrays", "_flat")}
        state["arch"] = P.to_plain(self.arch)
        state["_flat"] = self._flat
        return state

    def __setstate__(self, state):
        flat = state.pop("_flat")
        state["arch"] = P.from_plain(state["arch"])
        self.__dict__.update(state)
        self._setup(flat)  # the sample drawn here, not redrawn there: numpy versions may differ


def _contents(section: str, name) -> str:
    """What a name in a sweep stands for: the spec it loads (a preset or file), or the name itself
    (an algorithm, 'best', 'default', a spatial style)."""
    if not isinstance(name, str):
        return repr(name)
    if section == "arch":
        return repr(replace(P.load_arch_cached(name), file=None))
    if section == "workload":
        return repr(P.load_workload_cached(name))
    try:
        return repr(P.load_mapping_cached(name)) if name not in P.ALGORITHMS else name
    except AttnsimError:  # not a preset or file: an algorithm-like name
        return name


def _value_hashes(axis: Axis) -> np.ndarray:
    out = np.empty(len(axis.values), dtype=np.uint64)
    for k, v in enumerate(axis.values):
        digest = hashlib.blake2b(f"{axis.column}={v!r}".encode(), digest_size=8).digest()
        out[k] = int.from_bytes(digest, "little")
    return out


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: spreads the (commutative) sum of value hashes over all 64 bits."""
    z = z.copy()
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


# ---------------------------------------------------------------- building sweeps

def build_sweep(arch, workload, mapping=None, vary=(), sample: Sample | tuple | None = None,
                description: str = "") -> Sweep:
    """A Sweep from values or names: `vary` is PATH=VALUES strings, (path, values) pairs or a dict.

        build_sweep("h100_sxm5_80gb", attnsim.attention(seq=8192, causal=True), "flash3",
                    ["arch.levels.SMEM.capacity=64KiB..256KiB:x2", "workload.seq_kv=1k,4k,16k"])

    Raises one SpecError listing every problem with the axes.
    """
    arch = arch if isinstance(arch, Arch) else load_arch(arch)
    workload = workload if isinstance(workload, Workload) else load_workload(workload)
    if isinstance(mapping, (str, Path)):
        mapping = str(mapping)
        P.check_mapping_choice(mapping)
    items = list(vary.items()) if isinstance(vary, dict) else list(vary)
    axes, probs = [], []
    for item in items:
        try:
            axes.append(parse_vary(item, arch) if isinstance(item, str) else make_axis(item[0], item[1], arch))
        except SpecError as e:
            probs.extend(e.problems)
    probs.extend(check_axes(axes, mapping))
    if probs:
        raise SpecError(probs)
    if isinstance(sample, tuple):
        sample = Sample(*sample)
    return Sweep(arch, workload, mapping, axes, sample, description)


def extend_sweep(sweep: Sweep, vary=(), sample: Sample | None = None) -> Sweep:
    """The sweep with more axes (PATH=VALUES strings) and, if given, another sample."""
    axes, probs = list(sweep.axes), []
    for text in vary:
        try:
            axes.append(parse_vary(text, sweep.arch))
        except SpecError as e:
            probs.extend(e.problems)
    probs.extend(check_axes(axes, sweep.mapping))
    if probs:
        raise SpecError(probs)
    return Sweep(sweep.arch, sweep.workload, sweep.mapping, axes, sample or sweep.sample, sweep.description)


WORKLOAD_SHAPE_FIELDS = [
    Field("name", "str", required=False, default=""),
    Field("batch", "int", min=1, required=False, default=1),
    Field("heads", "int", min=1, required=False, default=32),
    Field("kv_heads", "int", min=1, required=False),
    Field("seq", "int", min=1, required=False),
    Field("seq_q", "int", min=1, required=False),
    Field("seq_kv", "int", min=1, required=False),
    Field("head_dim", "int", min=1, required=False, default=128),
    Field("value_dim", "int", min=1, required=False),
    Field("dtype", "enum", choices=DTYPES, required=False, default="bf16"),
    Field("causal", "bool", required=False, default=False),
    Field("window", "int", min=1, required=False),
    Field("sink", "int", min=0, required=False, default=0),
    Field("density", "fraction", required=False),
    Field("kv_page", "int", min=0, required=False, default=0),
]
SAMPLE_FIELDS = [Field("random", "int", min=1, help="how many points to draw from the grid"),
                 Field("seed", "int", min=0, required=False, default=0)]


def load_sweep_file(path: str | Path) -> Sweep:
    """A Sweep from a YAML file; one SpecError lists every problem with its file and line.

        description: SMEM size vs sequence length       # optional
        base:
          arch: h100_sxm5_80gb                          # preset or YAML file (relative to this file)
          workload: llama3_8b_prefill_8k                # preset, YAML file, or {batch: 1, seq: 8192, ...}
          mapping: flash3                               # optional: algorithm, best, preset or file
        vary:
          arch.levels.SMEM.capacity: 64KiB..256KiB:x2
          workload.seq_kv: [1k, 4k, 16k]
        sample: {random: 10000, seed: 0}                # optional
    """
    path = Path(path)
    data, lines = load_yaml(path)
    r = Reader(data, lines, str(path))
    top = r.section((), [Field("description", "str", required=False, default="")],
                    extra_ok=("base", "vary", "sample"))
    base = r.section(("base",), [Field("arch", "str"), Field("mapping", "str", required=False)],
                     extra_ok=("workload",))
    here = path.resolve().parent
    arch = workload = mapping = None
    if base["arch"] is not None:
        arch = _load_or_problem(r, ("base", "arch"), lambda: load_arch(_relative(base["arch"], here)))
    raw_w = base.get("workload")
    if raw_w is None and not r.problems_at(("base",)) and isinstance(data, dict) and isinstance(data.get("base"), dict):
        r.problem(("base", "workload"), "missing required key 'workload'",
                  "a preset name, a workload YAML file, or a mapping of shape fields (batch, heads, seq, ...)")
    elif isinstance(raw_w, str):
        workload = _load_or_problem(r, ("base", "workload"), lambda: load_workload(_relative(raw_w, here)))
    elif isinstance(raw_w, dict):
        workload = _workload_from_shape(r, ("base", "workload"))
    elif raw_w is not None:
        r.problem(("base", "workload"), f"expected a preset name, a file or a mapping of shape fields, got {raw_w!r}")
    if base["mapping"] is not None:
        mapping = _relative(base["mapping"], here)
        _load_or_problem(r, ("base", "mapping"), lambda: P.check_mapping_choice(mapping))
    sample = None
    if isinstance(data, dict) and data.get("sample") is not None:
        s = r.section(("sample",), SAMPLE_FIELDS)
        if not r.problems_at(("sample",)):
            sample = Sample(s["random"], s["seed"])
    axes = _axes_from_file(r, data, arch)
    if arch is not None:
        for pr in check_axes(axes, mapping):
            r.problem(("vary", pr.key), pr.message, pr.hint)
    r.raise_if_problems()
    return Sweep(arch, workload, mapping, axes, sample, top["description"])


def _relative(name: str, here: Path) -> str:
    """A file named relative to the sweep file, when it exists there; else the name as given."""
    cand = here / name
    return str(cand) if name.endswith((".yaml", ".yml")) and cand.exists() else name


def _load_or_problem(r: Reader, where: tuple, load):
    try:
        return load()
    except AttnsimError as e:
        probs = getattr(e, "problems", None) or [Problem(str(e))]
        for pr in probs:
            r.problem(where, pr.message if not pr.file else str(pr), pr.hint)
        return None


def _workload_from_shape(r: Reader, where: tuple) -> Workload | None:
    s = r.section(where, WORKLOAD_SHAPE_FIELDS)
    if r.problems_at(where):
        return None
    if s["seq"] is None and (s["seq_q"] is None or s["seq_kv"] is None):
        r.problem(where, "give seq (both lengths) or seq_q and seq_kv")
        return None
    return _load_or_problem(r, where, lambda: attention(
        "softmax", batch=s["batch"], heads=s["heads"], kv_heads=s["kv_heads"], seq=s["seq"], seq_q=s["seq_q"],
        seq_kv=s["seq_kv"], head_dim=s["head_dim"], value_dim=s["value_dim"], dtype=s["dtype"],
        causal=s["causal"], window=s["window"], sink=s["sink"], density=s["density"], kv_page=s["kv_page"],
        name=s["name"]))


def _axes_from_file(r: Reader, data, arch: Arch | None) -> list[Axis]:
    vary = data.get("vary") if isinstance(data, dict) else None
    if vary is None:
        r.problem(("vary",), "missing section 'vary'", "e.g. vary: {arch.levels.SMEM.capacity: 64KiB..256KiB:x2}")
        return []
    if not isinstance(vary, dict):
        r.problem(("vary",), "expected a mapping of PATH: VALUES")
        return []
    axes = []
    if arch is None:
        return axes
    for key, spec in vary.items():
        try:
            axes.append(make_axis(str(key), spec, arch))
        except SpecError as e:
            for pr in e.problems:
                r.problem(("vary", key), pr.message.replace(f"unknown sweep path {key!r}: ", "unknown sweep path: "),
                          pr.hint)
    return axes
