"""The GitHub client against the stand-in, over real HTTP."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from github_standin import (  # noqa: F401  (fixtures: github, app_key)
    APP_ID,
    GitHubStandIn,
    app_key_fixture,
    github_fixture,
    make_app_key,
    public_key_of,
)

from reviewbot.github.app import GitHubApp
from reviewbot.github.client import GitHubClient
from reviewbot.github.data import PullInfo
from reviewbot.github.errors import GitHubError, TransientGitHubError, redact, retry_after_seconds
from reviewbot.github.markers import (
    Markers,
    denied_marker,
    finding_marker,
    reply_marker,
    review_marker,
)
from reviewbot.github.payload import ReviewPayload, build_review_payload
from reviewbot.review.findings import Comment, Review, fingerprint
from reviewbot.settings.defaults import GitHubSettings
from reviewbot.settings.repo import RepoConfig, RepoConfigError

REPO = "octo/demo"
INSTALLATION = 77
HEAD = "a" * 40
BASE = "b" * 40
DIFF = """diff --git a/src/app.py b/src/app.py
index 1111111..2222222 100644
--- a/src/app.py
+++ b/src/app.py
@@ -1,4 +1,6 @@
 import os
-import re
+import sys
+import json
 def main():
-    pass
+    run()
+    return 0
@@ -20,2 +22,3 @@ def helper():
     x = 1
+    y = 2
     return x
"""
FAST = GitHubSettings(
    seconds_between_requests=0,
    seconds_between_writes=0,
    backoff_seconds=0.01,
    max_wait_seconds=5,
    attempts=3,
)


class Sleeps:
    """Records waits instead of sleeping (keeps retry tests fast)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def app(github: GitHubStandIn, app_key: str, sleeps: Sleeps) -> GitHubApp:
    github.add_repo(REPO, files_on_default={".github/reviewbot.toml": "max_comments = 2\n"})
    github.add_pull(
        REPO,
        7,
        DIFF,
        HEAD,
        BASE,
        files_at_head={".github/reviewbot.toml": "max_comments = 99\n"},
    )
    return GitHubApp(APP_ID, app_key, base_url=github.url, settings=FAST, sleep=sleeps)


@pytest.fixture
def client(app: GitHubApp) -> GitHubClient:
    return app.installation(INSTALLATION)


def make_comment(line: int, text: str, start: int | None = None, path: str = "src/app.py"):
    return Comment(path, line, "RIGHT", start, text, None, fingerprint(path, text, None))


def payload_for(*comments: Comment, posted: set[str] | None = None) -> ReviewPayload:
    payload = build_review_payload(
        Review((), comments, None, ()), "auto", HEAD, posted or set(), 10
    )
    assert payload is not None
    return payload


GOOD = make_comment(2, "Is sys used anywhere?")
MULTI = make_comment(6, "Return a named exit code.", start=5)
OUTSIDE = make_comment(15, "This line is not in the diff.")
REMOVED = Comment(
    "src/app.py", 2, "LEFT", None, "Is re still needed?", None, fingerprint("x", "re", None)
)


# --- auth ------------------------------------------------------------------------------


def test_one_token_per_installation_reused_by_every_client(
    app: GitHubApp,
    github: GitHubStandIn,
) -> None:
    first, second = app.installation(INSTALLATION), app.installation(INSTALLATION)
    first.pull(REPO, 7)
    second.pull_diff(REPO, 7)
    second.posted_fingerprints(REPO, 7)
    assert len(github.requests_to("POST", r"/access_tokens$")) == 1
    assert github.requests_to("POST", r"/access_tokens$")[0].path == (
        f"/app/installations/{INSTALLATION}/access_tokens"
    )
    assert all(r.auth == "token" for r in github.requests if "/repos/" in r.path)
    app.installation(INSTALLATION + 1).pull(REPO, 7)
    assert len(github.issued_tokens) == 2


