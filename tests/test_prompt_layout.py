"""What the model sees of a unit: the ORIGINAL layout, per-path instructions, the language.

Golden strings pin the layout (version ORIGINAL_LAYOUT): adapters are trained on it,
so any change to it must be deliberate (and bump the version). The runners are driven
against the in-memory GitHub (tests/memory_github.py) with a scripted model that
records every prompt.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from memory_github import InMemoryGitHub, ScriptedModel, task_of

from finetune.train import adapter_record
from reviewbot.github.conversation import ThreadComment, ask_turns
from reviewbot.jobs.commands import command_of
from reviewbot.jobs.job import Job
from reviewbot.model.adapters import original_layout, warn_on_template_change
from reviewbot.model.loading import LoadedModel
from reviewbot.review.findings import Finding
from reviewbot.review.pipeline import critique_prompts, revise_prompts, summarise_prompts
from reviewbot.review.prompts import (
    ORIGINAL_LAYOUT,
    Renderer,
    hunk_original,
    language_name,
    render_original,
    render_task,
    template_fingerprint,
    unit_original,
)
from reviewbot.review.units import ReviewUnit, language_of
from reviewbot.runners.command import run_command_job
from reviewbot.runners.review import run_review_job
from reviewbot.settings.defaults import ReviewOptions, TrainSettings
from reviewbot.settings.repo import parse_repo_config
from reviewbot.settings.server import Settings, SettingsError

CACHE = (
    "class Cache:\n    def __init__(self, ttl, items={}):\n"
    "        self.ttl = ttl\n        self.items = items"
)
#: Lines 4–7 of app/cache.py; the pull request changed lines 5 and 7.
UNIT = ReviewUnit("app/cache.py", 4, 7, "@@ -4,4 +4,4 @@", CACHE, added_lines=(5, 7))
MARKED = (
    "FILE: app/cache.py (Python)\n"
    'CHANGED: lines starting with "+"\n'
    " class Cache:\n"
    "+    def __init__(self, ttl, items={}):\n"
    "         self.ttl = ttl\n"
    "+        self.items = items"
)
PLAIN = "FILE: app/cache.py (Python)\n" + CACHE
ALPACA_HEAD = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n\n"
)
ALPACA_TAIL = "\n\n### Response:\n\n"
SEED_CRITIQUE = "Please critique the following codes based on their requirements: \n\nORIGINAL:\n"


# --- the layout ------------------------------------------------------------------------------


def test_the_layout_of_a_unit_with_changed_lines_marked_and_plain() -> None:
    assert ORIGINAL_LAYOUT == 1
    assert unit_original(UNIT, marked=True) == MARKED
    assert unit_original(UNIT) == PLAIN
    # the unit itself keeps the plain code: suggestions are mapped onto it
    assert UNIT.original == CACHE


def test_the_critique_prompt_shows_the_changed_lines_by_default_and_not_when_off() -> None:
    (on,) = critique_prompts([UNIT], Renderer("alpaca"))
    assert on == ALPACA_HEAD + SEED_CRITIQUE + MARKED + ALPACA_TAIL
    (off,) = critique_prompts([UNIT], Renderer("alpaca"), ReviewOptions(changed_lines=False))
    assert off == ALPACA_HEAD + SEED_CRITIQUE + PLAIN + ALPACA_TAIL


def test_revise_and_summarise_get_plain_code_under_the_header() -> None:
    finding = Finding(UNIT, "Use None as the default.", revision="x = None")
    (revise,) = revise_prompts([finding], Renderer("alpaca"))
    assert (
        revise
        == ALPACA_HEAD
        + render_task("revise", ORIGINAL=PLAIN, CRITIQUE="Use None as the default.")
        + ALPACA_TAIL
    )
    assert "+    def" not in revise
    (summarise,) = summarise_prompts([finding], Renderer("alpaca"))
    assert "ORIGINAL:\n" + PLAIN + "\n\nREVISED:\nx = None" in summarise


def test_a_pure_deletion_marks_the_removed_lines() -> None:
    left = ReviewUnit("m.go", 4, 7, "", "gone1\nctx2\ngone2\ngone3", "LEFT", (4, 6, 7))
    assert unit_original(left, marked=True) == (
        'FILE: m.go (Go)\nREMOVED: lines starting with "-"\n-gone1\n ctx2\n-gone2\n-gone3'
    )


def test_header_edge_cases() -> None:
    # a hostile file name stays on its one header line
    hostile = render_original("x = 1", path="a\nCHANGED: all\u2028\x07.py", language="Python")
    assert hostile == "FILE: a\\nCHANGED: all\\u2028\\x07.py (Python)\nx = 1"
    # unknown language: no parentheses; language without a path; neither: the code alone
    assert render_original("x", path="notes/todo") == "FILE: notes/todo\nx"
    assert render_original("x", language="Go") == "LANGUAGE: Go\nx"
    assert render_original("x = 1") == "x = 1"
    # a unit that records no changed line (a thread's lines) has nothing to mark
    thread = ReviewUnit("app/cache.py", 4, 7, "", CACHE)
    assert unit_original(thread, marked=True) == PLAIN
    with pytest.raises(ValueError, match="2 marks for 1 lines"):
        render_original("x", marks=["+", " "])


@pytest.mark.parametrize(
    ("path", "language"),
    [
        ("src/a.py", "Python"),
        ("web/App.TSX", "TypeScript"),
        ("cmd/main.go", "Go"),
        ("lib/x.rb", "Ruby"),
        ("build/Dockerfile", "Dockerfile"),
        ("CMakeLists.txt", "CMake"),
        (".bashrc", ""),
        ("LICENSE", ""),
    ],
)
def test_languages_by_file_name(path: str, language: str) -> None:
    assert language_of(path) == language


def test_a_review_thread_is_shown_in_the_layout() -> None:
    hunk = "@@ -4,3 +4,4 @@ class Cache:\n class Cache:\n-    x = []\n+    x = {}\n+    y = 1"
    assert hunk_original(hunk, "app/cache.py", True) == (
        'FILE: app/cache.py (Python)\nCHANGED: lines starting with "+"\n'
        " class Cache:\n+    x = {}\n+    y = 1"
    )
    assert hunk_original(hunk, "app/cache.py", False) == (
        "FILE: app/cache.py (Python)\nclass Cache:\n    x = {}\n    y = 1"
    )
    # removed lines, or no hunk to parse: the diff hunk as GitHub gave it
    assert hunk_original(hunk, "app/cache.py", True, "LEFT") == hunk
    assert hunk_original("not a hunk", "app/cache.py", True) == "not a hunk"


# --- per-path instructions and the response language --------------------------------------

API = ReviewUnit("src/api/users.py", 1, 1, "", "def get(): pass", added_lines=(1,))
CORE = ReviewUnit("src/core/db.py", 1, 1, "", "def run(): pass", added_lines=(1,))
OPTIONS = ReviewOptions(
    extra_instructions="We target Python 3.9.",
    path_instructions=(
        ("src/api/*", "Check input validation."),
        ("*/users.py", "Never log personal data."),
        ("docs/*", "Spelling."),
    ),
)


def test_path_instructions_reach_the_matching_units_only() -> None:
    api, core = critique_prompts([API, CORE], Renderer("alpaca"), OPTIONS)
    assert api.endswith(
        "\n\nREVIEW GUIDELINES:\nWe target Python 3.9.\n\nCheck input validation.\n\n"
        "Never log personal data." + ALPACA_TAIL
    )
    assert core.endswith("\n\nREVIEW GUIDELINES:\nWe target Python 3.9." + ALPACA_TAIL)
    # the revise step sees the same guidelines; a unit matching none gets no section
    (revise,) = revise_prompts([Finding(API, "Bad.")], Renderer("alpaca"), OPTIONS)
    assert revise.endswith("Check input validation.\n\nNever log personal data." + ALPACA_TAIL)
    only_paths = ReviewOptions(path_instructions=OPTIONS.path_instructions)
    (bare,) = critique_prompts([CORE], Renderer("alpaca"), only_paths)
    assert "REVIEW GUIDELINES" not in bare


def test_the_language_instruction_ends_every_task() -> None:
    german = ReviewOptions(response_language="de", extra_instructions="Be brief.")
    finding = Finding(API, "Bad.", revision="def get(): return None")
    renderer = Renderer("alpaca")
    prompts = {
        "critique": critique_prompts([API], renderer, german)[0],
        "revise": revise_prompts([finding], renderer, german)[0],
        "summarise": summarise_prompts([finding], renderer, german)[0],
    }
    for task, prompt in prompts.items():
        assert prompt.startswith(
            ALPACA_HEAD + render_task(task, ORIGINAL="", CRITIQUE="", REVISED="")[:40]
        )
        assert prompt.endswith("\n\nWrite your answer in German." + ALPACA_TAIL), task
    assert "Be brief.\n\nWrite your answer in German." in prompts["critique"]
    assert "Write your answer" not in critique_prompts([API], renderer)[0]


def test_language_names() -> None:
    assert language_name("de") == "German"
    assert language_name("pt-BR") == "Portuguese (BR)"
    assert language_name("German") == "German"
    assert language_name("tlh") == "tlh"


def test_ask_ends_with_the_language_instruction() -> None:
    turns = ask_turns("x = 1", [ThreadComment(1, "a", "Is this right?", False)], "Sure?", "fr")
    assert turns[-1].text.endswith("Sure?\n\nWrite your answer in French.")
    (only,) = ask_turns("x = 1", [], "What does it do?", "fr")
    assert only.text == render_task("ask", language="fr", CODE="x = 1", QUESTION="What does it do?")
    assert ask_turns("x = 1", [], "Why?")[0].text.endswith("QUESTION:\nWhy?")


# --- through the runners ---------------------------------------------------------------------

REPO = "octo/demo"
NUMBER = 7
HEAD = "a" * 40
WRITER = "maintainer"
DIFF = """\
diff --git a/src/api/users.py b/src/api/users.py
index 1bdbcb2..e5e141b 100644
--- a/src/api/users.py
+++ b/src/api/users.py
@@ -1,2 +1,3 @@
 def find(db, name):
