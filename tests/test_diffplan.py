"""The diff planner: real-world diff shapes, limits, malformed input, real git history."""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from reviewbot.review.diffplan import git_diff_args, path_kind, plan_diff, unit_risk
from reviewbot.review.hunks import parse_header
from reviewbot.review.units import DiffError, Plan, ReviewUnit
from reviewbot.settings.defaults import GENERATED_MARKER_LINES, PlanLimits

DIFFS = Path(__file__).parent / "data" / "diffs"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
}


def fixture(name: str) -> str:
    return (DIFFS / name).read_text()


def spans(plan: Plan) -> list[tuple[str, int, int, tuple[int, ...]]]:
    return [(u.path, u.start_line, u.end_line, u.added_lines) for u in plan.units]


def reasons(plan: Plan) -> dict[str, str]:
    return {s.path: s.reason for s in plan.skipped}


def new_file_diff(path: str, lines: list[str]) -> str:
    body = "".join(f"+{line}\n" for line in lines)
    return f"--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{len(lines)} @@\n{body}"


def modified_diff(path: str, hunks: list[str]) -> str:
    return f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n" + "".join(hunks)


def hunk_range(unit: ReviewUnit) -> tuple[int, int]:
    """The (start, end) lines the unit's hunk covers on the unit's side."""
    header = parse_header(unit.hunk_header)
    assert header, unit.hunk_header
    if unit.side == "LEFT":
        first, size = header.old_start, header.old_count
    else:
        first, size = header.new_start, header.new_count
    return first, first + size - 1


def assert_unit_matches(unit: ReviewUnit, file_text: str) -> None:
    """The unit is exactly the file's lines it claims, inside its hunk."""
    lines = file_text.splitlines()
    assert unit.original.split("\n") == lines[unit.start_line - 1 : unit.end_line], unit
    assert 1 <= unit.start_line <= unit.end_line
    assert all(unit.start_line <= n <= unit.end_line for n in unit.added_lines), unit
    first, last = hunk_range(unit)
    assert first <= unit.start_line and unit.end_line <= last, unit


# --------------------------------------------------------------------------- shapes


def test_empty_diff_is_an_empty_plan():
    assert plan_diff("") == Plan()
    assert plan_diff("\n  \n") == Plan()


def test_git_diff_with_every_kind_of_file_change():
    plan = plan_diff(fixture("git_mixed.diff"))
    assert spans(plan) == [
        ("app/main.py", 1, 7, (2, 6)),
        ("app/nonl.txt", 1, 3, (2, 3)),
        ("app/renamed.py", 7, 13, (10,)),
        ("app/with space.py", 1, 2, (1, 2)),
    ]
    skipped = reasons(plan)
    assert skipped["app/gone.py"] == "file deleted"
    assert skipped["app/logo.png"] == "binary file"
    assert skipped["app/pure_move.py"].startswith("renamed without changes")
    assert "app/same_move.py" in skipped["app/pure_move.py"]
    assert skipped["app/run.sh"].startswith("mode change only")
    assert "'*package-lock.json'" in skipped["package-lock.json"]
    assert "'vendor/*'" in skipped["vendor/lib/x.js"]
    assert skipped["app/trim.py"] == "pure deletion: hunk @@ -2,9 +2,6 @@ removes 3 line(s)"
    assert plan.files == (
        "app/gone.py",
        "app/logo.png",
        "app/main.py",
        "app/nonl.txt",
        "app/pure_move.py",
        "app/renamed.py",
        "app/run.sh",
        "app/trim.py",
        "app/with space.py",
        "package-lock.json",
        "vendor/lib/x.js",
    )
    # nothing is dropped silently: every file is either reviewed or listed
    assert {u.path for u in plan.units} | set(skipped) == set(plan.files)


def test_units_carry_the_new_side_text_and_the_full_hunk_header():
    units = {u.path: u for u in plan_diff(fixture("git_mixed.diff")).units}
    main = units["app/main.py"]
    assert (
        main.original == 'import os\nimport sys\n\n\ndef main():\n    print("hello")\n    return 0'
    )
    assert main.hunk_header == "@@ -1,6 +1,7 @@" and main.side == "RIGHT"
    renamed = units["app/renamed.py"]
    assert renamed.hunk_header == "@@ -7,7 +7,7 @@ line 6"
    assert renamed.lines[3] == "line ten" and "line 10" not in renamed.original


