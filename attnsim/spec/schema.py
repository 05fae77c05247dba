"""Declarative field tables and a Reader that checks spec data against them.

A spec module lists its keys as `Field`s; `Reader.section` converts one mapping and records a
`Problem` for everything wrong with it instead of stopping at the first, so a user sees every
mistake of a file in one run (`Reader.raise_if_problems`).

Provenance: any scalar may be written `{value: 132, source: NV-H100-WP}`, and a mapping's
`source:` key covers everything below it. With `require_sources=True` (hardware specs) each
number or quantity read must be covered by some source (names, descriptions and choices need
none). Fields marked `needs_source` (efficiency and calibration factors, the numbers easiest to
fudge) need their own source whenever they are written, whatever `require_sources` says.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass

from attnsim import units
from attnsim.errors import Problem, SpecError

__all__ = ["Field", "Reader", "did_you_mean", "PLAIN_KINDS", "FIELD_KINDS", "SOURCED_KINDS"]

PLAIN_KINDS = ("int", "float", "fraction", "str", "bool", "enum", "list")
FIELD_KINDS = PLAIN_KINDS + tuple(units.KINDS)
# With require_sources, the kinds that must be covered by a source: numbers and quantities are
# the hardware values; names, descriptions, choices and lists identify rather than measure.
SOURCED_KINDS = ("int", "float", "fraction") + tuple(units.KINDS)

_SOURCE = "source"
_WRAPPER_KEYS = frozenset({"value", _SOURCE})

# Placeholder for "this field produced no usable value"; section() turns it into None.
_INVALID = object()


def did_you_mean(name: object, candidates) -> str | None:
    """"did you mean 'capacity'?" for the closest candidate to `name`, or None if none is close."""
    names = [c for c in candidates if isinstance(c, str)]
    if not isinstance(name, str) or not names:
        return None
    # Case differences are the commonest typo ('Capacity'), so compare lower-cased too.
    lowered = {c.lower(): c for c in names}
    if name.lower() in lowered and lowered[name.lower()] != name:
        return f"did you mean '{lowered[name.lower()]}'?"
    # A truncated name ('h100_sxm5' for 'h100_sxm5_80gb') names its completion, if just one.
    completions = [c for c in names if c.lower().startswith(name.lower())] if name else []
    if len(completions) == 1:
        return f"did you mean '{completions[0]}'?"
    match = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return f"did you mean '{match[0]}'?" if match else None


@dataclass(frozen=True)
class Field:
    """One key of a spec section: its kind, whether it is required, its bounds and help."""

    name: str
    kind: str  # one of FIELD_KINDS: plain kinds, or a units kind ('size', 'bandwidth', ...)
    required: bool = True
    default: object = None
    choices: tuple = ()  # for 'enum'
    min: float | None = None  # inclusive bounds for numbers and quantities (SI units)
    max: float | None = None
    help: str = ""
    needs_source: bool = False  # efficiency/calibration factors: the value must carry its own source

    def __post_init__(self):
        # Table mistakes are programming errors: fail when the table is defined, not when read.
        if self.kind not in FIELD_KINDS:
            raise ValueError(f"Field {self.name!r}: unknown kind {self.kind!r}; kinds are {FIELD_KINDS}")
        if self.kind == "enum" and not self.choices:
            raise ValueError(f"Field {self.name!r}: an enum needs choices")
        if self.required and self.default is not None:
            raise ValueError(f"Field {self.name!r}: a required field cannot have a default")
        if self.kind in units.KINDS and isinstance(self.default, str):
            # Let tables write defaults in units ('1 GHz'); store the SI value.
            object.__setattr__(self, "default", units.parse_quantity(self.default, self.kind))


def _show(value: object) -> str:
    """How a given value appears in messages: strings quoted, containers by kind."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    return repr(value)