def test_concurrent_clients_share_one_token_and_post_distinct_reviews(
    app: GitHubApp, github: GitHubStandIn
) -> None:
    comments = [make_comment(2, f"Concurrent finding {i}.") for i in range(8)]

    def post(c: Comment) -> int:
        return app.installation(INSTALLATION).post_review(REPO, 7, payload_for(c))

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(post, comments))
    assert len(set(ids)) == 8
    assert sorted(r["id"] for r in github.reviews(REPO, 7)) == sorted(ids)
    assert len(github.issued_tokens) == 1


def test_token_renewed_when_about_to_expire(app: GitHubApp, github: GitHubStandIn) -> None:
    github.token_lifetime = 10  # below PyGithub's 20 s refresh margin
    client = app.installation(INSTALLATION)
    client.pull(REPO, 7)
    client.pull(REPO, 7)
    assert len(github.issued_tokens) == 2


def test_jwt_signed_by_another_key_is_refused(github: GitHubStandIn) -> None:
    github.add_repo(REPO)
    other = GitHubApp(APP_ID, make_app_key(), base_url=github.url, settings=FAST)
    with pytest.raises(GitHubError) as info:
        other.installation(1).pull(REPO, 7)
    assert info.value.status == 401
    assert not isinstance(info.value, TransientGitHubError)
    assert "could not be decoded" in str(info.value)
    assert github.issued_tokens == []


def test_jwt_with_another_app_id_is_refused(github: GitHubStandIn, app_key: str) -> None:
    github.add_repo(REPO)
    wrong = GitHubApp(APP_ID + 1, app_key, base_url=github.url, settings=FAST)
    with pytest.raises(GitHubError) as info:
        wrong.installation(1).pull(REPO, 7)
    assert info.value.status == 401
    assert github.issued_tokens == []


def test_unissued_token_is_refused_and_a_known_one_works(github: GitHubStandIn) -> None:
    github.add_repo(REPO)
    github.add_pull(REPO, 3, DIFF, HEAD, BASE)
    with pytest.raises(GitHubError) as info:
        GitHubClient.from_token("ghp_notissued12345", github.url, FAST).pull(REPO, 3)
    assert info.value.status == 401
    github.add_token("ghp_personal12345", login="alice")
    assert GitHubClient.from_token("ghp_personal12345", github.url, FAST).pull(REPO, 3).number == 3


def test_enterprise_base_url_with_a_path_prefix(app_key: str) -> None:
    ghe = GitHubStandIn(APP_ID, public_key_of(app_key), prefix="/api/v3")
    try:
        ghe.add_repo(REPO)
        ghe.add_pull(REPO, 7, DIFF, HEAD, BASE)
        assert ghe.url.endswith("/api/v3")
        client = GitHubApp(APP_ID, app_key, ghe.url, FAST).installation(INSTALLATION)
        assert client.pull(REPO, 7).head_sha == HEAD
        assert client.pull_diff(REPO, 7) == DIFF
        assert client.repo_config(REPO) == RepoConfig()
        assert len(ghe.issued_tokens) == 1
    finally:
        ghe.stop()


def test_bad_private_key_fails_early_without_echoing_it() -> None:
    with pytest.raises(ValueError) as info:
        GitHubApp(
            APP_ID, "-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----"
        )
    assert "not a key" not in str(info.value)


# --- reading ---------------------------------------------------------------------------


def test_pull_metadata(client: GitHubClient, github: GitHubStandIn) -> None:
    github.add_pull(
        REPO,
        8,
        DIFF,
        "c" * 40,
        BASE,
        draft=True,
        title="WIP",
        author="dependabot[bot]",
        author_type="Bot",
        body="Bumps the lockfile.",
        labels=["dependencies", "no-review"],
        head_ref="dependabot/pip/x",
    )
    assert client.pull(REPO, 7) == PullInfo(
        number=7,
        title="Update the code",
        head_sha=HEAD,
        base_sha=BASE,
        draft=False,
        state="open",
        author="Codertocat",
        author_type="User",
        default_branch="main",
        head_ref="changes",
    )
    info = client.pull(REPO, 8)
    assert (info.draft, info.title, info.author, info.author_type) == (
        True,
        "WIP",
        "dependabot[bot]",
        "Bot",
    )
    assert (info.body, info.labels, info.head_ref) == (
        "Bumps the lockfile.",
        ("dependencies", "no-review"),
        "dependabot/pip/x",
    )


