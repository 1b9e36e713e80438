"""What a Markdown text does once rendered, read by an independent CommonMark parser.

The tests of reviewbot's Markdown safety (``reviewbot.review.markdown``) do not
trust reviewbot's own scanner: they parse the posted text with markdown-it-py
(CommonMark, plus GFM tables and strikethrough, raw HTML on, as GitHub renders
comments) and look at what a reader would get: mentions in text outside code,
raw HTML, suggestion fences, and the code it shows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from markdown_it import MarkdownIt

from reviewbot.github.markers import parse_markers

_MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])
#: GitHub's mention rule: ``@login`` or ``@org/team`` after a non-word character.
_MENTION = re.compile(r"(?<![A-Za-z0-9_])@[A-Za-z0-9][A-Za-z0-9-]*(?:/[A-Za-z0-9][\w.-]*)?")
_TEXT = ("text", "text_special")


@dataclass
class Rendered:
    """What a reader of a rendered Markdown text gets."""

    mentions: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    """Raw HTML (inline or blocks), comments included, stripped."""
    fences: list[tuple[str, str]] = field(default_factory=list)
    """(info string, code) of each fenced or indented code block."""
    code_spans: list[str] = field(default_factory=list)

    @property
    def suggestions(self) -> list[str]:
        """The code of each ```suggestion block (a committable suggestion on GitHub)."""
        return [code for info, code in self.fences if info.split()[:1] == ["suggestion"]]


def render(markdown: str) -> Rendered:
    out = Rendered()
    for token in _MD.parse(markdown):
        if token.type == "html_block":
            out.html.append(token.content.strip())
        elif token.type in ("fence", "code_block"):
            out.fences.append((token.info.strip().lower(), token.content))
        elif token.type == "inline":
            text: list[str] = []
            for child in token.children or []:
                if child.type in _TEXT:
                    text.append(child.content)
                    continue
                out.mentions += _MENTION.findall("".join(text))
                text = []
                if child.type == "html_inline":
                    out.html.append(child.content.strip())
                elif child.type == "code_inline":
                    out.code_spans.append(child.content)
            out.mentions += _MENTION.findall("".join(text))
    return out


def assert_inert(markdown: str, own_markers: int = 0) -> Rendered:
    """``markdown`` mentions nobody, shows no raw HTML and has no suggestion fence;
    its only HTML comments are reviewbot's own ``own_markers`` trailing markers."""
    rendered = render(markdown)
    assert rendered.mentions == [], rendered.mentions
    assert rendered.suggestions == [], rendered.suggestions
    own = rendered.html[len(rendered.html) - own_markers :] if own_markers else []
    assert rendered.html[: len(rendered.html) - own_markers] == [], rendered.html
    assert markdown.count("<!--") == own_markers, markdown
    for marker in own:
        assert re.fullmatch(r"(<!-- reviewbot:[a-z]+:[^>]* -->\s*)+", marker), marker
    return rendered


def forged_markers(markdown: str) -> bool:
    """Whether ``markdown`` carries a reply marker for comment 777 (the forged one)."""
    return 777 in parse_markers(markdown).replies
