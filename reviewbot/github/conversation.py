"""Pull-request conversations as model input, and model output as replies (pure).

The slash-command handlers (:mod:`reviewbot.runners.handlers`) build their prompts
from review threads and the conversation tab here, and turn completions into the
reply texts posted back: committable suggestions (apply-checked), answers, help.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from reviewbot.github.markers import strip_markers
from reviewbot.jobs.commands import COMMANDS, CommandError, parse_command
from reviewbot.review.noise import clean_completion
from reviewbot.review.prompts import Renderer, Turn, format_spec, render_task
from reviewbot.review.suggestions import (
    Suggestion,
    apply_suggestion,
    code_block,
    extract_code,
    map_revision,
    suggestion_block,
)
from reviewbot.review.units import ReviewUnit
from reviewbot.settings.defaults import (
    ASK_CONTEXT_MAX_CHARS,
    ASK_MAX_HISTORY_TURNS,
    COMMAND_ROLES,
    REPLY_MAX_CHARS,
)

_SUGGESTION_BLOCK = re.compile(r"\n*^(`{3,}|~{3,})suggestion[^\n]*\n.*?^\1[ \t]*$", re.S | re.M)
_PROPOSED = re.compile(r"\n*Proposed revision \(it does not map onto the changed lines\):.*", re.S)
_ALSO = re.compile(r"\n*Also applies to: .*$", re.S)
_LEADING_QUOTE = re.compile(r"\A(?:>[^\n]*\n)+\s*")
_ASSISTANT = re.compile(r"\A\s*(?:Assistant|AI|Answer)\s*:\s*", re.I)


def finding_critique(body: str) -> str:
    """The critique text of one of reviewbot's finding comments.

    Markers, a leading quote (the question an answer repeats), the ```suggestion
    block, the proposed-revision block and the "Also applies to" note are left out.
    """
    text = _LEADING_QUOTE.sub("", strip_markers(body))
    text = _SUGGESTION_BLOCK.sub("", text)
    text = _PROPOSED.sub("", text)
    return _ALSO.sub("", text).strip()


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
    return Renderer(f"{renderer.fmt}-dialogue", renderer.chat_template)


def _merge(turns: list[Turn]) -> list[Turn]:
    """Consecutive turns of one role joined into one (formats expect alternation)."""
    merged: list[Turn] = []
    for t in turns:
        if merged and merged[-1].role == t.role:
            merged[-1] = Turn(t.role, f"{merged[-1].text}\n\n{t.text}")
        else:
            merged.append(t)
    return merged


def ask_turns(code: str, history: Sequence[ThreadComment], question: str) -> list[Turn]:
    """The /ask dialogue: the code, earlier turns (the bot's as Assistant), the question.

    The first Human turn carries the code: the seed critique task when the
    history opens with reviewbot's own finding (which answers exactly that
    task), else the ``ask`` template with the first human question.
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
    """An /ask answer: a leading "Assistant:" dropped, runaway turns cut, length capped."""
    return clean_completion(_ASSISTANT.sub("", completion.strip()), REPLY_MAX_CHARS)


def thread_unit(path: str, file_text: str, start: int, end: int) -> ReviewUnit:
    """The lines ``start``..``end`` of a file at the PR head, as a unit to revise."""
    lines = file_text.split("\n")
    if not 1 <= start <= end <= len(lines):
        raise CommandError(
            f"lines {start}–{end} are not in `{path}` at the head ({len(lines)} lines)"
        )
    return ReviewUnit(path, start, end, "", "\n".join(lines[start - 1 : end]))


def thread_suggestion(unit: ReviewUnit, revised: str, min_similarity: float) -> Suggestion | None:
    """The revision as a suggestion on the thread's lines, or None if it does not map.

    A reply's ```suggestion replaces the lines its thread is on, so the
    suggestion spans exactly ``unit`` (the thread's lines); it exists only if
    the revision maps onto them (:func:`map_revision`) and applying it to the
    file yields the revision (the apply-check).
    """
    if map_revision(unit, revised, min_similarity) is None:
        return None
    s = Suggestion(unit.start_line, unit.end_line, tuple(revised.split("\n")))
    applied = apply_suggestion(unit.lines, unit.start_line, s)
    return s if applied == revised.split("\n") else None


def revision_reply(unit: ReviewUnit, completion: str, min_similarity: float) -> str:
    """The /revise answer in a thread: a committable suggestion, else a plain code block."""
    revised = extract_code(completion)
    if not revised.strip():
        raise CommandError("the model produced no revision; try again with instructions")
    if [x.rstrip() for x in revised.split("\n")] == [x.rstrip() for x in unit.lines]:
        return "The revision leaves these lines unchanged: nothing to suggest."
    s = thread_suggestion(unit, revised, min_similarity)
    if s is None:
        return (
            "Proposed revision (it does not map onto the lines of this thread, so it "
            "cannot be committed as a suggestion):\n\n" + code_block(revised)
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
    return f"{title}\n\n{summary}"


# --- reply texts --------------------------------------------------------------------------


def help_text(config_summary: str, unknown: str | None = None, config_error: str = "") -> str:
    """The /help reply: the command table, then the repository's effective configuration."""
    lines = []
    if unknown:
        lines += [f"Unknown command `/{unknown}`.", ""]
    open_to_all = ", ".join(f"/{c.name}" for c in COMMANDS.values() if c.roles is None)
    lines += [
        f"**reviewbot commands** ({_roles(COMMAND_ROLES)} permission needed for all but "
        f"{open_to_all}):",
        "",
    ]
    lines += [f"- `{spec.usage}`: {spec.summary}" for spec in COMMANDS.values()]
    lines += ["", "Commands start a comment (`/review`, or `@reviewbot review`).", ""]
    if config_error:
        lines += [f"**Configuration error:** {config_error}", ""]
        lines += ["Until it is fixed, model commands fail; the defaults are:", ""]
    else:
        lines += ["**Effective configuration** (`.github/reviewbot.toml`, default branch):", ""]
    lines += ["```toml", config_summary, "```"]
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
    return f"`/{command}` failed: {reason}"


def quote(text: str, max_chars: int = 300) -> str:
    """``text`` as a Markdown quote (cut to ``max_chars``)."""
    text = text.strip()
    if len(text) > max_chars:
        text = text[: max_chars - 1].rstrip() + "…"
    return "\n".join(f"> {line}" if line else ">" for line in text.split("\n"))