def test_resolving_a_thread_and_editing_the_body(client: GitHubClient, github: GitHubStandIn):
    first = github.add_review_comment(REPO, 7, "Nit.", path="src/app.py", line=2)
    [thread] = client.review_threads(REPO, 7)
    assert (thread.root_id, thread.resolved) == (first["id"], False) and thread.node_id
    client.resolve_thread(REPO, thread.node_id)
    [thread] = client.review_threads(REPO, 7)
    assert thread.resolved and thread.resolved_by == "reviewbot[bot]"
    with pytest.raises(GitHubError, match="Could not resolve to a node"):
        client.resolve_thread(REPO, "PRRT_404")
    client.update_pull_body(REPO, 7, "New text")
    assert github.pull_body(REPO, 7) == "New text" and client.pull(REPO, 7).body == "New text"
    marker = "<!-- reviewbot:description -->"
    first_id = client.post_comment(REPO, 7, f"Described.\n\n{marker}", marker)
    assert client.issue_comments(REPO, 7)[-1].id == first_id


def test_diff_and_compare_use_the_diff_media_type(
    client: GitHubClient,
    github: GitHubStandIn,
) -> None:
    assert client.pull_diff(REPO, 7) == DIFF
    github.set_compare(REPO, BASE, HEAD, "diff --git a/x b/x\n")
    assert client.compare_diff(REPO, BASE, HEAD) == "diff --git a/x b/x\n"
    for r in github.requests_to("GET", r"/(pulls/7|compare/.*)$"):
        assert r.headers["Accept"] == "application/vnd.github.diff"
    with pytest.raises(GitHubError) as info:
        client.compare_diff(REPO, HEAD, BASE)
    assert info.value.status == 404
    assert f"/repos/{REPO}/compare/{HEAD}...{BASE}" in str(info.value)


def test_missing_pull_is_a_clear_error(client: GitHubClient) -> None:
    with pytest.raises(GitHubError) as info:
        client.pull(REPO, 404)
    assert info.value.status == 404
    assert f"GET /repos/{REPO}/pulls/404" in str(info.value)
    with pytest.raises(ValueError):
        client.pull("not a repo", 1)


def test_repo_config_comes_from_the_default_branch(
    client: GitHubClient,
    github: GitHubStandIn,
) -> None:
    assert client.repo_config(REPO).max_comments == 2  # not the PR head's 99
    assert client.repo_config(REPO, default_branch="main").max_comments == 2
    refs = [r.query.get("ref") for r in github.requests_to("GET", r"/contents/")]
    assert refs == [None, "main"]


def test_repo_config_absent_gives_defaults(client: GitHubClient, github: GitHubStandIn) -> None:
    github.set_file(REPO, "main", ".github/reviewbot.toml", None)
    assert client.repo_config(REPO) == RepoConfig()


def test_invalid_repo_config_raises(client: GitHubClient, github: GitHubStandIn) -> None:
    github.set_file(REPO, "main", ".github/reviewbot.toml", "max_comments = 'lots'\n")
    with pytest.raises(RepoConfigError, match="max_comments must be an integer"):
        client.repo_config(REPO)


# --- posting ---------------------------------------------------------------------------


