"""``reviewbot finetune harvest`` against the GitHub stand-in, over real HTTP."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from github_standin import (  # noqa: F401  (fixtures: github, app_key)
    GitHubStandIn,
    app_key_fixture,
    github_fixture,
)

from finetune.examples import read_examples
from finetune.harvest import HarvestClient, harvest, is_bot, skip_reason
from reviewbot.cli import main
from reviewbot.settings.defaults import GitHubSettings

REPO = "octo/demo"
TOKEN = "ghp_" + "harvest0123456789abcdefghijklmnopq"
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


@pytest.fixture
def repo(github: GitHubStandIn) -> dict[str, dict]:
    """Merged PR 1 (in range) with human, bot, reviewbot and reply comments; PR 2 too old."""
    github.add_token(TOKEN, login="harvester")
    github.add_repo(REPO)
    github.add_pull(REPO, 1, DIFF, "a" * 40, "b" * 40, author="alice")
    github.add_pull(REPO, 2, DIFF, "c" * 40, "d" * 40, author="alice")
    github.add_pull(REPO, 3, DIFF, "e" * 40, "f" * 40, state="closed")  # closed, not merged
    github.add_pull(REPO, 4, DIFF, "1" * 40, "2" * 40)  # still open
    for login in ("bob", "carol", "dave", "eve", "alice"):  # the team: collaborators
        github.set_role(REPO, login, "write")
    c: dict[str, dict] = {}
    c["unused"] = github.add_review_comment(
        REPO, 1, "`json` is never used here.\n```suggestion\n```", "src/app.py", 3, login="bob"
    )
    c["return"] = github.add_review_comment(
        REPO,
        1,
        "Return the exit code of `run()`.\n```suggestion\n    return run()\n```",
        "src/app.py",
        6,
        start_line=5,
        login="carol",
    )
    c["plain"] = github.add_review_comment(
        REPO, 1, "Is `y` used anywhere?", "src/app.py", 23, login="dave"
    )
    github.add_review_comment(REPO, 1, "Bump deps", "src/app.py", 2, login="dependabot[bot]")
    github.add_review_comment(
        REPO, 1, "Lint: unused import", "src/app.py", 3, login="ci", user_type="Bot"
    )
    github.add_review_comment(
        REPO,
        1,
        "Old finding\n\n<!-- reviewbot:finding:abcdef123456 -->",
        "src/app.py",
        2,
        login="eve",
    )
    github.add_review_comment(
        REPO, 1, "Done, thanks!", login="alice", in_reply_to=c["unused"]["id"]
    )
    github.add_review_comment(REPO, 1, "Note: run() can fail.", "src/app.py", 5, login="alice")
    # an outsider's comment, with a "revision" that plants a backdoor
    c["outsider"] = github.add_review_comment(
        REPO,
        1,
        "Simpler:\n```suggestion\nimport os, subprocess\n```",
        "src/app.py",
        3,
        login="mallory",
    )
    github.add_review_comment(REPO, 2, "Too old to harvest.", "src/app.py", 3, login="bob")
    github.merge_pull(REPO, 1, "2025-03-01T12:00:00Z")
    github.merge_pull(REPO, 2, "2024-06-01T12:00:00Z")
    return c


def test_harvest_cli_writes_human_comments_as_examples(
    github: GitHubStandIn,
    repo: dict[str, dict],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    out = tmp_path / "harvest.jsonl"
    caplog.set_level(logging.DEBUG)
    argv = ["finetune", "harvest", REPO, "--since", "2025-01-01", "--out", str(out)]
    argv += ["--token", TOKEN, "--api-url", github.url, "--no-progress"]
    assert main(argv) == 0
    examples = list(read_examples(out))
    by_author = {(e.provenance["author"], e.task): e for e in examples}
    assert sorted(by_author) == [
        ("bob", "critique"),
        ("bob", "revise"),
        ("carol", "critique"),
        ("carol", "revise"),
        ("dave", "critique"),
    ]
    unused = by_author[("bob", "revise")]
    assert unused.fields["ORIGINAL"] == "import os\nimport sys\nimport json"
    assert unused.target == "import os\nimport sys"
    assert unused.fields["CRITIQUE"] == "`json` is never used here."
    ret = by_author[("carol", "revise")]
    assert ret.target.split("\n")[-2:] == ["def main():", "    return run()"]
    assert ret.provenance["suggestion_range"] == "given"
    assert ret.provenance["suggestion_lines"] == [5, 6]
    plain = by_author[("dave", "critique")]
    assert plain.fields["ORIGINAL"] == "    x = 1\n    y = 2"
    assert plain.target == "Is `y` used anywhere?"
    prov = unused.provenance
    assert prov["repo"] == REPO and prov["pr"] == 1 and prov["path"] == "src/app.py"
    assert prov["comment_id"] == repo["unused"]["id"]
    assert prov["url"] == repo["unused"]["html_url"]
    assert prov["line_number"] == 3 and prov["side"] == "RIGHT"
    stdout = capsys.readouterr()
    assert "1 merged pull request(s), 9 review comment(s), 3 used" in stdout.out
    assert "examples: 5 (3 critique, 2 revise)" in stdout.out
    assert "skipped 2: written by a bot" in stdout.out
    assert "skipped 1: posted by reviewbot (marker)" in stdout.out
    assert "skipped 1: a reply in a thread" in stdout.out
    assert "skipped 1: by the pull request's author" in stdout.out
    assert "skipped 1: not by the team (author_association NONE)" in stdout.out
    assert f"wrote 5 example(s) to {out}" in stdout.out
    everything = stdout.out + stdout.err + caplog.text + out.read_text()
    assert TOKEN not in everything and TOKEN[4:] not in everything
    # Only the closed PR list and PR 1's comments were read: PR 2 is older than --since.
    assert not github.requests_to("GET", r"/pulls/2/comments")
    assert all(r.auth == "token" for r in github.requests)


def test_harvest_retries_transient_errors_and_stops_at_since(
    github: GitHubStandIn, repo: dict[str, dict]
) -> None:
    github.fail("GET", r"/repos/octo/demo/pulls$", 502, times=1)
    github.fail("GET", r"/pulls/1/comments$", 429, times=1, headers={"Retry-After": "0"})
    waits: list[float] = []
    client = HarvestClient.from_token(TOKEN, github.url, FAST, sleep=waits.append)
    with client:
        report = harvest(client, REPO, datetime(2025, 1, 1, tzinfo=UTC))
    assert report.pulls == 1 and len(report.examples) == 5
    assert len(waits) == 2
    with client:
        older = harvest(client, REPO, datetime(2024, 1, 1, tzinfo=UTC), max_pulls=5)
    assert older.pulls == 2 and len(older.examples) == 6
    until = datetime(2024, 12, 31, tzinfo=UTC)
    with client:
        only_old = harvest(client, REPO, datetime(2024, 1, 1, tzinfo=UTC), until)
    assert only_old.pulls == 1
    assert [e.target for e in only_old.examples] == ["Too old to harvest."]


def test_harvest_errors_are_clean(
    github: GitHubStandIn,
    repo: dict[str, dict],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = str(tmp_path / "x.jsonl")
    base = ["finetune", "harvest", "--since", "2025-01-01", "--out", out, "--no-progress"]
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    assert main([*base, REPO, "--api-url", github.url]) == 2
    assert "no GitHub token: pass --token or set GITHUB_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    assert main([*base, "octo/missing", "--api-url", github.url]) == 1
    err = capsys.readouterr().err
    assert "GET /repos/octo/missing/pulls" in err and "404" in err and "Traceback" not in err
    assert main([*base, "not-a-repo", "--api-url", github.url]) == 2
    assert "not a repository (OWNER/REPO)" in capsys.readouterr().err
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_wrongtoken0123456789abcdefghijkl")
    assert main([*base, REPO, "--api-url", github.url]) == 1
    err = capsys.readouterr().err
    assert "401" in err and "wrongtoken" not in err
    with pytest.raises(SystemExit) as exc:
        main([*base[:2], REPO, "--since", "last week", "--out", out])
    assert exc.value.code == 2
    assert not Path(out).exists()


def test_skip_rules_on_github_json() -> None:
    human = {
        "user": {"login": "bob", "type": "User"},
        "body": "Nit",
        "diff_hunk": "@@ -1 +1 @@",
        "author_association": "MEMBER",
    }
    assert skip_reason(human, "alice") is None
    assert is_bot({"login": "renovate[bot]", "type": "User"}) and is_bot(
        {"login": "x", "type": "Bot"}
    )
    assert skip_reason({**human, "diff_hunk": None}, "alice") == "no diff hunk"
    assert skip_reason({**human, "body": "  "}, "alice") == "empty comment"
    assert skip_reason(human, "bob") == "by the pull request's author"


def test_harvest_keeps_outsiders_comments_only_when_asked(
    github: GitHubStandIn, repo: dict[str, dict], tmp_path: Path
) -> None:
    out = tmp_path / "all.jsonl"
    argv = ["finetune", "harvest", REPO, "--since", "2025-01-01", "--out", str(out)]
    argv += ["--token", TOKEN, "--api-url", github.url, "--no-progress", "--any-author"]
    assert main(argv) == 0
    outsider = [e for e in read_examples(out) if e.provenance["author"] == "mallory"]
    assert [e.task for e in outsider] == ["critique", "revise"]
    assert "import os, subprocess" in outsider[1].target


def test_only_the_teams_associations_are_trusted() -> None:
    human = {"user": {"login": "bob", "type": "User"}, "body": "Nit", "diff_hunk": "@@ -1 +1 @@"}
    for association in ("OWNER", "MEMBER", "COLLABORATOR"):
        assert skip_reason({**human, "author_association": association}, "alice") is None
    for association in ("CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR", "FIRST_TIMER", "NONE"):
        reason = skip_reason({**human, "author_association": association}, "alice")
        assert reason == f"not by the team (author_association {association})"
        assert skip_reason({**human, "author_association": association}, "alice", None) is None


def test_human_comments_become_records_that_prompt_as_the_comment_did() -> None:
    from finetune.examples import Example, unit_context
    from finetune.harvest import human_records
    from finetune.preference import record_example
    from reviewbot.learning.records import check_record
    from reviewbot.review.prompts import Renderer
    from reviewbot.review.units import ReviewUnit

    unit = ReviewUnit("src/a.py", 7, 9, "@@", "x = 1\ny = x\nprint(y)", added_lines=(8,))
    said = Example(
        task="critique",
        fields={"ORIGINAL": unit.original},
        target="y is only printed: drop it.",
        source="github",
        provenance={"repo": "o/r", "pr": 4, "comment_id": 99, "author": "ann", "line_number": 8},
        context=unit_context(unit),
    )
    revision = Example("revise", {"ORIGINAL": "a", "CRITIQUE": "b"}, "c", source="github")
    [record] = human_records([said, revision])  # revisions are not critiques
    assert check_record(record) is record
    assert (record["label"], record["pr"], record["line"], record["comment_id"]) == (
        "human",
        4,
        8,
        99,
    )
    renderer = Renderer("alpaca")
    assert record_example(record).prompt(renderer) == said.prompt(renderer)
