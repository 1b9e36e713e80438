"""Revision → ```suggestion mapping, its apply-check, and fence escaping."""

import re

from reviewbot.review.suggestions import (
    Suggestion,
    apply_suggestion,
    code_block,
    extract_code,
    map_revision,
    suggestion_applies,
    suggestion_block,
)
from reviewbot.review.units import ReviewUnit

ORIGINAL = "def f(x):\n    y = x * 2\n    return y\n\n\ndef g():\n    pass"


def unit(original=ORIGINAL, start=10, side="RIGHT"):
    n = original.count("\n") + 1
    return ReviewUnit("a.py", start, start + n - 1, "@@ -9,7 +10,7 @@", original, side)


def applied(u, s):
    return "\n".join(apply_suggestion(u.lines, u.start_line, s))


def test_one_changed_line_anchors_on_exactly_that_line():
    u = unit()
    revised = ORIGINAL.replace("x * 2", "x * 3")
    s = map_revision(u, revised)
    assert s == Suggestion(11, 11, ("    y = x * 3",))
    assert applied(u, s) == revised


def test_changed_range_in_the_middle():
    u = unit()
    revised = "def f(x):\n    return x * 2\n\n\ndef g():\n    pass"
    s = map_revision(u, revised)
    assert (s.start, s.end) == (11, 12)
    assert s.replacement == ("    return x * 2",)
    assert applied(u, s) == revised


def test_pure_insertion_is_widened_by_one_original_line():
    u = unit()
    revised = ORIGINAL.replace("    return y", "    assert y\n    return y")
    s = map_revision(u, revised)
    assert s.end - s.start == 0  # one original line replaced by two
    assert len(s.replacement) == 2
    assert applied(u, s) == revised
    # insertion at the very top widens downwards
    top = "import os\n" + ORIGINAL
    s = map_revision(u, top)
    assert (s.start, s.end) == (10, 10) and s.replacement == ("import os", "def f(x):")
    assert applied(u, s) == top


def test_deleting_lines_is_a_suggestion_replacing_them():
    u = unit()
    revised = "def f(x):\n    return x * 2"
    s = map_revision(u, revised)
    assert applied(u, s) == revised
    assert s.start == 11 and s.end == u.end_line


def test_no_change_empty_and_unrelated_revisions_do_not_map():
    u = unit()
    assert map_revision(u, ORIGINAL) is None
    assert map_revision(u, ORIGINAL.replace("\n", "   \n")) is None  # whitespace only
    assert map_revision(u, "") is None
    assert map_revision(u, "The code should use a logger instead of print statements.") is None


def test_left_side_units_never_get_suggestions():
    assert map_revision(unit(side="LEFT"), ORIGINAL.replace("2", "3")) is None


def test_apply_check_rejects_ranges_outside_the_unit_and_wrong_results():
    u = unit()
    revised = ORIGINAL.replace("x * 2", "x * 3")
    assert suggestion_applies(u, Suggestion(11, 11, ("    y = x * 3",)), revised)
    assert not suggestion_applies(u, Suggestion(12, 12, ("    y = x * 3",)), revised)
    assert not suggestion_applies(u, Suggestion(9, 11, ("    y = x * 3",)), revised)
    assert not suggestion_applies(u, Suggestion(16, 17, ("x",)), revised)


def test_every_mapped_suggestion_reproduces_the_revision():
    import random

    rng = random.Random(7)
    base = [f"line_{i} = {i}" for i in range(12)]
    u = unit("\n".join(base), start=100)
    for _ in range(300):
        lines = list(base)
        for _ in range(rng.randint(1, 3)):
            op = rng.choice(["edit", "insert", "delete"])
            i = rng.randrange(len(lines))
            if op == "edit":
                lines[i] = lines[i] + "  # changed"
            elif op == "insert":
                lines.insert(i, f"new_{rng.randint(0, 99)} = 0")
            elif len(lines) > 1:
                del lines[i]
        revised = "\n".join(lines)
        s = map_revision(u, revised)
        if revised == u.original:
            assert s is None
            continue
        assert s is not None
        assert u.start_line <= s.start <= s.end <= u.end_line
        assert applied(u, s) == revised


def test_extract_code_prefers_the_first_fenced_block():
    assert extract_code("Here you go:\n```python\nx = 1\ny = 2\n```\nDone.") == "x = 1\ny = 2"
    assert extract_code("~~~\nz = 3\n~~~") == "z = 3"
    assert extract_code("REVISED:\nx = 1\n") == "x = 1"
    assert extract_code("  a = 1\n  b = 2") == "  a = 1\n  b = 2"


def test_fences_inside_code_cannot_break_out_of_a_suggestion():
    code = 'doc = """\n```python\nprint(1)\n```\n"""'
    block = suggestion_block(Suggestion(1, 5, tuple(code.split("\n"))))
    fence = block.split("suggestion")[0]
    assert fence == "````"
    assert block.endswith("\n````")
    # no line inside the block closes it: every inner fence is shorter
    inner = block.split("\n")[1:-1]
    assert all(not re.fullmatch(r"`{4,}\s*", line) for line in inner)
    assert code_block("x = 1").startswith("```\n")
    assert code_block("s = '`````'").startswith("``````\n")
