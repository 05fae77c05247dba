"""Dimensional strings: parse '80 GiB' / '3.35 TB/s' / '5 pJ' into SI floats, and format them back.

A leaf module: it imports only the standard library, so every other module may use it.

Hardware specs are full of numbers whose unit is easy to get wrong (GB vs GiB, MHz vs GHz,
pJ vs nJ). We therefore refuse bare numbers where a dimension is expected and make every
value say its unit. Parsing is exact: the decimal number times the prefix scale is computed
in `decimal` and rounded once to a float, so '0.1 GHz' is exactly 1e8 and formatting can
promise a round trip.
"""
from __future__ import annotations

import decimal
import math
import re
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "UnitError", "KINDS", "parse_quantity", "format_quantity", "fmt_si",
    "parse_size", "parse_bandwidth", "parse_frequency", "parse_throughput",
    "parse_energy", "parse_time", "parse_power",
]


class UnitError(ValueError):
    """A dimensional value that cannot be read; the message is one line saying what was expected."""


# ---- prefixes ----------------------------------------------------------------------------

# Exact scales (int or Decimal) so that number * scale is exact before the single rounding.
_BIG = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_SMALL = {
    "m": decimal.Decimal("1e-3"), "u": decimal.Decimal("1e-6"),
    "\u00b5": decimal.Decimal("1e-6"),  # micro sign, as typed on most keyboards
    "\u03bc": decimal.Decimal("1e-6"),  # Greek small mu, which looks the same
    "n": decimal.Decimal("1e-9"), "p": decimal.Decimal("1e-12"), "f": decimal.Decimal("1e-15"),
}
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
_ALL_PREFIXES = {**_BIG, **_SMALL, **_BINARY, "K": 10**3}

# The prefixes format_quantity may write, per family, smallest first (one spelling each).
_FORMAT_SMALL = ("f", "p", "n", "u", "m")
_FORMAT_BIG = ("k", "M", "G", "T", "P")
_FORMAT_BINARY = ("Ki", "Mi", "Gi", "Ti", "Pi")


@dataclass(frozen=True)
class _Kind:
    """What one kind of quantity accepts: its unit spellings, prefixes and examples."""

    name: str
    units: tuple[str, ...]  # accepted base units; the first is the one we write
    small: bool  # milli .. femto allowed (energies, times, powers)
    big: bool  # kilo .. peta allowed
    binary: bool  # Ki .. Pi allowed (sizes and bandwidths only)
    examples: tuple[str, str]

    @property
    def article(self) -> str:
        return "an" if self.name[0] in "aeiou" else "a"

    def prefixes(self) -> dict[str, object]:
        """Every prefix spelling this kind accepts, mapped to its exact scale."""
        allowed: dict[str, object] = {"": 1}
        if self.big:
            allowed.update(_BIG)
        if self.small:
            allowed.update(_SMALL)
        if self.binary:
            allowed.update(_BINARY)
        if self.name == "size":
            allowed["K"] = 10**3  # 'KB' is a common spelling of kilobyte; only there
        return allowed

    def expected(self) -> str:
        """The start of every error message: "expected a size like '80 GiB' or '228 KiB'"."""
        a, b = self.examples
        return f"expected {self.article} {self.name} like '{a}' or '{b}'"


_KIND_LIST = (
    _Kind("size", ("B",), small=False, big=True, binary=True, examples=("80 GiB", "228 KiB")),
    _Kind("bandwidth", ("B/s",), small=False, big=True, binary=True, examples=("3.35 TB/s", "2039 GB/s")),
    _Kind("frequency", ("Hz",), small=False, big=True, binary=False, examples=("1.83 GHz", "1410 MHz")),
    _Kind("throughput", ("FLOP/s", "OP/s", "op/s"), small=False, big=True, binary=False,
          examples=("989.4 TFLOP/s", "312 TOP/s")),
    _Kind("energy", ("J",), small=True, big=True, binary=False, examples=("5 pJ", "1.3 nJ")),
    _Kind("time", ("s",), small=True, big=False, binary=False, examples=("10 us", "1.5 ms")),
    _Kind("power", ("W",), small=True, big=True, binary=False, examples=("700 W", "0.35 kW")),
)

#: The quantity kinds, name -> description of what each accepts. Iterate it for the names.
KINDS = MappingProxyType({k.name: k for k in _KIND_LIST})


def _kind(kind: str) -> _Kind:
    """Look up a kind; an unknown one is a programming error, still reported as UnitError."""
    try:
        return KINDS[kind]
    except (KeyError, TypeError):
        raise UnitError(f"unknown quantity kind {kind!r}; kinds are {', '.join(KINDS)}") from None


# ---- parsing -----------------------------------------------------------------------------

# A leading sign is matched so a negative value gets its own message instead of "bad unit".
_NUMBER = re.compile(r"\s*(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<unit>.*?)\s*$",
                     re.DOTALL)