def test_review_posted_with_exact_comments(client: GitHubClient, github: GitHubStandIn) -> None:
    payload = payload_for(GOOD, MULTI, REMOVED)
    review_id = client.post_review(REPO, 7, payload)
    (posted,) = github.reviews(REPO, 7)
    assert posted["id"] == review_id
    assert posted["state"] == "COMMENTED"
    assert posted["commit_id"] == HEAD
    assert posted["body"] == payload.body
    assert posted["user"]["login"] == "reviewbot[bot]"
    got = [
        (c["path"], c["start_line"], c["line"], c["side"], c["body"]) for c in posted["comments"]
    ]
    assert got == [
        ("src/app.py", None, 2, "RIGHT", payload.comments[0]["body"]),
        ("src/app.py", 5, 6, "RIGHT", payload.comments[1]["body"]),
        ("src/app.py", None, 2, "LEFT", payload.comments[2]["body"]),
    ]
    assert posted["comments"][0]["diff_hunk"].endswith("\n+import sys")
    assert posted["comments"][1]["diff_hunk"].endswith("\n+    return 0")
    assert posted["comments"][2]["diff_hunk"].endswith("\n-import re")
    sent = github.requests_to("POST", r"/reviews$")[0].json
    assert sent == payload.to_json()


def test_posted_findings_and_review_are_recognised(
    client: GitHubClient,
    github: GitHubStandIn,
) -> None:
    assert not client.has_review(REPO, 7, "auto", HEAD)
    payload = payload_for(GOOD, MULTI)
    review_id = client.post_review(REPO, 7, payload)
    assert client.posted_fingerprints(REPO, 7) == {GOOD.fingerprint, MULTI.fingerprint}
    assert client.has_review(REPO, 7, "auto", HEAD)
    assert not client.has_review(REPO, 7, "incremental", HEAD)
    assert not client.has_review(REPO, 7, "auto", BASE)
    assert client.find_review(REPO, 7, "auto", HEAD, payload.fingerprint) == review_id
    rerun = build_review_payload(
        Review((), (GOOD, MULTI), None, ()),
        "auto",
        HEAD,
        client.posted_fingerprints(REPO, 7),
        10,
    )
    assert rerun is None


def test_markers_are_read_across_pages(
    app: GitHubApp,
    github: GitHubStandIn,
    app_key: str,
) -> None:
    paged = GitHubSettings(per_page=2, seconds_between_requests=0, seconds_between_writes=0)
    client = GitHubApp(APP_ID, app_key, github.url, paged).installation(INSTALLATION)
    comments = [make_comment(line, f"Finding number {line} here.") for line in (1, 2, 3, 4, 5)]
    for c in comments:
        client.post_review(REPO, 7, payload_for(c))
    assert client.posted_fingerprints(REPO, 7) == {c.fingerprint for c in comments}
    pages = [r.query.get("page") for r in github.requests_to("GET", r"/reviews$")]
    assert pages[-3:] == [None, "2", "3"]


def test_422_on_one_comment_moves_it_into_the_body(
    client: GitHubClient,
    github: GitHubStandIn,
) -> None:
    payload = payload_for(GOOD, OUTSIDE, MULTI)
    review_id = client.post_review(REPO, 7, payload)
    (posted,) = github.reviews(REPO, 7)
    assert posted["id"] == review_id
    assert [c["line"] for c in posted["comments"]] == [2, 6]
    assert "GitHub could not place these on the diff" in posted["body"]
    assert "This line is not in the diff." in posted["body"]
    assert f"<!-- reviewbot:finding:{OUTSIDE.fingerprint} -->" in posted["body"]
    assert posted["body"].rstrip().endswith(f"{payload.fingerprint} -->")
    posts = github.requests_to("POST", r"/reviews$")
    assert len(posts) == 2
    assert len(github.requests_to("GET", r"/pulls/7/files$")) == 1
    assert client.posted_fingerprints(REPO, 7) == {
        GOOD.fingerprint,
        OUTSIDE.fingerprint,
        MULTI.fingerprint,
    }


def test_unexplained_422_moves_all_comments_into_the_body(
    client: GitHubClient,
    github: GitHubStandIn,
) -> None:
    github.fail("POST", r"/pulls/7/reviews$", 422)
    client.post_review(REPO, 7, payload_for(GOOD, MULTI))
    (posted,) = github.reviews(REPO, 7)
    assert posted["comments"] == []
    assert "Is sys used anywhere?" in posted["body"]
    assert "Return a named exit code." in posted["body"]
    assert len(github.requests_to("POST", r"/reviews$")) == 2


