"""The command-job runner: one slash command, answered exactly once (imperative shell).

Every command comment gets exactly one answer, marked with its reply marker
(``<!-- reviewbot:reply:{comment id} -->``): a rerun of the same job (a crash, a
redelivery) finds the marker and answers nothing twice; a copy running at the same
time finds it under the pull request's lock, right before answering. The comment's 👀
reaction (added by the web server, or here) becomes 🚀 when the job is done,
😕 plus a reply saying what went wrong when it failed. Who may run a command is
the command table's rule; what it does is its handler (:mod:`reviewbot.runners.handlers`).
Transient GitHub errors propagate so the queue retries the job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from reviewbot.github.conversation import denied_text, failure_text
from reviewbot.github.errors import GitHubError
from reviewbot.github.markers import denied_marker, reply_marker
from reviewbot.github.payload import plural
from reviewbot.jobs.commands import CommandError, command_of
from reviewbot.jobs.deadline import DeadlineExceeded
from reviewbot.jobs.job import Job
from reviewbot.jobs.transient import TransientError
from reviewbot.review.units import DiffError
from reviewbot.runners.handlers import HANDLERS, AlreadyAnswered, CommandContext
from reviewbot.runners.ports import (
    PROCESS_LOCKS,
    EngineProvider,
    FindingStore,
    GitHubPort,
    Outcome,
    PullLocks,
)
from reviewbot.settings.defaults import (
    REACTION_DONE,
    REACTION_FAILED,
    REACTION_RECEIVED,
    SERVER_REVIEW_DEFAULTS,
    ReviewOptions,
)
from reviewbot.settings.repo import RepoConfigError

log = logging.getLogger(__name__)

#: Errors whose message is written for the user (shown in the failure reply).
_USER_FACING = (CommandError, GitHubError, RepoConfigError, DiffError, DeadlineExceeded)


def run_command_job(
    job: Job,
    gh: GitHubPort,
    engines: EngineProvider,
    review_drafts: bool = False,
    locks: PullLocks = PROCESS_LOCKS,
    defaults: ReviewOptions = SERVER_REVIEW_DEFAULTS,
    store: FindingStore | None = None,
) -> Outcome:
    """Carry out the command of ``job`` and answer it once; idempotent.

    ``locks``: the pull request's lock, held from re-reading the markers to answering.
    ``defaults``: what a review produces where the repository does not say (the
    server's profile threshold and ``changed_lines``).
    """
    if not job.interactive or job.comment_id is None or job.comment_type is None:
        raise ValueError(f"run_command_job cannot run a {job.kind!r} job")
    command = command_of(job.args)
    where = (job.repo, job.comment_type, job.comment_id)
    posted = gh.markers(job.repo, job.pr_number, conversation=True)
    if job.comment_id in posted.replies:
        log.info("%s: comment %d was already answered", job.key, job.comment_id)
        gh.swap_reaction(*where, REACTION_RECEIVED, REACTION_DONE)
        return Outcome("already-answered")
    received = gh.add_reaction(*where, REACTION_RECEIVED)  # the web's 👀, or a new one
    pull = gh.pull(job.repo, job.pr_number)
    ctx = CommandContext(
        replace(job, head_sha=pull.head_sha),
        command,
        gh,
        engines,
        pull,
        posted,
        review_drafts,
        locks,
        defaults,
        store,
    )

    def finish(reaction: str | None) -> None:
        """Replace 👀 with ``reaction`` (None: just take 👀 back)."""
        gh.remove_reaction(*where, received)
        if reaction is not None:
            gh.add_reaction(*where, reaction)

    try:
        if not _allowed(ctx):
            outcome = _deny(ctx)
            finish(None)
            return outcome
        if pull.state != "open":
            raise CommandError(f"the pull request is {pull.state}")
        outcome = HANDLERS[command.kind](ctx)
    except TransientError:
        raise
    except AlreadyAnswered:
        return _answered_elsewhere(job, finish)
    except Exception as e:  # answered on the PR, never dropped
        reason = str(e) if isinstance(e, _USER_FACING) else "an internal error (see the logs)"
        log.warning("%s failed: %s", job.key, reason, exc_info=not isinstance(e, _USER_FACING))
        try:
            ctx.reply(failure_text(command.name, reason))
        except AlreadyAnswered:
            return _answered_elsewhere(job, finish)
        finish(REACTION_FAILED)
        return Outcome("failed", detail=reason)
    finish(REACTION_DONE)
    return outcome


def _answered_elsewhere(job: Job, finish: Callable[[str | None], None]) -> Outcome:
    """Another job answered the comment while this one worked: take 👀 back, post nothing
    (the other job sets the final reaction)."""
    log.info("%s: comment %s was answered by another job meanwhile", job.key, job.comment_id)
    finish(None)
    return Outcome("already-answered")


def give_up(
    job: Job,
    gh: GitHubPort,
    error: Exception | str,
    locks: PullLocks = PROCESS_LOCKS,
    attempts: int | None = None,
) -> None:
    """After the last attempt: tell the commenter the command could not run (best effort).

    ``error``: GitHub's last error, or (a string) why every attempt failed;
    ``attempts``: how many there were (said in the reply).
    GitHub may have failed every attempt, so this may fail too; then only the log says it.
    Whether the comment was answered after all is checked under the pull request's lock.
    """
    if job.comment_id is None or job.comment_type is None:
        return
    command = command_of(job.args)
    cause = error if isinstance(error, str) else f"GitHub kept failing ({error})"
    tries = "" if attempts is None else f"; reviewbot gave up after {plural(attempts, 'attempt')}"
    reason = f"{cause}{tries}; please ask again later"
    body = f"{failure_text(command.name, reason)}\n\n{reply_marker(job.comment_id)}"
    where = (job.repo, job.comment_type, job.comment_id)
    try:
        with locks.hold(job.repo, job.pr_number):
            answered = gh.markers(job.repo, job.pr_number, conversation=True).replies
            if job.comment_id in answered:
                log.info(
                    "%s: comment %d was answered before the retries ran out",
                    job.key,
                    job.comment_id,
                )
                return
            gh.reply(job.repo, job.pr_number, job.comment_type, job.comment_id, body)
        gh.swap_reaction(*where, REACTION_RECEIVED, REACTION_FAILED)
    except GitHubError as e:
        log.error("%s: could not report that it gave up: %s", job.key, e)


def _allowed(ctx: CommandContext) -> bool:
    """Whether the sender may run the command (the table says which roles may)."""
    roles = ctx.command.spec.roles
    if roles is None:
        return True
    sender = ctx.job.sender
    return bool(sender) and ctx.gh.role(ctx.job.repo, sender) in roles


def _deny(ctx: CommandContext) -> Outcome:
    """One polite reply per user and PR (unless the repo says ``unauthorized = "ignore"``)."""
    sender = ctx.job.sender or "there"
    try:
        quiet = ctx.config().unauthorized == "ignore"
    except RepoConfigError:
        quiet = False
    if not quiet and sender not in ctx.posted.denied:
        ctx.reply(f"{denied_text(sender, ctx.command.name)}\n\n{denied_marker(sender)}")
    log.info("%s: %s may not run /%s", ctx.job.key, sender, ctx.command.name)
    return Outcome("denied", detail=sender)
