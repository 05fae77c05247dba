"""attnsim.spec.yamlio (YAML with line numbers) and attnsim.spec.schema (Field tables, Reader)."""
import textwrap

import pytest

from attnsim.errors import SpecError
from attnsim.spec.schema import Field, Reader, did_you_mean
from attnsim.spec.yamlio import load_yaml


def load(text: str):
    return load_yaml("spec.yaml", text=textwrap.dedent(text))


# ---- yamlio ------------------------------------------------------------------------------

NESTED = """\
# line 1: a comment
name: h100
levels:
  - name: HBM
    capacity: 80 GiB

  - name: SMEM
    capacity:
      value: 228 KiB
      source: NV-H100-WP
tags: [a, b]
"""


def test_data_is_plain():
    data, _ = load(NESTED)
    assert data == {
        "name": "h100",
        "levels": [{"name": "HBM", "capacity": "80 GiB"},
                   {"name": "SMEM", "capacity": {"value": "228 KiB", "source": "NV-H100-WP"}}],
        "tags": ["a", "b"],
    }


def test_line_numbers_for_nested_keys_and_list_items():
    _, lines = load(NESTED)
    assert lines[()] == 1
    assert lines[("name",)] == 2
    assert lines[("levels",)] == 3
    assert lines[("levels", 0)] == 4
    assert lines[("levels", 0, "name")] == 4
    assert lines[("levels", 0, "capacity")] == 5
    assert lines[("levels", 1)] == 7
    assert lines[("levels", 1, "capacity")] == 8
    assert lines[("levels", 1, "capacity", "value")] == 9
    assert lines[("levels", 1, "capacity", "source")] == 10
    assert lines[("tags",)] == 11
    assert lines[("tags", 1)] == 11


def test_load_from_file(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("a: 1\nb:\n  c: [1, 2]\n")
    data, lines = load_yaml(path)
    assert data == {"a": 1, "b": {"c": [1, 2]}}
    assert lines[("b", "c")] == 3


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="does not exist") as info:
        load_yaml(tmp_path / "nope.yaml")
    assert info.value.problems[0].file.endswith("nope.yaml")


def test_duplicate_key_names_both_lines():
    with pytest.raises(SpecError) as info:
        load("""\
            gpu:
              sm_count: 132
              clock: 1.83 GHz
              sm_count: 144
            """)
    problem = info.value.problems[0]
    assert problem.line == 4
    assert problem.key == "gpu.sm_count"
    assert "line 2" in problem.message and "line 4" in problem.message


def test_syntax_error_has_file_and_line_and_no_yaml_traceback():
    with pytest.raises(SpecError) as info:
        load("""\
            a: 1
            b: [1, 2
            c: 3
            """)
    problem = info.value.problems[0]
    assert problem.file == "spec.yaml"
    assert problem.line == 3
    assert "YAML syntax error" in problem.message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_empty_document_is_none():
    assert load("# nothing here\n") == (None, {(): 1})


def test_exponent_numbers_are_floats():
    data, _ = load("a: 1e3\nb: 1.5e-3\nc: 2.0\nd: 7\n")
    assert data == {"a": 1000.0, "b": 0.0015, "c": 2.0, "d": 7}
    assert isinstance(data["a"], float)


def test_dates_stay_strings():
    data, _ = load("released: 2022-03-22\n")
    assert data == {"released": "2022-03-22"}


def test_unsupported_tag():
    with pytest.raises(SpecError, match="unsupported YAML tag") as info:
        load("a: 1\nb: !python/object 3\n")
    assert info.value.problems[0].line == 2


def test_merge_keys_fill_in_and_explicit_keys_win():
    data, lines = load("""\
        base: &base
          bandwidth: 1 TB/s
          capacity: 1 GiB
        hbm:
          <<: *base
          capacity: 80 GiB
        """)
    assert data["hbm"] == {"capacity": "80 GiB", "bandwidth": "1 TB/s"}
    assert lines[("hbm", "capacity")] == 6
    assert lines[("hbm", "bandwidth")] == 2
    assert not any("<<" in path for path in lines)