def test_no_newline_at_end_of_file_marker_is_not_text():
    unit = next(u for u in plan_diff(fixture("git_mixed.diff")).units if u.path == "app/nonl.txt")
    assert unit.original == "keep\nlast\nmore"


def test_localized_no_newline_marker_between_hunks():
    hunks = [
        "@@ -1,2 +1,2 @@\n-a\n+b\n c\n",
        "@@ -9 +9 @@\n-x\n\\ Kein Zeilenumbruch am Dateiende.\n+y\n",
        "\\ Kein Zeilenumbruch am Dateiende.\n@@ -20 +20 @@\n-p\n+q\n",
    ]
    plan = plan_diff(modified_diff("l.txt", hunks))
    assert spans(plan) == [("l.txt", 1, 2, (1,)), ("l.txt", 9, 9, (9,)), ("l.txt", 20, 20, (20,))]
    assert plan.units[1].original == "y"


def test_plain_diff_u_output_with_timestamps_new_and_deleted_files():
    plan = plan_diff(fixture("plain_unified.diff"))
    assert spans(plan) == [("src/a.txt", 1, 4, (2, 4)), ("src/b.txt", 1, 1, (1,))]
    assert plan.units[0].original == "alpha\nBETA\ngamma\ndelta"
    assert reasons(plan) == {"src/c.txt": "file deleted"}
    assert plan.files == ("src/a.txt", "src/b.txt", "src/c.txt")


def test_format_patch_mail_with_stat_and_signature():
    plan = plan_diff(fixture("format_patch.diff"))
    assert [u.path for u in plan.units] == ["app/main.py", "app/nonl.txt"]
    assert plan.skipped == ()


def test_git_binary_patch_block_is_skipped_and_what_follows_still_parses():
    plan = plan_diff(fixture("git_binary_patch.diff"))
    assert plan.units == () and reasons(plan) == {"app/logo.png": "binary file"}
    both = fixture("git_binary_patch.diff") + fixture("git_mixed.diff")
    assert spans(plan_diff(both)) == spans(plan_diff(fixture("git_mixed.diff")))


def test_binary_files_differ_line_without_git_header():
    text = "Binary files a/img.png and b/img.png differ\n" + new_file_diff("x.py", ["x = 1"])
    plan = plan_diff(text)
    assert reasons(plan) == {"img.png": "binary file"}
    assert spans(plan) == [("x.py", 1, 1, (1,))]


def test_crlf_diff_text_plans_like_the_lf_one():
    lf = plan_diff(fixture("git_mixed.diff"))
    crlf = plan_diff(fixture("git_mixed.diff").replace("\n", "\r\n"))
    assert crlf == lf


def test_crlf_file_content_loses_the_carriage_returns():
    text = (
        "diff --git a/w.txt b/w.txt\nindex 1..2 100644\n--- a/w.txt\n+++ b/w.txt\n"
        "@@ -1,2 +1,3 @@ section\n one\r\n-two\r\n+2\r\n+\r\n"
    )
    (unit,) = plan_diff(text).units
    assert unit.original == "one\n2\n" and unit.added_lines == (2, 3)
    assert unit.hunk_header == "@@ -1,2 +1,3 @@ section"
    # the same diff saved with CRLF line endings: content lines end in "\r\r\n"
    assert plan_diff(text.replace("\n", "\r\n")).units == (unit,)


