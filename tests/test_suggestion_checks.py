"""Suggestions must parse, revisions must be code, fingerprints name the code, and the
review counts what it did not post (pure: syntax, suggestions, pipeline, payload, CLI text).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from memory_github import task_of
from syntax_cases import LANGUAGES, applied, unit_of

from reviewbot.github.conversation import finding_critique, revision_reply
from reviewbot.github.payload import build_review_payload
from reviewbot.review.diffplan import plan_diff
from reviewbot.review.findings import Finding, anchored_code, fingerprint
from reviewbot.review.pipeline import attach_revision, review_plan, to_comment
from reviewbot.review.prompts import Renderer
from reviewbot.review.render import review_json, review_markdown
from reviewbot.review.suggestions import (
    REVISION_EMPTY,
    REVISION_NOT_CODE,
    REVISION_UNCHANGED,
    SUGGESTION_UNPARSABLE,
    check_suggestion,
    looks_like_prose,
    map_revision,
    revision_problem,
    without_code_copies,
)
from reviewbot.review.syntax import compare, grammar_of, introduces_error, tree_errors
from reviewbot.review.units import Plan, ReviewUnit
from reviewbot.settings.defaults import ReviewOptions

ROOT = Path(__file__).resolve().parents[1]
SHA = "0123456789abcdef0123456789abcdef01234567"
PATHS = list(LANGUAGES)


# --- the syntax check, per language -------------------------------------------------------


def test_every_listed_language_has_a_grammar() -> None:
    assert {grammar_of(p) for p in PATHS} == {
        "python",
        "javascript",
        "typescript",
        "tsx",
        "go",
        "java",
        "rust",
        "c",
        "cpp",
        "ruby",
    }
    assert grammar_of("include/cache.h") == "cpp"  # C++ reads C headers too
    assert grammar_of("Rakefile") == "ruby"
    assert grammar_of("README.md") is None and grammar_of("Makefile") is None
    assert introduces_error("# a\n", "```\n", "README.md") is None


@pytest.mark.parametrize("path", PATHS)
def test_a_revision_that_parses_passes_and_a_breaking_one_is_caught(path: str) -> None:
    text, _, good, bad = LANGUAGES[path]
    grammar = grammar_of(path)
    assert grammar is not None
    assert tree_errors(text, grammar) == 0
    assert compare(text, applied(path, good), grammar).breaks is False
    assert compare(text, applied(path, bad), grammar).breaks is True


def test_python_lost_indentation_is_caught_by_ast_where_tree_sitter_is_lenient() -> None:
    text, _, _, bad = LANGUAGES["app/cache.py"]
    verdict = compare(text, applied("app/cache.py", bad), "python")
    assert (verdict.errors_before, verdict.errors_after) == (0, 0)  # tree-sitter accepts it
    assert (verdict.python_before, verdict.python_after, verdict.breaks) == (True, False, True)


def test_an_error_already_in_the_file_is_not_the_suggestions() -> None:
    text = "function f() {\n  return 1;\n}\nconst broken = (;\n"
    fixed = text.replace("return 1", "return 2")
    assert tree_errors(text, "javascript") > 0
    assert introduces_error(text, fixed, "a.js") is False
    assert introduces_error(text, fixed.replace("return 2;", "return (2;"), "a.js") is True


@pytest.mark.parametrize("path", PATHS)
def test_check_suggestion_against_the_file_and_the_hunk(path: str) -> None:
    text, _, good, bad = LANGUAGES[path]
    unit = unit_of(path)
    for revision, parses in ((good, True), (bad, False)):
        s = map_revision(unit, revision)
        assert s is not None
        check = check_suggestion(unit, s, text)
        assert (check.path, check.against, check.parses) == (path, "file", parses)
    assert check_suggestion(unit, map_revision(unit, good), None).against == "hunk"


def test_the_file_catches_what_the_hunk_alone_cannot() -> None:
    # the Rust revision drops a closing brace: the unit alone is no whole function
    path = "src/total.rs"
    text, _, _, bad = LANGUAGES[path]
    unit = unit_of(path)
    s = map_revision(unit, bad)
    assert s is not None
    assert check_suggestion(unit, s, None).parses is True
    assert check_suggestion(unit, s, text).parses is False


def test_a_file_that_does_not_hold_the_units_lines_is_not_used() -> None:
    path = "app/cache.py"
    _, _, _, bad = LANGUAGES[path]
    unit = unit_of(path)
    s = map_revision(unit, bad)
    assert s is not None
    check = check_suggestion(unit, s, "x = 1\n")
    assert (check.against, check.parses) == ("hunk", False)


def test_a_language_without_a_grammar_is_counted_unchecked() -> None:
    unit = ReviewUnit("docs/guide.md", 1, 2, "@@", "# Guide\nRun it.", added_lines=(2,))
    s = map_revision(unit, "# Guide\nRun it twice.")
    assert s is not None
    assert check_suggestion(unit, s, "# Guide\nRun it.\n").against == "unchecked"


# --- revisions must be code and must change something -------------------------------------

CODE = "def find(conn, name):\n    cur = conn.cursor()\n    return cur.fetchall()"


@pytest.mark.parametrize(
    ("revised", "reason"),
    [
        ("", REVISION_EMPTY),
        ("  \n\t\n", REVISION_EMPTY),
        (CODE, REVISION_UNCHANGED),
        ("def find(conn,  name):\n  cur = conn.cursor()\n\n  return cur.fetchall()  ", None),
        ("Use an ORM instead.", REVISION_NOT_CODE),
        (
            "The original code is not correct. It returns a list of all users with the "
            "specified name.\n\nThe list_users function is not correct.",
            REVISION_NOT_CODE,
        ),
        (CODE.replace("fetchall()", "fetchmany(10)"), None),
        (
            "def find(conn, name):\n    cur = conn.cursor()\n"
            '    cur.execute("SELECT id FROM users WHERE name = ?", (name,))\n'
            "    return cur.fetchall()",
            None,
        ),
    ],
)
def test_revision_problem(revised: str, reason: str | None) -> None:
    got = revision_problem(CODE, revised, "The query is built from user input.")
    if revised.startswith("def find(conn,  name)"):  # whitespace alone: the original again
        reason = REVISION_UNCHANGED
    assert got == reason


def test_a_revision_repeating_the_critique_is_no_code_and_docs_may_be_prose() -> None:
    critique = "Rename the variable to something descriptive, like user_count."
    assert revision_problem("n = len(users)", critique, critique) == REVISION_NOT_CODE
    # a Markdown unit is prose itself: its prose revision is a revision
    doc = "Run the tool with the default settings."
    assert revision_problem(doc, "Run the tool with the settings you need.", "Say more.") is None


def test_code_lines_are_not_taken_for_prose() -> None:
    assert not looks_like_prose("        self.items = {} if items is None else items")
    assert not looks_like_prose("x = a if b else c and d or e")
    assert not looks_like_prose("import os, sys, re, json")
    assert not looks_like_prose('    print("hello world how are you")')
    assert not looks_like_prose("    # keep the items in insertion order for now")
    assert looks_like_prose("Use a parameterised query instead of string concatenation.")


def test_the_critiques_copy_of_the_unit_goes_and_other_code_stays() -> None:
    unit = "def f(a={}):\n    return a"
    revision = "def f(a=None):\n    return a or {}"
    critique = (
        "The default is shared.\n\n```python\ndef f(a=None):\n  return a or {}\n```\n\n"
        "Compare:\n\n```\nf() is f()\n```"
    )
    out = without_code_copies(critique, (unit, revision))
    assert "return a or {}" not in out
    assert out == "The default is shared.\n\nCompare:\n\n```\nf() is f()\n```"
    assert without_code_copies("No code here.", (unit, revision)) == "No code here."


# --- through the pipeline -----------------------------------------------------------------

CRITIQUE = "Accumulating into a narrow counter can overflow on long inputs here."


def scripted(revisions: dict[str, str], critique: str = CRITIQUE):
    """A generate function: ``critique`` for every unit, the unit's revision by a line of it."""

    def generate(prompts: list[str]) -> list[str]:
        out = []
        for p in prompts:
            task = task_of(p)
            if task == "critique":
                out.append(critique)
            elif task == "revise":
                out.append(next(f"```\n{r}\n```" for marker, r in revisions.items() if marker in p))
            else:
                out.append("The counter could overflow.")
        return out

    return generate


