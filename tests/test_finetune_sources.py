"""Data sources → examples: every format, format detection, hunks, clear errors.

tests/data/review-comments.dev.jsonl is crc-py-dataset's dev set (501 real review
comments, MIT, tests/data/LICENSE.crc-py-dataset); review-comments.sample.jsonl holds
eight of its lines.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from conftest import DATA

from finetune.comments import apply_replacement, infer_start, split_suggestion, strip_markers
from finetune.examples import Example, ExampleError, read_examples, write_examples
from finetune.sources import (
    SourceError,
    detect_format,
    html_segments,
    load_examples,
    parse_records,
    read_hf_dataset,
    read_source,
)
from reviewbot.review.hunks import HunkError, parse_hunk
from reviewbot.review.prompts import Renderer

SAMPLE = Path(__file__).parent / "data" / "review-comments.sample.jsonl"
DEV_SET = DATA / "review-comments.dev.jsonl"


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- hunks


HUNK = """@@ -10,5 +10,6 @@ def load(path):
 def load(path):
-    f = open(path)
+    with open(path) as f:
+        data = f.read()
     return data
 # end"""


def test_parse_hunk_numbers_the_new_side() -> None:
    h = parse_hunk(HUNK)
    assert h.header == "@@ -10,5 +10,6 @@ def load(path):"
    assert h.new_lines == [
        "def load(path):",
        "    with open(path) as f:",
        "        data = f.read()",
        "    return data",
        "# end",
    ]
    assert h.new_range == (10, 14)
    assert h.added == (11, 12)
    assert h.side_of(12) == "RIGHT" and h.side_of(99) is None
    unit = h.unit("a.py")
    assert (unit.start_line, unit.end_line, unit.added_lines) == (10, 14, (11, 12))
    assert "+" not in unit.original and unit.original.startswith("def load(path):\n")


def test_hunk_ending_on_a_removed_line_was_commented_on_the_left() -> None:
    h = parse_hunk("@@ -5,3 +5,2 @@\n a\n b\n-c")
    assert h.side_of(7) == "LEFT" and h.new_range == (5, 6)


def test_parse_hunk_repairs_dataset_quirks_and_rejects_broken_hunks() -> None:
    assert parse_hunk("@@ @@ -1,2 +1,2 @@ x\n a\n+b").new_range == (1, 2)  # doubled marker
    assert parse_hunk("@@ -1,3 +1,3 @@\n a\n\n+b\n…").new_lines == ["a", "", "b"]
    with pytest.raises(HunkError, match="header"):
        parse_hunk("def f(): pass")
    with pytest.raises(HunkError, match="no lines"):
        parse_hunk("@@ -1,2 +1,2 @@ x - a + b")  # newlines lost
    with pytest.raises(HunkError, match="line 3 has no diff marker"):
        parse_hunk("@@ -1,2 +1,2 @@\n a\nb")


def test_split_suggestion_and_replace_lines() -> None:
    parts = split_suggestion("Use a context manager:\r\n```suggestion\r\n    with x:\r\n```\r\nok?")
    assert parts.text == "Use a context manager:\n\nok?"
    assert parts.suggestion == "    with x:"
    assert split_suggestion("plain").suggestion is None
    assert split_suggestion("Drop it\n```suggestion\n```").suggestion == ""
    h = parse_hunk(HUNK)
    assert apply_replacement(h, 13, 13, "    return data  # ok").split("\n")[3] == (
        "    return data  # ok"
    )
    with pytest.raises(HunkError):
        apply_replacement(h, 9, 10, "x")


def test_infer_start_prefers_one_line_unless_a_range_fits_clearly_better() -> None:
    lines = ["a = 1", "b = 2", "c = 3"]
    assert infer_start(lines, 1, 3, "c = 4") == 3
    assert infer_start(lines, 1, 3, "b = 20\nc = 30") == 2


def test_strip_markers() -> None:
    assert strip_markers(" a\n+b\n-c\n d") == "a\nb\nd"
    assert strip_markers("x = 1\ny = 2") == "x = 1\ny = 2"  # no markers: unchanged


# --------------------------------------------------------------------------- review comments


def new_side(record: dict) -> str:
    """The new side of a record's hunk, computed naively (lines not removed, marker cut)."""
    text = record.get("enriched") or ""
    hunk = text.split("\nCode: ", 1)[1].split("\nComment: ", 1)[0] if text else record["code"]
    lines = hunk.replace("\r\n", "\n").split("\n")[1:]
    return "\n".join(line[1:] for line in lines if not line.startswith("-"))


