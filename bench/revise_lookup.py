"""Revisions with prompt-lookup decoding vs batched greedy decoding, on the same loaded model.

    nice -n 10 .venv/bin/python bench/revise_lookup.py [--model smollm2|tiny|DIR]
        [--records 6] [--lookup 10] [--max-new-tokens 64] [--batch-size 8]
        [--quantize auto|4bit|none] [--device cpu|cuda] [--json OUT]

Revise prompts, as the pipeline renders them: the two units of ``examples/sample.diff``
(each with a short hand-written critique as the COMMENT) and the first ``--records``
revise records of the crc-py dev set (``tests/data/review-comments.dev.jsonl``, the
human reviewer's comment as the COMMENT) of at most a review unit's 60 lines. The
same engine generates the revisions three ways: batched (``Engine.generate``,
``--batch-size`` prompts a batch: the baseline and the default), one prompt at a time,
and one at a time with prompt lookup (``Engine.generate_copying`` with
``prompt_lookup_tokens=--lookup`` and ``prompt_lookup_max_prompts`` = all of them).
Prints a Markdown table: new tokens, seconds, tokens/s, the model's forward passes
(counted by a hook; with lookup each pass checks up to ``--lookup`` copied tokens),
new tokens per pass and the tokens/s ratio to batched; prints whether the outputs are
identical to batched (exit status 1 when lookup changed one); writes the figures as
JSON.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from report import write_figures

from finetune.sources import load_examples
from reviewbot.model.generation import Engine
from reviewbot.model.serving import load_engine
from reviewbot.review.diffplan import plan_diff
from reviewbot.review.prompts import unit_original
from reviewbot.settings.defaults import (
    DEMO_MODEL,
    QUANTIZE_CHOICES,
    GenerationSettings,
    PlanLimits,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JSON = ROOT / "bench" / "results" / "revise_lookup.json"
SAMPLE_DIFF = ROOT / "examples" / "sample.diff"
RECORDS = ROOT / "tests" / "data" / "review-comments.dev.jsonl"
log = logging.getLogger("bench.revise_lookup")

#: Critiques of the units of examples/sample.diff, by path (what a reviewer would say).
SAMPLE_CRITIQUES = {
    "app/cache.py": "The mutable default `items={}` is shared by every Cache; default to "
    "None and create the dict in __init__. The bare except also hides real errors: "
    "catch KeyError.",
    "app/users.py": "Building the query by string concatenation allows SQL injection: pass "
    "the name as a query parameter.",
}


def revise_prompts(engine: Engine, records: int) -> list[str]:
    """The sample diff's units with their critiques, then the first ``records`` crc-py
    revise records of at most a review unit's lines."""
    units = plan_diff(SAMPLE_DIFF.read_text(encoding="utf-8")).units
    prompts = [
        engine.renderer.task("revise", ORIGINAL=unit_original(u), CRITIQUE=SAMPLE_CRITIQUES[u.path])
        for u in units
    ]
    longest = PlanLimits().max_unit_lines  # the planner splits longer hunks
    examples = [
        e
        for e in load_examples(RECORDS)
        if e.task == "revise" and len(e.fields["ORIGINAL"].splitlines()) <= longest
    ]
    examples = examples[:records]
    return prompts + [e.prompt(engine.renderer) for e in examples]


