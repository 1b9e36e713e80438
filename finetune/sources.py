"""Data sources → :class:`~finetune.examples.Example` records.

Formats (``load_examples`` detects them by the fields of the first record):

- ``examples``: JSONL written by :func:`finetune.examples.write_examples`
  (``task``, ``fields``, ``target``).
- ``critique-revision``: ``original`` + ``critique`` (+ ``revised``, ``summary``).
  One record yields up to three examples: critique, revise, summarise.
- ``codereviewer``: CodeReviewer's JSONL (microsoft/CodeBERT): comment generation
  records (``patch`` + ``msg``, with ``oldf``) → critique; code refinement
  records (``old`` + ``comment`` + ``new``, with ``old_hunk``/``hunk``/``oldf``)
  → critique and revise.
- ``review-comment``: a review comment on a diff hunk (``code`` + ``comment``,
  ``enriched`` for the original-case text, ``line_number``, ``file_path``...),
  like the crc dataset or ``reviewbot finetune harvest``'s raw comments; a
  ```suggestion block becomes the revision.
- ``stackexchange``: Code Review Stack Exchange question/answer rows as in the
  Hugging Face dataset ``Dahoas/code-review-instruct-critique-revision-python``
  (``body`` HTML + ``answer.body`` HTML); ``hf:NAME[:SPLIT]`` loads it by name.

Parsers are pure functions of one record. A record of the wrong shape is an
error naming its file and line; a well-formed record that yields nothing usable
(a hunk whose newlines were lost, an empty comment) is skipped and counted.

Code that comes from a diff hunk becomes the review unit serving would review
(:meth:`reviewbot.review.hunks.Hunk.unit`), and its examples carry that unit's
context (path, language, changed lines: :func:`finetune.examples.unit_context`),
so that training prompts show ORIGINAL in the same layout as serving's.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from finetune.comments import apply_replacement, infer_start, split_suggestion, strip_markers
from finetune.examples import Example, ExampleError, dedupe, unit_context
from reviewbot.review.hunks import Hunk, HunkError, parse_hunk
from reviewbot.review.units import language_of
from reviewbot.settings.defaults import HF_CRITIQUE_REVISION_DATASET

log = logging.getLogger(__name__)

DATA_FORMATS: tuple[str, ...] = (
    "examples",
    "critique-revision",
    "codereviewer",
    "review-comment",
    "stackexchange",
)
HF_PREFIX = "hf:"


class SourceError(ValueError):
    """Input that is not a data source we know (the message names file and line)."""


class Skip(Exception):
    """A well-formed record that yields no usable example; the message is the reason."""


Provenance = dict[str, Any]
Parser = Callable[[dict[str, Any], Provenance], list[Example]]


# --------------------------------------------------------------------------- helpers


def _text(record: dict[str, Any], key: str, required: bool = False) -> str | None:
    """``record[key]`` as text (None when absent/null); a non-string is an error."""
    value = record.get(key)
    if value is None:
        if required:
            raise SourceError(f"missing field {key!r}")
        return None
    if not isinstance(value, str):
        raise SourceError(f"field {key!r} must be a string, not {type(value).__name__}")
    return value.replace("\r\n", "\n")


def _int(record: dict[str, Any], key: str) -> int | None:
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SourceError(f"field {key!r} must be an integer, not {type(value).__name__}")
    try:
        return int(value)
    except ValueError:
        raise SourceError(f"field {key!r} must be an integer, not {value!r}") from None


def _example(
    task: str,
    fields: dict[str, str],
    target: str,
    source: str,
    prov: Provenance,
    context: dict[str, Any] | None = None,
) -> Example:
    kept = {k: v for k, v in prov.items() if v is not None}
    return Example(task, fields, target, source, kept, context or {})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- formats


def detect_format(record: dict[str, Any]) -> str | None:
    """The format whose fields ``record`` carries, or None."""
    keys = set(record)
    if {"task", "fields", "target"} <= keys:
        return "examples"
    if "original" in keys and keys & {"critique", "revised"}:
        return "critique-revision"
    if (
        {"patch", "msg"} <= keys
        or ({"old", "new", "comment"} <= keys)
        or (keys & {"old_hunk", "oldf"} and keys & {"comment", "msg"})
    ):
        return "codereviewer"
    if "code" in keys and keys & {"comment", "enriched"}:
        return "review-comment"
    if "body" in keys and isinstance(record.get("answer"), dict):
        return "stackexchange"
    return None


def from_examples(record: dict[str, Any], prov: Provenance) -> list[Example]:
    """An examples-JSONL record (already an example)."""
    try:
        return [Example.from_json(record)]
    except ExampleError as e:
        raise SourceError(str(e)) from None


def from_critique_revision(record: dict[str, Any], prov: Provenance) -> list[Example]:
    """``original`` + ``critique`` / ``revised`` / ``summary`` → up to three examples."""
    original = _text(record, "original", required=True) or ""
    critique = (_text(record, "critique") or "").strip()
    revised = _text(record, "revised")
    summary = (_text(record, "summary") or "").strip()
    if not original.strip():
        raise Skip("empty original code")
    out = []
    src = "critique-revision"
    if critique:
        out.append(_example("critique", {"ORIGINAL": original}, critique, src, prov))
        if revised and revised.strip():
            fields = {"ORIGINAL": original, "CRITIQUE": critique}
            out.append(_example("revise", fields, revised, src, prov))
    if revised and revised.strip() and summary:
        fields = {"ORIGINAL": original, "REVISED": revised}
        out.append(_example("summarise", fields, summary, src, prov))
    if not out:
        raise Skip("no critique, revision or summary")
    return out


def from_codereviewer(record: dict[str, Any], prov: Provenance) -> list[Example]:
    """CodeReviewer comment-generation (``patch``+``msg``) or refinement (``old``/``new``)."""
    prov = {
        **prov,
        "repo": record.get("repo"),
        "lang": record.get("lang"),
        "id": record.get("id", record.get("ids")),
        "comment_id": record.get("cmtid", record.get("ghid")),
    }
    comment = (_text(record, "comment") or _text(record, "msg") or "").strip()
    if not comment:
        raise Skip("no review comment (msg/comment empty)")
    src = "codereviewer"
    old, new = _text(record, "old"), _text(record, "new")
    lang = _text(record, "lang")
    context: dict[str, Any] = {}
    if lang and language_of(f"code.{lang.lstrip('.')}"):
        context["language"] = language_of(f"code.{lang.lstrip('.')}")
    if old is not None:
        original = strip_markers(old)
        changed = _marked_lines(old)
    else:
        hunk_text = _text(record, "patch") or _text(record, "old_hunk") or _text(record, "hunk")
        if hunk_text is None:
            raise SourceError("a CodeReviewer record needs `patch`, `old_hunk` or `old`")
        try:
            hunk = parse_hunk(hunk_text)
            unit = hunk.unit("")
        except HunkError as e:
            raise Skip(str(e)) from None
        original = unit.original
        context["start_line"] = unit.start_line
        changed = list(unit.added_lines)
    if not original.strip():
        raise Skip("no new-side code")
    if changed:
        context["changed"] = changed
    out = [_example("critique", {"ORIGINAL": original}, comment, src, prov, context)]
    if new is not None:
        revised = strip_markers(new)
        if revised.strip() and revised.rstrip() != original.rstrip():
            fields = {"ORIGINAL": original, "CRITIQUE": comment}
            out.append(_example("revise", fields, revised, src, prov, context))
    return out


def _marked_lines(code: str) -> list[int]:
    """The lines (numbered from 1 in the code :func:`strip_markers` leaves) that carry
    a ``+`` diff marker; none when the code carries no markers."""
    lines = code.replace("\r\n", "\n").split("\n")
    if strip_markers(code) == code:
        return []
    kept = [line for line in lines if not line.startswith("-")]
    return [n for n, line in enumerate(kept, 1) if line.startswith("+")]


_ENRICHED = re.compile(r"\AFile: (?P<path>[^\n]*)\nCode: ", re.S)


def _split_enriched(enriched: str, code: str | None) -> tuple[str, str] | None:
    """(hunk, comment) from crc's ``enriched`` text ("File: …\\nCode: …\\nComment: …")."""
    m = _ENRICHED.match(enriched)
    if not m:
        return None
    rest = enriched[m.end() :]
    if code is not None and rest.startswith(code + "\nComment: "):
        return code, rest[len(code) + len("\nComment: ") :]
    cut = rest.find("\nComment: ")
    if cut < 0:
        return None
    return rest[:cut], rest[cut + len("\nComment: ") :]