def _split_unit(unit: str, spec: _Kind) -> tuple[str, str] | None:
    """Split 'GiB' into ('Gi', 'B') when the unit ends with one of the kind's base units."""
    # Longest base first: 'TFLOP/s' also ends with 'OP/s', which would leave prefix 'TFL'.
    for base in sorted(spec.units, key=len, reverse=True):
        if unit.endswith(base) and unit[: len(unit) - len(base)] in _ALL_PREFIXES | {"": 1}:
            return unit[: len(unit) - len(base)], base
    return None


def _unit_problem(unit: str, spec: _Kind) -> str:
    """Why `unit` is not a unit of `spec`, in a few words, for the end of the error message."""
    split = _split_unit(unit, spec)
    if split is not None:  # right base unit, prefix not allowed for this kind
        prefix = split[0]
        allowed = ", ".join(p for p in spec.prefixes() if p)
        return f"prefix '{prefix}' is not allowed for {spec.article} {spec.name}; allowed: {allowed}"
    for other in _KIND_LIST:
        if other is not spec and _split_unit(unit, other) is not None:
            return f"'{unit}' is {other.article} {other.name} unit, not {spec.article} {spec.name} unit"
    return f"unknown unit '{unit}'; {spec.article} {spec.name} is written in {' or '.join(spec.units)}"


def _exact_float(number: str, scale: object) -> float:
    """Correctly rounded float of the exact decimal product number * scale."""
    with decimal.localcontext() as ctx:
        # Enough digits that the product is exact; the only rounding is the final float().
        ctx.prec = decimal.MAX_PREC
        ctx.Emax, ctx.Emin = decimal.MAX_EMAX, decimal.MIN_EMIN
        ctx.traps[decimal.Inexact] = True
        product = decimal.Decimal(number) * decimal.Decimal(scale)
    # float(Decimal) goes through the decimal string, which CPython rounds correctly.
    return float(product)


def parse_quantity(text: str | int | float, kind: str) -> float:
    """Parse '80 GiB' (for kind 'size') etc. into an SI float: B, B/s, Hz, FLOP/s, J, s or W.

    Raises UnitError for a bare number (the unit is mandatory), an unknown or wrong-kind unit,
    a prefix the kind does not allow (binary prefixes are for sizes and bandwidths only),
    a negative value, or a value too large for a float.
    """
    spec = _kind(kind)
    if not isinstance(text, str):
        # Numbers (and bool, None, ...) carry no unit: refuse rather than guess one.
        raise UnitError(f"{spec.expected()}, got {text!r}")
    match = _NUMBER.fullmatch(text)
    if match is None:
        raise UnitError(f"{spec.expected()}, got {text!r}")
    number, unit = match["num"], match["unit"]
    if not unit:
        raise UnitError(f"{spec.expected()}, got {text!r} (the unit is required)")
    split = _split_unit(unit, spec)
    prefixes = spec.prefixes()
    if split is None or split[0] not in prefixes:
        raise UnitError(f"{spec.expected()}, got {text!r} ({_unit_problem(unit, spec)})")
    value = _exact_float(number.lstrip("+"), prefixes[split[0]])
    if number.startswith("-") and value != 0.0:
        raise UnitError(f"{spec.expected()}, got {text!r} (must not be negative)")
    if math.isinf(value):
        raise UnitError(f"{spec.expected()}, got {text!r} (too large)")
    return abs(value)  # abs: '-0 B' is zero, not negative zero


def parse_size(text: str) -> float:
    """'80 GiB' -> bytes."""
    return parse_quantity(text, "size")


def parse_bandwidth(text: str) -> float:
    """'3.35 TB/s' -> bytes per second."""
    return parse_quantity(text, "bandwidth")


def parse_frequency(text: str) -> float:
    """'1.83 GHz' -> hertz."""
    return parse_quantity(text, "frequency")


def parse_throughput(text: str) -> float:
    """'989.4 TFLOP/s' -> operations per second."""
    return parse_quantity(text, "throughput")


def parse_energy(text: str) -> float:
    """'5 pJ' -> joules."""
    return parse_quantity(text, "energy")


def parse_time(text: str) -> float:
    """'10 us' -> seconds."""
    return parse_quantity(text, "time")


def parse_power(text: str) -> float:
    """'700 W' -> watts."""
    return parse_quantity(text, "power")


# ---- formatting --------------------------------------------------------------------------

