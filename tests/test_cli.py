"""The ``reviewbot`` console script end to end (real subprocesses)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample.diff"
REVIEWBOT = shutil.which("reviewbot", path=str(Path(sys.executable).parent)) or "reviewbot"


def reviewbot(*args, cwd=None, stdin=None, env=None):
    return subprocess.run(
        [REVIEWBOT, *map(str, args)],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def git(repo, *args):
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, env=env).stdout


def assert_units_match_files(units, read_file):
    assert units
    for u in units:
        lines = read_file(u["path"]).decode().splitlines()
        assert u["original"].split("\n") == lines[u["start_line"] - 1 : u["end_line"]], u


def test_dry_run_json_on_the_sample_diff():
    proc = reviewbot("review", SAMPLE, "--dry-run", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [(u["path"], u["start_line"], u["end_line"]) for u in doc["units"]] == [
        ("app/cache.py", 2, 19),
        ("app/users.py", 9, 20),
    ]
    assert doc["comments"] == [] and doc["summary"] is None
    assert [s["path"] for s in doc["skipped"]] == ["poetry.lock"]


def test_dry_run_on_real_git_history_reports_units_equal_to_the_file(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    src = Path(json.__file__).parent  # real source files with real history-like edits
    for name in ("decoder.py", "encoder.py", "scanner.py"):
        shutil.copy(src / name, repo / name)
    (repo / "crlf.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "base")
    dec = (repo / "decoder.py").read_text().splitlines(keepends=True)
    dec.insert(10, "# inserted near the top\n")
    dec[40:44] = ["# replaced block\n", "X = 1\n"]
    dec.append("\n\ndef extra():\n    return 42\n")
    (repo / "decoder.py").write_text("".join(dec))
    enc = (repo / "encoder.py").read_text().replace("    ", "\t", 30)
    (repo / "encoder.py").write_text(enc)
    git(repo, "mv", "scanner.py", "scanning.py")
    scan = (repo / "scanning.py").read_text() + "VERSION = 2"  # no newline at EOF
    (repo / "scanning.py").write_text(scan)
    (repo / "crlf.txt").write_bytes(b"one\r\n2\r\nthree\r\nfour\r\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "edits")

    proc = reviewbot("review", "--git", "HEAD~1..HEAD", "--dry-run", "--format", "json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    paths = {u["path"] for u in doc["units"]}
    assert {"decoder.py", "encoder.py", "scanning.py", "crlf.txt"} <= paths
    assert_units_match_files(doc["units"], lambda p: git(repo, "show", f"HEAD:{p}"))


def test_dry_run_on_this_repositorys_own_tree():
    """Everything at HEAD as a diff from git's empty tree (any clone depth works)."""
    assert (ROOT / ".git").exists(), "the tests run in a git clone of reviewbot (see README)"
    empty_tree = subprocess.run(
        ["git", "hash-object", "-t", "tree", "/dev/null"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    proc = reviewbot(
        "review",
        "--git",
        f"{empty_tree}..HEAD",
        "--dry-run",
        "--format",
        "json",
        "--include",
        "*.py",
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    units = json.loads(proc.stdout)["units"]
    assert len({u["path"] for u in units}) > 20
    assert_units_match_files(units, lambda p: git(ROOT, "show", f"HEAD:{p}"))


def test_malformed_diff_is_a_clear_error_with_exit_code_2():
    bad = "--- a/x.py\n+++ b/x.py\n@@ -1,2 +1,2 @@\n-a\n+b\n"
    proc = reviewbot("review", "-", "--dry-run", stdin=bad)
    assert proc.returncode == 2
    assert "malformed diff" in proc.stderr and "line" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_git_range_and_missing_file_are_clear_errors(tmp_path):
    proc = reviewbot("review", tmp_path / "nope.diff", "--dry-run")
    assert proc.returncode == 2 and "cannot read" in proc.stderr
    git(tmp_path, "init", "-q")
    proc = reviewbot("review", "--git", "nope..nada", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 2 and "git diff nope..nada failed" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_review_end_to_end_on_the_tiny_4bit_model(tiny_model_dir):
    proc = reviewbot(
        "-v",
        "review",
        SAMPLE,
        "--model",
        tiny_model_dir,
        "--quantize",
        "4bit",
        "--max-new-tokens",
        "16",
        "--revise",
        "--summary",
        "--profile",
        "assertive",  # the tiny random model is unsure of what it says (~0.6)
        "--format",
        "json",
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert len(doc["units"]) == 2
    assert "reviewing 2 unit(s)" in proc.stderr
    assert "4-bit" in proc.stderr or "4bit" in proc.stderr
    spans = {(u["path"]): (u["start_line"], u["end_line"]) for u in doc["units"]}
    assert doc["comments"], "the tiny model's critiques survive noise control"
    for c in doc["comments"]:
        lo, hi = spans[c["path"]]
        assert lo <= (c["start_line"] or c["line"]) <= c["line"] <= hi
    assert [s["path"] for s in doc["skipped"]] == ["poetry.lock"]

    md = reviewbot(
        "review", SAMPLE, "--model", tiny_model_dir, "--quantize", "4bit", "--max-new-tokens", "12"
    )
    assert md.returncode == 0, md.stderr
    assert md.stdout.startswith("# reviewbot review")
    assert "`poetry.lock`" in md.stdout
