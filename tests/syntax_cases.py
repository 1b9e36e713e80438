"""Per-language cases for the syntax checks of suggestions (tests only).

Each: the file at the head, the unit (its lines ``start``..``end``), a revision of the
unit that parses, and one that introduces a syntax error the file did not have.
"""

from __future__ import annotations

from reviewbot.review.units import ReviewUnit

LANGUAGES = {
    "app/cache.py": (
        "class Cache:\n    def __init__(self, ttl, items={}):\n        self.ttl = ttl\n"
        "        self.items = items\n",
        (2, 4),
        "    def __init__(self, ttl, items=None):\n        self.ttl = ttl\n"
        "        self.items = {} if items is None else items",
        "    def __init__(self, ttl, items=None):\n    self.ttl = ttl\n"
        "    self.items = {} if items is None else items",
    ),
    "web/total.js": (
        "function total(items) {\n  let sum = 0;\n  for (const i of items) sum += i;\n"
        "  return sum;\n}\n",
        (2, 4),
        "  let sum = 0;\n  for (const i of items) sum += i.price;\n  return sum;",
        "  let sum = 0;\n  for (const i of items sum += i.price;\n  return sum;",
    ),
    "web/total.ts": (
        "export function total(items: number[]): number {\n  let sum = 0;\n"
        "  for (const i of items) sum += i;\n  return sum;\n}\n",
        (2, 4),
        "  let sum: number = 0;\n  for (const i of items) sum += i;\n  return sum;",
        "  let sum: number = ;\n  for (const i of items) sum += i;\n  return sum;",
    ),
    "web/List.tsx": (
        "export const List = ({ items }: Props) => (\n  <ul>\n"
        "    {items.map((i) => <li key={i}>{i}</li>)}\n  </ul>\n);\n",
        (2, 4),
        "  <ul>\n    {items.map((i) => <li key={i.id}>{i.name}</li>)}\n  </ul>",
        "  <ul>\n    {items.map((i) => <li key={i.id}>{i.name}</li>}\n  </ul>",
    ),
    "cache/total.go": (
        "package cache\n\nfunc Total(items []int) int {\n\tsum := 0\n\tfor _, i := range items {\n"
        "\t\tsum += i\n\t}\n\treturn sum\n}\n",
        (4, 8),
        "\tsum := 0\n\tfor _, i := range items {\n\t\tsum += 2 * i\n\t}\n\treturn sum",
        "\tsum := 0\n\tfor _, i := range items {\n\t\tsum += 2 * \n\t}\n\treturn sum",
    ),
    "src/Total.java": (
        "class Total {\n  int total(int[] items) {\n    int sum = 0;\n"
        "    for (int i : items) sum += i;\n    return sum;\n  }\n}\n",
        (3, 5),
        "    long sum = 0;\n    for (int i : items) sum += i;\n    return (int) sum;",
        "    long sum = 0;\n    for (int i : items) sum += i;\n    return (int sum;",
    ),
    "src/total.rs": (
        "pub fn total(items: &[i32]) -> i32 {\n    let mut sum = 0;\n"
        "    for i in items {\n        sum += i;\n    }\n    sum\n}\n",
        (2, 6),
        "    let mut sum = 0;\n    for i in items {\n        sum += *i;\n    }\n    sum",
        "    let mut sum = 0;\n    for i in items {\n        sum += *i;\n    \n    sum",
    ),
    "src/total.c": (
        "int total(const int *items, int n) {\n  int sum = 0;\n"
        "  for (int i = 0; i < n; i++) sum += items[i];\n  return sum;\n}\n",
        (2, 4),
        "  long sum = 0;\n  for (int i = 0; i < n; i++) sum += items[i];\n  return (int)sum;",
        "  long sum = 0;\n  for (int i = 0; i < n; i++ sum += items[i];\n  return (int)sum;",
    ),
    "src/total.cpp": (
        "int total(const std::vector<int>& items) {\n  int sum = 0;\n"
        "  for (int i : items) sum += i;\n  return sum;\n}\n",
        (2, 4),
        "  int sum = 0;\n  for (const int& i : items) sum += i;\n  return sum;",
        "  int sum = 0;\n  for (const int& i : items) sum += i;\n  return sum",
    ),
    "lib/total.rb": (
        "def total(items)\n  sum = 0\n  items.each { |i| sum += i }\n  sum\nend\n",
        (2, 4),
        "  sum = 0\n  items.each { |i| sum += i.to_i }\n  sum",
        "  sum = 0\n  items.each { |i| sum += i.to_i \n  sum",
    ),
}


def unit_of(path: str) -> ReviewUnit:
    """The unit of ``path``'s case: its lines ``start``..``end``, all added."""
    text, (start, end), _, _ = LANGUAGES[path]
    lines = text.split("\n")[start - 1 : end]
    return ReviewUnit(
        path,
        start,
        end,
        f"@@ -{start},0 +{start},{end - start + 1} @@",
        "\n".join(lines),
        added_lines=tuple(range(start, end + 1)),
    )


def applied(path: str, revision: str) -> str:
    """The file of ``path``'s case with its unit's lines replaced by ``revision``."""
    text, (start, end), _, _ = LANGUAGES[path]
    lines = text.split("\n")
    return "\n".join(lines[: start - 1] + revision.split("\n") + lines[end:])


def new_file_diff(path: str) -> str:
    """The diff adding ``path``'s case file (one hunk: the whole file)."""
    lines = LANGUAGES[path][0].rstrip("\n").split("\n")
    head = (
        f"diff --git a/{path} b/{path}\nnew file mode 100644\nindex 0000000..1a2b3c4\n"
        f"--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{len(lines)} @@\n"
    )
    return head + "".join(f"+{line}\n" for line in lines)