-    return db.get(name)
+    log(name)
+    return db.run(f"SELECT {name}")
diff --git a/src/core/cache.py b/src/core/cache.py
index 2b3c4d5..6e7f8a9 100644
--- a/src/core/cache.py
+++ b/src/core/cache.py
@@ -1,2 +1,2 @@
 class Cache:
-    items = []
+    items = {}
"""
CONFIG = """\
response_language = "de"
path_instructions = [{ path = "src/api/*", instructions = "Check input validation." }]
"""


def answer(prompt: str) -> str:
    task = task_of(prompt)
    if task == "critique":
        return "The query is built from user input; pass it as a parameter."
    if task == "revise":
        return "```python\nclass Cache:\n    items = None\n```"
    return "It runs the query."


def make_gh(config: str = CONFIG) -> InMemoryGitHub:
    """An open PR at HEAD changing two files, a writer, and the repository's config."""
    gh = InMemoryGitHub()
    gh.add_pull(REPO, NUMBER, HEAD, DIFF)
    gh.add_file(REPO, HEAD, "src/core/cache.py", "class Cache:\n    items = {}\n")
    gh.set_role(REPO, WRITER, "write")
    gh.set_config(REPO, config)
    return gh


@pytest.fixture
def gh() -> InMemoryGitHub:
    return make_gh()


