"""A review as machine-readable output for other tools (pure): rdjson and SARIF.

- :func:`review_rdjson`: reviewdog's Diagnostic Format (a ``DiagnosticResult``), for
  ``reviewdog -f=rdjson``;
- :func:`review_sarif`: SARIF 2.1.0, for GitHub code scanning.

Every string that came from the model or the diff (paths, messages, suggestions) goes
into a JSON string field, never into markup reviewbot writes; the output is ASCII
JSON. A comment's message is its body (Markdown made inert, as reviewbot posts it)
less the suggestion block, which travels as structured data instead (rdjson
``suggestions``, SARIF ``fixes``); SARIF's plain ``message.text`` is the critique as
the model said it (code scanning shows it as text), its ``message.markdown`` the body.

Severity comes from the finding's confidence: at least :data:`WARNING_CONFIDENCE`
is a warning (rdjson ``WARNING``, SARIF ``warning``), anything else, unscored
included, a note (rdjson ``INFO``, SARIF ``note``). Reviewbot never says ``ERROR``:
its findings are opinions, not failed checks, so ``reviewdog -fail-level=error`` (or
a code-scanning gate on errors) never fails because of them.

A comment on the old side (``LEFT``: lines a pure deletion removed) has no lines in
the file at the head: rdjson reports it on its file without a line range, SARIF as a
tool notification on its file (no result: code scanning needs a line); its message
says which old lines it is about.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import quote

from reviewbot import __version__
from reviewbot.review.findings import Comment, Review
from reviewbot.review.markdown import suggestion_fence

#: The least confidence of a finding reported as a warning; below it (or unscored): a note.
WARNING_CONFIDENCE = 0.9
#: The tool's name in both formats.
TOOL_NAME = "reviewbot"
#: The SARIF version written, and the schema URI its ``$schema`` names.
SARIF_VERSION = "2.1.0"
SARIF_SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
#: The ``uriBaseId`` of every SARIF path: the repository root (GitHub's upload knows it).
SRCROOT = "%SRCROOT%"
#: The key of reviewbot's fingerprint in a SARIF result's ``partialFingerprints``.
FINGERPRINT_KEY = "reviewbotFingerprint/v1"
#: SARIF rule descriptions of the finding categories
#: (:data:`~reviewbot.settings.defaults.FINDING_CATEGORIES`, then ``other``).
CATEGORY_DESCRIPTIONS: dict[str, str] = {
    "security": "A security concern (injection, secrets, unsafe input handling...).",
    "bug": "A likely bug: wrong behaviour, an error case, a crash.",
    "performance": "A performance concern: needless work, memory or latency.",
    "tests": "Missing or weak tests.",
    "docs": "Documentation and comments: docstrings, typos, spelling.",
    "style": "Style and readability.",
    "other": "A finding of no recognised category.",
}

Categorize = Callable[[str], str]


def is_warning(confidence: float | None) -> bool:
    """Whether a finding this sure is reported as a warning (else as a note)."""
    return confidence is not None and confidence >= WARNING_CONFIDENCE


def _lines(c: Comment) -> tuple[int, int]:
    """The comment's first and last line (both inclusive)."""
    return (c.start_line if c.start_line is not None else c.line), c.line


def _fix(c: Comment) -> str | None:
    """The committable suggestion's text, when it is one: on the head (RIGHT) side, and
    postable (:func:`~reviewbot.review.suggestions.postable`: no ``<!--``)."""
    if c.suggestion is None or c.side != "RIGHT" or "<!--" in c.suggestion:
        return None
    return c.suggestion


def _on_old_side(c: Comment, text: str) -> str:
    """``text``, prefixed for an old-side comment with the old lines it is about."""
    if c.side != "LEFT":
        return text
    start, end = _lines(c)
    span = f"line {end}" if start == end else f"lines {start}-{end}"
    return f"On {span} of the old file (removed by this change): {text}"


def message(c: Comment) -> str:
    """The comment's body less its suggestion block (which travels as structured data),
    prefixed on the old side with the old lines it is about."""
    body = c.body
    fix = _fix(c)
    if fix is not None:
        block = suggestion_fence(fix)
        for cut in ("\n\n" + block, block + "\n\n", block):
            if cut in body:
                body = body.replace(cut, "", 1)
                break
    return _on_old_side(c, body)


# --------------------------------------------------------------------------- rdjson


def _rdjson_severity(confidence: float | None) -> str:
    return "WARNING" if is_warning(confidence) else "INFO"


def _rdjson_lines(start: int, end: int) -> dict:
    """A linewise rdjson range: both positions without a column, so the range holds
    lines ``start``..``end`` whole (reviewdog.proto's ``Range``)."""
    return {"start": {"line": start}, "end": {"line": end}}


def rdjson_diagnostic(c: Comment, source: dict) -> dict:
    """One comment as an rdjson ``Diagnostic``."""
    location: dict = {"path": c.path}
    if c.side == "RIGHT":
        location["range"] = _rdjson_lines(*_lines(c))
    out: dict = {
        "message": message(c),
        "location": location,
        "severity": _rdjson_severity(c.confidence),
        "source": source,
        "code": {"value": c.fingerprint},
    }
    fix = _fix(c)
    if fix is not None:
        out["suggestions"] = [{"range": _rdjson_lines(*_lines(c)), "text": fix}]
    if c.critique:
        out["original_output"] = c.critique
    return out