def test_422_without_comments_is_an_error(client: GitHubClient, github: GitHubStandIn) -> None:
    github.fail("POST", r"/reviews$", 422, times=None)
    with pytest.raises(GitHubError) as info:
        client.post_review(REPO, 7, payload_for(GOOD))
    assert info.value.status == 422
    assert "Line could not be resolved" in str(info.value)
    assert github.reviews(REPO, 7) == []


def test_5xx_once_is_retried_and_posts_one_review(
    client: GitHubClient,
    github: GitHubStandIn,
    sleeps: Sleeps,
) -> None:
    github.fail("POST", r"/reviews$", 502)
    client.post_review(REPO, 7, payload_for(GOOD))
    assert len(github.reviews(REPO, 7)) == 1
    assert len(github.requests_to("POST", r"/reviews$")) == 2
    assert sleeps.waits == [FAST.backoff_seconds]


def test_5xx_after_github_created_the_review_does_not_post_twice(
    client: GitHubClient,
    github: GitHubStandIn,
) -> None:
    github.fail("POST", r"/reviews$", 502, apply=True)
    review_id = client.post_review(REPO, 7, payload_for(GOOD))
    (posted,) = github.reviews(REPO, 7)
    assert posted["id"] == review_id
    assert len(github.requests_to("POST", r"/reviews$")) == 1


def test_persistent_5xx_raises_transient_after_bounded_attempts(
    client: GitHubClient,
    github: GitHubStandIn,
    sleeps: Sleeps,
) -> None:
    github.fail("GET", r"/pulls/7$", 503, times=None)
    with pytest.raises(TransientGitHubError) as info:
        client.pull(REPO, 7)
    assert info.value.status == 503
    assert info.value.retry_after is None
    assert len(github.requests_to("GET", r"/pulls/7$")) == FAST.attempts
    assert sleeps.waits == [0.01, 0.02]


def test_secondary_rate_limit_honours_retry_after(
    client: GitHubClient,
    github: GitHubStandIn,
    sleeps: Sleeps,
) -> None:
    github.fail("POST", r"/reviews$", 403, headers={"Retry-After": "3"})
    client.post_review(REPO, 7, payload_for(GOOD))
    assert sleeps.waits == [3.0]
    assert len(github.reviews(REPO, 7)) == 1


def test_long_retry_after_is_left_to_the_job_queue(
    client: GitHubClient,
    github: GitHubStandIn,
    sleeps: Sleeps,
) -> None:
    github.fail("GET", r"/pulls/7$", 403, headers={"Retry-After": "120"})
    with pytest.raises(TransientGitHubError) as info:
        client.pull(REPO, 7)
    assert info.value.retry_after == 120
    assert info.value.status == 403
    assert sleeps.waits == []
    assert len(github.requests_to("GET", r"/pulls/7$")) == 1


def test_secondary_rate_limit_message_without_header(
    client: GitHubClient,
    github: GitHubStandIn,
) -> None:
    github.fail("GET", r"/pulls/7$", 403)
    with pytest.raises(TransientGitHubError) as info:
        client.pull(REPO, 7)
    assert info.value.retry_after == FAST.secondary_rate_limit_wait
    assert "secondary rate limit" in str(info.value)


def test_primary_rate_limit_waits_until_reset(
    client: GitHubClient,
    github: GitHubStandIn,
    sleeps: Sleeps,
) -> None:
    reset = int(time.time()) + 2
    github.fail(
        "GET",
        r"/pulls/7$",
        429,
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
    )
    assert client.pull(REPO, 7).number == 7
    (wait,) = sleeps.waits
    assert 1.0 <= wait <= 3.5
    github.fail(
        "GET",
        r"/pulls/7$",
        403,
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset + 600)},
        body={"message": "API rate limit exceeded for installation ID 77."},
    )
    with pytest.raises(TransientGitHubError) as info:
        client.pull(REPO, 7)
    assert info.value.retry_after is not None and info.value.retry_after > 500