def review_comment_provenance(record: dict[str, Any], prov: Provenance) -> Provenance:
    """Where a review comment came from: repository, PR, file, line, category..."""
    owner, repo = record.get("owner"), record.get("repo")
    full = f"{owner}/{repo}" if owner and repo and "/" not in str(repo) else repo
    return {
        **prov,
        "repo": full,
        "pr": record.get("pr_number"),
        "path": record.get("file_path"),
        "line_number": record.get("line_number"),
        "comment_id": record.get("comment_id"),
        "author": record.get("author"),
        "url": record.get("url"),
        "created_at": record.get("comment_created_at"),
        "category": record.get("category"),
        "subcategory": record.get("subcategory"),
    }


def _suggested_revision(
    hunk: Hunk, suggestion: str, start: int | None, line: int
) -> tuple[str, int, bool] | None:
    """(REVISED, first replaced line, whether that line was given) or None."""
    span = hunk.new_range
    if span is None or not span[0] <= line <= span[1]:
        return None
    given = start is not None and span[0] <= start <= line
    first = (
        start
        if given and start is not None
        else infer_start(hunk.new_lines, span[0], line, suggestion)
    )
    revised = apply_replacement(hunk, first, line, suggestion)
    if not revised.strip() or revised.rstrip() == hunk.original().rstrip():
        return None
    return revised, first, given


