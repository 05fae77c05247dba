"""Evaluate a chunk of sweep points into a tidy DataFrame; a point that fails is a row with its reason.

Fast path (GPU archs). Axes are *column axes* (numbers of the arch: capacities, bandwidths,
clock, efficiencies, energies, SM count) or *structural* (everything else: workload shape,
mapping, names). Points are grouped by their structural values; each group is resolved and
lowered once (``lower_gpu``). Then every column axis is *probed*: the group's arch with just
that value changed is lowered too, and the columns that differ from the group's row are the
ones the axis owns. Axes that own a common column, or are coupled by the arch (SMEM capacity
and the per-SM/per-CTA shared-memory limits; SM count and the per-SM levels), are probed
jointly. A point's row is then the group's row with each axis's columns copied from its probe
(numpy), and the chunk's rows go through ONE ``evaluate_points`` call.

This is exact as long as each lowered column, and each mapping check, depends on the fields of
one probed component only; ``tests/unit/test_sweep_run.py`` compares it with the per-point path.
Where the premise cannot be used, points take the per-point path (resolve, ``lower_gpu`` with
its checks, evaluate): when a probe changes the mapping (``mapping=best`` under a capacity axis,
the split-KV heuristic under an SM-count axis) the group is split on those axes; when a group's
base mapping does not fit its arch; when two probed components both fail a point (the message
must list both); for a group with fewer points in the chunk than it would need probes; and on
spatial archs (``attnsim.model.spatial``).

Workload fields are structural, not column axes: the mapping a point gets (the default kernel's
tile for a head dim, flash-attn's split-KV count for a batch and length) depends on them jointly.
"""
from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from attnsim.errors import AttnsimError, SpecError
from attnsim.mapping.kernel import KernelMapping, check_mapping
from attnsim.model import gpu_kernel as K
from attnsim.model.lower import BOUND_NAMES, lower_gpu
from attnsim.sweep import params as P

METRICS = ("latency_s", "tflops_per_s", "bound", "hbm_bytes", "l2_bytes", "smem_bytes", "energy_j",
           "ctas_per_sm", "waves")
TAIL = ("mapping_label", "status", "point_id")
JOINT_PROBE_LIMIT = 4096  # a coupled component with more value combinations is not probed
GROUP_CACHE = 4096  # lowered groups kept per process (LRU)
_SMEM_FIELDS = {"arch.levels.SMEM.capacity_bytes", "arch.gpu.smem_per_sm_bytes", "arch.gpu.smem_per_cta_bytes"}
_BOUNDS = np.array([BOUND_NAMES[i] for i in range(len(BOUND_NAMES))], dtype=object)
_ENERGY_COLUMNS = (K.O_E_HBM, K.O_E_L2, K.O_E_SMEM, K.O_E_MMA, K.O_E_EXP, K.O_E_VEC, K.O_E_STATIC)


def reason(e: BaseException) -> str:
    """One line saying why a point failed."""
    probs = getattr(e, "problems", None)
    if isinstance(e, AttnsimError) and probs:
        text = "; ".join(str(p) for p in probs)
    elif isinstance(e, AttnsimError):
        text = str(e)
    else:
        text = f"{type(e).__name__}: {e}"
    return " ".join(text.split())


def is_column_axis(param: P.Param) -> bool:
    return param.section == "arch" and param.numeric


def _coupled(a: P.Param, b: P.Param) -> bool:
    if a.column in _SMEM_FIELDS and b.column in _SMEM_FIELDS:
        return True
    return any(x.column == "arch.gpu.sm_count" and y.column.startswith("arch.levels.") for x, y in ((a, b), (b, a)))


@dataclass
class _Comp:
    """Column axes probed together: the input columns they own and, per value combination
    (last axis fastest), those columns' values and the mapping check's verdict."""

    axes: tuple
    strides: tuple = ()
    cols: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    table: np.ndarray | None = None  # [combinations, len(cols)]
    why: np.ndarray | None = None  # [combinations] reason the check fails, or None
    safe: bool = True  # every combination keeps the group's mapping