def test_other_client_errors_are_not_transient(
    client: GitHubClient,
    github: GitHubStandIn,
) -> None:
    github.fail(
        "GET", r"/pulls/7$", 403, body={"message": "Resource not accessible by integration"}
    )
    with pytest.raises(GitHubError) as info:
        client.pull(REPO, 7)
    assert not isinstance(info.value, TransientGitHubError)
    assert "Resource not accessible by integration" in str(info.value)


def test_token_endpoint_5xx_is_retried(client: GitHubClient, github: GitHubStandIn) -> None:
    github.fail("POST", r"/access_tokens$", 500)
    assert client.pull(REPO, 7).number == 7
    assert len(github.issued_tokens) == 1


def test_network_error_is_transient(client: GitHubClient, github: GitHubStandIn) -> None:
    github.stop()
    with pytest.raises(TransientGitHubError, match="network error"):
        client.pull(REPO, 7)


def test_check_run_in_progress_then_completed(
    client: GitHubClient,
    github: GitHubStandIn,
) -> None:
    run_id = client.start_check_run(REPO, HEAD, "auto:job-key")
    (run,) = github.check_runs(REPO)
    assert (run["id"], run["name"], run["status"], run["head_sha"], run["external_id"]) == (
        run_id,
        "reviewbot",
        "in_progress",
        HEAD,
        "auto:job-key",
    )
    assert run["conclusion"] is None
    client.complete_check_run(REPO, run_id, "failure", "Invalid config", "max_comments: bad")
    (run,) = github.check_runs(REPO)
    assert (run["status"], run["conclusion"]) == ("completed", "failure")
    assert run["output"]["title"] == "Invalid config"
    assert run["output"]["summary"] == "max_comments: bad"
    assert run["completed_at"]
    with pytest.raises(ValueError, match="conclusion"):
        client.complete_check_run(REPO, run_id, "great", "t", "s")


def test_a_job_finds_the_check_run_an_earlier_attempt_left_open(
    app: GitHubApp, github: GitHubStandIn, app_key: str
) -> None:
    """By the job's key (its external id), through GitHub's list of the commit's runs,
    page after page; completed runs and other jobs' runs are not it."""
    paged = GitHubApp(APP_ID, app_key, base_url=github.url, settings=replace(FAST, per_page=2))
    client = paged.installation(INSTALLATION)
    assert client.find_check_run(REPO, HEAD, "auto:key") is None
    done = client.start_check_run(REPO, HEAD, "auto:key")
    client.complete_check_run(REPO, done, "failure", "Gave up", "after 3 attempts")
    left_open = client.start_check_run(REPO, HEAD, "auto:key")
    for other in ("review:key:1", "review:key:2", "incremental:key"):
        client.start_check_run(REPO, HEAD, other)
    github.add_pull(REPO, 8, DIFF, "f" * 40, BASE)
    client.start_check_run(REPO, "f" * 40, "auto:key")  # another commit

    assert client.find_check_run(REPO, HEAD, "auto:key") == left_open
    pages = github.requests_to("GET", rf"/repos/{REPO}/commits/{HEAD}/check-runs$")[-3:]
    assert [r.query for r in pages] == [
        {"check_name": "reviewbot", "filter": "all", "per_page": "2", "page": str(n)}
        for n in (1, 2, 3)
    ]
    client.complete_check_run(REPO, left_open, "success", "Done", "Posted.")
    assert client.find_check_run(REPO, HEAD, "auto:key") is None


def test_a_check_run_github_created_before_the_answer_was_lost_is_not_created_twice(
    client: GitHubClient, github: GitHubStandIn
) -> None:
    github.fail("POST", rf"/repos/{REPO}/check-runs$", 502, apply=True)

    run_id = client.start_check_run(REPO, HEAD, "auto:key")

    (run,) = github.check_runs(REPO)
    assert run["id"] == run_id and run["external_id"] == "auto:key"


# --- secrets ---------------------------------------------------------------------------


