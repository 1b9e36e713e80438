"""Incremental reviews: only the units a push changed since the last reviewed head."""

from __future__ import annotations

import pytest

from reviewbot.review.diffplan import added_lines, plan_diff
from reviewbot.review.interdiff import restrict_to_interdiff
from reviewbot.review.units import DiffError

# The PR at its new head: two files; git quotes the non-ASCII name "tést.py".
PR_DIFF = """\
diff --git "a/app/t\\303\\251st.py" "b/app/t\\303\\251st.py"
index 1111111..2222222 100644
--- "a/app/t\\303\\251st.py"
+++ "b/app/t\\303\\251st.py"
@@ -1,3 +1,4 @@
 def f():
-    return 1
+    value = 2
+    return value

@@ -20,2 +21,3 @@ def g():
     x = 1
+    y = 2
     return x
diff --git a/app/plain.py b/app/plain.py
index 3333333..4444444 100644
--- a/app/plain.py
+++ b/app/plain.py
@@ -1,2 +1,3 @@
 import os
+import sys
 print(os)
"""

# The push since the last reviewed head touched only the first hunk of tést.py.
INTERDIFF = """\
diff --git "a/app/t\\303\\251st.py" "b/app/t\\303\\251st.py"
index 5555555..2222222 100644
--- "a/app/t\\303\\251st.py"
+++ "b/app/t\\303\\251st.py"
@@ -1,3 +1,3 @@
 def f():
-    value = 1
+    value = 2
     return value
"""


def test_a_file_whose_name_git_quotes_keeps_its_changed_units() -> None:
    plan = plan_diff(PR_DIFF)
    assert [(u.path, u.start_line) for u in plan.units] == [
        ("app/tést.py", 1),
        ("app/tést.py", 21),
        ("app/plain.py", 1),
    ]
    assert added_lines(INTERDIFF) == {"app/tést.py": {2}}
    kept, unchanged = restrict_to_interdiff(plan, INTERDIFF)
    assert [(u.path, u.start_line, u.end_line) for u in kept.units] == [("app/tést.py", 1, 4)]
    assert unchanged == 2
    assert kept.skipped == plan.skipped


def test_a_renamed_file_is_matched_under_its_new_name() -> None:
    interdiff = (
        "diff --git a/old.py b/new.py\nsimilarity index 80%\nrename from old.py\n"
        "rename to new.py\n--- a/old.py\n+++ b/new.py\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n"
    )
    assert added_lines(interdiff) == {"new.py": {2}}


def test_deleted_and_binary_files_add_no_lines_and_an_empty_interdiff_keeps_nothing() -> None:
    interdiff = (
        "diff --git a/gone.py b/gone.py\ndeleted file mode 100644\n--- a/gone.py\n"
        "+++ /dev/null\n@@ -1 +0,0 @@\n-x\n"
        "diff --git a/logo.png b/logo.png\nBinary files a/logo.png and b/logo.png differ\n"
    )
    assert added_lines(interdiff) == {}
    kept, unchanged = restrict_to_interdiff(plan_diff(PR_DIFF), "")
    assert kept.units == () and unchanged == 3


def test_a_malformed_interdiff_is_a_diff_error() -> None:
    with pytest.raises(DiffError, match="line 4"):
        restrict_to_interdiff(plan_diff(PR_DIFF), "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n+only\n")
