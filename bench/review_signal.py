"""Review signal: does a finding's confidence tell the hunks people comment on apart?

    .venv/bin/python bench/finetune_demo.py     # once: the adapter and its held-out split
    .venv/bin/python bench/review_signal.py [--negatives 64] [--no-adapter] [--threads 2]

Two kinds of hunks, reviewed by the real pipeline
(:func:`reviewbot.review.pipeline.review_plan`, revisions on, the engine's own
``generate`` and ``score``):

- *commented*: the hunks of the held-out part of ``tests/data/review-comments.dev.jsonl``
  (split exactly as ``bench/finetune_demo.py`` splits it, so the adapter never saw
  them; Python files only, like the other side), each GitHub ``diff_hunk`` planned
  as the unit reviewbot would review (the one holding the commented line);
- *uncommented*: a seeded sample of the units of ``tests/data/click-8.1.8..8.2.0.diff``,
  the merged changes between two released versions of Click (BSD-3-Clause,
  ``tests/data/LICENSE.click``), which no reviewer flagged before release.

For the demo model and the demo model + the adapter of ``bench/finetune_demo.py``
it prints:

- discrimination: the AUC (± its standard error, Hanley & McNeil) of each candidate
  confidence of :mod:`reviewbot.review.confidence` between commented (positive)
  and uncommented hunks, every unit's critique scored (a unit whose critique is
  empty after cleaning gets 0), next to two baselines: "survives noise control"
  (the rules before confidence) and the unit's length in lines;
- the distribution of the production confidence on each side (for the profiles);
- comments per 100 changed (added) lines at each profile of
  :data:`~reviewbot.settings.defaults.PROFILES`, overall and per side;
- the share of posted suggestions that parse (the suggestion applied to the unit,
  parsed with :mod:`reviewbot.review.syntax`) and that apply (their lines are
  inside the unit, on the new side, and they change them);
- the number of findings dropped by each rule (``Review.dropped`` reasons);
- wall time, and the seconds spent generating and scoring.

Each side is reviewed as one pull request (near-duplicate findings merge within
it). Generation and scores are cached per prompt, so the profiles see the very
same critiques and revisions. The JSON goes to ``bench/results/review_signal.json``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune_demo import DATA as COMMENTS
from finetune_demo import split
from report import write_figures

from reviewbot.review.confidence import CONFIDENCE_METHODS, confidence, raw_scores
from reviewbot.review.diffplan import plan_diff
from reviewbot.review.findings import Review
from reviewbot.review.noise import clean_completion, noise_reason
from reviewbot.review.pipeline import critique_prompts, review_plan
from reviewbot.review.prompts import task_text
from reviewbot.review.syntax import introduces_error
from reviewbot.review.units import Plan, ReviewUnit
from reviewbot.settings.defaults import (
    CONFIDENCE_METHOD,
    DEMO_MODEL,
    PROFILES,
    QUANTIZE_CHOICES,
    SEED_PROMPT_FORMAT,
    GenerationSettings,
    PlanLimits,
    ReviewOptions,
)

log = logging.getLogger("bench.review_signal")
ROOT = Path(__file__).resolve().parent.parent
MERGED = ROOT / "tests" / "data" / "click-8.1.8..8.2.0.diff"
ADAPTER = ROOT / "bench" / "results" / "finetune_demo"
DEFAULT_JSON = ROOT / "bench" / "results" / "review_signal.json"
#: The first line of the revise task: how the cached generate tells revisions apart.
REVISE_OPENING = task_text("revise").split("\n", 1)[0]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--model", default=DEMO_MODEL)
    p.add_argument(
        "--adapter", type=Path, default=ADAPTER, help="the adapter of bench/finetune_demo.py"
    )
    p.add_argument("--no-adapter", action="store_true", help="measure the demo model only")
    p.add_argument("--quantize", choices=QUANTIZE_CHOICES, default="auto")
    p.add_argument("--prompt-format", default=SEED_PROMPT_FORMAT)
    p.add_argument("--data", type=Path, default=COMMENTS, help="review-comment JSONL")
    p.add_argument("--heldout", type=int, default=32, help="as bench/finetune_demo.py")
    p.add_argument("--train-size", type=int, default=120, help="as bench/finetune_demo.py")
    p.add_argument("--seed", type=int, default=0, help="as bench/finetune_demo.py")
    p.add_argument("--merged", type=Path, default=MERGED, help="diff of merged changes")
    p.add_argument("--negatives", type=int, default=64, help="uncommented units (sampled)")
    p.add_argument("--max-new-tokens", type=int, default=48, help="per critique")
    p.add_argument("--revise-max-new-tokens", type=int, default=96, help="per revision")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=DEFAULT_JSON)
    return p.parse_args(argv)


# --------------------------------------------------------------------------- the hunks


@dataclass(frozen=True)
class Side:
    """The units of one side, reviewed as one pull request."""

    name: str
    units: tuple[ReviewUnit, ...]
    source: str


def _diff_of(path: str, original: str, start: int, added: set[int]) -> str:
    """A one-hunk diff of ``path`` whose new side is ``original`` from line ``start`` on,
    ``added`` its added lines (the removed lines do not matter to the new side)."""
    lines = original.split("\n")
    body = [("+" if start + i in added else " ") + line for i, line in enumerate(lines)]
    old = sum(not b.startswith("+") for b in body)
    header = f"@@ -{start},{old} +{start},{len(lines)} @@"
    return "\n".join([f"--- a/{path}", f"+++ b/{path}", header, *body]) + "\n"


def commented(args: argparse.Namespace) -> Side:
    """The held-out hunks a reviewer commented on (Python files, new side), one unit each:
    the one the planner makes of the hunk that holds the commented line. Paths are
    prefixed with the repository, so hunks of different projects never share a path."""
    heldout, _ = split(args)
    units: list[ReviewUnit] = []
    seen: set[int] = set()
    for ex in heldout:
        prov = ex.provenance
        comment = int(prov["comment_id"])
        if comment in seen or not str(prov["path"]).endswith(".py") or prov.get("side") != "RIGHT":
            continue
        seen.add(comment)
        span = prov["unit"]
        path = f"{prov['repo']}/{prov['path']}"
        diff = _diff_of(path, ex.fields["ORIGINAL"], span["start_line"], set(span["added_lines"]))
        line = int(prov["line_number"])
        hits = [u for u in plan_diff(diff, _UNBOUNDED).units if u.start_line <= line <= u.end_line]
        if hits:
            units.append(hits[-1])
        else:
            log.warning("comment %d: line %d is in no unit of its hunk", comment, line)
    return Side("commented", tuple(units), f"{args.data} (held-out, seed {args.seed})")


_UNBOUNDED = PlanLimits(max_units=10**9, max_file_changed_lines=10**9)


def uncommented(args: argparse.Namespace) -> Side:
    """A seeded sample of the merged units (Python files), in diff order."""
    plan = plan_diff(args.merged.read_text(encoding="utf-8"), _UNBOUNDED)
    units = [u for u in plan.units if u.path.endswith(".py") and u.side == "RIGHT"]
    if args.negatives < len(units):
        keep = sorted(random.Random(args.seed).sample(range(len(units)), args.negatives))
        units = [units[i] for i in keep]
    units = [
        ReviewUnit(
            f"click/{u.path}",
            u.start_line,
            u.end_line,
            u.hunk_header,
            u.original,
            u.side,
            u.added_lines,
        )
        for u in units
    ]
    return Side("uncommented", tuple(units), str(args.merged.relative_to(ROOT)))


# --------------------------------------------------------------------------- the model


@dataclass
class CachedModel:
    """The engine's generate and score, cached per prompt (and completion) and timed:
    every profile sees the same critiques and revisions."""

    engine: Any
    critique_tokens: int
    revise_tokens: int
    texts: dict[str, str] = field(default_factory=dict)
    scores: dict[tuple[str, str], float] = field(default_factory=dict)
    generate_s: float = 0.0
    score_s: float = 0.0
    scored_pairs: int = 0

    def generate(self, prompts: list[str]) -> list[str]:
        todo = [p for p in dict.fromkeys(prompts) if p not in self.texts]
        for revise in (False, True):
            batch = [p for p in todo if (REVISE_OPENING in p) == revise]
            if batch:
                budget = self.revise_tokens if revise else self.critique_tokens
                started = time.perf_counter()
                out = self.engine.generate(batch, max_new_tokens=budget)
                self.generate_s += time.perf_counter() - started
                self.texts.update(zip(batch, out, strict=True))
        return [self.texts[p] for p in prompts]

    def score(self, prompts: list[str], completions: list[str]) -> list[float]:
        pairs = list(zip(prompts, completions, strict=True))
        todo = [pc for pc in dict.fromkeys(pairs) if pc not in self.scores]
        if todo:
            started = time.perf_counter()
            got = self.engine.score([p for p, _ in todo], [c for _, c in todo])
            self.score_s += time.perf_counter() - started
            self.scored_pairs += len(todo)
            self.scores.update(zip(todo, got, strict=True))
        return [self.scores[pc] for pc in pairs]


# --------------------------------------------------------------------------- figures


def auc(pos: list[float], neg: list[float]) -> tuple[float, float]:
    """(AUC, standard error): the chance that a positive outranks a negative (ties
    count half), and Hanley & McNeil's (1982) standard error."""
    if not pos or not neg:
        return math.nan, math.nan
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    a = wins / (len(pos) * len(neg))
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (len(pos) - 1) * (q1 - a * a) + (len(neg) - 1) * (q2 - a * a)) / (
        len(pos) * len(neg)
    )
    return a, math.sqrt(max(var, 0.0))


