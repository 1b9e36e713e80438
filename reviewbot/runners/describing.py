"""/describe and ``describe_on_open``: the description of a pull request, posted as a
comment or written into its body (reviewbot's own section only)."""

from __future__ import annotations

import logging

from reviewbot.github.description import own_sections, with_description
from reviewbot.review.describe import describe
from reviewbot.runners.ports import GitHubPort, ModelPort, PullLocks
from reviewbot.settings.repo import RepoConfig

log = logging.getLogger(__name__)

#: Marks a description reviewbot posted as a comment (``describe_on_open`` posts once).
DESCRIPTION_MARKER = "<!-- reviewbot:description -->"


def description_text(gh: GitHubPort, repo: str, number: int, engine: ModelPort) -> str:
    """The description of the pull request's current diff (the model runs here)."""
    pull = gh.pull(repo, number)
    diff = gh.pull_diff(repo, number)
    return describe(diff, pull.title, engine.generate, engine.renderer).markdown()


def write_into_body(gh: GitHubPort, repo: str, number: int, text: str, locks: PullLocks) -> None:
    """Put ``text`` into the pull request's body as reviewbot's section, under the pull
    request's lock, reading the body right before writing it (an edit the author made
    meanwhile is kept)."""
    with locks.hold(repo, number):
        body = gh.pull(repo, number).body
        gh.update_pull_body(repo, number, with_description(body, text))


def already_described(gh: GitHubPort, repo: str, number: int, body: str) -> bool:
    """Whether reviewbot described the pull request before (its section in the body, or
    its description comment)."""
    if own_sections(body):
        return True
    return any(
        c.by_reviewbot and DESCRIPTION_MARKER in c.body for c in gh.issue_comments(repo, number)
    )


def describe_on_open(
    gh: GitHubPort,
    repo: str,
    number: int,
    config: RepoConfig,
    engine: ModelPort,
    locks: PullLocks,
) -> str:
    """``describe_on_open``: describe a newly opened pull request once; what it did.

    A failure is logged and said, never raised: the review it follows is posted."""
    try:
        pull = gh.pull(repo, number)
        if already_described(gh, repo, number, pull.body):
            return "already described"
        text = description_text(gh, repo, number, engine)
        if config.describe == "body":
            write_into_body(gh, repo, number, text, locks)
            return "described in the body"
        with locks.hold(repo, number):
            if already_described(gh, repo, number, gh.pull(repo, number).body):
                return "already described"
            gh.post_comment(repo, number, f"{text}\n\n{DESCRIPTION_MARKER}", DESCRIPTION_MARKER)
        return "described in a comment"
    except Exception as e:  # the review is what the job is for
        log.warning("%s#%d: describe_on_open failed: %s", repo, number, e, exc_info=True)
        return f"describe failed ({type(e).__name__})"