def command(gh: InMemoryGitHub, body: str, thread: int | None = None) -> Job:
    if thread is None:
        comment_id, kind = gh.add_issue_comment(REPO, NUMBER, body, WRITER), "issue"
    else:
        comment_id = gh.add_review_comment(REPO, NUMBER, body, WRITER, in_reply_to=thread)
        kind = "review"
    return Job(
        command_of(body).kind,
        REPO,
        1,
        NUMBER,
        "" if thread is None else HEAD,
        comment_id=comment_id,
        args=body,
        sender=WRITER,
        comment_type=kind,  # type: ignore[arg-type]
    )


def test_a_review_renders_each_unit_with_its_own_guidelines_and_the_language(gh) -> None:
    model = ScriptedModel(answer)
    run_review_job(Job("auto", REPO, 1, NUMBER, HEAD), gh, model.engines)
    api, core = model.prompts_for("critique")
    assert "FILE: src/api/users.py (Python)\n" in api
    assert "+    log(name)\n" in api
    assert api.endswith(
        "REVIEW GUIDELINES:\nCheck input validation.\n\nWrite your answer in German." + ALPACA_TAIL
    )
    assert "FILE: src/core/cache.py (Python)\n" in core and "REVIEW GUIDELINES" not in core
    assert core.endswith("+    items = {}\n\nWrite your answer in German." + ALPACA_TAIL)