def review_of(path: str, revision: str, options: ReviewOptions, read: bool = True):
    text = LANGUAGES[path][0]
    unit = unit_of(path)
    generate = scripted({unit.lines[0]: revision})
    reader = (lambda p: text if p == path else None) if read else None
    return review_plan(Plan((unit,)), generate, Renderer("alpaca"), options, read_file=reader)


@pytest.mark.parametrize("path", PATHS)
def test_a_parsing_suggestion_is_committable(path: str) -> None:
    review = review_of(path, LANGUAGES[path][2], ReviewOptions(revise=True))
    (comment,) = review.comments
    assert comment.suggestion is not None and "```suggestion\n" in comment.body
    stats = review.statistics.to_json()
    assert stats["suggestions"] == {
        "committable": 1,
        "not_parsing": 0,
        "checked_against_file": 1,
        "checked_against_hunk_only": 0,
        "not_checked": 0,
    }


@pytest.mark.parametrize("path", PATHS)
def test_a_breaking_suggestion_is_plain_code_marked_does_not_parse(path: str) -> None:
    bad = LANGUAGES[path][3]
    review = review_of(path, bad, ReviewOptions(revise=True))
    (comment,) = review.comments
    assert comment.suggestion is None
    assert "```suggestion" not in comment.body
    assert "Proposed revision (it does not parse: applied to the file at the head" in comment.body
    assert comment.body.count(bad) == 1
    assert finding_critique(comment.body) == CRITIQUE  # what /revise and /ask read back
    stats = review.statistics
    assert (stats.committable, stats.unparsable, dict(stats.checked)) == (0, 1, {"file": 1})
    assert "Suggestions: 0 committable, 1 does not parse (1 parsed with the file at the head)." in (
        review_markdown(review)
    )


