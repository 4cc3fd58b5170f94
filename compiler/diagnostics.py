"""Diagnostics are values: detected by the stages, collected in a list, rendered separately.

A stage never raises for a user error; it appends a `Diagnostic` to a `DiagnosticSink`.
Rendering (text, json, github) lives in `compiler.render`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True, order=True)
class Span:
    """A source range. Lines and columns are 1-based; `end_column` is exclusive."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    @classmethod
    def point(cls, file: str, line: int = 1, column: int = 1) -> "Span":
        return cls(file, line, column, line, column + 1)

    def to(self, other: "Span") -> "Span":
        """The span from the start of `self` to the end of `other`."""
        return Span(self.file, self.line, self.column, other.end_line, other.end_column)


@dataclass(frozen=True)
class Diagnostic:
    code: str  # stable, e.g. "E0102"
    severity: Severity
    message: str  # one line summary
    span: Span | None = None
    label: str = ""  # text under the caret
    help: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


@dataclass
class DiagnosticSink:
    """Collects the diagnostics of a whole run; stages append, the CLI renders once."""

    items: list[Diagnostic] = field(default_factory=list)

    def add(self, diagnostic: Diagnostic) -> None:
        self.items.append(diagnostic)

    def error(self, code: str, message: str, span: Span | None = None, *, label: str = "",
              help: str | None = None, notes: tuple[str, ...] = ()) -> None:
        self.add(Diagnostic(code, Severity.ERROR, message, span, label, help, notes))

    def warning(self, code: str, message: str, span: Span | None = None, *, label: str = "",
                help: str | None = None, notes: tuple[str, ...] = ()) -> None:
        self.add(Diagnostic(code, Severity.WARNING, message, span, label, help, notes))

    def extend(self, diagnostics) -> None:
        self.items.extend(diagnostics)

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.items)

    def sorted(self) -> list[Diagnostic]:
        """Stable order: by file position, then insertion order."""
        indexed = list(enumerate(self.items))
        def key(pair):
            index, d = pair
            if d.span is None:
                return ("", 0, 0, index)
            return (d.span.file, d.span.line, d.span.column, index)
        return [d for _, d in sorted(indexed, key=key)]


def did_you_mean(word: str, candidates, max_distance: int = 2) -> str | None:
    """The closest candidate within edit distance `max_distance` (HCL uses < 3), else None."""
    best, best_d = None, max_distance + 1
    for candidate in sorted(candidates):
        d = edit_distance(word.lower(), candidate.lower())
        if d < best_d:
            best, best_d = candidate, d
    return best if best_d <= max_distance else None


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance (Levenshtein plus adjacent transpositions)."""
    if a == b:
        return 0
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]
