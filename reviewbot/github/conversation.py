"""Pull-request conversations as model input, and model output as replies (pure).

The slash-command handlers (:mod:`reviewbot.runners.handlers`) build their prompts
from review threads and the conversation tab here, and turn completions into the
reply texts posted back: committable suggestions (apply-checked), answers, help.
Every reply text made here is inert (:mod:`reviewbot.review.markdown`): the
model's answers, quoted questions, failure reasons, config errors and the
config summary cannot mention anyone, carry a marker or a suggestion of their own.
"""

from __future__ import annotations

import bisect
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from reviewbot.github.markers import strip_markers
from reviewbot.jobs.commands import COMMANDS, CommandError, parse_command
from reviewbot.review.markdown import code_block, code_span, inert, readable
from reviewbot.review.noise import clean_completion
from reviewbot.review.pipeline import PROPOSED, PROPOSED_UNPOSTABLE, UNPARSABLE
from reviewbot.review.prompts import Renderer, Turn, format_spec, render_task, with_language
from reviewbot.review.suggestions import (
    REVISION_EMPTY,
    REVISION_NOT_CODE,
    REVISION_UNCHANGED,
    Suggestion,
    apply_suggestion,
    check_suggestion,
    extract_code,
    map_revision,
    postable,
    revision_problem,
    suggestion_block,
)
from reviewbot.review.units import ReviewUnit
from reviewbot.settings.defaults import (
    ASK_CONTEXT_MAX_CHARS,
    ASK_MAX_HISTORY_TURNS,
    COMMAND_ROLES,
    REPLY_MAX_CHARS,
)

log = logging.getLogger(__name__)

_SUGGESTION_OPENER = re.compile(r"(`{3,}|~{3,})suggestion")
_FENCE_LINE = re.compile(r"`{3,}|~{3,}")
#: Where the parts after a finding's critique start (see reviewbot.review.pipeline).
_TAILS = (PROPOSED, PROPOSED_UNPOSTABLE, *UNPARSABLE.values(), "Also applies to: ")
_ASSISTANT = re.compile(r"\A\s*(?:Assistant|AI|Answer)\s*:\s*", re.I)


def finding_critique(body: str) -> str:
    """The critique text of one of reviewbot's finding comments (as model input).

    Markers, a leading quote (the question an answer repeats), the ```suggestion
    block, the proposed-revision block and the "Also applies to" note are left
    out, and the invisible characters that made the text inert are taken out.
    Line by line, in time linear in the body's length.
    """
    lines = strip_markers(body).split("\n")
    lines = _without_suggestions(_without_leading_quote(lines))
    for i, line in enumerate(lines):
        if line.startswith(_TAILS):
            lines = lines[:i]
            break
    return readable("\n".join(lines).strip())


def _without_leading_quote(lines: list[str]) -> list[str]:
    """``lines`` without the quote they start with (each quoted line ends in a newline)."""
    i = 0
    while i < len(lines) - 1 and lines[i].startswith(">"):
        i += 1
    return lines[i:]


def _without_suggestions(lines: list[str]) -> list[str]:
    """``lines`` without closed ```suggestion blocks (and the blank lines before them).

    A block closes at the next line that is its exact fence (trailing blanks
    allowed); closing lines are indexed once, so every line is looked at once.
    """
    closers: dict[str, list[int]] = {}
    for i, line in enumerate(lines):
        fence = line.rstrip(" \t")
        if _FENCE_LINE.fullmatch(fence):
            closers.setdefault(fence, []).append(i)
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = _SUGGESTION_OPENER.match(lines[i])
        if m is not None:
            ends = closers.get(m.group(1), [])
            k = bisect.bisect_right(ends, i)
            if k < len(ends):
                while out and not out[-1]:
                    out.pop()
                i = ends[k] + 1
                continue
        out.append(lines[i])
        i += 1
    return out


# --- threads ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ThreadComment:
    """A comment in a review thread or the PR conversation."""

    id: int
    author: str
    body: str
    by_bot: bool


def comment_text(c: ThreadComment) -> str:
    """What a comment says, as model input: markers stripped; a command's argument only."""
    if c.by_bot:
        return finding_critique(c.body)
    cmd = parse_command(c.body)
    return cmd.args if cmd is not None else c.body.strip()


def revise_comment(thread: Sequence[ThreadComment], instructions: str) -> str:
    """COMMENT for the revise template: the thread's comments, then the instructions."""
    parts = [t for t in (comment_text(c) for c in thread) if t]
    if instructions.strip():
        parts.append(instructions.strip())
    return "\n\n".join(parts)


def dialogue_renderer(renderer: Renderer) -> Renderer:
    """The renderer for /ask: the format's multi-turn variant when it has one.

    ``alpaca`` → ``alpaca-dialogue``; chat templates and dialogue formats as they are.
    """
    spec = format_spec(renderer.fmt)
    if spec.get("uses_chat_template") or "wrapper" in spec:
        return renderer
    try:
        format_spec(f"{renderer.fmt}-dialogue")
    except KeyError:
        return renderer
    return replace(renderer, fmt=f"{renderer.fmt}-dialogue")