def test_review_comment_records_from_the_dev_set_sample() -> None:
    loaded = read_source(SAMPLE)
    records = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    assert loaded.fmt == "review-comment" and loaded.records == 8
    critiques = [e for e in loaded.examples if e.task == "critique"]
    revisions = [e for e in loaded.examples if e.task == "revise"]
    assert len(critiques) == 8 and len(revisions) == 2
    first = critiques[0]  # django/views/i18n.py, a suggestion on a removed (LEFT) line
    assert first.target.startswith(
        'Elsewhere (other than the other place in this PR), this is just "the'
    )
    assert "```suggestion" not in first.target
    assert first.fields["ORIGINAL"] == '\ndef set_language(request):\n    """'
    assert first.provenance["side"] == "LEFT"
    assert first.provenance["repo"] == "django/django" and first.provenance["pr"] == 19917
    assert first.provenance["path"] == "django/views/i18n.py"
    assert first.provenance["line_number"] == 32 and first.provenance["line"] == 1
    assert first.provenance["category"] == "refactoring"
    assert first.provenance["subcategory"] == "solution approach"
    assert first.provenance["comment_id"] == 2402243330
    for ex in critiques:  # the new-side code, never diff text
        assert not ex.fields["ORIGINAL"].startswith("@@")
        assert ex.fields["ORIGINAL"] == new_side(records[ex.provenance["line"] - 1])


def test_a_suggestion_becomes_the_revision_of_the_new_side_code() -> None:
    loaded = read_source(SAMPLE)
    redundant = next(e for e in loaded.examples if e.task == "revise" and e.provenance["line"] == 4)
    # superset: "This line is redundant" + an empty suggestion on line 94 (deletes it)
    assert redundant.fields["CRITIQUE"] == "This line is redundant"
    original = redundant.fields["ORIGINAL"].split("\n")
    assert original[-1].startswith("    # Removed support for deprecated")
    assert redundant.target.split("\n") == original[:-1]
    assert redundant.provenance["suggestion_lines"] == [94, 94]
    assert redundant.provenance["unit"] == {
        "start_line": 90,
        "end_line": 94,
        "added_lines": [93, 94],
    }
    docs = next(e for e in loaded.examples if e.task == "revise" and e.provenance["line"] == 5)
    assert "Note that axis `0` (the batch axis) cannot be included." in docs.target
    assert "In which `0` should not be included." in docs.fields["ORIGINAL"]


def test_review_comment_without_enriched_uses_the_comment_field(tmp_path: Path) -> None:
    record = json.loads(SAMPLE.read_text().splitlines()[7])
    assert "enriched" not in record
    [ex] = load_examples(write_jsonl(tmp_path / "one.jsonl", [record]))
    assert ex.target == record["comment"]
    assert ex.fields["ORIGINAL"] == "    f = open(path)\n    data = f.read()\n    f.close()"


def test_harvest_style_record_with_start_line_uses_it(tmp_path: Path) -> None:
    record = {
        "code": HUNK.rsplit("\n", 2)[0],  # ends at the commented line 12, like diff_hunk
        "comment": "Read it in one go:\n```suggestion\n"
        "    with open(path) as f:\n        return f.read()\n```",
        "line_number": 12,
        "start_line": 11,
        "side": "RIGHT",
        "file_path": "a.py",
        "repo": "octo/demo",
        "pr_number": 3,
        "comment_id": 77,
        "author": "alice",
        "url": "https://github.com/octo/demo/pull/3#discussion_r77",
    }
    examples = load_examples(write_jsonl(tmp_path / "h.jsonl", [record]))
    revise = next(e for e in examples if e.task == "revise")
    assert revise.target == "def load(path):\n    with open(path) as f:\n        return f.read()"
    assert revise.provenance["suggestion_range"] == "given"
    assert revise.provenance["author"] == "alice" and revise.provenance["repo"] == "octo/demo"


def test_the_whole_review_comment_dev_set_loads() -> None:
    loaded = read_source(DEV_SET)
    assert loaded.records == 501
    assert len(loaded.examples) > 500
    assert sum(loaded.skipped.values()) < 20
    for ex in loaded.examples:
        assert ex.source == "review-comment" and ex.fields["ORIGINAL"].strip()


# --------------------------------------------------------------------------- other formats


