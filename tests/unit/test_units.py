"""attnsim.units: parsing and formatting of dimensional strings."""
import pytest

from attnsim import units
from attnsim.units import UnitError, format_quantity, parse_quantity

EXAMPLES = [
    # size: decimal and binary prefixes, 'KB' spelling
    ("80 GiB", "size", 80 * 2**30),
    ("228 KiB", "size", 228 * 1024),
    ("40 MB", "size", 40e6),
    ("512 B", "size", 512.0),
    ("2 KB", "size", 2000.0),
    ("2 kB", "size", 2000.0),
    ("1 PiB", "size", 2.0**50),
    # bandwidth
    ("3.35 TB/s", "bandwidth", 3.35e12),
    ("2039 GB/s", "bandwidth", 2039e9),
    ("1.5 TiB/s", "bandwidth", 1.5 * 2**40),
    ("1e3 GB/s", "bandwidth", 1e12),
    # frequency
    ("1.83 GHz", "frequency", 1.83e9),
    ("1410 MHz", "frequency", 1410e6),
    ("0.1 GHz", "frequency", 1e8),
    # throughput
    ("989.4 TFLOP/s", "throughput", 989.4e12),
    ("312 TOP/s", "throughput", 312e12),
    ("312 Top/s", "throughput", 312e12),
    ("5 FLOP/s", "throughput", 5.0),
    # energy
    ("5 pJ", "energy", 5e-12),
    ("0.4 pJ", "energy", 0.4e-12),
    ("1.3 nJ", "energy", 1.3e-9),
    ("20 fJ", "energy", 20e-15),
    # time, micro in three spellings
    ("10 us", "time", 10e-6),
    ("10 µs", "time", 10e-6),
    ("10 μs", "time", 10e-6),
    ("1.5 ms", "time", 1.5e-3),
    ("2 s", "time", 2.0),
    ("5 ns", "time", 5e-9),
    # power
    ("700 W", "power", 700.0),
    ("0.35 kW", "power", 350.0),
    ("250 mW", "power", 0.25),
]


@pytest.mark.parametrize("text,kind,expected", EXAMPLES)
def test_parse_examples(text, kind, expected):
    assert parse_quantity(text, kind) == expected


def test_whitespace_optional_and_surrounding_space_ignored():
    assert parse_quantity("80GiB", "size") == 80 * 2**30
    assert parse_quantity("  1.83   GHz ", "frequency") == 1.83e9


def test_scientific_notation():
    assert parse_quantity("1.5e-3 s", "time") == 1.5e-3
    assert parse_quantity("2E2 MHz", "frequency") == 2e8


def test_decimal_product_is_correctly_rounded():
    # A float multiply would give 0.1 * 1e9 = 100000000.00000001; the exact product is 1e8.
    assert parse_quantity("0.1 GHz", "frequency") == 1e8
    assert parse_quantity("0.3 kW", "power") == 300.0
    assert parse_quantity("1.1 ns", "time") == 1.1e-9


def test_prefix_case_matters():
    assert parse_quantity("1 mW", "power") == 1e-3
    assert parse_quantity("1 MW", "power") == 1e6


def test_wrappers():
    assert units.parse_size("1 KiB") == 1024
    assert units.parse_bandwidth("1 GB/s") == 1e9
    assert units.parse_frequency("1 GHz") == 1e9
    assert units.parse_throughput("1 TFLOP/s") == 1e12
    assert units.parse_energy("1 pJ") == 1e-12
    assert units.parse_time("1 us") == 1e-6
    assert units.parse_power("1 kW") == 1e3


def test_kinds():
    assert set(units.KINDS) == {"size", "bandwidth", "frequency", "throughput", "energy", "time", "power"}


@pytest.mark.parametrize("bare", ["80", 80, 80.0, "1e3"])
def test_bare_number_is_an_error_naming_kind_and_example(bare):
    with pytest.raises(UnitError) as info:
        parse_quantity(bare, "size")
    message = str(info.value)
    assert message.startswith("expected a size like '80 GiB' or '228 KiB', got ")
    assert repr(bare) in message
    assert "\n" not in message


def test_bool_and_none_are_errors():
    for value in (True, None, [1]):
        with pytest.raises(UnitError):
            parse_quantity(value, "size")


@pytest.mark.parametrize("text,kind,words", [
    ("3 furlongs", "time", "unknown unit 'furlongs'"),
    ("80 GHz", "size", "'GHz' is a frequency unit"),
    ("1 GB/s", "size", "bandwidth unit"),
    ("1 gib", "size", "unknown unit 'gib'"),
    ("1 FLOPS", "throughput", "unknown unit 'FLOPS'"),
])
def test_unknown_or_wrong_unit_names_the_kind(text, kind, words):
    with pytest.raises(UnitError) as info:
        parse_quantity(text, kind)
    message = str(info.value)
    assert f"a {kind} like" in message
    assert words in message


