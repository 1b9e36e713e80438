"""The slash commands: one table, and how a comment is read as a command (pure).

:data:`COMMANDS` is the single source of truth (in the style of PR-Agent's
``command2class``): job kinds, queue routing, which kinds post a review, who may
run what, the ``/help`` text and argument parsing all derive from it. Each entry's
handler is the function of the same name registered in
:mod:`reviewbot.runners.handlers`; adding a command is one entry here plus one
handler there.

A command is the first line of a comment, starting with ``/name`` (or
``@reviewbot /name``, ``@reviewbot name``); everything after the name, the
following lines included, is the command's free-text argument. Arguments are
text for the model and nothing else: no option in them reaches the server's
settings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reviewbot.settings.defaults import COMMAND_MENTION, COMMAND_ROLES, REVIEWBOT_MARKER_PREFIX


@dataclass(frozen=True)
class CommandSpec:
    """One slash command: what it does, who may run it and how it answers."""

    name: str
    usage: str
    """The usage line /help shows."""
    summary: str
    """What it does, for /help."""
    uses_model: bool
    """Whether the worker runs the model for it."""
    posts_review: bool = False
    """Whether it answers with a pull-request review (under ``review_title``) rather
    than a reply; a requested review is posted even when it has nothing new."""
    review_title: str = ""
    full_review: bool = False
    """Whether its review covers the whole diff at its head, so that a later
    incremental review may start from that head."""
    roles: frozenset[str] | None = COMMAND_ROLES
    """The repository roles that may run it; None: anyone who can comment."""


#: The commands, in the order /help lists them. The fallback for an unknown name is
#: :data:`FALLBACK` (its job answers with the help text).
COMMANDS: dict[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec(
            "review",
            "/review",
            "review the whole pull request now (a full review, not only the new commits)",
            uses_model=True,
            posts_review=True,
            review_title="reviewbot review (requested)",
            full_review=True,
        ),
        CommandSpec(
            "revise",
            "/revise [instructions]",
            "in a review thread: propose a committable revision of the thread's lines, "
            "following the thread and your instructions; in the conversation: revise every "
            "unresolved reviewbot finding",
            uses_model=True,
            posts_review=True,
            review_title="reviewbot review with revisions (requested)",
        ),
        CommandSpec(
            "summary",
            "/summary",
            "summarise the flaws the review finds, comparing each unit with its revision",
            uses_model=True,
        ),
        CommandSpec(
            "ask",
            "/ask <question>",
            "answer a question about the pull request (or, in a review thread, its code)",
            uses_model=True,
        ),
        CommandSpec(
            "describe",
            "/describe",
            "describe what the pull request changes: a line per file, then a summary (a "
            'comment, or the pull request\'s description with `describe = "body"`)',
            uses_model=True,
        ),
        CommandSpec(
            "pause",
            "/pause",
            "stop reviewing this pull request automatically (commands still work)",
            uses_model=False,
        ),
        CommandSpec(
            "resume",
            "/resume",
            "review this pull request automatically again (after /pause or /ignore)",
            uses_model=False,
        ),
        CommandSpec(
            "ignore",
            "/ignore",
            "never review this pull request automatically (commands still work)",
            uses_model=False,
        ),
        CommandSpec(
            "resolve",
            "/resolve",
            "resolve every unresolved reviewbot thread on this pull request",
            uses_model=False,
        ),
        CommandSpec(
            "help",
            "/help",
            "show this help and the repository's effective configuration",
            uses_model=False,
            roles=None,
        ),
    )
}
#: What an unknown command runs.
FALLBACK = "help"

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")


class CommandError(Exception):
    """A command that cannot be carried out; the message is shown to the user."""


@dataclass(frozen=True)
class Command:
    """A parsed command: ``name`` is lower-case; ``known`` False for unknown names."""

    name: str
    args: str = ""

    @property
    def known(self) -> bool:
        return self.name in COMMANDS

    @property
    def spec(self) -> CommandSpec:
        """The table entry that runs: the command's own, or the fallback's."""
        return COMMANDS[self.kind]

    @property
    def uses_model(self) -> bool:
        return self.spec.uses_model

    @property
    def kind(self) -> str:
        """The job kind: the command itself, or the fallback for an unknown command."""
        return self.name if self.known else FALLBACK


def parse_command(body: str | None, mention: str = COMMAND_MENTION) -> Command | None:
    """The command at the start of ``body``, or None when it carries none.

    ``/name args`` on the first non-blank line, or ``@mention /name args`` /
    ``@mention name args``. A first word that cannot be a command name (a path
    like ``/usr/bin``) is no command. Text carrying a reviewbot marker is the
    bot's own and never a command.
    """
    if not body or REVIEWBOT_MARKER_PREFIX in body:
        return None
    text = body.replace("\r\n", "\n").lstrip()
    prefix = f"@{mention}".lower()
    if text.lower().startswith(prefix):
        rest = text[len(prefix) :]
        if rest[:1] not in (" ", "\t", "\n", ""):
            return None  # @reviewbotter is someone else
        text = rest.lstrip()
        if text.startswith("/"):
            text = text[1:]
    elif text.startswith("/"):
        text = text[1:]
    else:
        return None
    m = _NAME.match(text)
    if m is None:
        return None
    after = text[m.end() :]
    if after and after[0] not in " \t\n":
        return None  # "/usr/bin/env": a path, not a command
    return Command(m.group(0).lower(), after.strip())


def command_of(args: str) -> Command:
    """The command a job's comment text carries (the fallback when it carries none)."""
    return parse_command(args) or Command(FALLBACK)