def test_pure_deletion_is_skipped_or_reviewed_on_the_left_side():
    hunk = "@@ -3,6 +3,3 @@ def f():\n ctx1\n-gone1\n ctx2\n-gone2\n-gone3\n ctx3\n"
    text = modified_diff("m.py", [hunk])
    skipped = plan_diff(text)
    assert skipped.units == ()
    assert reasons(skipped) == {"m.py": "pure deletion: hunk @@ -3,6 +3,3 @@ removes 3 line(s)"}
    (unit,) = plan_diff(text, PlanLimits(deletions="left")).units
    assert (unit.side, unit.start_line, unit.end_line) == ("LEFT", 4, 7)
    # the lines it removes are its changed lines (context between them is not)
    assert unit.original == "gone1\nctx2\ngone2\ngone3" and unit.added_lines == (4, 6, 7)
    assert unit.hunk_header == "@@ -3,6 +3,3 @@ def f():"


def test_left_mode_uses_old_side_numbers_of_a_real_deletion():
    plan = plan_diff(fixture("git_mixed.diff"), PlanLimits(deletions="left"))
    (unit,) = [u for u in plan.units if u.side == "LEFT"]
    assert (unit.path, unit.start_line, unit.end_line) == ("app/trim.py", 5, 7)
    assert unit.original == "row 5\nrow 6\nrow 7"
    assert "app/trim.py" not in reasons(plan)
    # deleted files stay skipped in both modes
    assert reasons(plan)["app/gone.py"] == "file deleted"


def test_new_file_from_dev_null_with_omitted_counts_and_no_section():
    plan = plan_diff("--- /dev/null\n+++ b/one.py\n@@ -0,0 +1 @@\n+print(1)\n")
    (unit,) = plan.units
    assert (unit.path, unit.start_line, unit.end_line, unit.added_lines) == ("one.py", 1, 1, (1,))
    assert unit.hunk_header == "@@ -0,0 +1 @@"
    plan = plan_diff(modified_diff("two.py", ["@@ -5 +5 @@\n-a = 1\n+a = 2\n"]))
    assert spans(plan) == [("two.py", 5, 5, (5,))]


def test_quoted_file_names_are_unquoted():
    text = (
        'diff --git "a/t\\303\\251st \\"q\\".py" "b/t\\303\\251st \\"q\\".py"\n'
        "new file mode 100644\nindex 0000000..1111111\n--- /dev/null\n"
        '+++ "b/t\\303\\251st \\"q\\".py"\n@@ -0,0 +1 @@\n+x = 1\n'
    )
    assert plan_diff(text).units[0].path == 'tést "q".py'


def test_rename_with_space_in_name_and_empty_new_file():
    text = (
        "diff --git a/old name.py b/new name.py\nsimilarity index 100%\n"
        "rename from old name.py\nrename to new name.py\n"
        "diff --git a/empty.txt b/empty.txt\nnew file mode 100644\nindex 0000000..e69de29\n"
    )
    plan = plan_diff(text)
    assert plan.files == ("new name.py", "empty.txt")
    assert reasons(plan) == {
        "new name.py": "renamed without changes (from old name.py)",
        "empty.txt": "empty new file",
    }


# --------------------------------------------------------------------------- limits


def test_huge_hunk_is_split_preferring_a_blank_line_in_the_last_quarter():
    lines = [f"line {n}" for n in range(1, 151)]
    lines[49 - 1] = ""  # in the last quarter (46..60) of the first window: cut after it
    lines[60 - 1] = "x"
    plan = plan_diff(new_file_diff("big.py", lines), PlanLimits(max_unit_lines=60))
    bounds = [(u.start_line, u.end_line) for u in plan.units]
    # second window 50..109 has no blank line in 95..109: cut at the limit
    assert bounds == [(1, 49), (50, 109), (110, 150)]
    for unit in plan.units:
        assert unit.original.split("\n") == lines[unit.start_line - 1 : unit.end_line]
        assert unit.added_lines == tuple(range(unit.start_line, unit.end_line + 1))
        assert unit.hunk_header == "@@ -0,0 +1,150 @@"


def test_blank_line_before_the_last_quarter_does_not_move_the_cut():
    lines = ["" if n == 20 else f"v{n}" for n in range(1, 101)]
    plan = plan_diff(new_file_diff("a.py", lines), PlanLimits(max_unit_lines=40))
    assert [(u.start_line, u.end_line) for u in plan.units] == [(1, 40), (41, 80), (81, 100)]


