"""Turn a unified diff into review units: the diff planner (pure, no IO).

The diff text is first walked once by :class:`_Scanner`, which normalises line
endings and checks the structure (file headers, hunk line counts), so that a
malformed diff is reported with the line it goes wrong at. The normalised text is
then parsed with :mod:`unidiff`, and each hunk of each reviewable file becomes one
:class:`~reviewbot.review.units.ReviewUnit` (or several, for a long hunk).

When there are more units than the budget (``PlanLimits.max_units``), the units
reviewed are chosen by risk (:class:`Risk`), not by their place in the diff, and
keep their diff order; each one left out is listed with why.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from unidiff import PatchSet, UnidiffParseError
from unidiff.constants import RE_BINARY_DIFF
from unidiff.patch import Hunk, PatchedFile

from reviewbot.review.hunks import hunk_range, parse_header
from reviewbot.review.units import DiffError, Plan, ReviewUnit, Side, Skipped
from reviewbot.settings.defaults import GENERATED_MARKER_LINES, GENERATED_MARKERS, PlanLimits

log = logging.getLogger(__name__)

__all__ = ["Risk", "added_lines", "git_diff_args", "path_kind", "plan_diff", "unit_risk"]

_NO_NEWLINE = "\\ No newline at end of file"
_GIT_BINARY = "GIT binary patch"
_DEV_NULL = "/dev/null"
_PATH_PREFIX = re.compile(r"^[abciow12]/")
_OCTAL = re.compile(r"[0-7]{3}")
_C_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
#: Lines whose line ending tells whether the diff text itself uses CRLF.
_STRUCTURAL = ("diff ", "--- ", "+++ ", "@@ ", "index ")
#: Lines that end a hunk early (as opposed to garbage inside it).
_HUNK_ENDERS = ("diff ", "@@", "Binary files ", "index ", "Index: ", "Only in ", _GIT_BINARY)
_GIT_ONLY = ("new file mode ", "deleted file mode ")


def git_diff_args(rev_range: str) -> list[str]:
    """The ``git`` argv that prints ``BASE..HEAD`` as a diff :func:`plan_diff` accepts.

    Explicit flags override the user config that would change the output: colour,
    external diff drivers, textconv filters, ``diff.relative``, submodule logs
    and ``diff.noprefix`` / ``diff.mnemonicPrefix`` (the prefixes are forced).
    """
    if not rev_range or rev_range.startswith("-"):
        raise ValueError(f"not a revision range: {rev_range!r}")
    return [
        "git",
        "diff",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--no-relative",
        "--submodule=short",
        "--src-prefix=a/",
        "--dst-prefix=b/",
        "-M",
        rev_range,
        "--",
    ]


def plan_diff(diff_text: str, limits: PlanLimits = PlanLimits()) -> Plan:
    """Plan the review of a unified diff: units to review, files and hunks left out.

    Raises :class:`DiffError` (with the 1-based line of the diff text) when the
    text is not a well-formed unified diff. An empty diff gives an empty plan.
    """
    parsed = _read(diff_text)
    if parsed is None:
        return Plan()
    lines, patch = parsed
    planner = _Planner(limits, lines)
    for patched in patch:
        planner.add_file(patched)
    plan = planner.plan()
    log.debug(
        "planned %d unit(s) over %d file(s), %d left out",
        len(plan.units),
        len(plan.files),
        len(plan.skipped),
    )
    return plan


def added_lines(diff_text: str) -> dict[str, set[int]]:
    """New-side line numbers each file of a diff adds, by repository path.

    Paths are read exactly as :func:`plan_diff` reads them (git's quoted names
    unquoted, a renamed file under its new name), so they match the units' paths.
    Deleted and binary files add no lines. Raises :class:`DiffError` like the planner.
    """
    parsed = _read(diff_text)
    if parsed is None:
        return {}
    changed: dict[str, set[int]] = {}
    for patched in parsed[1]:
        path = _paths(patched).new
        if path is None or patched.is_binary_file:
            continue
        lines = changed.setdefault(path, set())
        for hunk in patched:
            lines.update(line.target_line_no for line in hunk if line.is_added)
    return changed


def file_diffs(diff_text: str) -> list[tuple[str, str]]:
    """Each file of a diff as (path, its hunks' text), in the diff's order; a binary file's
    text says so. Paths are read as :func:`plan_diff` reads them; DiffError like it."""
    parsed = _read(diff_text)
    if parsed is None:
        return []
    out = []
    for patched in parsed[1]:
        paths = _paths(patched)
        if patched.is_binary_file:
            text = "(a binary file)"
        else:
            text = "".join(str(hunk) for hunk in patched)
        if paths.old and paths.new and paths.old != paths.new:
            text = f"(renamed from {paths.old})\n{text}"
        out.append((paths.shown, text))
    return out


@dataclass(frozen=True)
class LineChanges:
    """What a diff did to one file's lines, in its old-side numbers: the lines it
    removed, and after which old line each added line went (0: before the first).
    ``new_path``: the file's path after the diff (None: the diff deleted it)."""

    new_path: str | None
    removed: frozenset[int] = frozenset()
    inserted_after: tuple[int, ...] = ()


def line_changes(diff_text: str) -> dict[str, LineChanges]:
    """Per old-side path, what the diff did to the file's lines (binary files left out).

    Paths are read as :func:`plan_diff` reads them. Raises :class:`DiffError` like the
    planner. A file the diff adds has no old side and is not listed.
    """
    parsed = _read(diff_text)
    if parsed is None:
        return {}
    out: dict[str, LineChanges] = {}
    for patched in parsed[1]:
        paths = _paths(patched)
        if paths.old is None or patched.is_binary_file:
            continue
        removed: set[int] = set()
        inserted: list[int] = []
        for hunk in patched:
            last_old = hunk.source_start - 1
            for line in hunk:
                if line.is_added:
                    inserted.append(last_old)
                elif line.source_line_no is not None:
                    last_old = line.source_line_no
                    if line.is_removed:
                        removed.add(line.source_line_no)
        new = None if patched.is_removed_file else paths.new
        out[paths.old] = LineChanges(new, frozenset(removed), tuple(inserted))
    return out


def _read(diff_text: str) -> tuple[list[str], PatchSet] | None:
    """The checked, normalised lines of a diff and their parse; None for an empty diff."""
    text = diff_text.removeprefix("\ufeff")
    if not text.strip():
        return None
    lines = _Scanner(text.split("\n")).run()
    return lines, _parse(lines)


# --------------------------------------------------------------------------- scanning


def _quote(text: str, width: int = 60) -> str:
    """A short printable rendering of a diff line for error messages."""
    return repr(text if len(text) <= width else text[:width] + "...")


@dataclass
class _OpenHunk:
    """A hunk being scanned: its header and the lines still expected."""

    header: str
    line: int
    old_count: int
    new_count: int
    old_left: int
    new_left: int

    @property
    def name(self) -> str:
        return f"{hunk_range(self.header)} (line {self.line})"

    def missing(self) -> str:
        return (
            f"{self.old_left} old-side and {self.new_left} new-side line(s) missing "
            f"of the {self.old_count}/{self.new_count} its header declares"
        )


class _Scanner:
    """One pass over the diff lines: structure checks and line-ending normalisation.

    States: ``pre`` (before any file), ``git`` (inside a ``diff --git`` header),
    ``file`` (after ``---``/``+++``), ``hunk``, ``after`` (right after a hunk),
    ``other`` (text between files) and ``binary`` (a ``GIT binary patch`` body).
    """

    def __init__(self, raw: list[str]) -> None:
        if raw and raw[-1] == "":
            raw = raw[:-1]
        self.raw = raw
        self.crlf = _is_crlf_diff(raw)
        self.out: list[str] = []
        self.state = "pre"
        self.files = 0
        self.hunk: _OpenHunk | None = None
        self.last: _OpenHunk | None = None

    def run(self) -> list[str]:
        """The normalised lines (each ending in ``"\\n"``), or raise :class:`DiffError`.

        Every input line gives exactly one output line, so line numbers are kept.
        """
        while len(self.out) < len(self.raw):
            if self.state == "hunk":
                self._hunk_line(len(self.out))
            else:
                self._top_line(len(self.out))
        if self.hunk is not None:
            raise DiffError(
                f"the diff ends inside hunk {self.hunk.name}: {self.hunk.missing()}",
                line=len(self.raw),
            )
        if self.files == 0:
            first = next(n for n, line in enumerate(self.raw, 1) if line.strip())
            raise DiffError(
                "not a diff: no file header ('diff --git', '---'/'+++' or "
                "'Binary files ... differ') found",
                line=first,
            )
        return [line + "\n" for line in self.out]

    # -- hunk bodies

    def _hunk_line(self, i: int) -> None:
        line, hunk = self.raw[i], self.hunk
        assert hunk is not None
        kind = line[:1]
        if kind == "\\":
            self.out.append(_NO_NEWLINE)
            return
        if kind in ("", "\r"):
            kind = " "
        if kind not in (" ", "+", "-"):
            self._bad_hunk_line(i, hunk)
        old = 1 if kind in (" ", "-") else 0
        new = 1 if kind in (" ", "+") else 0
        if old > hunk.old_left or new > hunk.new_left:
            raise DiffError(
                f"hunk {hunk.name} is longer than its header says: it declares "
                f"{hunk.old_count} old-side and {hunk.new_count} new-side lines",
                line=i + 1,
            )
        hunk.old_left -= old
        hunk.new_left -= new
        self.out.append(line.removesuffix("\r") if self.crlf else line)
        if hunk.old_left == hunk.new_left == 0:
            self.hunk, self.last, self.state = None, hunk, "after"

    def _bad_hunk_line(self, i: int, hunk: _OpenHunk) -> None:
        text = self.raw[i].rstrip("\r")
        if text.startswith(_HUNK_ENDERS):
            message = f"hunk {hunk.name} is shorter than its header says: {hunk.missing()}"
        else:
            message = (
                f"unexpected line inside hunk {hunk.name}: hunk lines start with "
                f"' ', '+', '-' or '\\', got {_quote(text)}"
            )
        raise DiffError(message, line=i + 1)

    # -- everything outside hunk bodies

    def _top_line(self, i: int) -> None:
        """Handle the line at index ``i``, outside any hunk body."""
        text = self.raw[i].rstrip("\r")
        no = i + 1
        if text.startswith(("diff --cc ", "diff --combined ")):
            raise DiffError("combined (merge) diffs are not supported", line=no)
        if text.startswith("diff --git "):
            self._emit(text, "git", new_file=True)
        elif text.startswith("--- ") and self._next_starts(i, "+++ "):
            self._emit(text, "file", new_file=self.state != "git")
            self.out.append(self.raw[i + 1].rstrip("\r"))
        elif text.startswith("@@"):
            self._hunk_header(text, no)
        elif text.startswith("\\"):
            self._marker(text, no)
        elif self.state == "git" and text.startswith(_GIT_BINARY):
            self._emit(_GIT_BINARY, "binary")
        elif RE_BINARY_DIFF.match(text):
            self._emit(text, "other", new_file=self.state != "git")
        elif text.startswith(_GIT_ONLY) and self.state != "git":
            raise DiffError(f"{_quote(text)} outside a 'diff --git' header", line=no)
        else:
            self._other_line(text, no)

    def _emit(self, text: str, state: str, new_file: bool = False) -> None:
        self.out.append(text)
        self.state = state
        self.files += int(new_file)

    def _next_starts(self, i: int, prefix: str) -> bool:
        return i + 1 < len(self.raw) and self.raw[i + 1].startswith(prefix)

    def _hunk_header(self, text: str, no: int) -> None:
        header = parse_header(text)
        if self.state not in ("git", "file", "after"):
            if header is None:  # prose that happens to start with "@@"
                self._other_line(text, no)
                return
            where = "before any file header" if self.state == "pre" else "outside of a file"
            raise DiffError(
                f"hunk header {_quote(text)} {where}: it must follow a "
                "'diff --git' or '---'/'+++' header, or another hunk",
                line=no,
            )
        if header is None:
            raise DiffError(
                f"malformed hunk header {_quote(text)}: expected "
                "'@@ -START[,COUNT] +START[,COUNT] @@'",
                line=no,
            )
        old, new = header.old_count, header.new_count
        if old == new == 0:
            raise DiffError(f"hunk header {_quote(text)} declares no lines", line=no)
        self.hunk = _OpenHunk(text, no, old, new, old, new)
        self._emit(text, "hunk")

    def _marker(self, text: str, no: int) -> None:
        if self.state == "after":
            self._emit(_NO_NEWLINE, "after")
        elif text.startswith(_NO_NEWLINE):
            raise DiffError(f"{_quote(text)} marker outside a hunk", line=no)
        else:
            self._other_line(text, no)

    def _other_line(self, text: str, no: int) -> None:
        """Any other line: allowed between files, an error where hunk lines belong."""
        body_like = text[:1] in (" ", "+", "-")
        if self.state == "after" and body_like and text not in ("--", "-- "):
            assert self.last is not None
            raise DiffError(
                f"hunk {self.last.name} is longer than its header says: unexpected "
                f"{_quote(text)} after its last line",
                line=no,
            )
        if text.startswith("+++ "):
            raise DiffError("'+++ ' file header without a '--- ' header before it", line=no)
        if self.state in ("git", "file") and text.startswith("--- "):
            raise DiffError(
                "'--- ' file header is not followed by a '+++ ' header",
                line=min(no + 1, len(self.raw)),
            )
        if self.state in ("git", "file") and body_like:
            raise DiffError(
                f"hunk line {_quote(text)} without a hunk header "
                "('@@ -START,COUNT +START,COUNT @@') before it",
                line=no,
            )
        stays = ("pre", "git", "binary") if text else ("pre", "git", "binary", "after")
        self._emit(text, self.state if self.state in stays else "other")


def _is_crlf_diff(raw: Sequence[str]) -> bool:
    """Whether the diff text itself has CRLF line endings (not just its content)."""
    heads = [line for line in raw if line.startswith(_STRUCTURAL)]
    return bool(heads) and all(line.endswith("\r") for line in heads)


# --------------------------------------------------------------------------- parsing


class _Feed:
    """Yields the lines to unidiff and remembers the line number it is at."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.at = 0

    def __iter__(self) -> Iterator[str]:
        for number, line in enumerate(self.lines, 1):
            self.at = number
            yield line


def _parse(lines: list[str]) -> PatchSet:
    """Parse the normalised lines with unidiff; its errors become :class:`DiffError`."""
    feed = _Feed(lines)
    try:
        return PatchSet(feed)
    except (UnidiffParseError, UnicodeError) as e:
        raise DiffError(f"cannot parse the diff: {str(e).strip()}", line=feed.at or None) from e


# --------------------------------------------------------------------------- paths


def _unquote(name: str) -> str:
    """Undo git's C-style quoting of unusual file names (``"a/t\\303\\251st"``)."""
    if len(name) < 2 or not (name.startswith('"') and name.endswith('"')):
        return name
    body, out, i = name[1:-1], bytearray(), 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            if _OCTAL.match(body, i + 1):
                out.append(int(body[i + 1 : i + 4], 8) & 0xFF)
                i += 4
                continue
            out += _C_ESCAPES.get(body[i + 1], body[i + 1]).encode()
            i += 2
            continue
        out += body[i].encode()
        i += 1
    return out.decode("utf-8", errors="replace")


def _clean_path(name: str | None) -> str | None:
    """A repository path out of a diff file name; ``None`` for ``/dev/null``."""
    if name is None:
        return None
    name = _unquote(name.strip())
    if name in ("", _DEV_NULL):
        return None
    return _PATH_PREFIX.sub("", name, count=1)


def _is_git(patched: PatchedFile) -> bool:
    """Whether the file entry comes with a ``diff --git`` header."""
    return bool(patched.patch_info) and patched.patch_info[0].startswith("diff --git ")


def _info_value(patched: PatchedFile, key: str) -> str | None:
    """The value of an extended git header line such as ``rename to NAME``."""
    if not _is_git(patched):
        return None
    for line in patched.patch_info or ():
        if line.startswith(key + " "):
            return _unquote(line[len(key) + 1 :].rstrip("\r\n"))
    return None


@dataclass(frozen=True)
class _Paths:
    old: str | None
    new: str | None

    @property
    def shown(self) -> str:
        return self.new or self.old or "?"


def _paths(patched: PatchedFile) -> _Paths:
    old = _info_value(patched, "rename from") or _info_value(patched, "copy from")
    new = _info_value(patched, "rename to") or _info_value(patched, "copy to")
    return _Paths(
        old or _clean_path(patched.source_file),
        new or _clean_path(patched.target_file),
    )


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class _Row:
    """One line of a hunk side: its line number, text and whether the change made it
    (added, on the new side; removed, on the old side of a pure deletion)."""

    number: int
    text: str
    changed: bool = False


def _line_text(value: str) -> str:
    return value.removesuffix("\n").removesuffix("\r")


def _split(rows: Sequence[_Row], max_lines: int) -> list[Sequence[_Row]]:
    """Cut rows into slices of at most ``max_lines``, preferably after a blank line."""
    max_lines = max(1, max_lines)
    slices, start = [], 0
    while len(rows) - start > max_lines:
        end = start + max_lines
        floor = end - max_lines // 4
        blanks = [j + 1 for j in range(end - 1, floor - 1, -1) if not rows[j].text.strip()]
        cut = blanks[0] if blanks else end
        slices.append(rows[start:cut])
        start = cut
    slices.append(rows[start:])
    return slices


def _glob_hit(path: str, globs: Sequence[str]) -> str | None:
    return next((g for g in globs if fnmatch.fnmatch(path, g)), None)


def _generated_marker(patched: PatchedFile) -> tuple[str, int] | None:
    """A generated-code marker in the first lines of the new file, with its line."""
    for hunk in patched:
        for line in hunk.target_lines():
            number = line.target_line_no or 0
            if number > GENERATED_MARKER_LINES:
                break
            marker = next((m for m in GENERATED_MARKERS if m in line.value), None)
            if marker:
                return marker, number
    return None


#: Where a path is a test (any directory of these names, or a file named like a test).
_TEST_DIRS = frozenset({"test", "tests", "__tests__", "testing", "spec", "specs", "e2e"})
_TEST_NAME = re.compile(
    r"(?:^test_.+|.+_test\.\w+|.+\.(?:test|spec)\.\w+|.+_spec\.\w+|^conftest\.py"
    r"|.+Tests?\.(?:java|kt|scala|cs|swift))$"
)
#: Where a path is documentation (a directory of these names, or these extensions/names).
_DOC_DIRS = frozenset({"doc", "docs", "documentation"})
_DOC_EXTENSIONS = (".md", ".markdown", ".rst", ".txt", ".adoc", ".asciidoc", ".org", ".tex")
_DOC_NAMES = re.compile(
    r"^(?:README|CHANGELOG|CHANGES|HISTORY|NEWS|LICENSE|COPYING|AUTHORS|CONTRIBUTING|NOTICE)"
    r"(?:\.\w+)?$",
    re.I,
)
#: The kinds of file, riskiest first.
KINDS: tuple[str, ...] = ("source", "test", "docs")
#: A changed line holding one of these words (any language's control flow) counts as
#: control flow in the risk score.
_CONTROL_FLOW = re.compile(
    r"\b(?:if|elif|else|for|foreach|while|do|switch|case|match|try|except|catch|finally"
    r"|raise|throw|throws|return|yield|await|goto|break|continue|unless|until|rescue|defer)\b"
    r"|&&|\|\|"
)


def path_kind(path: str) -> str:
    """``docs``, ``test`` or ``source`` (anything else) for a repository path."""
    *dirs, name = path.split("/")
    if _DOC_DIRS.intersection(d.lower() for d in dirs) or _DOC_NAMES.match(name):
        return "docs"
    if name.lower().endswith(_DOC_EXTENSIONS):
        return "docs"
    if _TEST_DIRS.intersection(d.lower() for d in dirs) or _TEST_NAME.match(name):
        return "test"
    return "source"


@dataclass(frozen=True)
class Risk:
    """How much a unit's review matters when not every unit can be reviewed.

    Units are ranked by, in order: a path matching the repository's ``priority``
    globs first; then its kind, source before tests before documentation
    (:func:`path_kind`); then the larger and more complex change first, by
    :attr:`score` = changed lines + 2 × changed lines with control flow (a line
    holding a keyword such as ``if``, ``for``, ``return``, ``catch``, or ``&&``/``||``);
    then diff order.
    """

    priority: bool
    kind: str
    changed: int
    """Lines of the unit the change added (or removed, for a pure deletion)."""
    control: int
    """Of them, the lines with control flow."""

    @property
    def score(self) -> int:
        return self.changed + 2 * self.control

    def rank(self) -> tuple[int, int, int]:
        """The sort key, lowest first: priority, kind, then the higher score."""
        return (0 if self.priority else 1, KINDS.index(self.kind), -self.score)

    def describe(self) -> str:
        """E.g. ``test file, 3 changed lines, 1 with control flow``."""
        where = f"{'priority ' if self.priority else ''}{self.kind}"
        lines = f"{self.changed} changed line{'' if self.changed == 1 else 's'}"
        return f"{where} file, {lines}, {self.control} with control flow"


def unit_risk(unit: ReviewUnit, priority_globs: Sequence[str]) -> Risk:
    """The :class:`Risk` of ``unit``, read from its changed lines."""
    changed = set(unit.added_lines)
    texts = [t for i, t in enumerate(unit.lines) if unit.start_line + i in changed]
    return Risk(
        priority=_glob_hit(unit.path, priority_globs) is not None,
        kind=path_kind(unit.path),
        changed=len(texts),
        control=sum(1 for t in texts if _CONTROL_FLOW.search(t)),
    )


@dataclass(frozen=True)
class _Candidate:
    """A unit the diff offers, before the budget decides; ``where`` names its hunk."""

    unit: ReviewUnit
    where: str


class _Planner:
    """Accumulates units and skipped entries, file by file, in diff order."""

    def __init__(self, limits: PlanLimits, lines: list[str]) -> None:
        self.limits = limits
        self.lines = lines
        self.entries: list[_Candidate | Skipped] = []
        self.files: dict[str, None] = {}

    def plan(self) -> Plan:
        """The units within the budget (the riskiest, :class:`Risk`), in diff order; the
        rest listed as skipped, with everything else left out, in diff order."""
        offered = [e for e in self.entries if isinstance(e, _Candidate)]
        budget = max(0, self.limits.max_units)
        left_out: dict[int, Risk] = {}
        if len(offered) > budget:
            risks = [unit_risk(c.unit, self.limits.priority_globs) for c in offered]
            ranked = sorted(range(len(offered)), key=lambda i: (*risks[i].rank(), i))
            left_out = {i: risks[i] for i in ranked[budget:]}
            log.info("%d unit(s) over the budget of %d", len(left_out), budget)
        units: list[ReviewUnit] = []
        skipped: list[Skipped] = []
        n = 0
        for entry in self.entries:
            if isinstance(entry, Skipped):
                skipped.append(entry)
                continue
            if n in left_out:
                skipped.append(Skipped(entry.unit.path, _over_budget(entry, left_out[n], budget)))
            else:
                units.append(entry.unit)
            n += 1
        return Plan(tuple(units), tuple(skipped), tuple(self.files))

    def add_file(self, patched: PatchedFile) -> None:
        paths = _paths(patched)
        self.files.setdefault(paths.shown, None)
        reason = self._file_reason(patched, paths)
        if reason is not None:
            self._skip(paths.shown, reason)
            return
        assert paths.new is not None
        for hunk in patched:
            self._add_hunk(paths.new, hunk)

    def _file_reason(self, patched: PatchedFile, paths: _Paths) -> str | None:
        """Why the whole file is left out, or ``None`` when it is reviewed."""
        if paths.new is None or (not _is_git(patched) and patched.is_removed_file):
            return "file deleted"  # plain `diff -N` marks a deletion by "+0,0" only
        if patched.is_binary_file:
            return "binary file"
        if patched.is_submodule:
            return "submodule"
        if patched.is_symlink:
            return "symbolic link"
        if not patched:
            return _hunkless_reason(patched, paths)
        return self._filter_reason(patched, paths.new)

    def _filter_reason(self, patched: PatchedFile, path: str) -> str | None:
        limits = self.limits
        glob = _glob_hit(path, limits.exclude_globs)
        if glob is not None:
            return f"excluded by path pattern {glob!r} (lockfile, vendored or generated)"
        if limits.include_globs and _glob_hit(path, limits.include_globs) is None:
            return f"not matched by the include patterns {', '.join(limits.include_globs)}"
        found = _generated_marker(patched)
        if found is not None:
            return f"generated file (marker {found[0]!r} on line {found[1]})"
        changed = patched.added + patched.removed
        if changed > limits.max_file_changed_lines:
            return f"too large: {changed} changed lines > limit of {limits.max_file_changed_lines}"
        return None

    def _header(self, hunk: Hunk) -> str:
        """The hunk's ``@@ ... @@ section`` line, as written in the diff."""
        first = hunk[0].diff_line_no
        assert first is not None
        return self.lines[first - 2].rstrip("\n")

    def _add_hunk(self, path: str, hunk: Hunk) -> None:
        header = self._header(hunk)
        if hunk.added == 0:
            if hunk.removed == 0:
                self._skip(path, f"no changed lines in hunk {hunk_range(header)}")
            elif self.limits.deletions == "left":
                self._add_rows(path, header, _deleted_rows(hunk), "LEFT")
            else:
                self._skip(
                    path,
                    f"pure deletion: hunk {hunk_range(header)} removes {hunk.removed} line(s)",
                )
            return
        rows = [
            _Row(line.target_line_no or 0, _line_text(line.value), line.is_added)
            for line in hunk.target_lines()
        ]
        self._add_rows(path, header, rows, "RIGHT")

    def _add_rows(self, path: str, header: str, rows: Sequence[_Row], side: Side) -> None:
        slices = _split(rows, self.limits.max_unit_lines)
        for part in slices:
            start, end = part[0].number, part[-1].number
            where = f" (lines {start}-{end})" if len(slices) > 1 else ""
            unit = ReviewUnit(
                path=path,
                start_line=start,
                end_line=end,
                hunk_header=header,
                original="\n".join(row.text for row in part),
                side=side,
                added_lines=tuple(row.number for row in part if row.changed),
            )
            self.entries.append(_Candidate(unit, f"hunk {hunk_range(header)}{where}"))

    def _skip(self, path: str, reason: str) -> None:
        self.entries.append(Skipped(path, reason))


def _over_budget(entry: _Candidate, risk: Risk, budget: int) -> str:
    """Why a unit was left out by the budget: the units reviewed rank above it."""
    if budget == 0:
        return f"over budget: {entry.where} (the unit budget is 0)"
    reviewed = f"{budget} reviewed unit{'' if budget == 1 else 's'}"
    return f"over budget: {entry.where}: lower risk than the {reviewed} ({risk.describe()})"


def _deleted_rows(hunk: Hunk) -> list[_Row]:
    """Old-side rows of a pure-deletion hunk, from its first to its last removed line."""
    rows = [
        _Row(line.source_line_no or 0, _line_text(line.value), line.is_removed)
        for line in hunk.source_lines()
    ]
    removed = [i for i, row in enumerate(rows) if row.changed]
    return rows[removed[0] : removed[-1] + 1]


def _hunkless_reason(patched: PatchedFile, paths: _Paths) -> str:
    """Why a text file entry without hunks has nothing to review."""
    if _info_value(patched, "copy from") is not None:
        return f"copied without changes (from {paths.old})"
    if paths.old is not None and paths.old != paths.new:
        return f"renamed without changes (from {paths.old})"
    modes = (patched.source_mode, patched.target_mode)
    if None not in modes and modes[0] != modes[1]:
        return f"mode change only ({modes[0]} -> {modes[1]})"
    if paths.old is None:
        return "empty new file"
    return "no textual changes"