def test_critique_revision_record_yields_three_examples(tmp_path: Path) -> None:
    records = [
        {
            "original": "def add(a, b):\n    return a+b",
            "critique": "Add spaces around the operator.",
            "revised": "def add(a, b):\n    return a + b",
            "summary": "Operator spacing.",
        },
        {"original": "x=1", "critique": "Spaces.", "revised": "x = 1"},
        {"original": "y=2", "critique": "Spaces please."},
    ]
    examples = load_examples(write_jsonl(tmp_path / "cr.jsonl", records))
    assert [e.task for e in examples] == [
        "critique",
        "revise",
        "summarise",
        "critique",
        "revise",
        "critique",
    ]
    summarise = examples[2]
    assert summarise.fields == {
        "ORIGINAL": "def add(a, b):\n    return a+b",
        "REVISED": "def add(a, b):\n    return a + b",
    }
    assert summarise.target == "Operator spacing."
    assert examples[1].fields["CRITIQUE"] == "Add spaces around the operator."
    assert examples[3].provenance == {"file": str(tmp_path / "cr.jsonl"), "line": 2}
    prompt = examples[1].prompt(Renderer("alpaca"))
    assert "COMMENT:\nAdd spaces around the operator." in prompt
    assert prompt.endswith("### Response:\n\n")


def test_codereviewer_comment_generation_and_refinement_records(tmp_path: Path) -> None:
    msg = {
        "oldf": "import os\n\ndef f():\n    pass\n",
        "patch": "@@ -1,4 +1,4 @@\n import os\n \n-def f():\n+def f(x):\n     pass",
        "msg": "Document the new parameter.",
        "id": 7,
        "y": 1,
    }
    silent = {**msg, "msg": "", "y": 0}
    ref = {
        "old_hunk": "@@ -1,2 +1,2 @@\n-a = 1\n+a = 2",
        "oldf": "a = 1\n",
        "hunk": "@@ -1 +1 @@\n-a = 2\n+A = 2",
        "comment": "Constants are upper case.",
        "old": " a = 2\n+b = a",
        "new": " A = 2\n+b = A",
        "lang": "py",
        "repo": "octo/demo",
        "ids": [1, 2, 3],
    }
    examples = load_examples(write_jsonl(tmp_path / "crv.jsonl", [msg, silent, ref]))
    assert [e.task for e in examples] == ["critique", "critique", "revise"]
    assert examples[0].fields["ORIGINAL"] == "import os\n\ndef f(x):\n    pass"
    assert examples[0].target == "Document the new parameter."
    assert examples[1].fields["ORIGINAL"] == "a = 2\nb = a"
    assert examples[2].target == "A = 2\nb = A"
    assert examples[2].provenance["lang"] == "py" and examples[2].provenance["repo"] == "octo/demo"


SE_QUESTION = (
    "<p>My loop:</p>\n<pre><code>for i in range(len(xs)):\n    if xs[i] &lt; 0:\n"
    "        print(xs[i])\n</code></pre>\n<p>Is it OK?</p>"
)
SE_ANSWER = (
    "<p>Iterate over the items, not the indices; see <code>enumerate</code>.</p>\n"
    "<pre><code>i = 0\n</code></pre>\n<ul><li>Avoid <code>len</code> here.</li></ul>\n"
    "<pre><code>for x in xs:\n    if x &lt; 0:\n        print(x)\n</code></pre>"
)


def se_record() -> dict:
    """A hand-made row with the schema of Dahoas/code-review-instruct-critique-revision-python."""
    return {
        "body": SE_QUESTION,
        "comments": [],
        "answer": {
            "body": SE_ANSWER,
            "comments": [],
            "meta_data": {"Id": "202", "ParentId": "101", "Score": "3", "CommentCount": "0"},
        },
        "meta_data": {"Id": "101", "Title": "Print negatives", "Tags": "<python>"},
    }


def test_html_segments() -> None:
    assert html_segments(SE_QUESTION) == [
        ("text", "My loop:"),
        ("code", "for i in range(len(xs)):\n    if xs[i] < 0:\n        print(xs[i])"),
        ("text", "Is it OK?"),
    ]


def test_stackexchange_question_and_answer_become_critique_and_revision() -> None:
    loaded = parse_records([("row 0", {"row": 0}, se_record())], "auto", "hand-made")
    assert loaded.fmt == "stackexchange"
    critique, revise = loaded.examples
    assert critique.fields["ORIGINAL"] == (
        "for i in range(len(xs)):\n    if xs[i] < 0:\n        print(xs[i])"
    )
    assert critique.target.startswith("Iterate over the items, not the indices; see `enumerate`.")
    assert "```\ni = 0\n```" in critique.target and "- Avoid `len` here." in critique.target
    assert "print(x)" not in critique.target
    assert revise.target == "for x in xs:\n    if x < 0:\n        print(x)"
    assert revise.provenance == {
        "row": 0,
        "question_id": "101",
        "answer_id": "202",
        "title": "Print negatives",
    }