@dataclass
class _Group:
    error: str | None = None  # every point of the group fails with this
    slow: bool = False  # evaluate its points one by one
    row: np.ndarray | None = None
    label: tuple = ()  # (mapping label, arch name)
    comps: list = field(default_factory=list)
    split: tuple = ()  # axes whose values change the mapping: sub-group on them


class _Out:
    """Per-point results of one chunk while it is being filled."""

    def __init__(self, n: int):
        self.rows = np.empty((n, K.N_IN))
        self.has_row = np.zeros(n, dtype=bool)
        self.metrics = {m: np.full(n, np.nan) for m in METRICS if m != "bound"}
        self.bound = np.full(n, None, dtype=object)
        self.status = np.full(n, None, dtype=object)
        self.label = np.full(n, -1, dtype=np.int64)
        self.labels: list[tuple] = []
        self._label_ids: dict[tuple, int] = {}

    def label_id(self, label: tuple) -> int:
        if label not in self._label_ids:
            self._label_ids[label] = len(self.labels)
            self.labels.append(label)
        return self._label_ids[label]


class Evaluator:
    """Evaluates chunks of one sweep; keeps the lowered groups between chunks (per process)."""

    def __init__(self, sweep):
        self.sweep = sweep
        self.axes = sweep.axes
        self.column_axes = [j for j, a in enumerate(self.axes) if is_column_axis(a.param)]
        self.struct_axes = [j for j, a in enumerate(self.axes) if not is_column_axis(a.param)]
        # a group with at most this many points in a chunk, not yet lowered, goes point by point:
        # probing it would cost one lowering per column-axis value
        self.small_group = sum(len(self.axes[j]) for j in self.column_axes)
        self._groups: OrderedDict = OrderedDict()
        self.slow_points = 0  # points evaluated one by one (tests look at this)

    # ---- resolving points

    def _items(self, assignment) -> list:
        return [(self.axes[j].param, self.axes[j].values[d]) for j, d in assignment]

    def _mapping(self, arch, w, items):
        choice = next((v for p, v in items if p.column == "mapping"), self.sweep.mapping)
        overrides = {p.target[0]: v for p, v in items if p.section == "mapping" and p.column != "mapping"}
        return P.resolve_mapping(arch, w, choice, overrides)

    def _label(self, m, items) -> str:
        """The mapping's name, and its full description when mapping fields were varied."""
        if isinstance(m, KernelMapping) and m.name and any(p.section == "mapping" and p.column != "mapping"
                                                            for p, _ in items):
            return f"{m.name} ({replace(m, name='').label()})"
        return m.label()

    def _group(self, assignment: tuple, may_split: bool) -> _Group:
        key = (assignment, may_split)
        g = self._groups.get(key)
        if g is None:
            g = self._build_group(assignment, may_split)
            self._groups[key] = g
            if len(self._groups) > GROUP_CACHE:
                self._groups.popitem(last=False)
        else:
            self._groups.move_to_end(key)
        return g

    def _build_group(self, assignment: tuple, may_split: bool) -> _Group:
        items = self._items(assignment)
        try:  # every workload field is structural: a bad workload is bad for the whole group
            w = P.apply_workload(self.sweep.workload, items)
        except Exception as e:  # noqa: BLE001 - a bad point is a row with its reason
            return _Group(error=reason(e))
        if w.family != "softmax":  # a family's plan of kernels: predicted point by point
            return _Group(slow=True)
        try:
            arch = P.apply_arch(self.sweep.arch, items)
        except Exception:  # noqa: BLE001 - which arch field fails first depends on the point's others
            return _Group(slow=True)
        if arch.kind != "gpu":
            return _Group(slow=True)
        try:
            m = self._mapping(arch, w, items)
            row = lower_gpu(arch, w, m, check=False)
            check_mapping(m, w, arch)
        except Exception:  # noqa: BLE001 - its points each get their own reason
            return _Group(slow=True)
        fixed = {j for j, _ in assignment}
        free = [j for j in self.column_axes if j not in fixed]
        comps = self._components(arch, w, m, items, row, free)
        unsafe = [c for c in comps if not c.safe]
        if unsafe and not may_split:
            return _Group(slow=True)
        return _Group(row=row, label=(self._label(m, items), arch.name), comps=[c for c in comps if c.safe],
                      split=tuple(sorted(j for c in unsafe for j in c.axes)))

    def _probe(self, arch, w, m, items, extra):
        """(row or None, why the check fails or None, mapping unchanged?) with `extra` applied."""
        try:
            a2 = P.apply_arch(arch, extra)
            m2 = self._mapping(a2, w, items)
        except Exception as e:  # noqa: BLE001
            return None, reason(e), True
        try:
            row = lower_gpu(a2, w, m2, check=False)
        except Exception as e:  # noqa: BLE001
            return None, reason(e), m2 == m
        try:
            check_mapping(m2, w, a2)
            why = None
        except Exception as e:  # noqa: BLE001
            why = reason(e)
        return row, why, m2 == m

    def _components(self, arch, w, m, items, base_row, free) -> list[_Comp]:
        single, owned = {}, {}
        for j in free:
            ax = self.axes[j]
            single[j] = [self._probe(arch, w, m, items, [(ax.param, v)]) for v in ax.values]
            owned[j] = _changed(base_row, single[j])
        parent = {j: j for j in free}

        def root(j):
            while parent[j] != j:
                j = parent[j]
            return j

        for a, b in itertools.combinations(free, 2):
            if owned[a] & owned[b] or _coupled(self.axes[a].param, self.axes[b].param):
                parent[root(a)] = root(b)
        members: dict[int, list] = {}
        for j in free:
            members.setdefault(root(j), []).append(j)
        comps = []
        for axes in members.values():
            sizes = [len(self.axes[j]) for j in axes]
            comp = _Comp(axes=tuple(axes), strides=tuple(math.prod(sizes[i + 1:]) for i in range(len(axes))))
            if len(axes) == 1:
                probes = single[axes[0]]
            elif math.prod(sizes) > JOINT_PROBE_LIMIT:
                comp.safe = False
                comps.append(comp)
                continue
            else:
                probes = [self._probe(arch, w, m, items, [(self.axes[j].param, self.axes[j].values[d])
                                                          for j, d in zip(axes, combo)])
                          for combo in itertools.product(*(range(s) for s in sizes))]
            cols = sorted(set().union(*(owned[j] for j in axes)) | _changed(base_row, probes))
            comp.cols = np.array(cols, dtype=np.int64)
            comp.table = np.array([(r if r is not None else base_row)[comp.cols] for r, _, _ in probes])
            comp.why = np.array([why for _, why, _ in probes], dtype=object)
            comp.safe = all(same for _, _, same in probes)
            comps.append(comp)
        return comps

    # ---- filling a chunk

    def chunk(self, start: int, stop: int) -> pd.DataFrame:
        digits = self.sweep.digits(start, stop)
        out = _Out(len(digits))
        for pos, key in _groups_of(digits, self.struct_axes):
            self._fill(tuple(zip(self.struct_axes, key)), pos, digits, out, may_split=True)
        self._evaluate(out)
        return self._frame(digits, out)

    def _fill(self, assignment, pos, digits, out: _Out, may_split: bool) -> None:
        if len(pos) <= self.small_group and (assignment, may_split) not in self._groups:
            for p in pos:
                self._slow_point(p, digits[p], out)
            return
        g = self._group(assignment, may_split)
        if g.error is not None:
            out.status[pos] = g.error
            return
        if g.slow:
            for p in pos:
                self._slow_point(p, digits[p], out)
            return
        if g.split:
            for sub, key in _groups_of(digits[pos], list(g.split)):
                self._fill(assignment + tuple(zip(g.split, key)), pos[sub], digits, out, may_split=False)
            return
        n = len(pos)
        rows = np.repeat(g.row[None, :], n, axis=0)
        failed = np.zeros(n, dtype=np.int64)
        why = np.full(n, None, dtype=object)
        for c in g.comps:
            idx = np.zeros(n, dtype=np.int64)
            for j, s in zip(c.axes, c.strides):
                idx += digits[pos, j] * s
            if len(c.cols):
                rows[:, c.cols] = c.table[idx]
            bad = np.not_equal(c.why[idx], None)
            if bad.any():
                failed += bad
                why[bad] = c.why[idx[bad]]
        ok = failed == 0
        out.rows[pos[ok]] = rows[ok]
        out.has_row[pos[ok]] = True
        out.label[pos[ok]] = out.label_id(g.label)
        one = failed == 1  # the probe's message is the point's: its check fails on that component alone
        out.status[pos[one]] = why[one]
        out.label[pos[one]] = out.label_id(g.label)
        for p in pos[failed > 1]:  # the message must list every failing component: ask the point
            self._slow_point(p, digits[p], out)

    def _slow_point(self, p: int, drow, out: _Out) -> None:
        self.slow_points += 1
        items = self._items(enumerate(drow))
        try:
            w = P.apply_workload(self.sweep.workload, items)
            arch = P.apply_arch(self.sweep.arch, items)
            if w.family != "softmax":
                _result_into(out, p, arch, self._family_result(arch, w, items))
                return
            m = self._mapping(arch, w, items)
            if arch.kind == "gpu":
                out.label[p] = out.label_id((self._label(m, items), arch.name))
                out.rows[p] = lower_gpu(arch, w, m)  # checks the mapping first
                out.has_row[p] = True
            else:
                from attnsim.model.spatial import predict_spatial
                _result_into(out, p, arch, predict_spatial(arch, w, m))
        except Exception as e:  # noqa: BLE001 - a bad point is a row with its reason
            out.status[p] = reason(e)

    def _family_result(self, arch, w, items):
        """A family's point: its plan through attnsim.predict; the mapping choice names the attention
        kernel inside the plan ('default' = the family's own kernels); mapping fields do not apply."""
        from attnsim.model.analytical import predict
        if any(p.section == "mapping" and p.column != "mapping" for p, _ in items):
            raise SpecError(f"mapping fields cannot be varied for family {w.family!r}: set its tiles through "
                            "workload.params.*")
        choice = next((v for p, v in items if p.column == "mapping"), self.sweep.mapping)
        return predict(arch, w, None if choice in (None, "default") else choice)

    def _evaluate(self, out: _Out) -> None:
        sel = np.flatnonzero(out.has_row)
        if not len(sel):
            return
        o, errors = _evaluate_rows(np.ascontiguousarray(out.rows[sel]))
        fits = (o[:, K.O_STATUS] == K.ST_OK) & ~np.isnan(o[:, K.O_STATUS])
        lat = o[:, K.O_LATENCY]
        energy = o[:, _ENERGY_COLUMNS[0]].copy()
        for col in _ENERGY_COLUMNS[1:]:  # summed in Result.energy_j's order: the same float as predict()
            energy += o[:, col]
        with np.errstate(divide="ignore", invalid="ignore"):
            values = {"latency_s": lat, "tflops_per_s": o[:, K.O_USEFUL_FLOPS] / lat / 1e12,
                      "hbm_bytes": o[:, K.O_HBM_BYTES], "l2_bytes": o[:, K.O_L2_BYTES],
                      "smem_bytes": o[:, K.O_SMEM_BYTES], "energy_j": energy,
                      "ctas_per_sm": o[:, K.O_CTAS_PER_SM], "waves": o[:, K.O_WAVES]}
        ok = sel[fits]
        for name, v in values.items():
            out.metrics[name][ok] = v[fits]
        out.bound[ok] = _BOUNDS[o[fits, K.O_BOUND].astype(np.int64)]
        for i in np.flatnonzero(~fits):
            p = sel[i]
            label, arch_name = out.labels[out.label[p]]
            out.status[p] = errors.get(i) or (f"mapping {label} fits no CTA on an SM of {arch_name} "
                                              "(shared memory, registers or warps)")

    def _frame(self, digits, out: _Out) -> pd.DataFrame:
        frame = self.sweep.params_frame(digits)
        for name in METRICS:
            if name == "bound":
                frame[name] = pd.Series(out.bound, dtype="str")
            else:
                frame[name] = out.metrics[name]
        labels = np.array([lab for lab, _ in out.labels] + [None], dtype=object)
        frame["mapping_label"] = pd.Series(labels[out.label], dtype="str")
        status = out.status.copy()
        status[np.equal(status, None)] = "ok"
        frame["status"] = pd.Series(status, dtype="str")
        frame["point_id"] = pd.Series(self.sweep.point_ids(digits), dtype="str")
        return frame