def from_review_comment(record: dict[str, Any], prov: Provenance) -> list[Example]:
    """A review comment on a diff hunk → critique (+ revise from a ```suggestion).

    ORIGINAL is the new-side code of the hunk (what serving reviews). The
    suggestion replaces ``start_line``..``line_number`` (``start_line`` when the
    record has it, else the most similar range ending at ``line_number``).
    """
    code = _text(record, "code", required=True)
    comment = _text(record, "comment")
    enriched = _text(record, "enriched")
    if enriched:
        split = _split_enriched(enriched, code)
        if split is not None:
            code, comment = split
    if comment is None:
        raise SourceError("a review-comment record needs `comment` or `enriched`")
    line = _int(record, "line_number")
    start = _int(record, "start_line")
    prov = review_comment_provenance(record, prov)
    try:
        hunk = parse_hunk(code or "")
    except HunkError as e:
        raise Skip(str(e)) from None
    span = hunk.new_range
    if span is None:
        raise Skip("a pure-deletion hunk (no new-side code)")
    context = unit_context(hunk.unit(_text(record, "file_path") or ""))
    side = record.get("side") or (hunk.side_of(line) if line is not None else None)
    parts = split_suggestion(comment)
    if not parts.text:
        extra = " besides a suggestion" if parts.suggestion is not None else ""
        raise Skip(f"the comment has no text{extra}")
    original = hunk.original()
    prov = {
        **prov,
        "side": side,
        "unit": {"start_line": span[0], "end_line": span[1], "added_lines": list(hunk.added)},
    }
    src = "review-comment"
    out = [_example("critique", {"ORIGINAL": original}, parts.text, src, prov, context)]
    if parts.suggestion is not None and side == "RIGHT" and line is not None:
        revision = _suggested_revision(hunk, parts.suggestion, start, line)
        if revision is not None:
            revised, first, given = revision
            rprov = {
                **prov,
                "suggestion_lines": [first, line],
                "suggestion_range": "given" if given else "inferred",
            }
            fields = {"ORIGINAL": original, "CRITIQUE": parts.text}
            out.append(_example("revise", fields, revised, src, rprov, context))
    return out


# --------------------------------------------------------------------------- Stack Exchange


_BLOCKS = {"p", "div", "blockquote", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "table"}


