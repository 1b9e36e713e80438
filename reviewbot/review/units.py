"""What the diff planner hands to the rest of the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Side = Literal["RIGHT", "LEFT"]


@dataclass(frozen=True)
class ReviewUnit:
    """One reviewable piece of a diff: a hunk, or a slice of a long hunk.

    ``original`` is the new-side text of the hunk (context + added lines) as it
    reads in the file at the PR head, without diff markers, lines joined by
    ``"\\n"`` and no trailing newline. ``start_line``..``end_line`` (1-based,
    inclusive) are the new-side line numbers it covers. For a pure-deletion hunk
    reviewed on the LEFT side, they are old-side numbers and ``original`` is the
    removed text.
    """

    path: str
    start_line: int
    end_line: int
    hunk_header: str
    original: str
    side: Side = "RIGHT"
    added_lines: tuple[int, ...] = ()
    """Line numbers (same side as start/end) that the change added; for a LEFT unit
    (a pure deletion), the lines it removed."""

    @property
    def lines(self) -> list[str]:
        return self.original.split("\n")

    @property
    def language(self) -> str:
        """The language of the unit's file (:func:`language_of`); "" when unknown."""
        return language_of(self.path)

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "start_line": self.start_line,
            "end_line": self.end_line,
            "original": self.original,
        }


@dataclass(frozen=True)
class Skipped:
    """A file or hunk left out of the review, with the reason; always reported."""

    path: str
    reason: str

    def to_json(self) -> dict:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class Plan:
    units: tuple[ReviewUnit, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    files: tuple[str, ...] = field(default=())
    """Paths of all files the diff touches, in diff order."""


class DiffError(ValueError):
    """A diff that cannot be parsed. ``line`` is the 1-based line of the diff text."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        self.reason = message
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"malformed diff: {where}{message}")


#: File extensions (lower case, with the dot) → the language named in prompts.
LANGUAGES_BY_EXTENSION: dict[str, str] = {
    ".py": "Python",
    ".pyi": "Python",
    ".pyx": "Cython",
    ".js": "JavaScript",
    ".mjs": "JavaScript",
    ".cjs": "JavaScript",
    ".jsx": "JavaScript",
    ".ts": "TypeScript",
    ".mts": "TypeScript",
    ".cts": "TypeScript",
    ".tsx": "TypeScript",
    ".go": "Go",
    ".java": "Java",
    ".kt": "Kotlin",
    ".kts": "Kotlin",
    ".scala": "Scala",
    ".groovy": "Groovy",
    ".gradle": "Groovy",
    ".rs": "Rust",
    ".c": "C",
    ".h": "C",
    ".cc": "C++",
    ".cpp": "C++",
    ".cxx": "C++",
    ".hh": "C++",
    ".hpp": "C++",
    ".hxx": "C++",
    ".cs": "C#",
    ".fs": "F#",
    ".rb": "Ruby",
    ".php": "PHP",
    ".swift": "Swift",
    ".m": "Objective-C",
    ".mm": "Objective-C++",
    ".dart": "Dart",
    ".lua": "Lua",
    ".pl": "Perl",
    ".pm": "Perl",
    ".r": "R",
    ".jl": "Julia",
    ".ex": "Elixir",
    ".exs": "Elixir",
    ".erl": "Erlang",
    ".hs": "Haskell",
    ".ml": "OCaml",
    ".clj": "Clojure",
    ".zig": "Zig",
    ".sh": "Shell",
    ".bash": "Shell",
    ".zsh": "Shell",
    ".ps1": "PowerShell",
    ".sql": "SQL",
    ".html": "HTML",
    ".htm": "HTML",
    ".css": "CSS",
    ".scss": "SCSS",
    ".vue": "Vue",
    ".svelte": "Svelte",
    ".tf": "Terraform",
    ".proto": "Protocol Buffers",
    ".yaml": "YAML",
    ".yml": "YAML",
    ".json": "JSON",
    ".toml": "TOML",
    ".xml": "XML",
    ".ini": "INI",
    ".cfg": "INI",
    ".md": "Markdown",
    ".rst": "reStructuredText",
    ".tex": "LaTeX",
}
#: File names (without directories) whose language no extension tells.
LANGUAGES_BY_NAME: dict[str, str] = {
    "Dockerfile": "Dockerfile",
    "Containerfile": "Dockerfile",
    "Makefile": "Makefile",
    "GNUmakefile": "Makefile",
    "CMakeLists.txt": "CMake",
    "Gemfile": "Ruby",
    "Rakefile": "Ruby",
    "Jenkinsfile": "Groovy",
    "BUILD": "Starlark",
    "BUILD.bazel": "Starlark",
    "WORKSPACE": "Starlark",
}


def language_of(path: str) -> str:
    """The language of the file at ``path``, from its name or extension; "" when unknown."""
    name = path.rsplit("/", 1)[-1]
    if name in LANGUAGES_BY_NAME:
        return LANGUAGES_BY_NAME[name]
    dot = name.rfind(".")
    return LANGUAGES_BY_EXTENSION.get(name[dot:].lower(), "") if dot > 0 else ""