def test_split_keeps_added_lines_with_their_slice():
    context = "".join(f" c{n}\n" for n in range(1, 9))
    hunk = f"@@ -1,10 +1,12 @@\n{context}-old1\n-old2\n+new1\n+new2\n+new3\n+new4\n"
    plan = plan_diff(modified_diff("s.py", [hunk]), PlanLimits(max_unit_lines=5))
    assert spans(plan) == [("s.py", 1, 5, ()), ("s.py", 6, 10, (9, 10)), ("s.py", 11, 12, (11, 12))]
    assert plan.units[1].original == "c6\nc7\nc8\nnew1\nnew2"


def test_lockfiles_vendored_and_generated_paths_are_listed_with_the_pattern():
    text = "".join(
        new_file_diff(path, ["x"])
        for path in ("poetry.lock", "web/node_modules/a/b.js", "api_pb2.py", "ok.py")
    )
    plan = plan_diff(text)
    assert [u.path for u in plan.units] == ["ok.py"]
    skipped = reasons(plan)
    assert "'*.lock'" in skipped["poetry.lock"]
    assert "'*/node_modules/*'" in skipped["web/node_modules/a/b.js"]
    assert "'*_pb2.py'" in skipped["api_pb2.py"]
    custom = plan_diff(text, PlanLimits(exclude_globs=("ok.*",)))
    assert [u.path for u in custom.units] == [
        "poetry.lock",
        "web/node_modules/a/b.js",
        "api_pb2.py",
    ]


def test_generated_marker_in_the_first_lines_skips_the_file():
    marked = ["// Code generated by protoc-gen-go. DO NOT EDIT.", "package x"]
    late = [f"l{n}" for n in range(GENERATED_MARKER_LINES)] + ["# @generated"]
    plan = plan_diff(new_file_diff("gen.go", marked) + new_file_diff("late.py", late))
    assert reasons(plan)["gen.go"].startswith("generated file")
    assert [u.path for u in plan.units] == ["late.py"]


def test_include_globs_restrict_the_review():
    text = new_file_diff("src/a.py", ["a"]) + new_file_diff("docs/b.md", ["b"])
    plan = plan_diff(text, PlanLimits(include_globs=("*.py",)))
    assert [u.path for u in plan.units] == ["src/a.py"]
    assert "include" in reasons(plan)["docs/b.md"]
    assert plan.files == ("src/a.py", "docs/b.md")


def test_units_over_budget_are_listed_by_hunk_with_why():
    hunks = [f"@@ -{n},1 +{n},1 @@\n-a{n}\n+b{n}\n" for n in (1, 10, 20)]
    text = modified_diff("b.py", hunks) + new_file_diff("big.py", [f"x{n}" for n in range(9)])
    plan = plan_diff(text, PlanLimits(max_units=2, max_unit_lines=4))
    # the two larger slices of big.py outrank b.py's one-line hunks
    assert spans(plan) == [("big.py", 1, 4, (1, 2, 3, 4)), ("big.py", 5, 8, (5, 6, 7, 8))]
    why = "lower risk than the 2 reviewed units"
    assert [(s.path, s.reason) for s in plan.skipped] == [
        ("b.py", f"over budget: hunk @@ -1,1 +1,1 @@: {why} ({ONE_LINE})"),
        ("b.py", f"over budget: hunk @@ -10,1 +10,1 @@: {why} ({ONE_LINE})"),
        ("b.py", f"over budget: hunk @@ -20,1 +20,1 @@: {why} ({ONE_LINE})"),
        ("big.py", f"over budget: hunk @@ -0,0 +1,9 @@ (lines 9-9): {why} ({ONE_LINE})"),
    ]


ONE_LINE = "source file, 1 changed line, 0 with control flow"

