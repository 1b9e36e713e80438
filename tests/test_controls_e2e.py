"""Team controls end to end: signed webhook deliveries → the Flask app over HTTP → real
Redis → a real worker (tiny 4-bit model) → PyGithub over HTTP to the GitHub stand-in.

/pause, /ignore and /resume decide whether the next push is reviewed; /resolve resolves
exactly reviewbot's threads; /describe into the body twice leaves the author's text and
one reviewbot section."""

from __future__ import annotations

from github_standin import GitHubStandIn, app_key_fixture, github_fixture  # noqa: F401
from test_app_e2e import (  # noqa: F401 - fixtures shared with the GitHub App tests
    BASE,
    HEAD,
    NUMBER,
    OPENED,
    REPO,
    SAMPLE_DIFF,
    broker,
    deliver,
    payload,
    pr,
    start_worker,
    worker_env,
)
from test_commands_e2e import (  # noqa: F401
    WRITER,
    conversation_event,
    replies,
    webhook,
    writer,
)

from reviewbot.github.description import own_sections
from reviewbot.review.diffplan import file_diffs
from reviewbot.settings.defaults import DESCRIBE_MAX_FILES

AUTHOR_TEXT = "Adds a cache.\r\n\r\nPlease look at the TTL handling."


def command(github: GitHubStandIn, url: str, worker, body: str, done: int) -> dict:
    """The writer comments ``body``; the delivery is queued and the worker finishes it
    (its ``done``-th finished job)."""
    comment = github.add_issue_comment(REPO, NUMBER, body, login=WRITER)
    r = deliver(url, "issue_comment", conversation_event(comment))
    assert r.status_code == 202, r.text
    worker.wait_for("finished:", 180, count=done)
    return comment


def push(github: GitHubStandIn, url: str, worker, before: str, after: str, done: int) -> None:
    """A push to the pull request (synchronize) and the worker's finished job."""
    sync = payload("pull_request.synchronize.json")
    sync["before"], sync["after"] = before, after
    sync["pull_request"]["head"]["sha"] = after
    github.add_pull(REPO, NUMBER, SAMPLE_DIFF, after, BASE)
    github.set_compare(REPO, before, after, SAMPLE_DIFF)
    assert deliver(url, "pull_request", sync).status_code == 202
    worker.wait_for("finished:", 180, count=done)


def test_pause_ignore_resume_resolve_and_describe(writer, webhook, start_worker) -> None:
    writer.set_pull_body(REPO, NUMBER, AUTHOR_TEXT)
    writer.set_file(REPO, "main", ".github/reviewbot.toml", 'describe = "body"\n')
    worker = start_worker()
    assert deliver(webhook, "pull_request", OPENED).status_code == 202
    worker.wait_for("finished: posted", 180)
    assert len(writer.reviews(REPO, NUMBER)) == 1

    # /pause: the next push is not reviewed, and its check run says why
    command(writer, webhook, worker, "/pause", 2)
    assert "paused" in replies(writer)[-1]["body"]
    push(writer, webhook, worker, HEAD, "2" * 40, 3)
    assert worker.text().count("finished: skipped") == 1
    assert len(writer.reviews(REPO, NUMBER)) == 1
    skipped = [r for r in writer.check_runs(REPO) if r["head_sha"] == "2" * 40]
    assert [r["conclusion"] for r in skipped] == ["skipped"]
    assert "paused" in skipped[0]["output"]["summary"]

    # /resume: the next push is reviewed again
    command(writer, webhook, worker, "/resume", 4)
    push(writer, webhook, worker, "2" * 40, "3" * 40, 5)
    assert worker.text().count("finished: skipped") == 1
    reviewed = [r for r in writer.check_runs(REPO) if r["head_sha"] == "3" * 40]
    assert [r["conclusion"] for r in reviewed] == ["success"]

    # /ignore: never again automatically
    command(writer, webhook, worker, "/ignore", 6)
    push(writer, webhook, worker, "3" * 40, "4" * 40, 7)
    assert worker.text().count("finished: skipped") == 2

    # /resolve: every unresolved thread reviewbot started, and no one else's
    ours = [c["id"] for c in writer.review_comments(REPO, NUMBER) if c["user"]["type"] == "Bot"]
    assert ours, "the tiny model's findings are inline comments"
    human = writer.add_review_comment(
        REPO, NUMBER, "Is this right?", path=writer.review_comments(REPO, NUMBER)[0]["path"],
        line=writer.review_comments(REPO, NUMBER)[0]["line"], login=WRITER,
    )  # fmt: skip
    command(writer, webhook, worker, "/resolve", 8)
    resolved = writer.resolved_threads(REPO, NUMBER)
    assert set(resolved) == set(ours) and human["id"] not in resolved
    assert set(resolved.values()) == {"reviewbot[bot]"}

    # /describe into the body, twice: the author's text and one reviewbot section
    command(writer, webhook, worker, "/describe", 9)
    command(writer, webhook, worker, "/describe", 10)
    assert worker.text().count("finished: answered") == 6, worker.text()[-3000:]
    body = writer.pull_body(REPO, NUMBER)
    assert body.startswith(AUTHOR_TEXT + "\n\n")
    assert len(own_sections(body)) == 1
    assert body.count("### What this pull request changes") == 1
    for path, _ in file_diffs(SAMPLE_DIFF)[:DESCRIBE_MAX_FILES]:
        assert f"- `{path}`: " in body  # one line per file