def test_hf_dataset_without_datasets_installed_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets → ImportError
    with pytest.raises(SourceError, match=r"needs the `datasets` package.*reviewbot\[finetune\]"):
        read_hf_dataset()
    with pytest.raises(SourceError, match="datasets"):
        load_examples("hf:Dahoas/code-review-instruct-critique-revision-python")


def test_hf_dataset_from_a_local_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    data = tmp_path / "se"
    data.mkdir()
    write_jsonl(data / "train.jsonl", [se_record()])
    examples = load_examples(f"hf:{data}:train")
    assert [e.task for e in examples] == ["critique", "revise"]
    assert examples[0].provenance["dataset"] == str(data)


def test_examples_jsonl_round_trip(tmp_path: Path) -> None:
    examples = load_examples(SAMPLE)
    path = tmp_path / "examples.jsonl"
    write_examples(examples, path)
    assert load_examples(path) == examples == list(read_examples(path))
    assert detect_format(examples[0].to_json()) == "examples"


# --------------------------------------------------------------------------- errors


def test_errors_name_the_file_and_line(tmp_path: Path) -> None:
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"original": "x", "critique": "y"}\n{oops\n')
    with pytest.raises(SourceError, match=rf"{bad_json}:2: not valid JSON"):
        load_examples(bad_json)
    unknown = write_jsonl(tmp_path / "unknown.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(
        SourceError, match=rf"{unknown}:1: unknown record format \(fields: answer, question\)"
    ):
        load_examples(unknown)
    mixed = write_jsonl(
        tmp_path / "mixed.jsonl", [{"original": "x", "critique": "y"}, {"code": "z"}]
    )
    with pytest.raises(SourceError, match=rf"{mixed}:2: missing field 'original'"):
        load_examples(mixed)
    typed = write_jsonl(tmp_path / "typed.jsonl", [{"original": ["x"], "critique": "y"}])
    with pytest.raises(
        SourceError, match=rf"{typed}:1: field 'original' must be a string, not list"
    ):
        load_examples(typed)
    bad_example = write_jsonl(
        tmp_path / "ex.jsonl", [{"task": "explain", "fields": {}, "target": "t"}]
    )
    with pytest.raises(SourceError, match=rf"{bad_example}:1: unknown task 'explain'"):
        load_examples(bad_example)
    not_object = tmp_path / "list.jsonl"
    not_object.write_text("[1, 2]\n")
    with pytest.raises(SourceError, match=rf"{not_object}:1: expected a JSON object, got list"):
        load_examples(not_object)


def test_empty_missing_and_unusable_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(SourceError, match="no records"):
        load_examples(empty)
    with pytest.raises(SourceError, match="no such file"):
        load_examples(tmp_path / "absent.jsonl")
    unusable = write_jsonl(
        tmp_path / "u.jsonl", [{"code": "@@ -1 +1 @@ lost - a + b", "comment": "x"}]
    )
    with pytest.raises(SourceError, match=r"no usable examples .*1× the hunk has no lines"):
        load_examples(unusable)
    with pytest.raises(SourceError, match="unknown data format 'csv'"):
        load_examples(SAMPLE, fmt="csv")


def test_forced_format_must_fit_every_record() -> None:
    with pytest.raises(
        SourceError, match=r":1: missing field 'original' \(in a critique-revision record\)"
    ):
        load_examples(SAMPLE, fmt="critique-revision")


def test_example_records_are_valid_examples() -> None:
    for ex in load_examples(SAMPLE):
        assert isinstance(ex, Example)
        assert Example.from_json(ex.to_json()) == ex


@pytest.mark.parametrize(
    "comment",
    ["```suggestion\n" * 20_000, "x\n" + "```suggestion\nline\n" * 20_000 + "```"],
    ids=["unclosed", "one-close-at-the-end"],
)
def test_splitting_a_hostile_comment_takes_linear_time(comment: str) -> None:
    """Harvested comments are anyone's text: the old regex took minutes on these."""
    started = time.perf_counter()
    parts = split_suggestion(comment)
    assert time.perf_counter() - started < 2.0
    assert (parts.suggestion is None) == comment.startswith("```")


# --------------------------------------------------------------------------- the layout

#: A review comment on a complete hunk of app/store.py, with a suggestion on line 11.
LAYOUT_HUNK = (
    "@@ -10,3 +10,4 @@ class Store:\n def put(self, key, value):\n"
    "-    self.items[key] = value\n+    self.items[key] = value\n+    self.log.append(key)\n"
    "     return value"
)
LAYOUT_RECORD = {
    "code": LAYOUT_HUNK,
    "comment": "Appending every key grows without bound.\n```suggestion\n"
    "    self.log = self.log[-100:] + [key]\n```",
    "line_number": 12,
    "file_path": "app/store.py",
}


def test_training_and_serving_render_the_same_original_for_the_same_hunk(tmp_path: Path) -> None:
    from reviewbot.review.diffplan import plan_diff
    from reviewbot.review.findings import Finding
    from reviewbot.review.pipeline import critique_prompts, revise_prompts

    critique, revise = load_examples(write_jsonl(tmp_path / "rc.jsonl", [LAYOUT_RECORD]))
    diff = "diff --git a/app/store.py b/app/store.py\n--- a/app/store.py\n+++ b/app/store.py\n"
    (unit,) = plan_diff(diff + LAYOUT_HUNK + "\n").units  # the unit serving reviews
    renderer = Renderer("alpaca")
    assert critique.prompt(renderer) == critique_prompts([unit], renderer)[0]
    served = revise_prompts([Finding(unit, revise.fields["CRITIQUE"])], renderer)[0]
    assert revise.prompt(renderer) == served
    assert critique.original() == (
        "FILE: app/store.py (Python)\n"
        'CHANGED: lines starting with "+"\n'
        " def put(self, key, value):\n"
        "+    self.items[key] = value\n"
        "+    self.log.append(key)\n"
        "     return value"
    )
    assert revise.original() == "FILE: app/store.py (Python)\n" + unit.original
    # the fields keep the plain code (evaluation maps revisions onto it)
    assert critique.fields["ORIGINAL"] == unit.original
    # written and read back, an example renders the same prompt
    write_examples([critique, revise], tmp_path / "ex.jsonl")
    again = list(read_examples(tmp_path / "ex.jsonl"))
    assert [e.prompt(renderer) for e in again] == [critique.prompt(renderer), served]


def test_codereviewer_examples_carry_the_language_and_the_changed_lines(tmp_path: Path) -> None:
    record = {
        "patch": "@@ -1,4 +1,4 @@\n import os\n \n-def f():\n+def f(x):\n     pass",
        "msg": "Document the new parameter.",
        "lang": "py",
    }
    (example,) = load_examples(write_jsonl(tmp_path / "cr.jsonl", [record]))
    assert example.original() == (
        'LANGUAGE: Python\nCHANGED: lines starting with "+"\n import os\n \n+def f(x):\n     pass'
    )
    refinement = {
        "old": " a = 2\n+b = a",
        "new": " A = 2\n+b = A",
        "comment": "Caps.",
        "lang": "go",
    }
    critique, revise = load_examples(write_jsonl(tmp_path / "ref.jsonl", [refinement]))
    assert critique.original() == 'LANGUAGE: Go\nCHANGED: lines starting with "+"\n a = 2\n+b = a'
    assert revise.original() == "LANGUAGE: Go\na = 2\nb = a"


def test_examples_without_context_render_the_code_alone_and_bad_contexts_are_errors() -> None:
    plain = Example("critique", {"ORIGINAL": "x = 1"}, "Name it.")
    assert plain.original() == "x = 1"
    assert plain.prompt(Renderer("alpaca")) == Renderer("alpaca").task("critique", ORIGINAL="x = 1")
    # an older examples file (no context) reads as it always did, with the same key
    assert (
        Example.from_json(
            {"task": "critique", "fields": {"ORIGINAL": "x = 1"}, "target": "Name it."}
        ).key
        == plain.key
    )
    with_context = Example("critique", {"ORIGINAL": "x = 1"}, "Name it.", context={"path": "a.py"})
    assert with_context.key != plain.key
    for bad, message in (
        ({"path": 3}, "context path must be a string"),
        ({"start_line": 0}, "start_line must be a positive integer"),
        ({"changed": ["1"]}, "changed must be a list of line numbers"),
        ({"side": "UP"}, "side must be RIGHT or LEFT"),
        ({"lines": 1}, "unknown context key"),
        (["path"], "context must be an object"),
    ):
        with pytest.raises(ExampleError, match=message):
            Example.from_json(
                {"task": "critique", "fields": {"ORIGINAL": "x"}, "target": "t", "context": bad}
            )
