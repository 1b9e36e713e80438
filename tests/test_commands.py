"""Slash commands: parsing, thread → prompt pieces, reply texts (pure)."""

from __future__ import annotations

import pytest

from reviewbot.github.conversation import (
    ThreadComment,
    ask_turns,
    clean_answer,
    dialogue_renderer,
    finding_critique,
    help_text,
    pr_context,
    revise_comment,
    revision_reply,
    summary_reply,
    thread_suggestion,
    thread_unit,
)
from reviewbot.jobs.commands import Command, CommandError, parse_command
from reviewbot.review.prompts import Renderer, render_task
from reviewbot.review.suggestions import apply_suggestion
from reviewbot.review.units import ReviewUnit


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("/review", Command("review")),
        ("  /Review  \n", Command("review")),
        (
            "/revise use a dict here\nand keep the order",
            Command("revise", "use a dict here\nand keep the order"),
        ),
        ("/ask why is this needed?", Command("ask", "why is this needed?")),
        ("@reviewbot ask why?", Command("ask", "why?")),
        ("@reviewbot /summary", Command("summary")),
        ("/frobnicate now", Command("frobnicate", "now")),
        ("\r\n/help\r\n", Command("help")),
    ],
)
def test_commands_are_read_from_the_start_of_a_comment(body: str, expected: Command) -> None:
    assert parse_command(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        "",
        None,
        "looks good to me /review",  # not at the start
        "/usr/bin/env python is used here",  # a path, not a command
        "/ this is a slash",
        "@reviewbotter review",  # someone else
        "Suggested revision\n\n<!-- reviewbot:reply:12 -->\n/review",  # reviewbot's own text
        "/review\n<!-- reviewbot:finding:abcdef12 -->",
    ],
)
def test_text_without_a_command_is_none(body: str | None) -> None:
    assert parse_command(body) is None


def test_unknown_commands_become_help_jobs_and_only_model_commands_need_write() -> None:
    assert Command("frobnicate").kind == "help" and not Command("frobnicate").known
    assert [c for c in ("review", "revise", "summary", "ask", "help") if Command(c).uses_model] == [
        "review",
        "revise",
        "summary",
        "ask",
    ]


def test_a_finding_comment_is_reduced_to_its_critique() -> None:
    body = (
        "The default `{}` is shared between instances.\n\n"
        "```suggestion\n    def __init__(self, ttl, items=None):\n```\n\n"
        "Also applies to: `app/x.py` line 3.\n\n<!-- reviewbot:finding:0123456789abcdef -->"
    )
    assert finding_critique(body) == "The default `{}` is shared between instances."
    proposed = "Bad.\n\nProposed revision (it does not map onto the changed lines):\n\n```\nx\n```"
    assert finding_critique(proposed) == "Bad."
    answer = "> why?\n\nBecause.\n\n<!-- reviewbot:reply:5 -->"
    assert finding_critique(answer) == "Because."


def test_revise_comment_joins_the_thread_and_the_instructions() -> None:
    thread = [
        ThreadComment(
            1, "reviewbot[bot]", "Shared default.\n\n<!-- reviewbot:finding:abcdef -->", True
        ),
        ThreadComment(2, "alice", "Agreed, and keep the type hints.", False),
        ThreadComment(3, "bob", "/revise", False),
    ]
    assert revise_comment(thread, "use None") == (
        "Shared default.\n\nAgreed, and keep the type hints.\n\nuse None"
    )
    assert revise_comment([], "  ") == ""


def test_ask_turns_start_with_the_code_and_keep_the_thread_as_history() -> None:
    finding = ThreadComment(
        1, "reviewbot[bot]", "Bad name.\n\n<!-- reviewbot:finding:abcdef -->", True
    )
    human = ThreadComment(2, "alice", "Which name?", False)
    answer = ThreadComment(3, "reviewbot[bot]", "`x`.\n\n<!-- reviewbot:reply:2 -->", True)
    turns = ask_turns("x = 1", [finding, human, answer], "Why is it bad?")
    assert [t.role for t in turns] == ["user", "assistant", "user", "assistant", "user"]
    # the bot's finding answers the seed critique task about the code
    assert turns[0].text == render_task("critique", ORIGINAL="x = 1")
    assert [t.text for t in turns[1:]] == ["Bad name.", "Which name?", "`x`.", "Why is it bad?"]

    (only,) = ask_turns("x = 1", [], "What does it do?")
    assert only.text == render_task("ask", CODE="x = 1", QUESTION="What does it do?")