def test_energy_uses_an():
    with pytest.raises(UnitError, match="expected an energy like"):
        parse_quantity("5", "energy")


@pytest.mark.parametrize("text,kind", [
    ("1 KiHz", "frequency"),
    ("1 GiHz", "frequency"),
    ("1 GiFLOP/s", "throughput"),
    ("1 Kis", "time"),
    ("1 KiW", "power"),
])
def test_binary_prefix_only_for_size_and_bandwidth(text, kind):
    with pytest.raises(UnitError, match="is not allowed"):
        parse_quantity(text, kind)


@pytest.mark.parametrize("text,kind", [
    ("1 mB", "size"), ("1 uB/s", "bandwidth"), ("1 mHz", "frequency"),
    ("1 ks", "time"), ("1 KHz", "frequency"), ("1 KB/s", "bandwidth"), ("1 KJ", "energy"),
])
def test_prefix_not_allowed_for_kind(text, kind):
    with pytest.raises(UnitError, match="is not allowed"):
        parse_quantity(text, kind)


@pytest.mark.parametrize("text", ["-3 GiB", "-0.5 KB", "-1e3 B"])
def test_negative_rejected(text):
    with pytest.raises(UnitError, match="negative"):
        parse_quantity(text, "size")


def test_negative_zero_is_zero():
    value = parse_quantity("-0 B", "size")
    assert value == 0 and str(value) == "0.0"


@pytest.mark.parametrize("text", ["", "GiB", "inf GiB", "nan B", "1,000 B", "1 2 B", "0x10 B"])
def test_malformed(text):
    with pytest.raises(UnitError):
        parse_quantity(text, "size")


def test_too_large_for_float():
    with pytest.raises(UnitError, match="too large"):
        parse_quantity("1e400 B", "size")


def test_unknown_kind():
    with pytest.raises(UnitError, match="unknown quantity kind"):
        parse_quantity("1 B", "mass")


@pytest.mark.parametrize("value,kind,binary,expected", [
    (80 * 2**30, "size", True, "80 GiB"),
    (228 * 1024, "size", True, "228 KiB"),
    (40e6, "size", False, "40 MB"),
    (512.0, "size", True, "512 B"),
    (3.35e12, "bandwidth", False, "3.35 TB/s"),
    (1.5 * 2**40, "bandwidth", True, "1.5 TiB/s"),
    (1.83e9, "frequency", False, "1.83 GHz"),
    (989.4e12, "throughput", False, "989.4 TFLOP/s"),
    (5e-12, "energy", False, "5 pJ"),
    (1.5e-3, "time", False, "1.5 ms"),
    (10e-6, "time", False, "10 us"),
    (350.0, "power", False, "350 W"),
    (0.0, "size", False, "0 B"),
    (0.0, "time", False, "0 s"),
    (999.0, "frequency", False, "999 Hz"),
    (1000.0, "frequency", False, "1 kHz"),
    (1023.0, "size", True, "1023 B"),
    (1024.0, "size", True, "1 KiB"),
])
def test_format_examples(value, kind, binary, expected):
    assert format_quantity(value, kind, binary=binary) == expected
    assert parse_quantity(expected, kind) == value


def test_format_extremes_round_trip():
    for value in (5e-324, 1e-300, 0.5, 1.7976931348623157e308, 1e30, 2.0**-1074):
        for kind in units.KINDS:
            text = format_quantity(value, kind)
            assert parse_quantity(text, kind) == value, text


def test_format_binary_rejected_for_other_kinds():
    with pytest.raises(UnitError, match="binary"):
        format_quantity(1e9, "frequency", binary=True)


@pytest.mark.parametrize("bad", [-1.0, float("inf"), float("nan")])
def test_format_rejects_negative_and_non_finite(bad):
    with pytest.raises(UnitError):
        format_quantity(bad, "size")


@pytest.mark.parametrize("value,unit,expected", [
    (1.234e-3, "s", "1.23 ms"),
    (3.35e12, "B/s", "3.35 TB/s"),
    (999.96, "B", "1 kB"),
    (0, "W", "0 W"),
    (-2.5e9, "Hz", "-2.5 GHz"),
    (42.0, "FLOP", "42 FLOP"),
])
def test_fmt_si(value, unit, expected):
    assert units.fmt_si(value, unit) == expected
