"""Diff planning throughput: reviewbot's planner vs a bare unidiff parse, same text, same run.

    python bench/planning.py [--repo DIR ...] [--diff FILE ...] [--min-mb 8] [--repeats 5]
                             [--json OUT]

The corpus is real history: every first-parent commit of each ``--repo`` (default:
this checkout) diffed against its predecessor (the first one against the empty
tree) with the flags ``reviewbot review --git`` uses, plus any ``--diff`` files,
concatenated in order. A git history is small, so the corpus is repeated until it
is at least ``--min-mb`` MB (the output says how often): each copy is parsed anew,
nothing is cached. Three parsers read the same text, interleaved, best of
``--repeats``: ``unidiff.PatchSet`` alone (the baseline), ``plan_diff`` with the
default limits (what the worker does: units beyond the budget are listed as
skipped) and ``plan_diff`` with no unit or file budget (every hunk becomes units).
Prints seconds, MB/s (MB = 10^6 bytes), units, skipped and the ratio to the
baseline, and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from report import write_figures
from unidiff import PatchSet

from reviewbot.review.diffplan import git_diff_args, plan_diff
from reviewbot.settings.defaults import PlanLimits

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JSON = ROOT / "bench" / "results" / "planning.json"
UNBOUNDED = replace(PlanLimits(), max_units=sys.maxsize, max_file_changed_lines=sys.maxsize)
log = logging.getLogger("bench.planning")


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, encoding="utf-8"
    )
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed in {repo}: {done.stderr.strip()}")
    return done.stdout


def history_diffs(repo: Path, max_commits: int) -> list[str]:
    """One diff per first-parent commit of ``repo`` (oldest first), as ``--git`` makes it."""
    commits = git(repo, "rev-list", "--first-parent", "--reverse", "HEAD").split()
    if max_commits:
        commits = commits[-max_commits:]
    empty_tree = git(repo, "hash-object", "-t", "tree", "/dev/null").strip()
    first = git(repo, "rev-list", "--max-count=1", "--parents", commits[0]).split()
    previous = first[1] if len(first) > 1 else empty_tree
    diffs = []
    for commit in commits:
        argv = git_diff_args(f"{previous}..{commit}")
        diffs.append(git(repo, *argv[1:]))
        previous = commit
    return [d for d in diffs if d.strip()]


def build_corpus(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The diff text to parse and a description of where it came from."""
    pieces: list[str] = []
    sources = []
    for repo in args.repo or ([] if args.diff else [str(ROOT)]):
        diffs = history_diffs(Path(repo).resolve(), args.max_commits)
        pieces += diffs
        size = sum(len(d.encode()) for d in diffs)
        sources.append({"repo": str(Path(repo).resolve()), "commits": len(diffs), "bytes": size})
    for name in args.diff or []:
        text = Path(name).read_text(encoding="utf-8")
        pieces.append(text if text.endswith("\n") else text + "\n")
        sources.append({"diff": name, "bytes": len(text.encode())})
    once = "".join(pieces)
    if not once.strip():
        raise SystemExit("the corpus is empty: no commits with changes and no --diff files")
    once_bytes = len(once.encode())
    copies = max(1, -(-int(args.min_mb * 1e6) // once_bytes))
    return once * copies, {"sources": sources, "bytes_once": once_bytes, "copies": copies}


def bare_parse(text: str) -> dict[str, int]:
    patch = PatchSet(text)
    return {"files": len(patch), "hunks": sum(len(f) for f in patch)}


def planner(limits: PlanLimits) -> Callable[[str], dict[str, int]]:
    def run(text: str) -> dict[str, int]:
        plan = plan_diff(text, limits)
        return {"files": len(plan.files), "units": len(plan.units), "skipped": len(plan.skipped)}

    return run


CASES: dict[str, Callable[[str], dict[str, int]]] = {
    "unidiff.PatchSet": bare_parse,
    "plan_diff default limits": planner(PlanLimits()),
    "plan_diff no budget": planner(UNBOUNDED),
}
BASELINE = "unidiff.PatchSet"


def measure(text: str, repeats: int) -> dict[str, dict[str, Any]]:
    """Best-of-``repeats`` seconds of each case, rounds interleaved."""
    best = {name: float("inf") for name in CASES}
    counts: dict[str, dict[str, int]] = {}
    for _ in range(repeats):
        for name, run in CASES.items():
            gc.collect()
            start = time.perf_counter()
            counts[name] = run(text)
            best[name] = min(best[name], time.perf_counter() - start)
    size = len(text.encode())
    base = size / best[BASELINE]
    out = {}
    for name in CASES:
        rate = size / best[name]
        out[name] = {
            **counts[name],
            "seconds": round(best[name], 4),
            "mb_per_s": round(rate / 1e6, 2),
            "ratio_to_unidiff": round(rate / base, 3),
        }
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    text, corpus = build_corpus(args)
    lines = text.count("\n")
    log.info("corpus %.2f MB, %d lines; %d round(s)", len(text.encode()) / 1e6, lines, args.repeats)
    results = measure(text, args.repeats)
    return {
        "bench": "planning",
        "corpus": {**corpus, "bytes": len(text.encode()), "lines": lines},
        "repeats": args.repeats,
        "results": results,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
    }


def table(r: dict[str, Any]) -> str:
    c, base = r["corpus"], r["results"][BASELINE]
    where = "; ".join(
        f"{s['commits']} commits of {s['repo']}" if "repo" in s else f"diff {s['diff']}"
        for s in c["sources"]
    )
    rows = [
        f"corpus: {where} ({c['bytes_once'] / 1e6:.2f} MB), "
        f"repeated {c['copies']}x: {c['bytes'] / 1e6:.2f} MB, {c['lines']:,} lines, "
        f"{base['files']:,} file diffs, {base['hunks']:,} hunks; best of {r['repeats']}",
        "",
        f"{'parser':<26}{'seconds':>9}{'MB/s':>8}{'units':>8}{'skipped':>9}{'ratio':>9}",
    ]
    for name, m in r["results"].items():
        rows.append(
            f"{name:<26}{m['seconds']:>9.3f}{m['mb_per_s']:>8.2f}{m.get('units', '-'):>8}"
            f"{m.get('skipped', '-'):>9}{m['ratio_to_unidiff']:>8.3f}x"
        )
    rows += [
        "",
        "ratio: MB/s over unidiff.PatchSet's on the same text; 'default limits' plans at most "
        f"{PlanLimits().max_units} units and lists the rest as skipped",
    ]
    return "\n".join(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--repo", action="append", help="git repository whose history to diff (default: this one)"
    )
    p.add_argument("--diff", action="append", help="a diff file to add to the corpus")
    p.add_argument("--max-commits", type=int, default=0, help="latest N commits only (0: all)")
    p.add_argument("--min-mb", type=float, default=8.0, help="repeat the corpus up to this size")
    p.add_argument("--repeats", type=int, default=5, help="rounds; the best time counts")
    p.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the figures")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.min_mb < 0 or args.max_commits < 0:
        p.error("--repeats must be at least 1, --min-mb and --max-commits not negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = run(args)
    print(table(result), flush=True)
    write_figures(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