#: A pull request touching documentation, tests and source, in this (diff) order.
RISKY = (
    new_file_diff("docs/guide.md", [f"Step {n}: if in doubt, return." for n in range(10)])
    + new_file_diff(
        "tests/test_core.py",
        ["def test_parse():", "    for x in XS:", "        if x:", "            assert parse(x)"],
    )
    + new_file_diff("src/app/util.py", ["NAME = 'x'", "SIZE = 3"])
    + new_file_diff(
        "src/app/core.py",
        ["def parse(x):", "    if not x:", "        raise ValueError(x)", "    return x"],
    )
    + new_file_diff("src/api/handlers.py", ["TIMEOUT = 5"])
)


def test_over_budget_the_riskiest_units_are_reviewed_in_diff_order():
    plan = plan_diff(RISKY, PlanLimits(max_units=2))
    # source before tests and docs; the larger, more complex change first
    assert [u.path for u in plan.units] == ["src/app/util.py", "src/app/core.py"]
    why = "over budget: hunk {}: lower risk than the 2 reviewed units ({})"
    assert [(s.path, s.reason) for s in plan.skipped] == [
        (
            "docs/guide.md",
            why.format("@@ -0,0 +1,10 @@", "docs file, 10 changed lines, 10 with control flow"),
        ),
        (
            "tests/test_core.py",
            why.format("@@ -0,0 +1,4 @@", "test file, 4 changed lines, 2 with control flow"),
        ),
        (
            "src/api/handlers.py",
            why.format("@@ -0,0 +1,1 @@", ONE_LINE),
        ),
    ]


def test_priority_globs_come_first_when_the_budget_runs_out():
    limits = PlanLimits(max_units=2, priority_globs=("src/api/*",))
    plan = plan_diff(RISKY, limits)
    assert [u.path for u in plan.units] == ["src/app/core.py", "src/api/handlers.py"]
    assert reasons(plan)["src/app/util.py"] == (
        "over budget: hunk @@ -0,0 +1,2 @@: lower risk than the 2 reviewed units "
        "(source file, 2 changed lines, 0 with control flow)"
    )
    # a priority path that itself does not fit says so
    plan = plan_diff(RISKY, PlanLimits(max_units=0, priority_globs=("src/api/*",)))
    assert plan.units == ()
    assert reasons(plan)["src/api/handlers.py"] == (
        "over budget: hunk @@ -0,0 +1,1 @@ (the unit budget is 0)"
    )
    # within the budget, nothing is ranked: every unit, in diff order
    assert [u.path for u in plan_diff(RISKY, PlanLimits(max_units=5)).units] == [
        "docs/guide.md",
        "tests/test_core.py",
        "src/app/util.py",
        "src/app/core.py",
        "src/api/handlers.py",
    ]


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("src/app/core.py", "source"),
        ("Dockerfile", "source"),
        ("tests/test_core.py", "test"),
        ("pkg/parser_test.go", "test"),
        ("web/src/app.spec.ts", "test"),
        ("src/test/java/FooTest.java", "test"),
        ("lib/conftest.py", "test"),
        ("docs/api/index.py", "docs"),
        ("README", "docs"),
        ("CHANGELOG.md", "docs"),
        ("notes/design.rst", "docs"),
        ("contest.py", "source"),
    ],
)
def test_path_kinds(path, kind):
    assert path_kind(path) == kind


def test_risk_score_counts_changed_lines_and_control_flow():
    unit = ReviewUnit(
        "a.py",
        1,
        4,
        "",
        "def f(x):\n    if x and y || z:\n        return x\n    pass",
        added_lines=(2, 3, 4),
    )
    risk = unit_risk(unit, ("b/*",))
    assert (risk.priority, risk.kind, risk.changed, risk.control, risk.score) == (
        False,
        "source",
        3,
        2,
        7,
    )
    assert unit_risk(unit, ("*.py",)).describe() == (
        "priority source file, 3 changed lines, 2 with control flow"
    )


def test_file_with_too_many_changed_lines_is_skipped():
    plan = plan_diff(fixture("git_mixed.diff"), PlanLimits(max_file_changed_lines=2))
    assert reasons(plan)["app/main.py"] == "too large: 3 changed lines > limit of 2"
    assert "app/renamed.py" in {u.path for u in plan.units}  # 2 changed lines


# --------------------------------------------------------------------------- errors