# ---- did_you_mean ------------------------------------------------------------------------

def test_did_you_mean():
    assert did_you_mean("capcity", ["capacity", "bandwidth"]) == "did you mean 'capacity'?"
    assert did_you_mean("Capacity", ["capacity"]) == "did you mean 'capacity'?"
    assert did_you_mean("zzz", ["capacity", "bandwidth"]) is None
    assert did_you_mean("h100", []) is None


# ---- Reader ------------------------------------------------------------------------------

LEVEL = [
    Field("name", "str"),
    Field("capacity", "size"),
    Field("bandwidth", "bandwidth", required=False),
    Field("instances", "int", required=False, default=1, min=1),
]


def reader(text: str, **kw) -> Reader:
    data, lines = load(text)
    return Reader(data, lines, "spec.yaml", **kw)


def test_section_converts_and_fills_defaults():
    r = reader("level:\n  name: HBM\n  capacity: 80 GiB\n")
    assert r.section(("level",), LEVEL) == {"name": "HBM", "capacity": 80 * 2**30,
                                           "bandwidth": None, "instances": 1}
    r.raise_if_problems()  # nothing recorded


def test_unknown_key_did_you_mean():
    r = reader("level:\n  name: HBM\n  capcity: 80 GiB\n")
    r.section(("level",), LEVEL)
    unknown = [p for p in r.problems if "unknown key" in p.message]
    assert len(unknown) == 1
    assert unknown[0].hint == "did you mean 'capacity'?"
    assert unknown[0].line == 3 and unknown[0].key == "level.capcity"


def test_unknown_key_without_close_match_lists_known_keys():
    r = reader("level:\n  name: HBM\n  capacity: 1 GiB\n  zzz: 1\n")
    r.section(("level",), LEVEL)
    (problem,) = r.problems
    assert "capacity" in problem.hint and "instances" in problem.hint


def test_all_problems_reported_at_once():
    r = reader("""\
        levels:
          - name: HBM
            capacity: 80
            instances: 2.0
          - name: SMEM
            capcity: 228 KiB
        """)
    for i in range(2):
        r.section(("levels", i), LEVEL)
    with pytest.raises(SpecError) as info:
        r.raise_if_problems()
    problems = info.value.problems
    # bare number; int given as float; unknown key; and the missing capacity it causes
    messages = [p.message for p in problems]
    assert len(problems) == 4, messages
    assert problems[0].key == "levels.0.capacity" and problems[0].line == 3
    assert problems[0].message == "expected a size like '80 GiB' or '228 KiB', got 80"
    assert problems[1].key == "levels.0.instances" and "expected an integer" in problems[1].message
    assert problems[2].key == "levels.1.capcity" and problems[2].line == 6
    assert problems[3].key == "levels.1.capacity" and "missing required key" in problems[3].message
    assert problems[3].line == 5  # a missing key points at its mapping
    assert str(info.value).startswith("4 problems:")


def test_three_mistakes_one_error():
    r = reader("gpu:\n  sm_count: '132'\n  dataflow: wss\n  clock: 1.83 GB/s\n")
    r.section(("gpu",), [Field("sm_count", "int"), Field("dataflow", "enum", choices=("ws", "os", "is")),
                         Field("clock", "frequency")])
    with pytest.raises(SpecError) as info:
        r.raise_if_problems()
    assert [p.line for p in info.value.problems] == [2, 3, 4]


def test_int_given_as_float_or_string_is_a_problem():
    for text in ("n: 3.5", "n: 3.0", "n: '3'", "n: true"):
        r = reader(text)
        assert r.section((), [Field("n", "int")]) == {"n": None}
        assert len(r.problems) == 1 and "expected an integer" in r.problems[0].message, text


def test_float_accepts_int_and_bounds_are_inclusive():
    r = reader("x: 2\ny: 0.0\n")
    values = r.section((), [Field("x", "float", max=2), Field("y", "float", min=0)])
    assert values == {"x": 2.0, "y": 0.0} and isinstance(values["x"], float)
    assert not r.problems