@pytest.mark.parametrize("path", PATHS)
def test_a_breaking_suggestion_is_dropped_when_the_repository_says_drop(path: str) -> None:
    bad = LANGUAGES[path][3]
    review = review_of(path, bad, ReviewOptions(revise=True, unparsable="drop"))
    (comment,) = review.comments
    assert comment.suggestion is None and bad not in comment.body
    assert comment.body == CRITIQUE  # the finding stays, its revision goes
    assert [(d.reason, d.what) for d in review.dropped] == [(SUGGESTION_UNPARSABLE, "revision")]
    assert review.statistics.to_json()["dropped"] == {SUGGESTION_UNPARSABLE: 1}
    assert review.statistics.unparsable == 1


def test_without_the_file_the_hunk_is_parsed_and_the_statistics_say_so() -> None:
    path = "app/cache.py"
    review = review_of(path, LANGUAGES[path][3], ReviewOptions(revise=True), read=False)
    (comment,) = review.comments
    assert comment.suggestion is None
    assert "it does not parse: applied to the changed lines" in comment.body
    assert review.statistics.to_json()["suggestions"]["checked_against_hunk_only"] == 1


def test_each_file_is_read_once_and_only_for_suggestions() -> None:
    reads: list[str] = []
    cache, js = unit_of("app/cache.py"), unit_of("web/total.js")
    texts = {"app/cache.py": LANGUAGES["app/cache.py"][0], "web/total.js": None}
    twin = replace(cache, hunk_header="@@ twin @@")  # a second unit of the same file

    def read(path: str) -> str | None:
        reads.append(path)
        return texts[path]

    generate = scripted(
        {
            cache.lines[0]: LANGUAGES["app/cache.py"][2],
            js.lines[0]: "Use reduce to sum the prices instead.",
        }
    )
    critiques = iter(
        [CRITIQUE, "Mutable defaults are shared by every instance.", "Sum with reduce here."]
    )

    def varied(prompts: list[str]) -> list[str]:
        if task_of(prompts[0]) == "critique":
            return [next(critiques) for _ in prompts]
        return generate(prompts)

    review = review_plan(
        Plan((cache, twin, js)),
        varied,
        Renderer("alpaca"),
        ReviewOptions(revise=True),
        read_file=read,
    )
    assert reads == ["app/cache.py"]  # once for two suggestions; js's revision is prose
    assert review.statistics.committable == 2
    assert review.statistics.to_json()["dropped"] == {REVISION_NOT_CODE: 1}


