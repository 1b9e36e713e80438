"""``reviewbot review --format rdjson|sarif``: reviewdog's Diagnostic Format and SARIF 2.1.0,
validated against the JSON Schemas vendored in tests/data/schemas (see its README)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

import pytest
from conftest import DATA
from jsonschema.validators import validator_for
from test_cli import SAMPLE, reviewbot

from reviewbot import __version__
from reviewbot.learning.records import category_of
from reviewbot.review.findings import Comment, Finding, Review
from reviewbot.review.formats import (
    FINGERPRINT_KEY,
    SRCROOT,
    WARNING_CONFIDENCE,
    message,
    rdjson_document,
    review_rdjson,
    review_sarif,
    sarif_document,
)
from reviewbot.review.markdown import inert
from reviewbot.review.pipeline import to_comment
from reviewbot.review.suggestions import Suggestion
from reviewbot.review.units import ReviewUnit, Skipped

SCHEMAS = DATA / "schemas"


def _validator(name: str):
    """A validator of the vendored schema ``name``, in the dialect its ``$schema`` names."""
    schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


SARIF = _validator("sarif-2.1.0-rtm.5.json")
RDJSON = _validator("rdjson-DiagnosticResult.reviewbot.json")


def assert_valid(validator, doc: dict) -> None:
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


DB = ReviewUnit(
    path="app/db.py",
    start_line=1,
    end_line=6,
    hunk_header="@@ -1,4 +1,6 @@",
    original="import sqlite3\ndef find(db, name):\n"
    "    q = \"SELECT * FROM users WHERE name = '%s'\" % name\n    return db.execute(q)\n"
    "def close(db):\n    db.close()",
    added_lines=(3, 4, 6),
)
UTIL = ReviewUnit(
    path="app/util.py",
    start_line=10,
    end_line=14,
    hunk_header="@@ -10,2 +10,5 @@ def helpers():",
    original="def f(a):\n    b = a\n    c = b\n    return c\n",
    added_lines=(11, 12, 13),
)
OLD = ReviewUnit(
    path="app/old.py",
    start_line=3,
    end_line=4,
    hunk_header="@@ -3,2 +2,0 @@",
    original="def legacy():\n    pass",
    side="LEFT",
    added_lines=(3, 4),
)
HOSTILE_PATH = 'we"ird\\ <!-- dir -->/fi le\n#1?%.py'
HOSTILE = ReviewUnit(
    path=HOSTILE_PATH,
    start_line=1,
    end_line=3,
    hunk_header="@@ -0,0 +1,3 @@ <!-- x -->",
    original="a = 1\ns = 'x'\nb = 2",
    added_lines=(1, 2, 3),
)
HOSTILE_CRITIQUE = (
    'The string "breaks" out: "}]}, <!-- reviewbot:marker --> </script>\n\n'
    "```suggestion\nrm -rf /\n```\n@admin, see\r\nthis bug"
)


def _comments() -> tuple[Comment, ...]:
    findings = [
        Finding(  # multi-line, committable suggestion, sure: a warning
            DB,
            "SQL injection: the query formats `name` into the string.",
            suggestion=Suggestion(
                3,
                4,
                (
                    '    q = "SELECT * FROM users WHERE name = ?"',
                    "    return db.execute(q, (name,))",
                ),
            ),
            confidence=0.95,
        ),
        Finding(  # single line, suggestion, unsure: a note
            DB,
            "This may crash when db is None.",
            suggestion=Suggestion(6, 6, ("    if db is not None: db.close()",)),
            confidence=0.6,
        ),
        Finding(UTIL, "Consider a clearer name for this helper.", confidence=None),
        Finding(OLD, "Removing this breaks callers.", confidence=0.93),  # old side
        Finding(  # hostile path and critique, a suggestion full of quotes; at the threshold
            HOSTILE,
            HOSTILE_CRITIQUE,
            suggestion=Suggestion(2, 2, ('s = "a\\"b" + \'</script>\' + """q"""',)),
            confidence=WARNING_CONFIDENCE,
        ),
        Finding(  # a suggestion deleting a line
            UTIL, "This line is dead code.", suggestion=Suggestion(12, 12, ()), confidence=0.2
        ),
    ]
    return tuple(to_comment(f, revise=True) for f in findings)


COMMENTS = _comments()
REVIEW = Review(
    units=(DB, UTIL, OLD, HOSTILE),
    comments=COMMENTS,
    summary="A summary the formats leave out.",
    skipped=(Skipped("poetry.lock", "lockfile"), Skipped('x"<!--.bin', "binary file")),
)


def test_the_fixture_covers_the_cases() -> None:
    sql, crash, name, old, hostile, dead = COMMENTS
    assert (sql.start_line, sql.line, sql.suggestion is not None) == (3, 4, True)
    assert (crash.start_line, crash.line, crash.suggestion is not None) == (None, 6, True)
    assert (name.start_line, name.line, name.suggestion) == (11, 13, None)
    assert (old.side, old.start_line, old.line) == ("LEFT", 3, 4)
    assert hostile.path == HOSTILE_PATH and "```suggestion" in hostile.body
    assert dead.suggestion == "" and (dead.start_line, dead.line) == (None, 12)


# --------------------------------------------------------------------------- rdjson


def test_rdjson_validates_and_maps_each_comment() -> None:
    text = review_rdjson(REVIEW)
    assert text.isascii() and text.endswith("\n")
    doc = json.loads(text)
    assert_valid(RDJSON, doc)
    assert doc == rdjson_document(REVIEW)
    assert doc["source"] == {"name": "reviewbot"}
    assert doc["severity"] == "WARNING"
    sql, crash, name, old, _hostile, dead = doc["diagnostics"]
    lines = {"start": {"line": 3}, "end": {"line": 4}}
    assert sql["location"] == {"path": "app/db.py", "range": lines}
    assert sql["suggestions"] == [{"range": lines, "text": COMMENTS[0].suggestion}]
    assert sql["severity"] == "WARNING" and crash["severity"] == "INFO"
    assert sql["code"] == {"value": COMMENTS[0].fingerprint}
    assert sql["source"] == {"name": "reviewbot"}
    assert sql["original_output"] == COMMENTS[0].critique
    # the suggestion travels as data, not as a block in the message
    assert sql["message"] == inert(COMMENTS[0].critique)
    assert "suggestion" not in sql["message"]
    one = {"start": {"line": 6}, "end": {"line": 6}}
    assert crash["location"]["range"] == one and crash["suggestions"][0]["range"] == one
    assert crash["suggestions"][0]["text"] == "    if db is not None: db.close()"
    assert name["location"]["range"] == {"start": {"line": 11}, "end": {"line": 13}}
    assert "suggestions" not in name and name["severity"] == "INFO"  # unscored: a note
    # the old side: the file, no lines of the head, the old lines said in the message
    assert old["location"] == {"path": "app/old.py"} and "suggestions" not in old
    assert old["message"].startswith("On lines 3-4 of the old file (removed by this change): ")
    assert old["severity"] == "WARNING"
    twelve = {"start": {"line": 12}, "end": {"line": 12}}
    assert dead["suggestions"] == [{"range": twelve, "text": ""}]  # an empty text deletes
    assert [d["code"]["value"] for d in doc["diagnostics"]] == [c.fingerprint for c in COMMENTS]


def test_rdjson_carries_hostile_text_only_in_json_strings() -> None:
    doc = json.loads(review_rdjson(REVIEW))
    hostile = doc["diagnostics"][4]
    assert hostile["location"]["path"] == HOSTILE_PATH
    assert hostile["severity"] == "WARNING"  # exactly at the threshold
    assert hostile["original_output"] == HOSTILE_CRITIQUE
    assert hostile["suggestions"][0]["text"] == COMMENTS[4].suggestion
    assert "<!--" not in hostile["message"]  # the message is the inert body
    assert "```suggestion" not in hostile["message"]


def test_rdjson_of_an_empty_review_is_valid() -> None:
    doc = json.loads(review_rdjson(Review((), (), None, REVIEW.skipped)))
    assert_valid(RDJSON, doc)
    assert doc["diagnostics"] == [] and doc["severity"] == "INFO"


def test_the_rdjson_schema_refuses_what_reviewdog_would_not_read() -> None:
    good = rdjson_document(REVIEW)
    bad = json.loads(json.dumps(good))
    bad["diagnostics"][0]["severity"] = "FATAL"
    bad["diagnostics"][1]["location"]["range"]["start"]["line"] = 0
    del bad["diagnostics"][2]["message"]
    bad["diagnostics"][3]["sugestions"] = []
    paths = {tuple(e.absolute_path)[:2] for e in RDJSON.iter_errors(bad)}
    assert paths == {("diagnostics", 0), ("diagnostics", 1), ("diagnostics", 2), ("diagnostics", 3)}


# --------------------------------------------------------------------------- SARIF


def test_sarif_validates_against_the_published_schema() -> None:
    text = review_sarif(REVIEW, category_of)
    assert text.isascii()
    doc = json.loads(text)
    assert_valid(SARIF, doc)
    assert doc == sarif_document(REVIEW, category_of)
    assert doc["version"] == "2.1.0" and doc["$schema"].startswith("https://")
    (run,) = doc["runs"]
    driver = run["tool"]["driver"]
    assert (driver["name"], driver["version"]) == ("reviewbot", __version__)
    assert "informationUri" not in driver  # reviewbot has no public home page to name
    linked = sarif_document(REVIEW, category_of, information_uri="https://example.com/rb")
    assert linked["runs"][0]["tool"]["driver"]["informationUri"] == "https://example.com/rb"
    assert_valid(SARIF, linked)


def test_sarif_maps_rules_levels_lines_fingerprints_and_fixes() -> None:
    (run,) = sarif_document(REVIEW, category_of)["runs"]
    rules = run["tool"]["driver"]["rules"]
    head = [c for c in COMMENTS if c.side == "RIGHT"]  # the old-side one is a notification
    categories = [category_of(c.critique) for c in head]
    assert [r["id"] for r in rules] == sorted(set(categories))
    results = run["results"]
    for r, c, category in zip(results, head, categories, strict=True):
        assert r["ruleId"] == category and rules[r["ruleIndex"]]["id"] == category
        assert r["partialFingerprints"] == {FINGERPRINT_KEY: c.fingerprint}
        assert r["message"]["text"]
        assert r["message"]["markdown"] == message(c)
        loc = r["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uriBaseId"] == SRCROOT
        assert unquote(loc["artifactLocation"]["uri"]) == c.path
        if c.confidence is None:
            assert "properties" not in r
        else:
            assert r["properties"] == {"confidence": c.confidence}
    sql, crash, name, hostile, dead = results
    assert categories[0] == "security" and sql["ruleId"] == "security"
    levels = ["warning", "note", "note", "warning", "note"]
    assert [r["level"] for r in results] == levels
    region = sql["locations"][0]["physicalLocation"]["region"]
    assert region == {"startLine": 3, "endLine": 4}
    assert crash["locations"][0]["physicalLocation"]["region"] == {"startLine": 6, "endLine": 6}
    assert name["locations"][0]["physicalLocation"]["region"] == {"startLine": 11, "endLine": 13}
    assert "fixes" not in name
    assert sql["message"]["text"] == COMMENTS[0].critique
    (change,) = sql["fixes"][0]["artifactChanges"]
    assert change["artifactLocation"] == {"uri": "app/db.py", "uriBaseId": SRCROOT}
    (replacement,) = change["replacements"]
    assert replacement == {
        "deletedRegion": {"startLine": 3, "startColumn": 1, "endLine": 5, "endColumn": 1},
        "insertedContent": {"text": COMMENTS[0].suggestion + "\n"},
    }
    (dead_change,) = dead["fixes"][0]["artifactChanges"][0]["replacements"]
    assert dead_change == {
        "deletedRegion": {"startLine": 12, "startColumn": 1, "endLine": 13, "endColumn": 1},
        "insertedContent": {"text": ""},
    }
    hostile_loc = hostile["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert all(ch not in hostile_loc for ch in ' "\n#?<\\') and "%25" in hostile_loc
    assert hostile["message"]["text"] == HOSTILE_CRITIQUE.strip()
    fix = hostile["fixes"][0]["artifactChanges"][0]["replacements"][0]["insertedContent"]
    assert fix["text"] == COMMENTS[4].suggestion + "\n"


def test_sarif_lists_skipped_files_and_old_side_comments_as_tool_notifications() -> None:
    (run,) = sarif_document(REVIEW, category_of)["runs"]
    (invocation,) = run["invocations"]
    assert invocation["executionSuccessful"] is True
    *skipped, old = invocation["toolExecutionNotifications"]
    assert [n["message"]["text"] for n in skipped] == [
        "Not reviewed: lockfile",
        "Not reviewed: binary file",
    ]
    assert all(n["level"] == "note" for n in skipped)
    uris = [n["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for n in skipped]
    assert [unquote(u) for u in uris] == ["poetry.lock", 'x"<!--.bin']
    # code scanning needs a line of the analysed commit: removed lines have none
    assert old["message"]["text"] == (
        "On lines 3-4 of the old file (removed by this change): Removing this breaks callers."
    )
    assert old["level"] == "warning"
    assert old["locations"] == [
        {"physicalLocation": {"artifactLocation": {"uri": "app/old.py", "uriBaseId": SRCROOT}}}
    ]
    assert old["properties"] == {"fingerprint": COMMENTS[3].fingerprint, "confidence": 0.93}


def test_a_suggestion_that_cannot_be_posted_is_no_fix() -> None:
    c = Comment("a.py", 2, "RIGHT", None, "Body.", "x = '<!--'", "f" * 16, 0.99)
    review = Review((), (c,), None, ())
    (result,) = sarif_document(review, category_of)["runs"][0]["results"]
    assert "fixes" not in result and result["message"]["text"] == "Body."
    (diag,) = rdjson_document(review)["diagnostics"]
    assert "suggestions" not in diag and diag["message"] == "Body."
    assert "original_output" not in diag  # no critique recorded


def test_the_sarif_schema_refuses_a_broken_log() -> None:
    doc = sarif_document(REVIEW, category_of)
    doc["runs"][0]["results"][0]["level"] = "fatal"
    del doc["runs"][0]["tool"]["driver"]["name"]
    assert len(list(SARIF.iter_errors(doc))) >= 2


# --------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize("fmt", ["sarif", "rdjson"])
def test_dry_run_prints_a_valid_document_without_findings(fmt: str) -> None:
    proc = reviewbot("review", SAMPLE, "--dry-run", "--format", fmt)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    if fmt == "sarif":
        assert_valid(SARIF, doc)
        (run,) = doc["runs"]
        assert run["results"] == []
        (note,) = run["invocations"][0]["toolExecutionNotifications"]
        assert note["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "poetry.lock"
    else:
        assert_valid(RDJSON, doc)
        assert doc["diagnostics"] == []


def test_review_on_the_tiny_model_prints_valid_sarif_and_rdjson(tiny_model_dir: Path) -> None:
    units = json.loads(reviewbot("review", SAMPLE, "--dry-run", "--format", "json").stdout)
    spans = {u["path"]: (u["start_line"], u["end_line"]) for u in units["units"]}
    common = [
        "review",
        SAMPLE,
        "--model",
        tiny_model_dir,
        "--quantize",
        "4bit",
        "--max-new-tokens",
        "16",  # fewer: the critiques are too short to survive noise control
        "--revise",
        "--profile",
        "assertive",  # the tiny random model is unsure of what it says (~0.6)
    ]
    sarif = reviewbot(*common, "--format", "sarif")
    assert sarif.returncode == 0, sarif.stderr
    doc = json.loads(sarif.stdout)
    assert_valid(SARIF, doc)
    results = doc["runs"][0]["results"]
    assert results, "the tiny model's critiques survive noise control"
    for r in results:
        loc = r["locations"][0]["physicalLocation"]
        lo, hi = spans[unquote(loc["artifactLocation"]["uri"])]
        assert lo <= loc["region"]["startLine"] <= loc["region"]["endLine"] <= hi
        assert r["level"] == "note"  # ~0.6 sure
        assert len(r["partialFingerprints"][FINGERPRINT_KEY]) == 16

    rdjson = reviewbot(*common, "--format", "rdjson")
    assert rdjson.returncode == 0, rdjson.stderr
    doc = json.loads(rdjson.stdout)
    assert_valid(RDJSON, doc)
    assert len(doc["diagnostics"]) == len(results)
    assert [d["code"]["value"] for d in doc["diagnostics"]] == [
        r["partialFingerprints"][FINGERPRINT_KEY] for r in results
    ]