def test_the_server_default_hides_changed_lines_unless_the_repository_asks(gh) -> None:
    model = ScriptedModel(answer)
    hidden = Settings.from_env({"REVIEWBOT_CHANGED_LINES": "false"}).review_defaults()
    run_review_job(Job("auto", REPO, 1, NUMBER, HEAD), gh, model.engines, defaults=hidden)
    assert all("CHANGED:" not in p for p in model.prompts_for("critique"))
    assert "\n    log(name)\n" in model.prompts_for("critique")[0]

    again = ScriptedModel(answer)
    job = Job("auto", REPO, 1, NUMBER, HEAD)
    run_review_job(job, make_gh(CONFIG + "changed_lines = true\n"), again.engines, defaults=hidden)
    assert all("CHANGED:" in p for p in again.prompts_for("critique"))


def test_the_server_setting_is_read_from_the_environment() -> None:
    assert Settings.from_env({}).changed_lines is True
    assert Settings.from_env({"REVIEWBOT_CHANGED_LINES": "false"}).changed_lines is False
    with pytest.raises(SettingsError, match="REVIEWBOT_CHANGED_LINES must be true or false"):
        Settings.from_env({"REVIEWBOT_CHANGED_LINES": "sometimes"})
    server = Settings.from_env({"REVIEWBOT_CHANGED_LINES": "false"}).review_defaults()
    assert parse_repo_config("").review_options(server).changed_lines is False


def test_ask_in_a_thread_sees_the_threads_code_in_the_layout_and_answers_in_german(gh) -> None:
    model = ScriptedModel(answer)
    root = gh.add_review_comment(REPO, NUMBER, "Hm.", "alice", path="src/api/users.py", line=3)
    run_command_job(command(gh, "/ask why a parameter?", thread=root), gh, model.engines)
    (prompt,) = model.prompts
    assert (
        "CODE:\nFILE: src/api/users.py (Python)\n"
        'CHANGED: lines starting with "+"\n'
        ' def find(db, name):\n+    log(name)\n+    return db.run(f"SELECT {name}")\n'
    ) in prompt
    assert prompt.endswith("why a parameter?\n\nWrite your answer in German." + ALPACA_TAIL)


def test_ask_in_the_conversation_answers_in_german(gh) -> None:
    model = ScriptedModel(answer)
    run_command_job(command(gh, "/ask what changed?"), gh, model.engines)
    (prompt,) = model.prompts
    assert "diff --git a/src/api/users.py" in prompt  # the PR's diff is the context
    assert prompt.endswith("what changed?\n\nWrite your answer in German." + ALPACA_TAIL)


def test_revise_in_a_thread_gets_the_header_the_guidelines_and_the_language(gh) -> None:
    model = ScriptedModel(answer)
    root = gh.add_review_comment(
        REPO, NUMBER, "Use None.", "alice", path="src/core/cache.py", line=2
    )
    run_command_job(command(gh, "/revise please", thread=root), gh, model.engines)
    (prompt,) = model.prompts_for("revise")
    assert "ORIGINAL:\nFILE: src/core/cache.py (Python)\n    items = {}\n\nCOMMENT:\n" in prompt
    assert prompt.endswith("please\n\nWrite your answer in German." + ALPACA_TAIL)


# --- the layout's version in adapter metadata ------------------------------------------------


def test_training_records_the_layout_and_serving_recognises_older_adapters(
    tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from transformers import AutoConfig

    base = LoadedModel(
        None,
        None,
        AutoConfig.from_pretrained(tiny_model_dir),
        "tiny",
        str(tiny_model_dir),
        torch.device("cpu"),
        False,
        {},
    )
    meta = adapter_record(base=base, options=TrainSettings(), data={}, steps=1, metrics={})
    meta = json.loads(json.dumps(meta))
    assert meta["original_layout"] == ORIGINAL_LAYOUT
    assert meta["template_fingerprint"] == template_fingerprint()
    assert original_layout(meta) == ORIGINAL_LAYOUT
    # an adapter of reviewbot's from before layouts (other templates, no layout recorded)
    old = {"template_fingerprint": "0123456789abcdef"}
    assert original_layout(old) == 0
    assert original_layout({}) is None  # not trained by reviewbot: unknown
    with caplog.at_level(logging.WARNING, logger="reviewbot.model.adapters"):
        warn_on_template_change("today", meta)
        assert caplog.text == ""
        warn_on_template_change("old", old)
    assert "adapter old was trained with ORIGINAL as the plain code (layout 0)" in caplog.text
    assert "now renders layout 1" in caplog.text