GIT_HEAD = "diff --git a/x.py b/x.py\nindex 1..2 100644\n--- a/x.py\n+++ b/x.py\n"
MALFORMED = {
    "short hunk before next file": (
        GIT_HEAD + "@@ -1,3 +1,3 @@\n a\n-b\n+c\n" + GIT_HEAD + "@@ -1 +1 @@\n-a\n+b\n",
        9,
        "shorter than its header says",
    ),
    "short hunk at end of input": (
        "--- a/x.py\n+++ b/x.py\n@@ -1,2 +1,2 @@\n-a\n+b\n",
        5,
        "ends inside hunk @@ -1,2 +1,2 @@ (line 3)",
    ),
    "long hunk": (GIT_HEAD + "@@ -1,1 +1,1 @@\n-a\n+b\n+c\n", 8, "longer than its header says"),
    "long hunk, one side over": (
        GIT_HEAD + "@@ -1,2 +1,1 @@\n a\n+b\n-c\n",
        7,
        "longer than its header says",
    ),
    "long hunk, extra context": (GIT_HEAD + "@@ -1 +1 @@\n-a\n+b\n c\n", 8, "longer"),
    "garbage in hunk": (GIT_HEAD + "@@ -1,2 +1,2 @@\n a\n?? what\n b\n", 7, "unexpected line"),
    "hunk before any file": ("some words\n@@ -1 +1 @@\n-a\n+b\n", 2, "before any file header"),
    "hunk after text between files": (
        GIT_HEAD + "@@ -1 +1 @@\n-a\n+b\nOnly in x: y\n@@ -5 +5 @@\n-c\n+d\n",
        9,
        "outside of a file",
    ),
    "bad hunk header": (GIT_HEAD + "@@ -1,2 +1,x @@\n a\n", 5, "malformed hunk header"),
    "empty hunk": (GIT_HEAD + "@@ -0,0 +0,0 @@\n", 5, "declares no lines"),
    "hunk lines without header": (GIT_HEAD + "-a\n+b\n", 5, "without a hunk header"),
    "source without target": ("diff --git a/x b/x\n--- a/x\nindex\n", 3, "'+++ '"),
    "target without source": ("diff --git a/x b/x\n+++ b/x\n", 2, "without a '--- '"),
    "marker outside hunk": (
        "diff --git a/x b/x\n\\ No newline at end of file\n",
        2,
        "marker outside a hunk",
    ),
    "combined diff": ("diff --cc x.py\nindex 1,2..3\n", 1, "combined"),
    "new file mode outside header": (
        "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\nnew file mode 100644\n",
        6,
        "outside a 'diff --git' header",
    ),
    "+++ names another file than diff --git": (
        "diff --git a/x b/x\n--- a/x\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n",
        3,
        "cannot parse",
    ),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_diff_reports_the_offending_line(name):
    text, line, fragment = MALFORMED[name]
    with pytest.raises(DiffError) as info:
        plan_diff(text)
    assert info.value.line == line, str(info.value)
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"malformed diff: line {line}: ")
    with pytest.raises(DiffError) as crlf:
        plan_diff(text.replace("\n", "\r\n"))
    assert crlf.value.line == line


@pytest.mark.parametrize(
    "text",
    ["Hello,\n\nthis is just prose - with +signs and @@ marks.\n", '{"json": true}', "x"],
)
def test_text_that_is_not_a_diff_is_an_error(text):
    with pytest.raises(DiffError, match="not a diff") as info:
        plan_diff(text)
    assert info.value.line == 1
    assert isinstance(info.value, ValueError)


def test_sample_diff_error_points_at_the_first_nonblank_line():
    with pytest.raises(DiffError) as info:
        plan_diff("\n\nnot a diff\n")
    assert info.value.line == 3


# --------------------------------------------------------------------------- real git


def git(repo: Path, *args: str) -> bytes:
    env = {**os.environ, **GIT_ENV}
    proc = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def init_repo(path: Path) -> Path:
    path.mkdir()
    git(path, "init", "-q")
    return path


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)