def discrimination(model: CachedModel, sides: list[Side], options: ReviewOptions) -> dict[str, Any]:
    """Every unit's critique, cleaned and scored by each candidate; the AUCs."""
    renderer = model.engine.renderer
    rows: list[dict[str, Any]] = []
    for side in sides:
        prompts = critique_prompts(side.units, renderer, options)
        raw = model.generate(prompts)
        cleaned = [clean_completion(r, options.noise.max_critique_chars) for r in raw]
        said = [i for i, c in enumerate(cleaned) if c.strip()]
        crit, none = raw_scores([prompts[i] for i in said], [cleaned[i] for i in said], model.score)
        scores = dict(zip(said, zip(crit, none, strict=True), strict=True))
        for i, unit in enumerate(side.units):
            row: dict[str, Any] = {
                "side": side.name,
                "path": unit.path,
                "start_line": unit.start_line,
                "lines": unit.end_line - unit.start_line + 1,
                "added": len(unit.added_lines),
                "survives_noise": noise_reason(cleaned[i], unit.original, options.noise) is None,
                "critique": cleaned[i],
            }
            if i in scores:
                c, n = scores[i]
                row["critique_logp"], row["no_finding_logp"] = c, n
                for method in CONFIDENCE_METHODS:
                    row[method] = confidence(method, c, n)
            else:
                row.update({m: 0.0 for m in CONFIDENCE_METHODS})
            rows.append(row)
    pos = [r for r in rows if r["side"] == "commented"]
    neg = [r for r in rows if r["side"] == "uncommented"]
    aucs = {}
    for name in (*CONFIDENCE_METHODS, "survives_noise", "lines"):
        a, se = auc([float(r[name]) for r in pos], [float(r[name]) for r in neg])
        aucs[name] = {"auc": round(a, 4), "se": round(se, 4)}
    # The same, among the critiques noise control lets through (what a threshold sorts).
    found = {}
    for name in CONFIDENCE_METHODS:
        a, se = auc(
            [float(r[name]) for r in pos if r["survives_noise"]],
            [float(r[name]) for r in neg if r["survives_noise"]],
        )
        found[name] = {"auc": round(a, 4), "se": round(se, 4)}
    spread = {}
    for side, group in (("commented", pos), ("uncommented", neg)):
        values = sorted(r[CONFIDENCE_METHOD] for r in group)
        spread[side] = {
            "n": len(values),
            "min": round(values[0], 4),
            "q25": round(_quantile(values, 0.25), 4),
            "median": round(statistics.median(values), 4),
            "q75": round(_quantile(values, 0.75), 4),
            "max": round(values[-1], 4),
        }
    return {"auc": aucs, "auc_findings": found, "confidence_spread": spread, "units": rows}