def test_summary_alone_parses_nothing_and_reads_no_file() -> None:
    def never(path: str) -> str | None:
        raise AssertionError("read_file called")

    unit = unit_of("app/cache.py")
    generate = scripted({unit.lines[0]: LANGUAGES["app/cache.py"][3]})
    review = review_plan(
        Plan((unit,)), generate, Renderer("alpaca"), ReviewOptions(summary=True), read_file=never
    )
    assert review.checks == () and review.summary


# --- the issue's own run: `reviewbot review examples/sample.diff --revise --summary` -------

#: What the demo model (SmolLM2-135M-Instruct) answered on the sample diff before this
#: change: a critique holding a copy of its revision, a revision that does not parse
#: (the docstring and body lost their indentation under ``def __init__``), and, for
#: users.py, a "revision" that is the critique's prose.
DEMO_CACHE_CRITIQUE = (
    "The code is already correct, but it's a bit long and hard to read. Here's a revised "
    "version with a focus on clarity and conciseness:\n\n```python\nimport time\n\nclass "
    'Cache:\n    def __init__(self, ttl, items={}):\n    """\n    Cache a list of items.\n'
    '    """\n    self.ttl = ttl\n    self.items = items\n\n    def get(self, key):\n'
    "        return self.items[key] if key in self.items else None\n\n    def put(self, key, "
    "value):\n        self.items[key] = (value, time.time())\n```\n\nThis version is more "
    "concise and uses the `time.time()` function to get the current time and then returns "
    "a list of items that match the specified key."
)
DEMO_CACHE_REVISION = (
    'import time\n\nclass Cache:\n    def __init__(self, ttl, items={}):\n    """\n    Cache a '
    'list of items.\n    """\n    self.ttl = ttl\n    self.items = items\n\n    def get(self, '
    "key):\n        return self.items[key] if key in self.items else None"
)
DEMO_USERS_CRITIQUE = (
    "The original code is not correct. It returns a list of all users with the specified "
    "name.\n\nThe list_users function is not correct."
)


def demo(prompts: list[str]) -> list[str]:
    out = []
    for p in prompts:
        cache = "class Cache" in p
        task = task_of(p)
        if task == "critique":
            out.append(DEMO_CACHE_CRITIQUE if cache else DEMO_USERS_CRITIQUE)
        elif task == "revise":
            out.append(f"```python\n{DEMO_CACHE_REVISION}\n```" if cache else DEMO_USERS_CRITIQUE)
        else:
            out.append("The constructor shares one dict between all caches.")
    return out


def test_the_sample_run_posts_no_unparsable_suggestion_no_code_twice_no_prose_revision() -> None:
    plan = plan_diff((ROOT / "examples" / "sample.diff").read_text())
    options = ReviewOptions(revise=True, summary=True)
    review = review_plan(plan, demo, Renderer("alpaca"), options)

    cache, users = review.comments
    assert cache.suggestion is None and "```suggestion" not in cache.body
    assert "Proposed revision (it does not parse: applied to the changed lines" in cache.body
    assert cache.body.count("Cache a list of items.") == 1  # the code, once
    assert cache.body.startswith("The code is already correct")
    assert "This version is more concise" in cache.body
    assert users.body == DEMO_USERS_CRITIQUE  # no "Proposed revision" of prose
    assert review.summary is not None and "app/users.py" not in review.summary
    doc = json.loads(review_json(review))
    assert doc["statistics"] == {
        "units": 2,
        "findings": 2,
        "comments": 2,
        "suggestions": {
            "committable": 0,
            "not_parsing": 1,
            "checked_against_file": 0,
            "checked_against_hunk_only": 1,
            "not_checked": 0,
        },
        "dropped": {REVISION_NOT_CODE: 1},
    }
    assert review_markdown(review).split("\n")[2] == (
        "Reviewed 2 unit(s): 2 finding(s), 2 comment(s). Suggestions: 0 committable, "
        "1 does not parse (1 parsed with the changed lines only). "
        "Not posted: revision not code (1)."
    )


# --- fingerprints name the code ------------------------------------------------------------

GENERIC = "Add a docstring explaining what this function does and returns."