class ForwardCounter:
    """Counts the model's forward passes (a forward hook on the top module)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.count = 0
        self._handle = model.register_forward_hook(self._hook)

    def _hook(self, *_: Any) -> None:
        self.count += 1

    def close(self) -> None:
        self._handle.remove()


def timed(engine: Engine, counter: ForwardCounter, mode: str, prompts: list[str]) -> tuple:
    """(outputs, figures) of one mode: batched, sequential or lookup."""
    counter.count = 0
    started = time.perf_counter()
    if mode == "sequential":
        outputs, tokens = [], 0
        for prompt in prompts:
            outputs += engine.generate([prompt])
            tokens += engine.last_stats.generated_tokens
    else:
        generate = engine.generate_copying if mode == "lookup" else engine.generate
        outputs = generate(prompts)
        tokens = engine.last_stats.generated_tokens
    seconds = time.perf_counter() - started
    figures = {
        "generated_tokens": tokens,
        "seconds": round(seconds, 2),
        "tokens_per_s": round(tokens / seconds, 2),
        "forward_passes": counter.count,
        "tokens_per_forward": round(tokens / max(counter.count, 1), 2),
    }
    log.info("%s: %s", mode, figures)
    return outputs, figures


def measure(args: argparse.Namespace, model: str) -> dict[str, Any]:
    """Load ``model``, then time the three modes on the same revise prompts."""
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    engine = load_engine(model, quantize=args.quantize, settings=settings, device=args.device)
    prompts = revise_prompts(engine, args.records)
    # every prompt alone, with lookup (at most prompt_lookup_max_prompts: see the engine)
    lookup = replace(
        settings, prompt_lookup_tokens=args.lookup, prompt_lookup_max_prompts=len(prompts)
    )
    # warm-up: first-call overheads, of a padded batch and of the lookup path
    engine.generate(prompts[: args.batch_size], max_new_tokens=2)
    engine.settings = lookup
    engine.generate_copying(prompts[:1], max_new_tokens=2)
    counter = ForwardCounter(engine.model)
    runs, outputs = {}, {}
    for mode in ("batched", "sequential", "lookup"):
        engine.settings = lookup if mode == "lookup" else settings
        outputs[mode], runs[mode] = timed(engine, counter, mode, prompts)
    counter.close()
    base = runs["batched"]["tokens_per_s"]
    for figures in runs.values():
        figures["vs_batched"] = round(figures["tokens_per_s"] / max(base, 1e-9), 2)
    identical = {m: outputs[m] == outputs["batched"] for m in ("sequential", "lookup")}
    return {
        "model": engine.model_name,
        "device": engine.device,
        "quantized": engine.quantized,
        "prompt_format": engine.prompt_format,
        "prompts": len(prompts),
        "prompt_tokens": engine.last_stats.prompt_tokens,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "prompt_lookup_tokens": args.lookup,
        "runs": runs,
        "identical_outputs": identical,
        "sample_output": outputs["batched"][0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
    }


def table(r: dict[str, Any]) -> str:
    mode = "4-bit NF4" if r["quantized"] else "full precision"
    names = {
        "batched": f"batched ({r['batch_size']} a batch)",
        "sequential": "one at a time",
        "lookup": f"one at a time + lookup {r['prompt_lookup_tokens']}",
    }
    rows = [
        f"model {r['model']} on {r['device']} ({mode}), format {r['prompt_format']}, "
        f"{r['prompts']} revise prompts ({r['prompt_tokens']} prompt tokens), "
        f"max_new_tokens {r['max_new_tokens']}",
        "",
        "| mode | new tokens | seconds | tok/s | forward passes | tokens/pass | vs batched |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, f in r["runs"].items():
        rows.append(
            f"| {names[key]} | {f['generated_tokens']} | {f['seconds']:.2f} | "
            f"{f['tokens_per_s']:.2f} | {f['forward_passes']} | {f['tokens_per_forward']:.2f} | "
            f"{f['vs_batched']:.2f}x |"
        )
    same = r["identical_outputs"]
    rows += [
        "",
        f"identical outputs to batched: one at a time {'yes' if same['sequential'] else 'NO'}, "
        f"with lookup {'yes' if same['lookup'] else 'NO'}",
    ]
    return "\n".join(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=DEMO_MODEL, help="smollm2 (default), tiny, a dir or hub id")
    p.add_argument("--records", type=int, default=6, help="crc-py revise records to add")
    p.add_argument("--lookup", type=int, default=10, help="prompt-lookup candidate tokens")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--quantize", choices=QUANTIZE_CHOICES, default="auto")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the figures")
    args = p.parse_args(argv)
    if args.lookup < 1:
        p.error("--lookup must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="reviewbot-bench-") as workdir:
        if args.model == "tiny":
            sys.path.insert(0, str(ROOT / "tests"))
            from tinymodel import build_tiny_model

            model = str(build_tiny_model(Path(workdir) / "tiny"))
        else:
            model = args.model
        result = measure(args, model)
    print(table(result), flush=True)
    write_figures({"bench": "revise_lookup", **result}, args.json)
    if not result["identical_outputs"]["lookup"]:
        print("prompt lookup changed the output", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
