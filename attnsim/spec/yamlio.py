"""Load YAML specs into plain Python data plus a map from key paths to line numbers.

We compose the YAML into nodes (which carry their line) and build the data ourselves in one
walk, instead of letting PyYAML construct it. That way every later error can say
"arch.yaml:12: levels.0.capacity: ...", duplicate keys are an error rather than a silent
last-one-wins, and YAML problems reach the user as a SpecError without a yaml traceback.
"""
from __future__ import annotations

import pathlib
import re

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from attnsim.errors import Problem, SpecError

__all__ = ["load_yaml"]

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null")}


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads '1e3' and '1.5e3' as floats.

    YAML 1.1 (what PyYAML implements) makes both strings: it wants a dot and a signed
    exponent. Hardware numbers are often written that way, so we add the common forms.
    The subclass keeps the change out of yaml.SafeLoader itself.
    """


_Loader.add_implicit_resolver(
    _TAG + "float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _line(node: Node) -> int:
    """1-based line where a node starts."""
    return node.start_mark.line + 1


def _dotted(path: tuple) -> str | None:
    return ".".join(str(p) for p in path) or None


class _Builder:
    """One walk over the composed nodes that builds the data and the line map together."""

    def __init__(self, loader: _Loader, file: str):
        self.loader = loader
        self.file = file
        self.lines: dict[tuple, int] = {(): 1}
        self._active: set[int] = set()  # ids of nodes being built: catches recursive aliases

    def fail(self, node: Node, path: tuple, message: str, hint: str | None = None) -> SpecError:
        return SpecError(Problem(message, file=self.file, line=_line(node), key=_dotted(path), hint=hint))

    def build(self, node: Node, path: tuple) -> object:
        if id(node) in self._active:
            raise self.fail(node, path, "recursive YAML alias: a value contains itself")
        self._active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self.mapping(node, path)
            if isinstance(node, SequenceNode):
                return self.sequence(node, path)
            return self.scalar(node, path)
        finally:
            self._active.discard(id(node))

    def scalar(self, node: ScalarNode, path: tuple) -> object:
        if node.tag == _TAG + "timestamp":
            return node.value  # keep dates as written: the data stays plain str/int/float/bool/None
        if node.tag not in _SCALAR_TAGS:
            raise self.fail(node, path, f"unsupported YAML tag {node.tag!r}",
                            "use plain strings, numbers, booleans, lists and mappings")
        try:
            return self.loader.construct_object(node)
        except yaml.YAMLError as exc:  # e.g. '!!int abc'
            raise self.fail(node, path, f"bad YAML value {node.value!r}: {_one_line(exc)}") from None

    def sequence(self, node: SequenceNode, path: tuple) -> list:
        if node.tag != _TAG + "seq":
            raise self.fail(node, path, f"unsupported YAML tag {node.tag!r} on a list")
        items = []
        for index, item in enumerate(node.value):
            self.lines[path + (index,)] = _line(item)
            items.append(self.build(item, path + (index,)))
        return items

    def key(self, node: Node, path: tuple) -> object:
        if not isinstance(node, ScalarNode):
            raise self.fail(node, path, "a mapping key must be a plain scalar, not a list or mapping")
        return self.build(node, path)

    def mapping(self, node: MappingNode, path: tuple) -> dict:
        if node.tag != _TAG + "map":
            raise self.fail(node, path, f"unsupported YAML tag {node.tag!r} on a mapping")
        out: dict = {}
        first_line: dict = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _TAG + "merge":  # '<<: *defaults'; applied after explicit keys
                merges.append(value_node)
                continue
            key = self.key(key_node, path)
            if key in first_line:
                raise self.fail(key_node, path + (key,),
                                f"duplicate key {key!r} (first at line {first_line[key]}, "
                                f"again at line {_line(key_node)})")
            first_line[key] = _line(key_node)
            self.lines[path + (key,)] = _line(key_node)
            out[key] = self.build(value_node, path + (key,))
        for merge_node in merges:
            self.merge(merge_node, path, out)
        return out

    def merge(self, node: Node, path: tuple, out: dict) -> None:
        """Apply a YAML merge key: fill keys not already present; earlier sources win."""
        sources = node.value if isinstance(node, SequenceNode) else [node]
        scratch = path + ("<<",)  # build under a scratch path, then move the lines we keep
        for source in sources:
            if not isinstance(source, MappingNode):
                raise self.fail(source, path, "'<<' (YAML merge) needs a mapping or a list of mappings")
            merged = self.build(source, scratch)
            taken = {key for key in merged if key not in out}
            for key in taken:
                out[key] = merged[key]
            for p in [p for p in self.lines if p[: len(scratch)] == scratch and len(p) > len(scratch)]:
                line = self.lines.pop(p)
                if p[len(scratch)] in taken:
                    self.lines[path + p[len(scratch):]] = line


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _syntax_error(exc: yaml.YAMLError, file: str) -> SpecError:
    """Turn a PyYAML error into a SpecError at the line YAML points to."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        hint = exc.context if exc.problem and exc.context else None
        return SpecError(Problem(f"YAML syntax error: {problem}", file=file,
                                 line=mark.line + 1 if mark else None, hint=hint))
    return SpecError(Problem(f"YAML error: {_one_line(exc)}", file=file))


def _read_text(path: pathlib.Path) -> str:
    if not path.exists():
        raise SpecError(Problem("file does not exist", file=str(path)))
    if not path.is_file():
        raise SpecError(Problem("not a file", file=str(path)))
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(Problem(f"not UTF-8 text: {exc.reason} at byte {exc.start}", file=str(path))) from None
    except OSError as exc:
        raise SpecError(Problem(f"cannot read file: {exc.strerror}", file=str(path))) from None


def load_yaml(source: str | pathlib.Path, *, text: str | None = None) -> tuple[object, dict[tuple, int]]:
    """Load one YAML document; return (data, lines).

    `data` is plain Python (dict, list, str, int, float, bool, None). `lines` maps key paths
    to 1-based lines: ('levels', 0, 'capacity') is the line of that key, ('levels', 0) the
    line of that list item, and () is line 1. With `text`, `source` only names the input in
    messages. Raises SpecError for a missing file, a YAML syntax error (with its line), a
    duplicate key (naming both lines), or an unsupported YAML tag.
    """
    file = str(source)
    if text is None:
        text = _read_text(pathlib.Path(source))
    loader = _Loader(text)
    builder = _Builder(loader, file)
    try:
        root = loader.get_single_node()
        data = builder.build(root, ()) if root is not None else None
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, file) from None
    finally:
        loader.dispose()
    return data, builder.lines