class _HtmlSegments(HTMLParser):
    """Stack Exchange post HTML → alternating prose and ``<pre>`` code segments."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.segments: list[tuple[str, str]] = []
        self._text: list[str] = []
        self._code: list[str] | None = None
        self._inline = 0

    def _flush_text(self) -> None:
        text = "".join(self._text)
        lines = [re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in text.split("\n")]
        prose = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
        if prose:
            self.segments.append(("text", prose))
        self._text = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._code is not None:
            return
        if tag == "pre":
            self._flush_text()
            self._code = []
        elif tag == "code":
            self._inline += 1
            self._text.append("`")
        elif tag in _BLOCKS:
            self._text.append("\n\n")
        elif tag == "li":
            self._text.append("\n- ")
        elif tag in ("br", "hr"):
            self._text.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if self._code is not None:
            if tag == "pre":
                code = "".join(self._code).strip("\n")
                if code.strip():
                    self.segments.append(("code", code))
                self._code = None
            return
        if tag == "code" and self._inline:
            self._inline -= 1
            self._text.append("`")
        elif tag in _BLOCKS:
            self._text.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._code is not None:
            self._code.append(data)
        else:
            self._text.append(data if self._inline else data.replace("\n", " "))

    def close(self) -> None:
        super().close()
        if self._code is not None:
            self.handle_endtag("pre")
        self._flush_text()


def html_segments(html: str) -> list[tuple[str, str]]:
    """``("text", prose)`` and ``("code", block)`` segments of a post, in order."""
    parser = _HtmlSegments()
    parser.feed(html)
    parser.close()
    return parser.segments


def _fenced(code: str) -> str:
    from reviewbot.review.suggestions import code_block

    return code_block(code)


def from_stackexchange(record: dict[str, Any], prov: Provenance) -> list[Example]:
    """A Code Review question (code) and answer (critique + revised code) → examples.

    The question's code blocks form ORIGINAL; the answer's longest code block is
    the revision, the rest of the answer (other code blocks fenced) the critique.
    """
    question = _text(record, "body", required=True) or ""
    answer = record.get("answer")
    if not isinstance(answer, dict):
        raise SourceError("field 'answer' must be an object with a 'body'")
    answer_html = _text(answer, "body", required=True) or ""
    meta = record.get("meta_data") if isinstance(record.get("meta_data"), dict) else {}
    answer_meta = answer.get("meta_data") if isinstance(answer.get("meta_data"), dict) else {}
    prov = {
        **prov,
        "question_id": meta.get("Id"),
        "answer_id": answer_meta.get("Id"),
        "title": meta.get("Title"),
    }
    codes = [text for kind, text in html_segments(question) if kind == "code"]
    if not codes:
        raise Skip("the question has no code block")
    original = "\n\n".join(codes)
    segments = html_segments(answer_html)
    blocks = [i for i, (kind, _) in enumerate(segments) if kind == "code"]
    revision_at = max(blocks, key=lambda i: (segments[i][1].count("\n"), i), default=None)
    critique = "\n\n".join(
        text if kind == "text" else _fenced(text)
        for i, (kind, text) in enumerate(segments)
        if i != revision_at
    ).strip()
    if not critique:
        raise Skip("the answer has no critique text")
    src = "stackexchange"
    out = [_example("critique", {"ORIGINAL": original}, critique, src, prov)]
    if revision_at is not None:
        revised = segments[revision_at][1]
        if revised.rstrip() != original.rstrip():
            fields = {"ORIGINAL": original, "CRITIQUE": critique}
            out.append(_example("revise", fields, revised, src, prov))
    return out


PARSERS: dict[str, Parser] = {
    "examples": from_examples,
    "critique-revision": from_critique_revision,
    "codereviewer": from_codereviewer,
    "review-comment": from_review_comment,
    "stackexchange": from_stackexchange,
}


# --------------------------------------------------------------------------- loading


@dataclass
class Loaded:
    """What reading one source produced."""

    name: str
    fmt: str
    records: int = 0
    examples: list[Example] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0

    def summary(self) -> str:
        tasks = Counter(ex.task for ex in self.examples)
        text = (
            f"{self.name} ({self.fmt}): {self.records} records → {len(self.examples)} examples"
            f" ({', '.join(f'{n} {t}' for t, n in sorted(tasks.items())) or 'none'})"
        )
        if self.duplicates:
            text += f", {self.duplicates} duplicates dropped"
        if self.skipped:
            reasons = "; ".join(f"{n}× {r}" for r, n in self.skipped.most_common())
            text += f", {sum(self.skipped.values())} records skipped ({reasons})"
        return text


def parse_records(records: Iterable[tuple[str, Provenance, Any]], fmt: str, name: str) -> Loaded:
    """Examples from ``(where, provenance, record)`` in format ``fmt`` (``auto``: detect).

    ``where`` ("file:line" or "dataset row N") prefixes every error message;
    ``provenance`` starts each example's provenance.
    """
    if fmt != "auto" and fmt not in PARSERS:
        raise SourceError(f"unknown data format {fmt!r} (known: auto, {', '.join(DATA_FORMATS)})")
    loaded = Loaded(name, fmt)
    examples: list[Example] = []
    for where, prov, record in records:
        if not isinstance(record, dict):
            raise SourceError(f"{where}: expected a JSON object, got {type(record).__name__}")
        if loaded.fmt == "auto":
            detected = detect_format(record)
            if detected is None:
                fields = ", ".join(sorted(record)) or "none"
                raise SourceError(
                    f"{where}: unknown record format (fields: {fields});"
                    f" expected one of: {', '.join(DATA_FORMATS)}"
                )
            loaded.fmt = detected
            log.info("%s: %s records", name, detected)
        loaded.records += 1
        try:
            examples.extend(PARSERS[loaded.fmt](record, prov))
        except Skip as e:
            loaded.skipped[str(e)] += 1
            log.debug("%s: skipped: %s", where, e)
        except (SourceError, ExampleError) as e:
            raise SourceError(f"{where}: {e} (in a {loaded.fmt} record)") from None
    loaded.examples = dedupe(examples)
    loaded.duplicates = len(examples) - len(loaded.examples)
    return loaded


def _jsonl(path: Path) -> Iterator[tuple[str, Provenance, Any]]:
    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115 - closed below, generator
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror or e}") from None
    with f:
        try:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as e:
                    raise SourceError(f"{path}:{lineno}: not valid JSON ({e})") from None
                yield f"{path}:{lineno}", {"file": str(path), "line": lineno}, record
        except UnicodeDecodeError as e:
            raise SourceError(f"{path}: not UTF-8 text ({e.reason})") from None


def read_source(source: str | Path, fmt: str = "auto") -> Loaded:
    """Read one JSONL file (or ``hf:NAME[:SPLIT]``) into examples, with counts."""
    text = str(source)
    if text.startswith(HF_PREFIX):
        name, _, split = text[len(HF_PREFIX) :].partition(":")
        return read_hf_dataset(name or HF_CRITIQUE_REVISION_DATASET, split or "train", fmt=fmt)
    path = Path(source)
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    loaded = parse_records(_jsonl(path), fmt, str(path))
    if loaded.records == 0:
        raise SourceError(f"{path}: no records")
    log.info("%s", loaded.summary())
    if not loaded.examples:
        raise SourceError(f"{path}: no usable examples ({loaded.summary()})")
    return loaded


def load_examples(path: str | Path, fmt: str = "auto") -> list[Example]:
    """All examples of a JSONL data file, its format detected from its fields.

    ``fmt`` forces one of :data:`DATA_FORMATS`. ``hf:NAME[:SPLIT]`` loads a Hugging
    Face dataset instead (needs ``datasets``). Raises :class:`SourceError` naming
    the file and line for anything that is not a known format.
    """
    return read_source(path, fmt).examples


def read_hf_dataset(
    name: str = HF_CRITIQUE_REVISION_DATASET,
    split: str = "train",
    limit: int | None = None,
    fmt: str = "auto",
) -> Loaded:
    """A Hugging Face dataset by name (network or local cache) → examples."""
    try:
        import datasets
    except ImportError:
        raise SourceError(
            f"loading the Hugging Face dataset {name} needs the `datasets` package:"
            " pip install 'reviewbot[finetune]'"
        ) from None
    try:
        rows = datasets.load_dataset(name, split=split)
    except Exception as e:  # datasets raises many types (network, hub, missing split)
        raise SourceError(f"cannot load the Hugging Face dataset {name} ({split}): {e}") from e
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    label = f"{HF_PREFIX}{name}:{split}"
    records = (
        (f"{label} row {i}", {"dataset": name, "split": split, "row": i}, dict(r))
        for i, r in enumerate(rows)
    )
    loaded = parse_records(records, fmt, label)
    log.info("%s", loaded.summary())
    if not loaded.examples:
        raise SourceError(f"{label}: no usable examples ({loaded.summary()})")
    return loaded


def load_hf_dataset(
    name: str = HF_CRITIQUE_REVISION_DATASET, split: str = "train", limit: int | None = None
) -> list[Example]:
    """Examples of a Hugging Face dataset (default: the critique-revision dataset)."""
    return read_hf_dataset(name, split, limit).examples