def rdjson_document(review: Review, source_url: str | None = None) -> dict:
    """The review as an rdjson ``DiagnosticResult`` (a dict).

    A suggestion's range is linewise (start and end lines, no columns), the same
    lines as the diagnostic: reviewdog's GitHub reporter posts it as a ``suggestion``
    block on exactly those lines, GitLab's as ``suggestion:-0+N``. Its text is the
    replacement lines without a final line break; the empty text deletes the lines.
    Skipped files are not reported (reviewdog would post them as findings).
    """
    source: dict = {"name": TOOL_NAME}
    if source_url:
        source["url"] = source_url
    diagnostics = [rdjson_diagnostic(c, source) for c in review.comments]
    warn = any(is_warning(c.confidence) for c in review.comments)
    return {
        "source": source,
        "severity": "WARNING" if warn else "INFO",
        "diagnostics": diagnostics,
    }


def review_rdjson(review: Review, source_url: str | None = None) -> str:
    """The review as rdjson text (:func:`rdjson_document`)."""
    return json.dumps(rdjson_document(review, source_url), indent=2) + "\n"


# --------------------------------------------------------------------------- SARIF


def _sarif_level(confidence: float | None) -> str:
    return "warning" if is_warning(confidence) else "note"


def sarif_uri(path: str) -> str:
    """A repository-relative path as a relative URI reference (percent-encoded UTF-8)."""
    return quote(path, safe="/")


def _artifact(path: str) -> dict:
    return {"artifactLocation": {"uri": sarif_uri(path), "uriBaseId": SRCROOT}}


def _sarif_fix(c: Comment, text: str) -> dict:
    """The suggestion as a SARIF fix replacing its lines whole: from column 1 of the first
    to column 1 of the line after the last (line breaks included), with the replacement
    lines each ending in a line break (nothing, for a deletion)."""
    start, end = _lines(c)
    region = {"startLine": start, "startColumn": 1, "endLine": end + 1, "endColumn": 1}
    inserted = text + "\n" if text else ""
    return {
        "description": {"text": "Apply reviewbot's suggestion."},
        "artifactChanges": [
            {
                "artifactLocation": _artifact(c.path)["artifactLocation"],
                "replacements": [{"deletedRegion": region, "insertedContent": {"text": inserted}}],
            }
        ],
    }


def _sarif_message(c: Comment) -> dict:
    """The plain text (the critique as said, else the body) and the inert Markdown body."""
    body = message(c)
    text = _on_old_side(c, c.critique.strip()) if c.critique.strip() else body
    return {"text": text, "markdown": body}


def sarif_result(c: Comment, rule_id: str, rule_index: int) -> dict:
    """One comment on the head (RIGHT) side as a SARIF ``result``."""
    start, end = _lines(c)
    location = _artifact(c.path)
    location["region"] = {"startLine": start, "endLine": end}
    out: dict = {
        "ruleId": rule_id,
        "ruleIndex": rule_index,
        "level": _sarif_level(c.confidence),
        "message": _sarif_message(c),
        "locations": [{"physicalLocation": location}],
        "partialFingerprints": {FINGERPRINT_KEY: c.fingerprint},
    }
    fix = _fix(c)
    if fix is not None:
        out["fixes"] = [_sarif_fix(c, fix)]
    if c.confidence is not None:
        out["properties"] = _properties(c)
    return out


def _properties(c: Comment, **more: str) -> dict:
    """A SARIF property bag: ``more``, and the confidence when the finding was scored."""
    return more | ({} if c.confidence is None else {"confidence": c.confidence})


def _rule(category: str) -> dict:
    return {
        "id": category,
        "name": category.capitalize(),
        "shortDescription": {"text": f"reviewbot finding: {category}"},
        "fullDescription": {"text": CATEGORY_DESCRIPTIONS.get(category, "A reviewbot finding.")},
        "defaultConfiguration": {"level": "note"},
    }


def sarif_document(
    review: Review, category_of: Categorize, information_uri: str | None = None
) -> dict:
    """The review as a SARIF 2.1.0 log (a dict): one run of reviewbot.

    ``category_of`` names a finding's category from its critique
    (:func:`reviewbot.learning.records.category_of`): each category used is a rule.
    Paths are relative to ``%SRCROOT%`` (the repository root); ``partialFingerprints``
    carries the finding's fingerprint, so code scanning keeps one alert per finding
    across runs. Tool notifications of the run's invocation list the skipped files and
    the old-side comments: code scanning shows a result only on lines of the analysed
    commit (a ``region`` with a ``startLine``), which removed lines are not.
    """
    head = [c for c in review.comments if c.side == "RIGHT"]
    categories = [category_of(c.critique or c.body) for c in head]
    rules = sorted(set(categories))
    index = {name: i for i, name in enumerate(rules)}
    results = [sarif_result(c, cat, index[cat]) for c, cat in zip(head, categories, strict=True)]
    driver: dict = {
        "name": TOOL_NAME,
        "version": __version__,
        "semanticVersion": __version__,
        "rules": [_rule(r) for r in rules],
    }
    if information_uri:
        driver["informationUri"] = information_uri
    notes = [
        {
            "level": "note",
            "message": {"text": f"Not reviewed: {s.reason}"},
            "locations": [{"physicalLocation": _artifact(s.path)}],
        }
        for s in review.skipped
    ]
    notes += [
        {
            "level": _sarif_level(c.confidence),
            "message": _sarif_message(c),
            "locations": [{"physicalLocation": _artifact(c.path)}],
            "properties": _properties(c, fingerprint=c.fingerprint),
        }
        for c in review.comments
        if c.side != "RIGHT"
    ]
    invocation = {"executionSuccessful": True, "toolExecutionNotifications": notes}
    return {
        "$schema": SARIF_SCHEMA_URI,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {"driver": driver},
                "invocations": [invocation],
                "results": results,
            }
        ],
    }


def review_sarif(
    review: Review, category_of: Categorize, information_uri: str | None = None
) -> str:
    """The review as SARIF text (:func:`sarif_document`)."""
    doc = sarif_document(review, category_of, information_uri)
    return json.dumps(doc, indent=2) + "\n"