def test_no_secret_in_logs_or_errors(
    app: GitHubApp,
    github: GitHubStandIn,
    app_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = app.installation(INSTALLATION)
    client.pull(REPO, 7)
    client.post_review(REPO, 7, payload_for(GOOD, OUTSIDE))
    github.fail("GET", r"/pulls/7$", 502, times=None)
    errors = []
    try:
        client.pull(REPO, 7)
    except TransientGitHubError as e:
        errors.append(repr(e) + str(e) + repr(e.__cause__))
    assert errors
    assert github.issued_tokens and github.seen_jwts
    secrets = [*github.issued_tokens, *github.seen_jwts, app_key.splitlines()[1]]
    text = caplog.text + "".join(errors) + repr(app) + repr(client)
    assert "/access_tokens" in caplog.text  # the token exchange itself was logged ...
    for secret in secrets:
        assert secret not in text  # ... without its secrets


def test_retry_after_from_headers() -> None:
    now = 1_700_000_000.0
    assert retry_after_seconds({"Retry-After": "7"}, now) == 7.0
    date = "Tue, 14 Nov 2023 22:13:40 GMT"  # now + 20 s
    assert retry_after_seconds({"retry-after": date}, now) == 20.0
    reset = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(now) + 30)}
    assert retry_after_seconds(reset, now) == 31.0
    assert retry_after_seconds({**reset, "x-ratelimit-remaining": "12"}, now) is None
    assert retry_after_seconds({}, now) is None


def test_redact_masks_tokens_jwts_and_keys() -> None:
    text = (
        '{"token": "ghs_abcdefghijklmnop", "x": 1} Authorization: Bearer eyJa.eyJb.sig '
        "token ghp_1234567890abcdef -----BEGIN RSA PRIVATE KEY-----\nMIIE\n"
        "-----END RSA PRIVATE KEY-----"
    )
    clean = redact(text)
    for secret in ("abcdefghijklmnop", "eyJa.eyJb.sig", "1234567890abcdef", "MIIE"):
        assert secret not in clean


# --- who reviewbot is: only its own account's words count (issue 11, item 1) ------------------

MALLORY = "mallory"


def test_the_apps_account_is_learned_from_github_once(app: GitHubApp, github: GitHubStandIn):
    first, second = app.installation(INSTALLATION), app.installation(INSTALLATION + 1)
    first.markers(REPO, 7)
    second.markers(REPO, 7, conversation=True)
    first.issue_comments(REPO, 7)

    assert first.identity == second.identity == app.identity()
    assert first.identity.login == "reviewbot[bot]" and first.identity.id == github.bot["id"]
    (as_app,) = github.requests_to("GET", r"^/app$")
    assert as_app.auth == "jwt"  # GET /app answers the App's JWT only
    (user,) = github.requests_to("GET", r"^/users/")
    assert (user.path, user.auth) == ("/users/reviewbot[bot]", "token")


def test_learning_the_apps_account_is_retried_and_its_failures_are_not_cached(
    app: GitHubApp, github: GitHubStandIn
) -> None:
    github.fail("GET", r"^/app$", 502, times=FAST.attempts)
    with pytest.raises(TransientGitHubError):
        app.installation(INSTALLATION).markers(REPO, 7)
    assert app.installation(INSTALLATION).identity.login == "reviewbot[bot]"
    assert len(github.requests_to("GET", r"^/app$")) == FAST.attempts + 1


def test_a_configured_bot_login_overrides_the_apps(github: GitHubStandIn, app_key: str) -> None:
    github.add_repo(REPO)
    github.add_pull(REPO, 7, DIFF, HEAD, BASE)
    github.add_issue_comment(REPO, 7, "<!-- reviewbot:reply:5 -->", login="machine-user")
    app = GitHubApp(APP_ID, app_key, github.url, FAST, bot_login="Machine-User")

    client = app.installation(INSTALLATION)

    assert client.markers(REPO, 7, conversation=True).replies == {5}
    assert client.identity.login == "machine-user"  # as GitHub spells it
    assert github.requests_to("GET", r"^/app$") == []
    with pytest.raises(GitHubError) as unknown:
        GitHubApp(APP_ID, app_key, github.url, FAST, bot_login="nobody-here").identity()
    assert unknown.value.status == 404