def _format_family(spec: _Kind, binary: bool) -> list[tuple[str, object]]:
    """(prefix, exact scale) pairs format_quantity may use for this kind, smallest scale first."""
    if binary:
        if not spec.binary:
            raise UnitError(f"binary prefixes (Ki, Mi, ...) are only for sizes and bandwidths, "
                            f"not for {spec.article} {spec.name}")
        names: tuple[str, ...] = _FORMAT_BINARY
    else:
        names = (_FORMAT_SMALL if spec.small else ()) + (_FORMAT_BIG if spec.big else ())
    pairs = [(p, _ALL_PREFIXES[p]) for p in names] + [("", 1)]
    return sorted(pairs, key=lambda pair: decimal.Decimal(pair[1]))


def _pick_prefix(value: float, family: list[tuple[str, object]]) -> tuple[str, object]:
    """The largest scale not above `value`, so the printed number is >= 1 (and below the base)."""
    exact = decimal.Decimal(value)
    chosen = ("", 1)  # zero and values below every scale are written unprefixed
    for prefix, scale in family:
        if decimal.Decimal(scale) <= exact:
            chosen = (prefix, scale)
    return chosen if value > 0 else ("", 1)


def _decimal_text(number: decimal.Decimal) -> str:
    """Plain digits for ordinary magnitudes ('80', '3.35'), exponent form for extreme ones."""
    number = number.normalize()
    if -6 <= number.adjusted() < 12:
        return format(number, "f")
    return format(number, "e")


def _rounded_texts(quotient: decimal.Decimal):
    """The quotient printed with 1, 2, ... significant digits: shortest candidates first."""
    for digits in range(1, 18):  # 17 significant digits always identify a double
        with decimal.localcontext() as ctx:
            ctx.prec = digits
            ctx.rounding = decimal.ROUND_HALF_EVEN
            ctx.Emax, ctx.Emin = decimal.MAX_EMAX, decimal.MIN_EMIN
            yield _decimal_text(+quotient)  # unary plus rounds to the context precision


def format_quantity(value: float, kind: str, binary: bool = False) -> str:
    """Human form of an SI value, e.g. (80 * 2**30, 'size', binary=True) -> '80 GiB'.

    The prefix puts the number in [1, 1000) ([1, 1024) for binary) where the kind has one;
    the digits are the fewest that parse back to exactly `value`, so
    parse_quantity(format_quantity(x, k, b), k) == x for every finite non-negative x.
    """
    spec = _kind(kind)
    family = _format_family(spec, binary)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UnitError(f"format_quantity needs a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise UnitError(f"format_quantity needs a finite non-negative {spec.name}, got {value!r}")
    unit = spec.units[0]
    if value == 0:
        return f"0 {unit}"
    prefix, scale = _pick_prefix(value, family)
    text = _shortest_text(value, kind, unit, prefix, scale)
    # A value just below a prefix step (1e-12 J is 0.99999...e-12 in binary) can print as
    # '1000 fJ'; the next prefix up then gives '1 pJ', which round-trips as well.
    larger = [(p, sc) for p, sc in family if decimal.Decimal(sc) > decimal.Decimal(scale)]
    if text and larger and float(text.split()[0]) >= (1024 if binary else 1000):
        up = _shortest_text(value, kind, unit, *min(larger, key=lambda ps: decimal.Decimal(ps[1])))
        if up:
            return up
    # Not expected to fail (17 digits suffice); repr always round-trips unprefixed.
    return text or f"{value!r} {unit}"


def _shortest_text(value: float, kind: str, unit: str, prefix: str, scale) -> str | None:
    """The fewest digits of value/scale that parse back to exactly `value`, or None."""
    with decimal.localcontext() as ctx:
        ctx.prec = 1000  # x / 1000**k and x / 1024**k terminate; this is ample to keep them exact
        ctx.Emax, ctx.Emin = decimal.MAX_EMAX, decimal.MIN_EMIN
        ctx.traps[decimal.Inexact] = True
        quotient = decimal.Decimal(value) / decimal.Decimal(scale)
    for digits in _rounded_texts(quotient):
        text = f"{digits} {prefix}{unit}"
        try:
            if parse_quantity(text, kind) == value:
                return text
        except UnitError:  # rounding up near the float maximum overflows: try more digits
            continue
    return None


def fmt_si(value: float, unit: str) -> str:
    """Display form with 3 significant digits and a decimal prefix, e.g. (1.234e-3, 's') -> '1.23 ms'.

    For tables and logs only: it does not round-trip. Uses ASCII 'u' for micro.
    """
    if not math.isfinite(value):
        return f"{value} {unit}"
    if value == 0:
        return f"0 {unit}"
    sign = "-" if value < 0 else ""
    magnitude = float(f"{abs(value):.3g}")  # round first so 999.96 becomes 1.00 k, not 1000
    steps = ("f", "p", "n", "u", "m", "", "k", "M", "G", "T", "P", "E")
    index = max(0, min(len(steps) - 1, math.floor(math.log10(magnitude) / 3) + 5))
    number = magnitude / 10.0 ** (3 * (index - 5))
    return f"{sign}{number:.3g} {steps[index]}{unit}"