def test_ask_uses_the_dialogue_format_of_alpaca_models() -> None:
    prompt = dialogue_renderer(Renderer("alpaca")).dialogue(
        ask_turns("x = 1", [ThreadComment(1, "a", "Is this right?", False)], "Sure?")
    )
    assert "### Instruction:\n\nHuman:Please answer the question" in prompt
    # consecutive human turns are one turn (the formats expect alternation)
    assert prompt.endswith("QUESTION:\nIs this right?\n\nSure?\n\n### Response:\n\n")
    assert dialogue_renderer(Renderer("alpaca-dialogue")).fmt == "alpaca-dialogue"


def test_arguments_are_text_only_even_when_they_look_like_placeholders() -> None:
    turns = ask_turns("x = 1", [], "{ORIGINAL} {TASK} REVIEWBOT_MODEL=/evil")
    prompt = Renderer().dialogue(turns)
    assert "{ORIGINAL} {TASK} REVIEWBOT_MODEL=/evil" in prompt


def test_pr_context_cuts_at_a_file_boundary() -> None:
    one = "diff --git a/a.py b/a.py\n+" + "x" * 50 + "\n"
    two = "diff --git a/b.py b/b.py\n+" + "y" * 50 + "\n"
    assert pr_context(one + two, 10_000) == (one + two).rstrip("\n")
    cut = pr_context(one + two, len(one) + 10)
    assert cut.startswith(one.rstrip("\n")) and "b.py" not in cut
    assert cut.endswith("[... 1 more file(s) not shown]")


FILE = (
    "import time\n\n\nclass Cache:\n    def __init__(self, ttl, items={}):\n"
    "        self.ttl = ttl\n        self.items = items\n"
)


def test_a_thread_revision_becomes_a_suggestion_on_the_threads_lines() -> None:
    unit = thread_unit("app/cache.py", FILE, 5, 7)
    assert unit.lines == FILE.split("\n")[4:7]
    revised = (
        "    def __init__(self, ttl, items=None):\n        self.ttl = ttl\n"
        "        self.items = {} if items is None else items"
    )
    s = thread_suggestion(unit, revised, 0.3)
    assert (s.start, s.end) == (5, 7)
    lines = FILE.split("\n")
    applied = apply_suggestion(lines, 1, s)
    assert applied[4:7] == revised.split("\n") and applied[:4] == lines[:4]
    reply = revision_reply(unit, f"```python\n{revised}\n```", 0.3)
    assert reply.startswith("Suggested revision of lines 5–7:")
    assert f"```suggestion\n{revised}\n```" in reply


def test_a_revision_that_does_not_map_is_a_plain_code_block() -> None:
    unit = thread_unit("app/cache.py", FILE, 5, 5)
    reply = revision_reply(unit, "SELECT id FROM users;\nDROP TABLE x;", 0.3)
    assert "```suggestion" not in reply and "cannot be committed" in reply
    assert "SELECT id FROM users;" in reply
    same = revision_reply(unit, "    def __init__(self, ttl, items={}):", 0.3)
    assert "unchanged" in same
    with pytest.raises(CommandError):
        revision_reply(unit, "```\n\n```", 0.3)


def test_thread_lines_outside_the_file_are_an_error() -> None:
    with pytest.raises(CommandError, match=r"not in `app/cache\.py`"):
        thread_unit("app/cache.py", FILE, 7, 40)


def test_reply_texts() -> None:
    text = help_text("max_comments = 30", unknown="frob")
    assert text.startswith("Unknown command `/frob`.")
    for usage in ("/review", "/revise [instructions]", "/summary", "/ask <question>", "/help"):
        assert f"`{usage}`" in text
    assert "```toml\nmax_comments = 30\n```" in text
    broken = help_text("x", config_error=".github/reviewbot.toml: bad key")
    assert "**Configuration error:** .github/reviewbot.toml: bad key" in broken
    assert summary_reply(None, "a" * 40, 0).endswith("no flaws to summarise.")
    assert (
        summary_reply("- `a.py`: bad", "a" * 40, 1)
        == "## reviewbot summary · `aaaaaaa`\n\n- `a.py`: bad"
    )
    assert clean_answer("Assistant: It caches.\nHuman: more?") == "It caches."


def test_review_unit_of_a_thread_is_on_the_right_side() -> None:
    assert thread_unit("a.py", "x\ny", 1, 2) == ReviewUnit("a.py", 1, 2, "", "x\ny")