def _dotted(path: tuple) -> str | None:
    return ".".join(str(p) for p in path) or None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Reader:
    """Reads sections of loaded spec data against Field tables, collecting every problem.

    `data` and `lines` come from yamlio.load_yaml (or any plain data with lines={}); `file`
    names the input in messages. Read sections with `section`, add your own checks with
    `problem`, then call `raise_if_problems` before using the values: a value that could not
    be read (missing, wrong type, out of range) is returned as None.
    """

    def __init__(self, data, lines: dict[tuple, int], file: str | None, *, require_sources: bool = False):
        self.data = data
        self.lines = dict(lines or {})
        self.file = file
        self.require_sources = require_sources
        self.problems: list[Problem] = []
        self._problem_paths: list[tuple] = []  # parallel to problems, for problems_at()
        self._sources: dict[str, str] = {}

    # ---- problems ------------------------------------------------------------------------

    def _line_of(self, path: tuple) -> int | None:
        """Line of `path`, or of its nearest recorded parent (a missing key has no line)."""
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.lines:
                return self.lines[path[:cut]]
        return None

    def problem(self, path: tuple, message: str, hint: str | None = None) -> None:
        """Record one problem located at `path` (a tuple of keys and list indices)."""
        path = tuple(path)
        self.problems.append(Problem(message, file=self.file, line=self._line_of(path),
                                     key=_dotted(path), hint=hint))
        self._problem_paths.append(path)

    def problems_at(self, path: tuple) -> list[Problem]:
        """The problems recorded at `path` or below it (e.g. to skip building a broken section)."""
        path = tuple(path)
        return [pr for pr, p in zip(self.problems, self._problem_paths) if p[: len(path)] == path]

    def raise_if_problems(self) -> None:
        """Raise one SpecError listing every problem recorded so far, if there are any."""
        if self.problems:
            raise SpecError(list(self.problems))

    def sources(self) -> dict[str, str]:
        """{dotted path: source} for every value read that has a source (its own or inherited)."""
        return dict(self._sources)

    # ---- navigation ----------------------------------------------------------------------

    def has(self, path: tuple) -> bool:
        """Whether `path` exists in the data (for optional sections)."""
        return self._find(tuple(path))[0]

    def _find(self, path: tuple) -> tuple[bool, object, str | None]:
        """(found, node, inherited source) for `path`; the source is the nearest `source:` key
        on the way down, including the node's own."""
        node, source = self.data, None
        for i in range(len(path) + 1):
            if isinstance(node, dict) and isinstance(node.get(_SOURCE), str):
                source = node[_SOURCE]
            if i == len(path):
                return True, node, source
            key = path[i]
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and isinstance(key, int) and -len(node) <= key < len(node):
                node = node[key]
            else:
                return False, None, source
        raise AssertionError("unreachable")

    # ---- sections ------------------------------------------------------------------------

    def section(self, path: tuple, fields: list[Field], *, extra_ok: tuple[str, ...] = ()) -> dict:
        """Read the mapping at `path` against `fields`; return {field name: value}.

        Absent (or null) optional fields get their default; values that could not be read, and
        absent required fields, are None (a value whose only problem is its source is kept).
        Keys in `extra_ok` are allowed and returned raw; `source` is always allowed.
        Problems recorded: missing section or not a mapping, unknown keys (with a did-you-mean),
        missing required fields, wrong types, bare numbers for quantities, out-of-range values,
        and missing sources (numbers and quantities only) when sources are required.
        """
        path = tuple(path)
        result: dict = {f.name: None for f in fields}
        found, node, inherited = self._find(path)
        if not found:
            self.problem(path, "missing section")
            return result
        if not isinstance(node, dict):
            self.problem(path, f"expected a mapping, got {_show(node)}")
            return result
        by_name = {f.name: f for f in fields}
        self._check_keys(path, node, by_name, extra_ok)
        for name in extra_ok:
            if name in node and name not in by_name:
                result[name] = node[name]
        for f in fields:
            result[f.name] = self._field(path, node, f, inherited)
        return result

    def _check_keys(self, path: tuple, node: dict, by_name: dict, extra_ok: tuple) -> None:
        """Unknown keys, and a `source:` that is not a string."""
        known = list(by_name) + [k for k in extra_ok if k not in by_name]
        for key in node:
            if key == _SOURCE and _SOURCE not in by_name:
                if not isinstance(node[key], str) or not node[key].strip():
                    self.problem(path + (key,), f"a source must be a non-empty string, got {_show(node[key])}")
            elif key not in by_name and key not in extra_ok:
                hint = did_you_mean(key, known) or (f"known keys: {', '.join(known)}" if known else None)
                self.problem(path + (key,), f"unknown key {key!r}", hint)

    def _field(self, path: tuple, node: dict, f: Field, inherited: str | None) -> object:
        """Read, unwrap, source-check and convert one field; None if it has a problem."""
        where = path + (f.name,)
        raw = node.get(f.name)
        if raw is None:  # absent, or written with no value ('capacity:')
            if f.required:
                what = "missing required key" if f.name not in node else "required key has no value"
                self.problem(where, f"{what} '{f.name}'", f.help or None)
            return None if f.required else f.default
        unwrapped = self._unwrap(where, raw, f)
        if unwrapped is _INVALID:
            return None
        value, own_source = unwrapped
        self._check_source(where, f, own_source, inherited)
        converted = self._convert(where, value, f)
        return None if converted is _INVALID else converted

    def _unwrap(self, where: tuple, raw: object, f: Field):
        """(value, own source or None) from plain `132` or `{value: 132, source: X}`."""
        if not (isinstance(raw, dict) and "value" in raw):
            return raw, None
        extra = [k for k in raw if k not in _WRAPPER_KEYS]
        if extra:
            self.problem(where + (extra[0],), f"unknown key {extra[0]!r} next to 'value'",
                         did_you_mean(extra[0], sorted(_WRAPPER_KEYS)) or "write {value: ..., source: ...}")
            return _INVALID
        source = raw.get(_SOURCE)
        if _SOURCE in raw and (not isinstance(source, str) or not source.strip()):
            self.problem(where + (_SOURCE,), f"a source must be a non-empty string, got {_show(source)}")
            return _INVALID
        if raw["value"] is None:
            self.problem(where + ("value",), f"'{f.name}' has no value")
            return _INVALID
        return raw["value"], source

    def _check_source(self, where: tuple, f: Field, own: str | None, inherited: str | None) -> None:
        """Record the value's source, and a problem if a required one is missing."""
        source = own or inherited
        if source is not None:
            self._sources[_dotted(where)] = source
        if f.needs_source and own is None:
            # Efficiency/calibration factors are the numbers most easily tuned to fit; a section-wide
            # source does not vouch for them, so each one must cite where it comes from.
            self.problem(where, f"'{f.name}' needs its own source: write "
                                f"`{f.name}: {{value: ..., source: ...}}`")
        elif self.require_sources and source is None and f.kind in SOURCED_KINDS:
            self.problem(where, "no source: give `{value: ..., source: ...}` or a `source:` "
                                "on the enclosing section")

    # ---- conversion ----------------------------------------------------------------------

    def _convert(self, where: tuple, value: object, f: Field) -> object:
        """Check the type of one value and convert it (quantities to SI floats)."""
        if f.kind in units.KINDS:
            if isinstance(value, (dict, list)):
                self.problem(where, f"{units.KINDS[f.kind].expected()}, got {_show(value)}")
                return _INVALID
            try:
                converted = units.parse_quantity(value, f.kind)
            except units.UnitError as exc:
                self.problem(where, str(exc))
                return _INVALID
            return self._check_range(where, converted, f)
        return getattr(self, f"_kind_{f.kind}")(where, value, f)

    def _kind_int(self, where, value, f):
        if not isinstance(value, int) or isinstance(value, bool):
            hint = "write a whole number without a decimal point" if _is_number(value) else None
            self.problem(where, f"expected an integer, got {_show(value)}", hint)
            return _INVALID
        return self._check_range(where, value, f)

    def _kind_float(self, where, value, f):
        if not _is_number(value):
            self.problem(where, f"expected a number, got {_show(value)}")
            return _INVALID
        if not math.isfinite(value):
            self.problem(where, f"expected a finite number, got {_show(value)}")
            return _INVALID
        return self._check_range(where, float(value), f)

    def _kind_fraction(self, where, value, f):
        number = self._kind_float(where, value, f)
        if number is _INVALID:
            return _INVALID
        if not 0 < number <= 1:
            self.problem(where, f"expected a fraction in (0, 1], got {_show(value)}")
            return _INVALID
        return number

    def _kind_str(self, where, value, f):
        if not isinstance(value, str):
            self.problem(where, f"expected a string, got {_show(value)}",
                         f"quote it: '{value}'" if _is_number(value) or isinstance(value, bool) else None)
            return _INVALID
        return value

    def _kind_bool(self, where, value, f):
        if not isinstance(value, bool):
            self.problem(where, f"expected true or false, got {_show(value)}")
            return _INVALID
        return value

    def _kind_enum(self, where, value, f):
        # True == 1 in Python: also compare bool-ness so `true` does not pass for choice 1.
        if not any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in f.choices):
            choices = ", ".join(str(c) for c in f.choices)
            self.problem(where, f"expected one of {choices}, got {_show(value)}",
                         did_you_mean(value, f.choices))
            return _INVALID
        return value

    def _kind_list(self, where, value, f):
        if not isinstance(value, list):
            self.problem(where, f"expected a list, got {_show(value)}")
            return _INVALID
        return value

    def _check_range(self, where: tuple, value: float, f: Field) -> object:
        """Inclusive min/max; bounds of quantities are SI values, shown back in units."""
        def show(x):
            return units.format_quantity(x, f.kind) if f.kind in units.KINDS and x >= 0 else repr(x)

        if f.min is not None and value < f.min:
            self.problem(where, f"must be at least {show(f.min)}, got {show(value)}")
            return _INVALID
        if f.max is not None and value > f.max:
            self.problem(where, f"must be at most {show(f.max)}, got {show(value)}")
            return _INVALID
        return value
