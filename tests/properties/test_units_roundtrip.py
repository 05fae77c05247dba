"""Property: format_quantity is exactly inverted by parse_quantity, for every kind and prefix family."""
from hypothesis import given, strategies as st

from attnsim import units
from attnsim.units import format_quantity, parse_quantity

values = st.floats(min_value=0.0, max_value=1e30, allow_nan=False, allow_infinity=False)
kinds_and_families = st.sampled_from(
    [(kind, False) for kind in units.KINDS] + [("size", True), ("bandwidth", True)]
)


@given(values, kinds_and_families)
def test_parse_inverts_format(x, kind_family):
    kind, binary = kind_family
    text = format_quantity(x, kind, binary=binary)
    assert parse_quantity(text, kind) == x, text


@given(st.floats(min_value=0.0, allow_nan=False, allow_infinity=False), kinds_and_families)
def test_parse_inverts_format_full_float_range(x, kind_family):
    kind, binary = kind_family
    assert parse_quantity(format_quantity(x, kind, binary=binary), kind) == x


@given(st.integers(min_value=1, max_value=999), st.sampled_from(["k", "M", "G", "T", "P"]))
def test_whole_numbers_format_without_digits_noise(n, prefix):
    # '80 GB' should come back as '80 GB', not '80.00000000000001 GB'.
    text = f"{n} {prefix}B"
    assert format_quantity(parse_quantity(text, "size"), "size") == text


@given(values, kinds_and_families)
def test_formatted_number_is_in_prefix_range(x, kind_family):
    kind, binary = kind_family
    text = format_quantity(x, kind, binary=binary)
    number = float(text.split()[0])
    prefixed = text.split()[1] != units.KINDS[kind].units[0]
    if prefixed:  # a prefix is only used for numbers >= 1, and below the base up to the top prefix
        assert number >= 1, text
        if x < 1e18:  # beyond 1000 P (or 1024 Pi) the top prefix leaves a large number
            assert number < (1024 if binary else 1000), text