def _quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def _unit_of(side: Side, path: str, line: int) -> ReviewUnit:
    for u in side.units:
        if u.path == path and u.start_line <= line <= u.end_line:
            return u
    raise LookupError(f"no unit of {side.name} holds {path}:{line}")


def suggestion_checks(review: Review, side: Side) -> tuple[int, int, int, int]:
    """(suggestions, of which apply, parse-checked, of which parse) among ``review``'s
    posted comments: applied to the unit they are on, then parsed against it."""
    total = applies = checked = parses = 0
    for c in review.comments:
        if c.suggestion is None:
            continue
        total += 1
        unit = _unit_of(side, c.path, c.line)
        start = c.start_line or c.line
        lines = unit.lines
        inside = c.side == "RIGHT" and unit.start_line <= start <= c.line <= unit.end_line
        lo, hi = start - unit.start_line, c.line - unit.start_line + 1
        after = lines[:lo] + c.suggestion.split("\n") + lines[hi:]
        if inside and [x.rstrip() for x in after] != [x.rstrip() for x in lines]:
            applies += 1
            verdict = introduces_error(unit.original, "\n".join(after), unit.path)
            if verdict is not None:
                checked += 1
                parses += not verdict
    return total, applies, checked, parses


def profiles(model: CachedModel, sides: list[Side], base: ReviewOptions) -> dict[str, Any]:
    """Each side reviewed at each profile (the lowest threshold first: it fills the caches)."""
    out: dict[str, Any] = {}
    for name, threshold in sorted(PROFILES.items(), key=lambda kv: kv[1]):
        options = ReviewOptions(
            revise=True,
            min_confidence=threshold,
            noise=base.noise,
            changed_lines=base.changed_lines,
        )
        per_side: dict[str, Any] = {}
        for side in sides:
            review = review_plan(
                Plan(side.units), model.generate, model.engine.renderer, options, score=model.score
            )
            added = sum(len(u.added_lines) for u in side.units)
            total, applies, checked, parses = suggestion_checks(review, side)
            per_side[side.name] = {
                "units": len(side.units),
                "added_lines": added,
                "comments": len(review.comments),
                "comments_per_100_lines": round(100 * len(review.comments) / max(added, 1), 2),
                "suggestions": total,
                "suggestions_apply": applies,
                "suggestions_parse_checked": checked,
                "suggestions_parse": parses,
                "dropped": dict(Counter(d.reason for d in review.dropped)),
            }
        added = sum(s["added_lines"] for s in per_side.values())
        comments = sum(s["comments"] for s in per_side.values())
        dropped: Counter[str] = Counter()
        for s in per_side.values():
            dropped.update(s["dropped"])
        out[name] = {
            "min_confidence": threshold,
            "comments": comments,
            "added_lines": added,
            "comments_per_100_lines": round(100 * comments / max(added, 1), 2),
            "suggestions": sum(s["suggestions"] for s in per_side.values()),
            "suggestions_apply": sum(s["suggestions_apply"] for s in per_side.values()),
            "suggestions_parse_checked": sum(
                s["suggestions_parse_checked"] for s in per_side.values()
            ),
            "suggestions_parse": sum(s["suggestions_parse"] for s in per_side.values()),
            "dropped": dict(sorted(dropped.items())),
            "sides": per_side,
        }
    return out


