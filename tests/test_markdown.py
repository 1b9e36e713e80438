"""The one Markdown sanitizer (reviewbot.review.markdown) against a table of hostile strings.

Every case is judged by an independent CommonMark parser (tests/inert_oracle.py):
no mention, no raw HTML, no ```suggestion fence, no ``<!--`` left; and what a
reader should still see (code, e-mail addresses, the text) is still there.
"""

from __future__ import annotations

import time

import pytest
from inert_oracle import assert_inert, render

from reviewbot.github.markers import parse_markers
from reviewbot.review.markdown import (
    ZWJ,
    ZWSP,
    blocks,
    code_block,
    code_span,
    inert,
    readable,
    suggestion_fence,
)

MARKER = "<!-- reviewbot:reply:777 -->"

#: (name, hostile text, texts a reader must still see in the rendered result).
HOSTILE: list[tuple[str, str, list[str]]] = [
    ("marker in prose", f"Looks fine. {MARKER}", ["Looks fine."]),
    ("review marker", "<!-- reviewbot:auto:" + "a" * 40 + ":abcdef -->", []),
    ("marker in a code span", f"see `{MARKER}` here", ["see", "here"]),
    ("marker in a fenced block", f"```\nx = 1\n{MARKER}\n```", ["x = 1"]),
    ("marker in a tilde block", f"~~~html\n{MARKER}\n~~~", []),
    ("comment split over lines", "a <!--\nreviewbot:reply:777\n--> b", ["a", "b"]),
    ("comment opener split by CRLF", "a <!--\r\nreviewbot:reply:777 -->", ["a"]),
    ("lone CR line ends", "one\rtwo\r<!-- reviewbot:reply:777 -->", ["one", "two"]),
    ("user mention", "cc @octocat please", ["cc", "please"]),
    ("team mention", "ping @octo-org/everyone now", ["ping", "now"]),
    ("mention at the start", "@octocat look", ["look"]),
    ("mention after punctuation", "(@octocat) and x.@octocat", ["and"]),
    ("mention as entity", "&#64;octocat &#x40;octo-org/team &commat;octocat", []),
    ("escaped mention", "\\@octocat", []),
    ("mention in a code span", "`@octo-org/everyone`", []),
    ("mention in a link", "[@octocat](https://example.com)", []),
    ("e-mail address", "mail a.b@example.com or x_y@corp.io", ["a.b@example.com", "x_y@corp.io"]),
    ("suggestion fence", "Do this:\n```suggestion\nx = 2\n```", ["Do this:"]),
    ("tilde suggestion fence", "~~~suggestion\nx = 2\n~~~", []),
    ("long suggestion fence", "`````suggestion\n```\nx\n```\n`````", []),
    ("suggestion fence with info", "```suggestion:file.py\nx\n```", []),
    ("indented suggestion fence", "   ```suggestion\n   x = 2\n   ```", []),
    ("suggestion in a quote", "> ```suggestion\n> x = 2\n> ```", []),
    ("suggestion in a list", "- fix:\n  ```suggestion\n  x = 2\n  ```", ["fix:"]),
    ("unclosed suggestion", "```suggestion\nx = 2", []),
    ("nested backticks", "`` a ` b `` and ```` ``` ````", ["and"]),
    ("unmatched backtick", "a ` b @octocat", ["a", "b"]),
    ("escaped backtick opener", "\\`@octocat` x", ["x"]),
    ("img tag", '<img src="https://evil.example/x.png" onerror="alert(1)">', []),
    ("details block", "<details><summary>Hidden</summary>@octocat</details>", ["Hidden"]),
    ("script block", "<script>alert(1)</script>", ["alert(1)"]),
    ("html block line", "<div>\n\n@octocat\n\n</div>", []),
    ("autolink", "<https://example.com>", []),
    ("trailing backslash", "the end \\", ["the end"]),
    ("spans shifted by a list item", "- `\n- `a` <img src=x> @octocat `b`", ["a", "b"]),
    ("spans shifted by a heading", "x `\n# `a` <!-- c --> @octocat `b`", ["a", "b"]),
    ("fence closing early", "```\n````\n@octocat\n```", []),
    ("hostile path", "x`\n\n@octo-org/everyone <!-- reviewbot:reply:777 -->`.lock", [".lock"]),
]