def plan_head(repo: Path, limits: PlanLimits = PlanLimits()) -> Plan:
    return plan_diff(git(repo, *git_diff_args("HEAD~1..HEAD")[1:]).decode(), limits)


def old_paths(repo: Path) -> dict[str, str]:
    """New path -> old path of the files renamed by the last commit."""
    out = git(repo, "diff", "--name-status", "-M", "-z", "HEAD~1..HEAD").decode().split("\0")
    renames, i = {}, 0
    while i < len(out) - 1:
        status = out[i]
        if status.startswith(("R", "C")):
            renames[out[i + 2]] = out[i + 1]
            i += 3
        else:
            i += 2
    return renames


def check_plan_against_git(repo: Path, plan: Plan) -> None:
    """Every unit equals the file lines it names, at the right revision."""
    renames = old_paths(repo)
    show: Callable[[str], str] = lambda spec: git(repo, "show", spec).decode()  # noqa: E731
    for unit in plan.units:
        if unit.side == "RIGHT":
            assert_unit_matches(unit, show(f"HEAD:{unit.path}"))
        else:
            assert_unit_matches(unit, show(f"HEAD~1:{renames.get(unit.path, unit.path)}"))


def test_git_diff_args_forces_a_parsable_diff():
    args = git_diff_args("main..topic")
    assert args[:2] == ["git", "diff"] and "main..topic" in args
    for flag in ("--no-color", "--no-ext-diff", "--src-prefix=a/", "--dst-prefix=b/", "-M"):
        assert flag in args
    assert args.index("main..topic") > args.index("-M")
    with pytest.raises(ValueError):
        git_diff_args("--output=/tmp/x")


def test_user_git_config_cannot_break_the_diff(tmp_path):
    repo = init_repo(tmp_path / "repo")
    (repo / "m.py").write_text("a = 1\n")
    commit_all(repo, "base")
    (repo / "m.py").write_text("a = 2\n")
    commit_all(repo, "edit")
    for key, value in (
        ("diff.noprefix", "true"),
        ("diff.mnemonicPrefix", "true"),
        ("color.ui", "always"),
        ("color.diff", "always"),
        ("diff.external", "false"),
        ("diff.relative", "true"),
    ):
        git(repo, "config", key, value)
    plan = plan_head(repo)
    assert spans(plan) == [("m.py", 1, 1, (1,))] and plan.units[0].original == "a = 2"


def test_real_git_history_units_equal_the_files(tmp_path):
    repo = init_repo(tmp_path / "repo")
    body = [f"def f{n}(x):\n    return x + {n}\n\n" for n in range(40)]
    (repo / "mod.py").write_text("".join(body))
    (repo / "top.py").write_text("import os\n\nVALUE = 1\n")
    (repo / "moved.py").write_text("".join(f"row = {n}\n" for n in range(30)))
    (repo / "crlf.txt").write_bytes(b"one\r\ntwo\r\nthree\r\nfour\r\nfive\r\n")
    (repo / "nonl.txt").write_text("first\nsecond")
    (repo / "data.bin").write_bytes(bytes(range(256)))
    (repo / "dropped.py").write_text("gone = True\n")
    (repo / "cut.py").write_text("".join(f"k{n} = {n}\n" for n in range(20)))
    commit_all(repo, "base")

    mod = "".join(body).splitlines(keepends=True)
    mod[30:36] = ["def changed(x):\n", "    return -x\n"]
    mod.insert(90, "# a note in the middle\n")
    mod += [f"extra_{n} = {n}\n" if n % 17 else "\n" for n in range(150)]
    (repo / "mod.py").write_text("".join(mod))
    (repo / "top.py").write_text("#!/usr/bin/env python\nimport os\n\nVALUE = 2\n")
    git(repo, "mv", "moved.py", "renamed.py")
    (repo / "renamed.py").write_text("".join(f"row = {n}\n" for n in range(30) if n != 12) + "z\n")
    (repo / "crlf.txt").write_bytes(b"one\r\n2\r\nthree\r\nfour\r\nfive\r\nsix\r\n")
    (repo / "nonl.txt").write_text("first\nsecond\nthird")
    (repo / "data.bin").write_bytes(bytes(range(255, -1, -1)))
    (repo / "dropped.py").unlink()
    (repo / "cut.py").write_text("".join(f"k{n} = {n}\n" for n in range(20) if not 5 <= n < 9))
    commit_all(repo, "edits")

    plan = plan_head(repo)
    check_plan_against_git(repo, plan)
    paths = [u.path for u in plan.units]
    assert {"mod.py", "top.py", "renamed.py", "crlf.txt", "nonl.txt"} <= set(paths)
    assert "moved.py" not in plan.files  # a rename with edits, not delete + add
    assert paths.count("mod.py") >= 4  # three hunks, the long added block split
    assert all(len(u.lines) <= PlanLimits().max_unit_lines for u in plan.units)
    assert reasons(plan) == {
        "data.bin": "binary file",
        "dropped.py": "file deleted",
        "cut.py": "pure deletion: hunk @@ -3,10 +3,6 @@ removes 4 line(s)",
        "renamed.py": "pure deletion: hunk @@ -10,7 +10,6 @@ removes 1 line(s)",
    }
    crlf = next(u for u in plan.units if u.path == "crlf.txt")
    assert "\r" not in crlf.original and crlf.added_lines == (2, 6)

    left = plan_head(repo, PlanLimits(deletions="left"))
    check_plan_against_git(repo, left)
    sides = {(u.path, u.side) for u in left.units}
    assert ("cut.py", "LEFT") in sides and ("renamed.py", "RIGHT") in sides