def measure(args: argparse.Namespace, label: str, adapter: Path | None, sides: list[Side]) -> dict:
    from reviewbot.model.serving import load_engine

    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    started = time.perf_counter()
    engine = load_engine(
        args.model,
        adapter=str(adapter) if adapter else None,
        quantize=args.quantize,
        prompt_format=None if adapter else args.prompt_format,
        settings=settings,
        device="cpu",
    )
    load_s = time.perf_counter() - started
    model = CachedModel(engine, args.max_new_tokens, args.revise_max_new_tokens)
    options = ReviewOptions(revise=True)
    result = {
        "label": label,
        "model": engine.model_name,
        "adapter": str(adapter) if adapter else None,
        "prompt_format": engine.prompt_format,
        "quantized": engine.quantized,
        "load_s": round(load_s, 1),
    }
    # The profiles first: the pipeline's own calls batch the critiques of each side.
    result["profiles"] = profiles(model, sides, options)
    result["discrimination"] = discrimination(model, sides, options)
    result["generate_s"] = round(model.generate_s, 1)
    result["score_s"] = round(model.score_s, 1)
    result["scored_pairs"] = model.scored_pairs
    return result


def _pct(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.0f} %)" if whole else "0/0"


#: Thresholds the sweep table shows (the profiles' are among them).
SWEEP: tuple[float, ...] = tuple(sorted({0.5, 0.8, 0.9, 0.95, *PROFILES.values()}))