def _merge(turns: list[Turn]) -> list[Turn]:
    """Consecutive turns of one role joined into one (formats expect alternation)."""
    merged: list[Turn] = []
    for t in turns:
        if merged and merged[-1].role == t.role:
            merged[-1] = Turn(t.role, f"{merged[-1].text}\n\n{t.text}")
        else:
            merged.append(t)
    return merged


def ask_turns(
    code: str, history: Sequence[ThreadComment], question: str, language: str = ""
) -> list[Turn]:
    """The /ask dialogue: the code, earlier turns (the bot's as Assistant), the question.

    The first Human turn carries the code (in a review thread, the thread's hunk in
    the ORIGINAL layout, :func:`reviewbot.review.prompts.hunk_original`): the seed
    critique task when the history opens with reviewbot's own finding (which answers
    exactly that task), else the ``ask`` template with the first human question. With
    a ``language`` (the repository's ``response_language``), the last turn, the one
    the model answers, ends with the ``language`` instruction.
    """
    turns = [
        Turn("assistant" if c.by_bot else "user", text)
        for c in history
        if (text := comment_text(c))
    ]
    turns.append(Turn("user", question))
    turns = _merge(turns)[-(2 * ASK_MAX_HISTORY_TURNS + 1) :]
    if turns[0].role == "assistant":
        turns.insert(0, Turn("user", render_task("critique", ORIGINAL=code)))
    else:
        turns[0] = Turn("user", render_task("ask", CODE=code, QUESTION=turns[0].text))
    turns[-1] = Turn("user", with_language(turns[-1].text, language))
    return turns


def pr_context(diff: str, max_chars: int = ASK_CONTEXT_MAX_CHARS) -> str:
    """The PR's diff as /ask context, cut at a file or line boundary to ``max_chars``."""
    if len(diff) <= max_chars:
        return diff.rstrip("\n")
    cut = diff.rfind("\ndiff --git ", 0, max_chars)
    if cut <= 0:
        cut = diff.rfind("\n", 0, max_chars)
    cut = cut if cut > 0 else max_chars
    omitted = diff.count("\ndiff --git ", cut) + (1 if diff.startswith("diff --git", cut) else 0)
    note = f"\n[... {omitted} more file(s) not shown]" if omitted else "\n[... diff cut]"
    return diff[:cut].rstrip("\n") + note


# --- model output → replies ---------------------------------------------------------------


def clean_answer(completion: str) -> str:
    """An /ask answer: a leading "Assistant:" dropped, runaway turns cut, length capped,
    made inert."""
    return inert(clean_completion(_ASSISTANT.sub("", completion.strip()), REPLY_MAX_CHARS))


def thread_unit(path: str, file_text: str, start: int, end: int) -> ReviewUnit:
    """The lines ``start``..``end`` of a file at the PR head, as a unit to revise."""
    lines = file_text.split("\n")
    if not 1 <= start <= end <= len(lines):
        raise CommandError(
            f"lines {start}–{end} are not in {code_span(path)} at the head ({len(lines)} lines)"
        )
    return ReviewUnit(path, start, end, "", "\n".join(lines[start - 1 : end]))


def thread_suggestion(unit: ReviewUnit, revised: str, min_similarity: float) -> Suggestion | None:
    """The revision as a suggestion on the thread's lines, or None if it does not map.

    A reply's ```suggestion replaces the lines its thread is on, so the
    suggestion spans exactly ``unit`` (the thread's lines); it exists only if
    the revision maps onto them (:func:`map_revision`) and applying it to the
    file yields the revision (the apply-check). Whether it may be posted as a
    suggestion is :func:`~reviewbot.review.suggestions.postable`'s question.
    """
    if map_revision(unit, revised, min_similarity) is None:
        return None
    s = Suggestion(unit.start_line, unit.end_line, tuple(revised.split("\n")))
    applied = apply_suggestion(unit.lines, unit.start_line, s)
    return s if applied == revised.split("\n") else None


#: The /revise answers in a thread when the model's revision is no revision.
REVISION_REPLIES = {
    REVISION_UNCHANGED: "The revision leaves these lines unchanged: nothing to suggest.",
    REVISION_NOT_CODE: (
        "The model answered in prose, not with code: nothing to suggest. "
        "Try again with instructions."
    ),
}
#: Where a suggestion that does not parse was parsed, as a reply says it.
_PARSED_WITH = {"file": "applied to the file at the head", "hunk": "applied to these lines"}


