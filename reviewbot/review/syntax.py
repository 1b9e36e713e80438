"""Does a text parse? Syntax errors by tree-sitter (and Python's ``ast``), pure.

Suggestions are checked here before they are posted as committable
(:func:`reviewbot.review.suggestions.check_suggestion`): a suggestion that
introduces a syntax error the text did not have before is never committable.

The grammar of a file comes from its path (:func:`grammar_of`, after
:func:`reviewbot.review.units.language_of`); each grammar is an official
``tree-sitter-LANG`` package from PyPI, loaded on first use, with one parser per
grammar and thread. Errors are counted as tree-sitter's ERROR and MISSING nodes.
tree-sitter-python accepts lost indentation, so Python is also compiled to an
``ast`` (the Python running reviewbot decides; a text it cannot read either way,
such as newer syntax, is judged by tree-sitter alone).
"""

from __future__ import annotations

import ast
import importlib
import logging
import textwrap
import threading
import warnings
from dataclasses import dataclass
from functools import lru_cache

from reviewbot.review.units import language_of

log = logging.getLogger(__name__)

#: Language (as :func:`~reviewbot.review.units.language_of` names it) → grammar.
GRAMMARS_BY_LANGUAGE: dict[str, str] = {
    "Python": "python",
    "JavaScript": "javascript",
    "TypeScript": "typescript",
    "Go": "go",
    "Java": "java",
    "Rust": "rust",
    "C": "c",
    "C++": "cpp",
    "Ruby": "ruby",
}
#: Extensions whose grammar is not their language's: TSX needs its own, and a
#: ``.h`` header is as often C++ as C (the C++ grammar reads both).
GRAMMARS_BY_EXTENSION: dict[str, str] = {".tsx": "tsx", ".h": "cpp"}
#: Grammar → (PyPI package's module, its function returning the language).
GRAMMAR_MODULES: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "java": ("tree_sitter_java", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
    "ruby": ("tree_sitter_ruby", "language"),
}


class GrammarUnavailable(RuntimeError):
    """A grammar package is not installed (reviewbot's dependencies name them all)."""


def grammar_of(path: str) -> str | None:
    """The tree-sitter grammar for the file at ``path``, or None when there is none."""
    name = path.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    if dot > 0 and name[dot:].lower() in GRAMMARS_BY_EXTENSION:
        return GRAMMARS_BY_EXTENSION[name[dot:].lower()]
    return GRAMMARS_BY_LANGUAGE.get(language_of(path))


_local = threading.local()


def _parser(grammar: str):  # -> tree_sitter.Parser
    """The parser of ``grammar`` (one per grammar and thread: parsers are not thread-safe)."""
    parsers = _local.__dict__.setdefault("parsers", {})
    if grammar not in parsers:
        module_name, function = GRAMMAR_MODULES[grammar]
        try:
            import tree_sitter

            module = importlib.import_module(module_name)
            language = tree_sitter.Language(getattr(module, function)())
        except (ImportError, ValueError) as e:  # not installed, or built for another ABI
            raise GrammarUnavailable(
                f"the {grammar} grammar ({module_name.replace('_', '-')}) cannot be loaded: {e}"
            ) from e
        parsers[grammar] = tree_sitter.Parser(language)
    return parsers[grammar]


def tree_errors(text: str, grammar: str) -> int:
    """How many ERROR and MISSING nodes tree-sitter's ``grammar`` finds in ``text``."""
    tree = _parser(grammar).parse(text.encode("utf-8", errors="replace"))
    count = 0
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            count += 1
        if node.has_error:
            stack.extend(node.children)
    return count


def python_parses(text: str) -> bool:
    """Whether ``text`` (dedented, so a fragment of a block may be read) is Python."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ast.parse(textwrap.dedent(text))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return False
    return True


@dataclass(frozen=True)
class Verdict:
    """Whether a change of a text introduced a syntax error, and who said so."""

    grammar: str
    breaks: bool
    errors_before: int
    errors_after: int
    python_before: bool | None = None
    """Python only: whether ``ast`` read the text before the change."""
    python_after: bool | None = None


@lru_cache(maxsize=16)
def _read_before(text: str, grammar: str) -> tuple[int, bool | None]:
    """The text before a change, as :func:`compare` reads it (every suggestion on one
    file compares with the same text: it is read once)."""
    return tree_errors(text, grammar), python_parses(text) if grammar == "python" else None


def compare(before: str, after: str, grammar: str) -> Verdict:
    """Does ``after`` hold a syntax error ``before`` did not?

    Yes when tree-sitter finds more error nodes in it, or (Python) when ``ast``
    read ``before`` and cannot read ``after``.
    """
    errors_before, py_before = _read_before(before, grammar)
    errors_after = tree_errors(after, grammar)
    breaks = errors_after > errors_before
    py_after = None
    if grammar == "python":
        py_after = python_parses(after) if py_before else None
        breaks = breaks or (py_before and not py_after)
    return Verdict(grammar, bool(breaks), errors_before, errors_after, py_before, py_after)


def introduces_error(before: str, after: str, path: str) -> bool | None:
    """Whether changing the file at ``path`` from ``before`` to ``after`` breaks its syntax;
    None when there is no grammar for the file (or it is not installed)."""
    grammar = grammar_of(path)
    if grammar is None:
        return None
    try:
        return compare(before, after, grammar).breaks
    except GrammarUnavailable as e:
        log.warning("%s: not checked", e)
        return None