def finding_at(path: str, start: int, code: str) -> Finding:
    n = len(code.split("\n"))
    unit = ReviewUnit(path, start, start + n - 1, "@@", code, added_lines=(start, start + n - 1))
    return Finding(unit, GENERIC)


def test_the_same_critique_on_a_new_hunk_of_the_same_file_is_a_new_finding() -> None:
    first = to_comment(finding_at("app/util.py", 3, "def a():\n    return 1"), revise=False)
    other = to_comment(finding_at("app/util.py", 40, "def b(x):\n    return x * 2"), False)
    assert first.fingerprint != other.fingerprint


def test_the_same_finding_on_the_same_code_moved_by_a_rebase_is_recognised() -> None:
    code = "def a():\n    return 1"
    before = to_comment(finding_at("app/util.py", 3, code), revise=False)
    moved = to_comment(finding_at("app/util.py", 57, code), revise=False)
    respaced = to_comment(finding_at("app/util.py", 9, "def a():\n\treturn  1"), revise=False)
    assert (before.line, moved.line) == (4, 58)
    assert before.fingerprint == moved.fingerprint == respaced.fingerprint


def test_a_fingerprint_hashes_the_anchored_lines_not_the_whole_unit() -> None:
    unit = ReviewUnit("a.py", 10, 13, "@@", "x = 1\ny = 2\nz = 3\nw = 4", added_lines=(11, 12))
    assert anchored_code(unit, 11, 12) == "y = 2\nz = 3"
    assert fingerprint("a.py", GENERIC, None, "y = 2") != fingerprint("a.py", GENERIC, None)


# --- the GitHub review's counts line -------------------------------------------------------


def test_the_review_body_counts_what_was_not_posted_and_the_suggestions_checks() -> None:
    unit = unit_of("app/cache.py")
    finding = attach_revision(
        Finding(unit, CRITIQUE),
        f"```\n{LANGUAGES['app/cache.py'][3]}\n```",
        ReviewOptions(revise=True),
        lambda p: LANGUAGES["app/cache.py"][0],
    )
    review = review_plan(Plan((unit,)), scripted({}, "Looks good."), Renderer("alpaca"))
    review = replace(
        review,
        comments=(to_comment(finding, revise=True),),
        checks=(finding.syntax,),
    )
    payload = build_review_payload(review, "auto", SHA, set(), 5)
    assert payload is not None
    assert (
        "1 new finding (1 inline) in 1 reviewed unit of the diff. Suggestions: 0 committable, "
        "1 does not parse (1 parsed with the file at the head). Not posted: no finding (1).\n"
    ) in payload.body
    assert "```suggestion" not in payload.comments[0]["body"]


# --- /revise in a thread follows the same rules ---------------------------------------------


def thread_unit_of(path: str) -> ReviewUnit:
    u = unit_of(path)
    return ReviewUnit(path, u.start_line, u.end_line, "", u.original)


@pytest.mark.parametrize("path", PATHS)
def test_a_thread_revision_that_does_not_parse_is_never_a_suggestion(path: str) -> None:
    text, _, good, bad = LANGUAGES[path]
    unit = thread_unit_of(path)
    ok = revision_reply(unit, f"```\n{good}\n```", 0.3, file_text=text)
    assert ok.startswith("Suggested revision of ") and "```suggestion\n" in ok
    reply = revision_reply(unit, f"```\n{bad}\n```", 0.3, file_text=text)
    assert "```suggestion" not in reply
    assert reply.startswith("Proposed revision (it does not parse: applied to the file at the head")
    assert bad in reply
    dropped = revision_reply(unit, f"```\n{bad}\n```", 0.3, file_text=text, unparsable="drop")
    assert "does not parse" in dropped and bad not in dropped and "```" not in dropped


def test_a_thread_revision_in_prose_or_unchanged_is_no_suggestion() -> None:
    unit = thread_unit_of("app/cache.py")
    prose = revision_reply(unit, "You should default to None instead.", 0.3, critique="x")
    assert prose.startswith("The model answered in prose")
    same = revision_reply(unit, unit.original.replace("    ", "  "), 0.3)
    assert same == "The revision leaves these lines unchanged: nothing to suggest."