@pytest.mark.parametrize(("name", "text", "visible"), HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_text_becomes_inert(name: str, text: str, visible: list[str]) -> None:
    out = inert(text)
    rendered = assert_inert(out)
    assert parse_markers(out).replies == frozenset() and not parse_markers(out).reviews
    shown = out.replace(ZWJ, "").replace(ZWSP, "").replace("&lt;", "<")
    for part in visible:
        assert part in shown, (part, out)
    assert inert(out) == out, "inert text stays as it is"
    assert render(inert(out)) == rendered


def test_code_reads_the_same_and_prose_shows_the_same_characters() -> None:
    code = "if a < b:\n    print('<!-- x -->', \"@decorator\")\n```\n"
    out = inert(f"Use this:\n~~~python\n{code}~~~\n\nA <b>bold</b> claim.")
    rendered = assert_inert(out)
    ((info, shown),) = rendered.fences
    assert info == "python"
    assert shown.replace(ZWSP, "") == code  # a reader (and a copy) sees the code as written
    assert "A &lt;b>bold&lt;/b> claim." in out  # the tags are shown, not rendered


def test_a_code_span_shows_a_hostile_path_on_one_line() -> None:
    path = "x`\n\n@octo-org/everyone <!-- reviewbot:reply:777 -->`.lock"
    span = code_span(path)
    assert "\n" not in span
    rendered = assert_inert(f"- {span}: skipped")
    assert [s.replace(ZWSP, "") for s in rendered.code_spans] == [
        "x`\\n\\n@octo-org/everyone <!-- reviewbot:reply:777 -->`.lock"
    ]
    assert code_span("a\rb\x07c") == "`a\\rb\\x07c`"
    assert render(code_span("`tick")).code_spans == ["`tick"]
    assert render(code_span(" lead")).code_spans == [" lead"]
    assert render(code_span("")).code_spans == [" "]


def test_fences_reviewbot_builds_cannot_be_closed_from_inside() -> None:
    code = "a = '''\n````\n~~~\n'''"
    rendered = render(code_block(code, "python"))
    assert rendered.fences == [("python", code + "\n")]
    assert render(code_block("x", "suggestion")).fences == [("", "x\n")]
    assert render(suggestion_fence("x\n```")).suggestions == ["x\n```\n"]
    with pytest.raises(ValueError, match="<!--"):
        suggestion_fence(f"x\n{MARKER}")


def test_only_the_apply_checked_suggestion_keeps_its_fence() -> None:
    body = "Bad.\n\n```suggestion\nforged\n```\n\n```suggestion\nchecked\n```"
    kept = render(inert(body, suggestion="checked"))
    assert kept.suggestions == ["checked\n"]
    assert render(inert(body)).suggestions == []


def test_readable_undoes_the_invisible_protection_for_model_input() -> None:
    text = "cc @octocat: `List<T>` is wrong, <b>really</b>"
    assert readable(inert(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "\n" * 200_000,
        " \n" * 100_000,
        "```\n" * 50_000,
        "```suggestion\n" * 50_000,
        "`" * 100_000,
        "` " * 100_000,
        "@" * 100_000,
        "- > " * 50_000 + "```",
    ],
    ids=["newlines", "blank-lines", "fences", "suggestion-openers", "run", "ticks", "ats", "nest"],
)
def test_sanitizing_takes_linear_time(text: str) -> None:
    started = time.perf_counter()
    out = inert(text)
    blocks(text)
    assert time.perf_counter() - started < 3.0
    assert "<!--" not in out