def test_out_of_range():
    r = reader("x: 0\ncap: 1 KiB\n")
    r.section((), [Field("x", "int", min=1), Field("cap", "size", min=4096)])
    assert [p.key for p in r.problems] == ["x", "cap"]
    assert "at least 1" in r.problems[0].message
    assert "4.096 kB" in r.problems[1].message


def test_fraction():
    r = reader("a: 0.5\nb: 1\nc: 0\nd: 1.5\n")
    values = r.section((), [Field(k, "fraction") for k in "abcd"])
    assert values == {"a": 0.5, "b": 1.0, "c": None, "d": None}
    assert [p.key for p in r.problems] == ["c", "d"]


def test_enum_did_you_mean():
    r = reader("dataflow: wss\n")
    r.section((), [Field("dataflow", "enum", choices=("ws", "os", "is"))])
    (problem,) = r.problems
    assert problem.hint == "did you mean 'ws'?"
    assert "ws, os, is" in problem.message


def test_str_bool_list_kinds():
    r = reader("name: 100\nflag: yes\nitems: [1, 2]\nother: 3\n")
    values = r.section((), [Field("name", "str"), Field("flag", "bool"), Field("items", "list"),
                            Field("other", "list")])
    assert values == {"name": None, "flag": True, "items": [1, 2], "other": None}
    assert r.problems[0].hint == "quote it: '100'"
    assert len(r.problems) == 2


def test_missing_section_and_not_a_mapping():
    r = reader("gpu: 3\n")
    assert r.section(("array",), LEVEL)["capacity"] is None
    r.section(("gpu",), LEVEL)
    assert [p.message for p in r.problems] == ["missing section", "expected a mapping, got 3"]
    assert r.problems[0].line == 1  # falls back to the nearest recorded parent: the root


def test_extra_ok_returned_raw_and_source_allowed():
    r = reader("source: X\nname: a\nlevels: [1, 2]\n")
    values = r.section((), [Field("name", "str")], extra_ok=("levels",))
    assert values == {"name": "a", "levels": [1, 2]}
    assert not r.problems


def test_null_value():
    r = reader("name:\ninstances:\n")
    assert r.section((), LEVEL) == {"name": None, "capacity": None, "bandwidth": None, "instances": 1}
    assert [p.key for p in r.problems] == ["name", "capacity"]
    assert "has no value" in r.problems[0].message


def test_problems_at():
    r = reader("levels:\n  - {name: a, capacity: 1}\n  - {name: b, capacity: 1 GiB}\n")
    r.section(("levels", 0), LEVEL)
    r.section(("levels", 1), LEVEL)
    assert len(r.problems_at(("levels", 0))) == 1
    assert r.problems_at(("levels", 1)) == []
    assert len(r.problems_at(())) == 1


def test_problem_line_falls_back_to_parent():
    r = reader("a:\n  b:\n    c: 1\n")
    r.problem(("a", "b", "zz", "deeper"), "custom", "a hint")
    (problem,) = r.problems
    assert (problem.line, problem.key, problem.hint, problem.file) == (2, "a.b.zz.deeper", "a hint", "spec.yaml")


def test_has():
    r = reader("a:\n  b: [1]\n")
    assert r.has(("a", "b", 0)) and not r.has(("a", "c")) and not r.has(("a", "b", 1))


# ---- sources -----------------------------------------------------------------------------

SOURCED = [Field("sm_count", "int"), Field("smem", "size"),
           Field("efficiency", "fraction", required=False, needs_source=True)]


def test_value_source_form_is_unwrapped():
    r = reader("gpu:\n  sm_count: {value: 132, source: NV-H100-WP}\n  smem: {value: 228 KiB, source: B}\n")
    assert r.section(("gpu",), SOURCED) == {"sm_count": 132, "smem": 228 * 1024, "efficiency": None}
    assert r.sources() == {"gpu.sm_count": "NV-H100-WP", "gpu.smem": "B"}


