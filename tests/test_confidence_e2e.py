"""A repository's profile decides what is posted, end to end through the real parts.

Signed webhooks → the Flask app over HTTP → Redis → a real Celery worker running the
tiny 4-bit model (overfitted to say one critique per unit, so it is sure of them) →
its own scores give each finding a confidence → PyGithub posts to the GitHub stand-in.
The same pull request is opened in a repository whose ``.github/reviewbot.toml``
asks for more confidence than any finding has, then in one that is ``assertive``.
"""

from __future__ import annotations

import json

from github_standin import APP_ID, GitHubStandIn, app_key_fixture, github_fixture  # noqa: F401
from test_app_e2e import (  # noqa: F401
    BASE,
    HEAD,
    NUMBER,
    OPENED,
    REPO,
    broker,
    deliver,
    pr,
    start_worker,
    webhook,
    worker_env,
)
from test_confidence import SAYS, SMALL_DIFF, sure_model  # noqa: F401

from reviewbot.settings.defaults import BELOW_CONFIDENCE, REPO_CONFIG_PATH

OTHER = "octo-org/assertive"


def opened(repo: str) -> dict:
    """The ``pull_request.opened`` delivery, for ``repo``."""
    body = json.loads(json.dumps(OPENED))
    owner, name = repo.split("/")
    body["repository"].update(full_name=repo, name=name)
    body["repository"]["owner"]["login"] = owner
    return body


def test_the_repository_profile_decides_whether_a_finding_is_posted(
    pr: GitHubStandIn, webhook, start_worker, sure_model
) -> None:
    pr.add_repo(REPO, files_on_default={REPO_CONFIG_PATH: "min_confidence = 1.0\n"})
    pr.add_pull(REPO, NUMBER, SMALL_DIFF, HEAD, BASE)
    pr.add_repo(OTHER, files_on_default={REPO_CONFIG_PATH: 'profile = "assertive"\n'})
    pr.add_pull(OTHER, NUMBER, SMALL_DIFF, HEAD, BASE)
    worker = start_worker(REVIEWBOT_MODEL=str(sure_model), REVIEWBOT_MAX_NEW_TOKENS="48")

    assert deliver(webhook, "pull_request", opened(REPO)).status_code == 202
    worker.wait_for("finished: posted", 180)
    (sure_only,) = pr.reviews(REPO, NUMBER)
    assert sure_only["comments"] == []  # no finding is that sure: nothing inline
    assert f"{BELOW_CONFIDENCE} (2)" in sure_only["body"]  # counted, not lost

    assert deliver(webhook, "pull_request", opened(OTHER)).status_code == 202
    worker.wait_for("finished: posted", 180, count=2)
    (everything,) = pr.reviews(OTHER, NUMBER)
    posted = sorted((c["path"], c["body"].split("\n")[0]) for c in everything["comments"])
    assert posted == sorted(SAYS.items())
    assert BELOW_CONFIDENCE not in everything["body"]
    runs = pr.check_runs(REPO) + pr.check_runs(OTHER)
    assert [run["conclusion"] for run in runs] == ["success", "success"]
