"""The "reviewbot" check run's outcome for a review job (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from reviewbot.github.payload import ReviewPayload, clip_text, counts_line, plural
from reviewbot.review.markdown import inert
from reviewbot.settings.defaults import (
    CHECK_RUN_SUMMARY_MAX_CHARS,
    CHECK_RUN_TITLE_MAX_CHARS,
    REPO_CONFIG_PATH,
)
from reviewbot.settings.repo import RepoConfigError


@dataclass(frozen=True)
class CheckRunResult:
    """What ``complete_check_run`` reports."""

    conclusion: str
    title: str
    summary: str


def check_run_success(payload: ReviewPayload | None, head_sha: str) -> CheckRunResult:
    """The check run of a finished review (``payload`` None: nothing new was posted)."""
    if payload is None:
        return CheckRunResult(
            "success",
            "No new findings",
            f"reviewbot found nothing new to post for `{head_sha[:7]}`.",
        )
    n_new = len(payload.inline) + len(payload.in_body)
    title = "No new findings" if n_new == 0 else f"{plural(n_new, 'new finding')} posted"
    summary = counts_line(payload, len(payload.posted_fingerprints) - len(payload.inline))
    if payload.skipped:
        summary += f"\n\n{plural(len(payload.skipped), 'file or hunk')} not reviewed "
        summary += "(listed in the review)."
    return CheckRunResult("success", title, clip_text(summary, CHECK_RUN_SUMMARY_MAX_CHARS))


def check_run_failure(error: BaseException | str) -> CheckRunResult:
    """A failed run, for the check run: the message when it is safe to show.

    Errors marked ``user_facing`` (an invalid repository config, a GitHub API
    refusal) and plain strings are shown, made inert (they may quote repository
    config values or paths); any other exception is reported by type only — its
    text may hold internals meant for the server logs.
    """
    if isinstance(error, str):
        message = error
    elif getattr(error, "user_facing", False):
        message = str(error)
    else:
        message = (
            f"reviewbot hit an internal error ({type(error).__name__}); "
            "the server logs have the details."
        )
    message = inert(message)
    if isinstance(error, RepoConfigError):
        title = f"Invalid {REPO_CONFIG_PATH}"
        message += (
            f"\n\nFix `{REPO_CONFIG_PATH}` on the default branch; the next push or a "
            "`/review` comment will use it."
        )
    else:
        title = "reviewbot could not review this pull request"
    return CheckRunResult(
        "failure",
        clip_text(title, CHECK_RUN_TITLE_MAX_CHARS),
        clip_text(message, CHECK_RUN_SUMMARY_MAX_CHARS),
    )


def check_run_timed_out(error: BaseException) -> CheckRunResult:
    """A job that ran past its time budget (``error``: its DeadlineExceeded)."""
    return CheckRunResult(
        "timed_out",
        "reviewbot ran past its time budget",
        clip_text(
            f"{str(error)[:1].upper()}{str(error)[1:]}; nothing was posted.",
            CHECK_RUN_SUMMARY_MAX_CHARS,
        ),
    )


def check_run_gave_up(attempts: int, why: str) -> CheckRunResult:
    """A job moved to the dead letters after ``attempts`` attempts (``why``: the last cause)."""
    title = f"reviewbot gave up after {plural(attempts, 'attempt')}"
    summary = (
        f"reviewbot gave up after {plural(attempts, 'attempt')}: {inert(why)}. "
        "The job was moved to the dead letters; an operator can requeue it "
        "(`reviewbot dead-letters requeue`), or a `/review` comment asks again."
    )
    return CheckRunResult(
        "failure",
        clip_text(title, CHECK_RUN_TITLE_MAX_CHARS),
        clip_text(summary, CHECK_RUN_SUMMARY_MAX_CHARS),
    )


def check_run_already_posted(head_sha: str) -> CheckRunResult:
    """An earlier attempt posted the review; this one only completes its check run."""
    return CheckRunResult(
        "success", "Review posted", f"reviewbot's review of `{head_sha[:7]}` is posted."
    )


def check_run_superseded(new_head_sha: str) -> CheckRunResult:
    """The pull request moved on to a newer head before this head's review ran."""
    summary = f"The pull request moved on to `{new_head_sha[:7]}`, which gets its own review."
    return CheckRunResult("skipped", "Superseded", summary)


def check_run_closed(state: str) -> CheckRunResult:
    """The pull request was closed before its review ran."""
    return CheckRunResult("skipped", f"Pull request {state}", f"The pull request is {state}.")