def revision_reply(
    unit: ReviewUnit,
    completion: str,
    min_similarity: float,
    *,
    file_text: str | None = None,
    unparsable: str = "plain",
    critique: str = "",
) -> str:
    """The /revise answer in a thread: a committable suggestion, else a plain code block.

    The same rules as a review's (:func:`reviewbot.review.pipeline.attach_revision`): a
    revision that is empty (an error), prose or the lines again is no suggestion; a
    suggestion is parsed with ``file_text`` (the file at the head; without it, with the
    thread's lines), and one that introduces a syntax error is shown as plain code
    marked "does not parse", or only named (``unparsable = "drop"``).
    """
    revised = extract_code(completion)
    problem = revision_problem(unit.original, revised, critique)
    if problem == REVISION_EMPTY:
        raise CommandError("the model produced no revision; try again with instructions")
    if problem is not None:
        log.info("%s:%d: /revise: %s", unit.path, unit.start_line, problem)
        return REVISION_REPLIES[problem]
    s = thread_suggestion(unit, revised, min_similarity)
    if s is None:
        return (
            "Proposed revision (it does not map onto the lines of this thread, so it "
            "cannot be committed as a suggestion):\n\n" + code_block(revised)
        )
    check = check_suggestion(unit, s, file_text)
    if not check.parses:
        where = _PARSED_WITH[check.against]
        log.info("%s:%d: /revise: the suggestion does not parse", unit.path, unit.start_line)
        if unparsable == "drop":
            return (
                f"The model's revision does not parse ({where}, it introduces a syntax "
                "error), so it is not offered. Try again with instructions."
            )
        return (
            f"Proposed revision (it does not parse: {where}, it introduces a syntax "
            "error, so it cannot be committed as a suggestion):\n\n" + code_block(revised)
        )
    if not postable(s):
        return (
            "Proposed revision (it holds an HTML comment opener, so it cannot be "
            "committed as a suggestion):\n\n" + code_block(revised)
        )
    where = f"line {s.start}" if s.start == s.end else f"lines {s.start}–{s.end}"
    return f"Suggested revision of {where}:\n\n{suggestion_block(s)}"


def summary_reply(summary: str | None, head_sha: str, revised_units: int) -> str:
    """The /summary answer."""
    title = f"## reviewbot summary · `{head_sha[:7]}`"
    if not summary:
        if revised_units:
            return f"{title}\n\nThe model's summaries said nothing worth posting."
        return f"{title}\n\nThe review found no flaws to summarise."
    return f"{title}\n\n{inert(summary)}"


# --- reply texts --------------------------------------------------------------------------


def help_text(
    config_summary: str,
    unknown: str | None = None,
    config_error: str = "",
    suppression: str = "",
) -> str:
    """The /help reply: the command table, then the repository's effective configuration.

    The config summary holds the repository's own strings: it sits in a code
    block whose fence nothing inside can close; the config error is made inert.
    ``suppression``: reviewbot's own sentence on the suppression rules in effect.
    """
    lines = []
    if unknown:
        lines += [f"Unknown command {code_span('/' + unknown)}.", ""]
    open_to_all = ", ".join(f"/{c.name}" for c in COMMANDS.values() if c.roles is None)
    lines += [
        f"**reviewbot commands** ({_roles(COMMAND_ROLES)} permission needed for all but "
        f"{open_to_all}):",
        "",
    ]
    lines += [f"- `{spec.usage}`: {spec.summary}" for spec in COMMANDS.values()]
    lines += ["", "Commands start a comment (`/review`, or `@reviewbot review`).", ""]
    if config_error:
        lines += [f"**Configuration error:** {inert(config_error)}", ""]
        lines += ["Until it is fixed, model commands fail; the defaults are:", ""]
    else:
        lines += ["**Effective configuration** (`.github/reviewbot.toml`, default branch):", ""]
    lines.append(code_block(config_summary, "toml"))
    if suppression:
        lines += ["", suppression]
    return "\n".join(lines)


def denied_text(login: str, command: str) -> str:
    """The one reply a user gets on a PR when a command needs a role they lack."""
    roles = COMMANDS[command].roles or COMMAND_ROLES
    return (
        f"Sorry @{login}, `/{command}` runs the review model, which needs {_roles(roles)} "
        "permission on this repository. A maintainer can run it for you."
    )


def _roles(roles: frozenset[str]) -> str:
    """``write, maintain or admin``: GitHub's roles, from least to most."""
    order = ("read", "triage", "write", "maintain", "admin")
    names = sorted(roles, key=lambda r: order.index(r) if r in order else len(order))
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


def failure_text(command: str, reason: str) -> str:
    """The reply to a failed command; ``reason`` (it may quote user input) made inert."""
    return f"{code_span('/' + command)} failed: {inert(reason)}"


def quote(text: str, max_chars: int = 300) -> str:
    """``text`` (a user's) as an inert Markdown quote (cut to ``max_chars``)."""
    text = text.strip()
    if len(text) > max_chars:
        text = text[: max_chars - 1].rstrip() + "…"
    return "\n".join(f"> {line}" if line else ">" for line in inert(text).split("\n"))
