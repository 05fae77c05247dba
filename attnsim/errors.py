"""Errors that reach users. Imports nothing from attnsim (a leaf module).

Every problem names where it is (file, line, key path), what was expected, what was
given, and a hint such as a did-you-mean. One exception carries all the problems found,
so a user fixes a spec in one pass instead of one error per run.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located as precisely as we know."""

    message: str  # what is wrong: "expected a size like '80 GiB', got '80'"
    file: str | None = None
    line: int | None = None  # 1-based
    key: str | None = None  # dotted key path: "levels.SMEM.capacity"
    hint: str | None = None  # "did you mean 'capacity'?"

    def __str__(self) -> str:
        text = ""
        if self.file:
            text = self.file + (f":{self.line}" if self.line is not None else "") + ": "
        elif self.line is not None:
            text = f"line {self.line}: "
        if self.key:
            text += f"{self.key}: "
        text += self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class AttnsimError(Exception):
    """Base of every error attnsim raises on purpose; the CLI prints these without a traceback."""


class SpecError(AttnsimError):
    """A spec (arch, workload, mapping, cases file) has one or more problems; lists them all."""

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, (Problem, str)):
            problems = [problems]
        self.problems = [p if isinstance(p, Problem) else Problem(p) for p in problems]
        super().__init__(str(self))

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return str(self.problems[0])
        lines = [f"{len(self.problems)} problems:"] + [f"  {p}" for p in self.problems]
        return "\n".join(lines)


class MappingError(SpecError):
    """A mapping that cannot run on the arch (capacity overflow, unsupported tile, ...)."""


class WorkloadError(SpecError):
    """A workload shape or mask that makes no sense (non-integer rank, H not divisible by KV heads, ...)."""
