"""What became of each posted finding, end to end: a real git history served by the GitHub
stand-in, reviews posted by the review runner through the real GitHub client, the
findings recorded in a real database (SQLite and PostgreSQL), outcomes refreshed from
reactions, resolved threads and later commits, ``reviewbot stats``, and the rejected
finding suppressed on the next push."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from github_standin import (  # noqa: F401  (fixtures: github, app_key)
    APP_ID,
    GitHubStandIn,
    app_key_fixture,
    github_fixture,
)
from memory_github import ScriptedModel, section, task_of

from reviewbot.cli import main as cli_main
from reviewbot.github.app import GitHubApp
from reviewbot.github.markers import parse_markers
from reviewbot.jobs.job import Job
from reviewbot.runners.outcomes import refresh_outcomes
from reviewbot.runners.review import run_review_job
from reviewbot.settings.defaults import REJECTED_BEFORE, GitHubSettings
from reviewbot.store.sql import SqlFindingStore

REPO = "octo/calc"
NUMBER = 5
INSTALLATION = 31
MAINTAINER = "maintainer"
OUTSIDER = "drive-by"
FAST = GitHubSettings(
    seconds_between_requests=0, seconds_between_writes=0, backoff_seconds=0.01, attempts=3
)
FILLER = "\n".join(f"# note {i}" for i in range(8))
BASE = f"""def add(a, b):
    return a + b

{FILLER}

def scale(values, factor):
    return [v * factor for v in values]

{FILLER}

def mean(values):
    return sum(values) / len(values)
"""
HEAD1 = f"""def add(a, b):
    total = a + b
    return total

{FILLER}

def scale(values, factor):
    result = []
    for v in values:
        result.append(v * factor)
    return result

{FILLER}

def mean(values):
    n = len(values)
    return sum(values) / n
"""
CRITIQUES = {
    "total = a + b": "The temporary variable total is unnecessary: return the sum directly.",
    "result.append": "Use a list comprehension instead of the explicit loop.",
    "n = len(values)": "This raises ZeroDivisionError when values is empty.",
    "def cube": "Add a docstring that says what cube returns.",
}
#: The same rejected critique, reworded (another fingerprint, the same code).
REWORDED = "Use a list comprehension instead of this explicit loop."


class Git:
    """A real git repository in a temporary directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        self("init", "-q", "-b", "main")
        self("config", "user.email", "dev@example.com")
        self("config", "user.name", "Dev")

    def __call__(self, *args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(self.path), *args], capture_output=True, text=True, check=True
        )
        return done.stdout

    def commit(self, text: str, message: str) -> str:
        (self.path / "src").mkdir(exist_ok=True)
        (self.path / "src" / "calc.py").write_text(text)
        self("add", "-A")
        self("commit", "-q", "-m", message)
        return self("rev-parse", "HEAD").strip()

    def diff(self, base: str, head: str) -> str:
        return self("diff", f"{base}...{head}")


def critic(reword: bool = False):
    """The scripted model: a critique per unit (by what its code holds); revisions change
    only the ``add`` unit (its suggestion: return the sum directly)."""

    def respond(prompt: str) -> str:
        task = task_of(prompt)
        original = section(prompt, "ORIGINAL")
        key = next((k for k in CRITIQUES if k in original), None)
        if key is None:
            return "No issues."
        if task == "critique":
            return REWORDED if reword and key == "result.append" else CRITIQUES[key]
        code = original.split("\n", 1)[1] if original.startswith("FILE: ") else original
        if key == "total = a + b":
            return code.replace("    total = a + b\n    return total", "    return a + b")
        return code

    return respond


@pytest.fixture
def world(github: GitHubStandIn, app_key: str, tmp_path: Path, database_url: str):
    git = Git(tmp_path / "repo")
    base = git.commit(BASE, "base")
    git("checkout", "-q", "-b", "feature")
    head1 = git.commit(HEAD1, "feature")
    github.add_repo(REPO, files_on_default={".github/reviewbot.toml": "revise = true\n"})
    github.use_git(REPO, git.path)
    github.add_pull(REPO, NUMBER, git.diff(base, head1), head1, base, head_ref="feature")
    github.set_role(REPO, MAINTAINER, "write")
    app = GitHubApp(APP_ID, app_key, base_url=github.url, settings=FAST)
    store = SqlFindingStore.open(database_url)
    yield git, base, head1, app, store
    store.close()


def review(
    app: GitHubApp,
    store: SqlFindingStore,
    head: str,
    kind: str,
    reword: bool = False,
    before: str | None = None,
):
    model = ScriptedModel(critic(reword))
    job = Job(kind, REPO, INSTALLATION, NUMBER, head, before_sha=before)
    with app.installation(INSTALLATION) as gh:
        return run_review_job(job, gh, model.engines, store=store)


def apply_suggestion(text: str, start: int, end: int, suggestion: str) -> str:
    """What GitHub's "Commit suggestion" does: lines start..end become the suggestion."""
    lines = text.split("\n")
    return "\n".join(lines[: start - 1] + suggestion.split("\n") + lines[end:])