def _kept(run: dict[str, Any], side: str, threshold: float) -> str:
    """Of ``side``'s critiques that pass noise control, how many reach ``threshold``."""
    rows = run["discrimination"]["units"]
    found = [u for u in rows if u["side"] == side and u["survives_noise"]]
    kept = sum(u[CONFIDENCE_METHOD] >= threshold for u in found)
    added = sum(u["added"] for u in rows if u["side"] == side)
    return f"{kept}/{len(found)} ({100 * kept / max(added, 1):.1f})"


def tables(r: dict[str, Any]) -> str:
    runs = r["runs"]
    heads = [run["label"] for run in runs]
    out = []

    def table(title: str, rows: list[tuple[str, list[str]]]) -> None:
        width = max(len(k) for k, _ in rows)
        cols = [max(len(h), *(len(v[i]) for _, v in rows)) for i, h in enumerate(heads)]
        out.append(title)
        out.append(
            f"{'':<{width}}  " + "  ".join(f"{h:>{w}}" for h, w in zip(heads, cols, strict=True))
        )
        for k, vals in rows:
            out.append(
                f"{k:<{width}}  " + "  ".join(f"{v:>{w}}" for v, w in zip(vals, cols, strict=True))
            )
        out.append("")

    n_pos = (
        len(runs[0]["discrimination"]["confidence_spread"])
        and runs[0]["discrimination"]["confidence_spread"]["commented"]["n"]
    )
    n_neg = runs[0]["discrimination"]["confidence_spread"]["uncommented"]["n"]
    names = {
        "likelihood": "likelihood  exp(l_c)",
        "no-finding": "no-finding  1-exp(l_n)",
        "contrast": "contrast    sigmoid(l_c-l_n)",
        "survives_noise": "baseline: survives noise control",
        "lines": "baseline: unit length (lines)",
    }
    table(
        f"AUC, {n_pos} commented vs {n_neg} uncommented hunks (± standard error)",
        [
            (
                names[m] + (" *" if m == CONFIDENCE_METHOD else ""),
                [
                    f"{run['discrimination']['auc'][m]['auc']:.3f} ± "
                    f"{run['discrimination']['auc'][m]['se']:.3f}"
                    for run in runs
                ],
            )
            for m in names
        ],
    )
    table(
        "AUC among the critiques past noise control (what a threshold sorts)",
        [
            (
                names[m] + (" *" if m == CONFIDENCE_METHOD else ""),
                [
                    f"{run['discrimination']['auc_findings'][m]['auc']:.3f} ± "
                    f"{run['discrimination']['auc_findings'][m]['se']:.3f}"
                    for run in runs
                ],
            )
            for m in CONFIDENCE_METHODS
        ],
    )
    spread_rows = []
    for side in ("commented", "uncommented"):
        spread_rows.append(
            (
                f"{CONFIDENCE_METHOD} confidence, {side}: q25 / median / q75",
                [
                    "{q25:.2f} / {median:.2f} / {q75:.2f}".format(
                        **run["discrimination"]["confidence_spread"][side]
                    )
                    for run in runs
                ],
            )
        )
    table("Confidence of the critiques", spread_rows)
    sweep_rows = []
    for threshold in SWEEP:
        for side in ("commented", "uncommented"):
            sweep_rows.append(
                (
                    f">= {threshold:g}, {side}: findings kept (per 100 added lines)",
                    [_kept(run, side, threshold) for run in runs],
                )
            )
    table("Findings past noise control kept at each threshold", sweep_rows)
    prof_rows = []
    for name in PROFILES:
        p0 = runs[0]["profiles"][name]
        prof_rows.append(
            (
                f"{name} (>= {p0['min_confidence']:g}): all, per 100 added lines",
                [f"{run['profiles'][name]['comments_per_100_lines']:.2f}" for run in runs],
            )
        )
        for side in ("commented", "uncommented"):
            prof_rows.append(
                (
                    f"  {side}: comments / units (per 100 lines)",
                    [
                        "{comments} / {units} ({comments_per_100_lines:.2f})".format(
                            **run["profiles"][name]["sides"][side]
                        )
                        for run in runs
                    ],
                )
            )
    table("Comments at each profile", prof_rows)
    sug_rows = []
    for name in PROFILES:
        sug_rows += [
            (
                f"{name}: suggestions that apply",
                [
                    _pct(
                        run["profiles"][name]["suggestions_apply"],
                        run["profiles"][name]["suggestions"],
                    )
                    for run in runs
                ],
            ),
            (
                f"{name}: suggestions that parse",
                [
                    _pct(
                        run["profiles"][name]["suggestions_parse"],
                        run["profiles"][name]["suggestions_parse_checked"],
                    )
                    for run in runs
                ],
            ),
        ]
    table("Posted suggestions", sug_rows)
    reasons = sorted({k for run in runs for p in run["profiles"].values() for k in p["dropped"]})
    drop_rows = [
        (
            f"{name}: {reason}",
            [str(run["profiles"][name]["dropped"].get(reason, 0)) for run in runs],
        )
        for name in PROFILES
        for reason in reasons
    ]
    if drop_rows:
        table("Findings dropped, by rule", drop_rows)
    table(
        "Time (s)",
        [
            ("model load", [f"{run['load_s']:.1f}" for run in runs]),
            ("generate (critiques + revisions)", [f"{run['generate_s']:.1f}" for run in runs]),
            (
                "score (confidence)",
                [f"{run['score_s']:.1f} ({run['scored_pairs']} pairs)" for run in runs],
            ),
        ],
    )
    out.append(
        f"wall time: {r['wall_s']:.1f} s on {r['cpus']} CPU(s), torch threads {r['threads']}"
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.no_adapter and not (args.adapter / "adapter_config.json").exists():
        print(
            f"review_signal: error: no adapter in {args.adapter}; run bench/finetune_demo.py first "
            "(or pass --no-adapter)",
            file=sys.stderr,
        )
        return 2
    started = time.perf_counter()
    sides = [commented(args), uncommented(args)]
    for side in sides:
        log.info("%s: %d units from %s", side.name, len(side.units), side.source)
    runs = [measure(args, "demo model", None, sides)]
    if not args.no_adapter:
        runs.append(measure(args, "+ adapter", args.adapter, sides))
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "sides": {s.name: {"units": len(s.units), "source": s.source} for s in sides},
        "confidence_method": CONFIDENCE_METHOD,
        "profiles": PROFILES,
        "max_new_tokens": args.max_new_tokens,
        "revise_max_new_tokens": args.revise_max_new_tokens,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "runs": runs,
        "wall_s": round(time.perf_counter() - started, 1),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "torch": torch.__version__,
    }
    write_figures(result, args.out)
    print(tables(result))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
