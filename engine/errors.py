"""Error types. Engine code raises these; only `cli.py` prints them and picks exit codes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Loc:
    """A position in a source file (1-based line and column)."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if not self.line:
            return self.file
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a recipe: where, what, and how to fix it."""

    loc: Loc
    message: str
    hint: str = ""
    path: tuple = field(default=(), compare=False, repr=False)  # where in the document

    def format(self) -> str:
        text = f"{self.loc}: error: {self.message}"
        return f"{text}\n  hint: {self.hint}" if self.hint else text


class AidsafeError(Exception):
    """Base class of every error the engine reports to users."""


class RecipeError(AidsafeError):
    """The recipe (or the command line) is wrong; carries every problem found at once."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.loc.file, p.loc.line, p.loc.col))
        super().__init__("\n".join(p.format() for p in self.problems))


class RunError(AidsafeError):
    """The run cannot go on (server unreachable, cache unusable, ...)."""

    def __init__(self, message: str, hint: str = ""):
        self.message = message
        self.hint = hint
        super().__init__(message + (f"\n  hint: {hint}" if hint else ""))


class ItemError(AidsafeError):
    """One item failed; the run records it in failures.jsonl and goes on."""

    def __init__(self, message: str, stage: str = "", kind: str = "error"):
        self.message = message
        self.stage = stage
        self.kind = kind
        super().__init__(f"stage {stage!r}: {message}" if stage else message)


class LLMError(AidsafeError):
    """A call failed. `retryable` says whether the retry layer may try again."""

    def __init__(self, message: str, *, retryable: bool, status: int = 0,
                 retry_after: float | None = None, hint: str = "", kind: str = "status"):
        self.message = message
        self.kind = kind          # status | unreachable | timeout | reset | malformed
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        self.hint = hint
        super().__init__(message)


class CacheMiss(AidsafeError):
    """Read-only cache (``--offline``) has no entry for a call."""