def test_three_findings_accepted_rejected_unknown_then_stats_then_suppressed(
    world,
    github: GitHubStandIn,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
    database_url: str,
    tmp_path: Path,
) -> None:
    git, base, head1, app, store = world
    # 1. reviewbot reviews the first head: three findings, recorded as it posts them.
    assert review(app, store, head1, "auto").status == "posted"
    posted = {f.finding.critique: f.finding for f in store.findings(REPO, NUMBER)}
    assert sorted(posted) == sorted(c for k, c in CRITIQUES.items() if k != "def cube")
    add = posted[CRITIQUES["total = a + b"]]
    assert add.suggestion == "    return a + b" and add.head_sha == head1
    assert add.model and add.prompt_format == "alpaca" and add.installation_id == INSTALLATION
    assert all(f.original and f.code_hash for f in posted.values())
    roots = {
        next(iter(parse_markers(c["body"]).findings)): c["id"]
        for c in github.review_comments(REPO, NUMBER)
    }
    scale = posted[CRITIQUES["result.append"]]
    mean = posted[CRITIQUES["n = len(values)"]]

    # 2. The team: the add suggestion is committed; 👎 on scale and its thread resolved
    # with no change; an outsider's 👍 on mean, which does not count.
    head2 = git.commit(
        apply_suggestion(HEAD1, add.first_line, add.line, add.suggestion) + "\n", "apply"
    )
    github.add_pull(REPO, NUMBER, git.diff(base, head2), head2, base, head_ref="feature")
    github.react(REPO, "review", roots[scale.fingerprint], "-1", login=MAINTAINER)
    github.resolve_thread(REPO, NUMBER, roots[scale.fingerprint], by=MAINTAINER)
    github.react(REPO, "review", roots[mean.fingerprint], "+1", login=OUTSIDER)

    # 3. The refresh labels them, with the evidence.
    with app.installation(INSTALLATION) as gh:
        report = refresh_outcomes(gh, store, repo=REPO)
    assert report.pulls == 1 and not report.failed and not report.stopped
    labels = {i.finding.fingerprint: i for i in store.findings(REPO, NUMBER)}
    accepted = labels[add.fingerprint]
    rejected = labels[scale.fingerprint]
    unknown = labels[mean.fingerprint]
    assert accepted.outcome.label == "accepted"
    assert [(e.signal, e.commit) for e in accepted.outcome.evidence] == [
        ("suggestion-committed", head2)
    ]
    assert rejected.outcome.label == "rejected"
    assert [(e.signal, e.by) for e in rejected.outcome.evidence] == [
        ("thumbs-down", MAINTAINER),
        ("resolved-unchanged", MAINTAINER),
    ]
    assert unknown.outcome.label == "unknown" and unknown.outcome.evidence == ()
    assert accepted.comment_id == roots[add.fingerprint]

    # 4. reviewbot stats counts them (the command line, reading the same database).
    monkeypatch.setenv("REVIEWBOT_DATABASE_URL", database_url)
    assert cli_main(["stats", REPO, "--format", "json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    overall = figures["overall"]
    assert (overall["posted"], overall["accepted"], overall["rejected"], overall["unknown"]) == (
        3,
        1,
        1,
        1,
    )
    assert overall["rate"] == 0.5
    assert cli_main(["stats", REPO]) == 0
    table = capsys.readouterr().out
    with capsys.disabled():  # the figures, for whoever runs this with -s
        print(f"\n$ reviewbot stats {REPO}\n{table}")
    assert "3 comments posted, 1 accepted, 1 rejected, 1 unknown" in table

    # 5. The labelled findings export for preference training, one record per finding.
    out = tmp_path / "outcomes.jsonl"
    assert cli_main(["finetune", "harvest", REPO, "--outcomes", "--out", str(out)]) == 0
    assert "wrote 3 record(s)" in capsys.readouterr().out
    records = {r["fingerprint"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert {k: r["label"] for k, r in records.items()} == {
        add.fingerprint: "accepted",
        scale.fingerprint: "rejected",
        mean.fingerprint: "unknown",
    }
    exported = records[add.fingerprint]
    assert (exported["path"], exported["line"], exported["head_sha"]) == (
        "src/calc.py",
        add.line,
        head1,
    )
    assert exported["original"] == add.original and exported["suggestion"] == add.suggestion
    assert exported["evidence"] == [
        {"signal": "suggestion-committed", "by": None, "commit": head2, "detail": ""}
    ]
    assert {"critique", "pr", "model", "adapter", "start_line"} <= set(exported)

    # 6. The next push (the head before it was not reviewed: every unit is reviewed
    # again): the model says the rejected critique in other words on the same code; it
    # is not posted, and the review says why.
    head3 = git.commit(
        f"def cube(x):\n    return x * x * x\n\n{FILLER}\n\n"
        + apply_suggestion(HEAD1, add.first_line, add.line, add.suggestion)
        + "\n",
        "cube",
    )
    github.add_pull(REPO, NUMBER, git.diff(base, head3), head3, base, head_ref="feature")
    assert review(app, store, head3, "incremental", reword=True, before=head2).status == "posted"
    last = github.reviews(REPO, NUMBER)[-1]
    bodies = [c["body"] for c in last["comments"]]
    assert len(bodies) == 1 and CRITIQUES["def cube"] in bodies[0]  # mean's: posted before
    assert f"{REJECTED_BEFORE} (1)" in last["body"]