def test_value_source_form_is_checked_like_a_plain_value():
    r = reader("gpu:\n  sm_count: {value: 13.2, source: X}\n  smem: {value: 80, source: X}\n")
    r.section(("gpu",), SOURCED)
    assert [p.key for p in r.problems] == ["gpu.sm_count", "gpu.smem"]


def test_wrapper_with_unknown_key():
    r = reader("gpu:\n  sm_count: {value: 132, sorce: X}\n  smem: 1 KiB\n")
    r.section(("gpu",), SOURCED)
    (problem,) = r.problems
    assert problem.key == "gpu.sm_count.sorce" and problem.hint == "did you mean 'source'?"


def test_inherited_source_covers_descendants():
    r = reader("""\
        source: TOP
        gpu:
          sm_count: 132
          smem: {value: 228 KiB, source: OWN}
        levels:
          - source: LVL
            name: HBM
            capacity: 80 GiB
        """, require_sources=True)
    r.section(("gpu",), SOURCED)
    r.section(("levels", 0), LEVEL)
    r.raise_if_problems()
    assert r.sources() == {"gpu.sm_count": "TOP", "gpu.smem": "OWN",
                           "levels.0.name": "LVL", "levels.0.capacity": "LVL"}


def test_missing_source_is_a_problem_when_required():
    text = "gpu:\n  sm_count: 132\n  smem: {value: 1 KiB, source: X}\n"
    r = reader(text, require_sources=True)
    r.section(("gpu",), SOURCED)
    (problem,) = r.problems
    assert problem.key == "gpu.sm_count" and problem.line == 2
    assert problem.message.startswith("no source:")
    relaxed = reader(text)
    relaxed.section(("gpu",), SOURCED)
    assert not relaxed.problems


def test_needs_source_requires_its_own_source_even_under_a_section_source():
    r = reader("source: TOP\ngpu:\n  sm_count: 132\n  smem: 1 KiB\n  efficiency: 0.8\n", require_sources=True)
    values = r.section(("gpu",), SOURCED)
    (problem,) = r.problems
    assert problem.key == "gpu.efficiency" and "needs its own source" in problem.message
    assert values["efficiency"] == 0.8  # the value itself is fine; only its provenance is missing


def test_needs_source_satisfied_by_own_source():
    r = reader("source: TOP\ngpu:\n  sm_count: 132\n  smem: 1 KiB\n"
               "  efficiency: {value: 0.8, source: measured-2024}\n", require_sources=True)
    assert r.section(("gpu",), SOURCED)["efficiency"] == 0.8
    assert not r.problems
    assert r.sources()["gpu.efficiency"] == "measured-2024"


def test_defaults_need_no_source():
    r = reader("gpu: {source: X, sm_count: 1, smem: 1 KiB}\n", require_sources=True)
    r.section(("gpu",), SOURCED)
    assert not r.problems and "gpu.efficiency" not in r.sources()


def test_bad_source_values():
    r = reader("gpu:\n  source: 3\n  sm_count: {value: 1, source: ''}\n  smem: 1 KiB\n")
    r.section(("gpu",), SOURCED)
    assert [p.key for p in r.problems] == ["gpu.source", "gpu.sm_count.source"]


# ---- Field table checks ------------------------------------------------------------------

def test_field_rejects_table_mistakes():
    with pytest.raises(ValueError):
        Field("x", "integer")
    with pytest.raises(ValueError):
        Field("x", "enum")
    with pytest.raises(ValueError):
        Field("x", "int", default=3)


def test_field_default_in_units_is_converted():
    assert Field("clock", "frequency", required=False, default="1 GHz").default == 1e9


def test_names_and_choices_need_no_source():
    r = reader("name: h100\nkind: gpu\nsm_count: 132\n", require_sources=True)
    r.section((), [Field("name", "str"), Field("kind", "enum", choices=("gpu",)), Field("sm_count", "int")])
    assert [p.key for p in r.problems] == ["sm_count"]


def test_needs_source_applies_without_require_sources():
    r = reader("efficiency: 0.8\n")
    r.section((), [Field("efficiency", "fraction", needs_source=True)])
    assert [p.key for p in r.problems] == ["efficiency"]