def _changed(base_row: np.ndarray, probes) -> set:
    cols = set()
    for row, _, _ in probes:
        if row is not None:
            cols.update(np.flatnonzero(row != base_row).tolist())
    return cols


def _groups_of(digits: np.ndarray, axes: list):
    """(positions, value indices on `axes`) for each distinct combination of those axes' values."""
    n = len(digits)
    if not axes:
        yield np.arange(n), ()
        return
    code = np.zeros(n, dtype=np.int64)
    for j in axes:
        code = code * (int(digits[:, j].max()) + 1) + digits[:, j]
    order = np.argsort(code, kind="stable")
    cuts = np.flatnonzero(np.diff(code[order])) + 1
    for pos in np.split(order, cuts):
        yield pos, tuple(int(d) for d in digits[pos[0], axes])


def _evaluate_rows(rows: np.ndarray):
    """evaluate_points over the rows; if the batch raises (a zero bandwidth divides by zero in
    numba), row by row so that only the offending points fail."""
    try:
        return K.evaluate_points(rows), {}
    except Exception:  # noqa: BLE001
        pass
    o = np.full((len(rows), K.N_OUT), np.nan)
    errors = {}
    for i in range(len(rows)):
        try:
            o[i] = K.evaluate_points(rows[i:i + 1])[0]
        except Exception as e:  # noqa: BLE001
            errors[i] = f"evaluation failed: {type(e).__name__}: {e}"
    return o, errors


