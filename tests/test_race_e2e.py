"""One review per head, even with many workers (issue 11, item 5), end to end.

Two real Celery worker subprocesses race an automatic review and a ``/review`` of the
same head: the automatic one read reviewbot's markers first and is held back (GitHub
holds its check run's answer) while the ``/review`` generates and posts; GitHub then
holds the ``/review``'s posted review, so its worker stays at the posting step, inside
the pull request's lock, while the automatic review is let go and reaches its own
posting step. Each finding must appear once on the pull request.
"""

from __future__ import annotations

import re

from github_standin import GitHubStandIn, app_key_fixture, github_fixture  # noqa: F401
from test_app_e2e import (  # noqa: F401 - fixtures shared with the GitHub App tests
    HEAD,
    NUMBER,
    REPO,
    REVIEWS_PATH,
    broker,
    deliver,
    pr,
    send_job,
    start_worker,
    wait_until,
    worker_env,
)
from test_commands_e2e import (  # noqa: F401 - the webhook with the App's credentials
    WRITER,
    conversation_event,
    webhook,
    writer,
)

from reviewbot.jobs.job import Job

FINDING = re.compile(r"<!-- reviewbot:finding:([0-9a-f]+) -->")


def finding_markers(github: GitHubStandIn) -> list[str]:
    """Every finding marker on the pull request: review bodies and inline comments."""
    texts = [r["body"] for r in github.reviews(REPO, NUMBER)]
    texts += [c["body"] for c in github.review_comments(REPO, NUMBER)]
    return [m for text in texts for m in FINDING.findall(text)]


def test_an_automatic_review_and_a_review_command_on_two_workers_post_each_finding_once(
    writer, webhook, start_worker
):
    checks = writer.hold("POST", rf"/repos/{REPO}/check-runs$")
    workers = [start_worker(), start_worker()]

    # the automatic review: its markers are read, then GitHub holds its check run
    send_job(Job("auto", REPO, 1, NUMBER, HEAD))
    assert checks.reached.wait(120), [w.text()[-2000:] for w in workers]
    auto = next(w for w in workers if "job auto:" in w.text())
    other = next(w for w in workers if w is not auto)

    # a /review of the same head goes to the other worker, which posts first and is
    # then kept at its posting step (inside the lock) by GitHub holding the answer
    posting = writer.hold("POST", REVIEWS_PATH)
    command = writer.add_issue_comment(REPO, NUMBER, "/review", login=WRITER)
    assert deliver(webhook, "issue_comment", conversation_event(command)).status_code == 202
    assert posting.reached.wait(180), other.text()[-3000:]
    assert "job review:" in other.text()
    posted_first = finding_markers(writer)
    assert posted_first, "the tiny model's findings make up the /review"

    # the automatic review generates the same findings and reaches its posting step
    # (where it waits for the /review's worker to let go of the lock)
    checks.release.set()
    auto.wait_for_match(rf"waiting for the lock of {re.escape(REPO)}#{NUMBER}|finished:", 180)
    posting.release.set()
    other.wait_for("finished: posted", 120)
    auto.wait_for("finished:", 120)

    markers = finding_markers(writer)
    assert sorted(markers) == sorted(set(markers)) == sorted(set(posted_first))
    assert "finished: nothing-new" in auto.text(), auto.text()[-3000:]
    assert "waiting for the lock" in auto.text()  # the race was real: both reached posting
    (review,) = writer.reviews(REPO, NUMBER)
    assert f"<!-- reviewbot:review:{HEAD}:" in review["body"]
    assert f"<!-- reviewbot:reply:{command['id']} -->" in review["body"]
    wait_until(lambda: writer.reactions("issue", command["id"]) == ["rocket"], 20, "🚀")
    runs = writer.check_runs(REPO)
    assert len(runs) == 2
    assert all((r["status"], r["conclusion"]) == ("completed", "success") for r in runs)