WORDS = ["alpha", "beta", "return x", "-- dashes", "++ plus", "--- a/fake", "\\ slash", "@@ at"]


def random_line(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return ""
    return " " * rng.choice((0, 0, 4, 8)) + " ".join(rng.choices(WORDS, k=rng.randint(1, 4)))


def random_edit(rng: random.Random, lines: list[str]) -> None:
    """Insert, delete or replace a random block (start and end of file included)."""
    where = rng.choice((0, len(lines), rng.randint(0, len(lines))))
    size = rng.randint(1, 25)
    action = rng.choice(("insert", "delete", "replace"))
    new = [random_line(rng) for _ in range(rng.randint(1, 30))]
    if action == "insert":
        lines[where:where] = new
    elif action == "delete":
        del lines[where : where + size]
    else:
        lines[where : where + size] = new


def write_lines(path: Path, lines: list[str], crlf: bool, final_newline: bool) -> None:
    eol = "\r\n" if crlf else "\n"
    text = eol.join(lines) + (eol if final_newline and lines else "")
    path.write_bytes(text.encode())


def test_random_history_units_always_equal_the_files(tmp_path):
    rng = random.Random(20240601)
    repo = init_repo(tmp_path / "repo")
    files = {
        f"pkg/f{n}.py": [random_line(rng) for _ in range(rng.randint(5, 90))] for n in range(7)
    }
    crlf = {name: rng.random() < 0.3 for name in files}
    commit_count = 0
    for round_no in range(8):
        for name in list(files):
            if rng.random() < 0.6:
                for _ in range(rng.randint(1, 4)):
                    random_edit(rng, files[name])
            if rng.random() < 0.1:
                new_name = f"pkg/r{round_no}_{Path(name).name}"
                (repo / name).unlink(missing_ok=True)
                files[new_name] = files.pop(name)
                crlf[new_name] = crlf.pop(name)
        for name, lines in files.items():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            write_lines(repo / name, lines, crlf[name], final_newline=rng.random() < 0.8)
        commit_all(repo, f"round {round_no}")
        commit_count += 1
        if commit_count == 1:
            continue
        for deletions in ("skip", "left"):
            plan = plan_head(repo, PlanLimits(max_unit_lines=9, deletions=deletions))
            check_plan_against_git(repo, plan)
        numstat = git(repo, "diff", "--numstat", "-M", "HEAD~1..HEAD").decode()
        added = sum(int(row.split("\t")[0]) for row in numstat.splitlines())
        assert sum(len(u.added_lines) for u in plan.units if u.side == "RIGHT") == added