def _result_into(out: _Out, p: int, arch, r) -> None:
    outer, second = arch.levels[0].name, arch.levels[1].name
    values = {"latency_s": r.latency_s, "tflops_per_s": r.tflops_per_s, "hbm_bytes": r.traffic_bytes.get(outer),
              "l2_bytes": r.traffic_bytes.get(second), "energy_j": r.energy_total_j}
    for name, v in values.items():
        out.metrics[name][p] = np.nan if v is None else v
    out.bound[p] = r.bound
    out.label[p] = out.label_id((r.mapping, arch.name))


# ---------------------------------------------------------------- per process

_EVALUATORS: OrderedDict = OrderedDict()


def evaluator_for(sweep) -> Evaluator:
    """This process's Evaluator for a sweep (its lowered groups survive between chunks)."""
    key = sweep.spec_hash
    ev = _EVALUATORS.get(key)
    if ev is None:
        ev = _EVALUATORS[key] = Evaluator(sweep)
        while len(_EVALUATORS) > 4:
            _EVALUATORS.popitem(last=False)
    return ev


def evaluate_chunk(sweep, start: int, stop: int) -> pd.DataFrame:
    """Points start..stop-1 of a sweep: their varied values, then the metrics, status and id."""
    return evaluator_for(sweep).chunk(start, stop)


def evaluate_slow(sweep, start: int, stop: int) -> pd.DataFrame:
    """The same rows by the per-point path only (the fast path's reference in tests)."""
    ev = Evaluator(sweep)
    digits = sweep.digits(start, stop)
    out = _Out(len(digits))
    for p in range(len(digits)):
        ev._slow_point(p, digits[p], out)
    ev._evaluate(out)
    return ev._frame(digits, out)