def test_a_personal_access_token_client_is_its_own_account(github: GitHubStandIn) -> None:
    github.add_repo(REPO)
    github.add_pull(REPO, 3, DIFF, HEAD, BASE)
    github.add_token("ghp_personal12345", login="alice")
    github.add_issue_comment(REPO, 3, "<!-- reviewbot:reply:9 -->", login="alice")
    github.add_issue_comment(REPO, 3, "<!-- reviewbot:reply:8 -->", login="bob")

    client = GitHubClient.from_token("ghp_personal12345", github.url, FAST)

    assert client.markers(REPO, 3, conversation=True).replies == {9}
    assert client.identity.login == "alice"


def test_an_installation_token_alone_does_not_say_who_reviewbot_is(
    client: GitHubClient, github: GitHubStandIn
) -> None:
    client.pull(REPO, 7)
    (token,) = github.issued_tokens
    bare = GitHubClient.from_token(token, github.url, FAST)  # no identity given
    with pytest.raises(GitHubError) as refused:
        bare.markers(REPO, 7)
    assert refused.value.status == 403  # GET /user: an installation is no user


def test_markers_count_only_in_what_reviewbot_itself_wrote(
    client: GitHubClient, github: GitHubStandIn
) -> None:
    forged = (
        f"{review_marker('auto', HEAD, 'a1b2c3d4e5f6')} {finding_marker(GOOD.fingerprint)} "
        f"{reply_marker(5)} {denied_marker(MALLORY)}"
    )
    github.add_review(REPO, 7, f"LGTM {forged}", login=MALLORY)
    github.add_review_comment(REPO, 7, forged, "src/app.py", 2, login=MALLORY)
    github.add_issue_comment(REPO, 7, forged, login="dependabot[bot]", user_type="Bot")

    assert client.markers(REPO, 7, conversation=True) == Markers()
    assert not client.has_review(REPO, 7, "auto", HEAD)
    comments = client.review_comments(REPO, 7) + client.issue_comments(REPO, 7)
    assert [c.by_reviewbot for c in comments] == [False, False]

    review_id = client.post_review(REPO, 7, payload_for(GOOD))

    assert client.markers(REPO, 7).findings == {GOOD.fingerprint}
    assert client.find_review(REPO, 7, "auto", HEAD) == review_id
    (ours,) = [c for c in client.review_comments(REPO, 7) if c.by_reviewbot]
    assert (ours.author, ours.author_id) == ("reviewbot[bot]", github.bot["id"])


def test_a_forged_review_does_not_stand_in_for_a_review_github_lost(
    client: GitHubClient, github: GitHubStandIn
) -> None:
    payload = payload_for(GOOD)
    marker = review_marker(payload.kind, payload.head_sha, payload.fingerprint)
    github.add_review(REPO, 7, f"Already done.\n\n{marker}", login=MALLORY)
    github.fail("POST", r"/reviews$", 502)  # not applied: GitHub did not create it

    review_id = client.post_review(REPO, 7, payload)

    mallorys, ours = github.reviews(REPO, 7)
    assert ours["id"] == review_id != mallorys["id"]
    assert ours["user"]["login"] == "reviewbot[bot]" and ours["comments"]


def test_a_forged_reply_does_not_stand_in_for_a_reply_github_lost(
    client: GitHubClient, github: GitHubStandIn
) -> None:
    command = github.add_issue_comment(REPO, 7, "/help")
    marker = reply_marker(command["id"])
    github.add_issue_comment(REPO, 7, f"Answered.\n\n{marker}", login=MALLORY)
    github.fail("POST", r"/issues/7/comments$", 502)  # not applied

    reply_id = client.reply(REPO, 7, "issue", command["id"], f"Help.\n\n{marker}")

    *_, ours = github.issue_comments(REPO, 7)
    assert ours["id"] == reply_id and ours["user"]["type"] == "Bot"
    assert len(github.requests_to("POST", r"/issues/7/comments$")) == 2
