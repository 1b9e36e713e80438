"""Preference demo: does KTO on outcome labels make the production confidence prefer accepted?

Builds labelled findings from the repository's own files: for each of ``--units`` code
units of a review-comment JSONL file (default: the crc-py dev set in tests/data), an
``accepted`` record whose critique is the human reviewer's comment, and a ``rejected``
record whose critique is the demo model's own greedy critique of the same unit (the
critique prompt serving renders, cleaned and noise-filtered as the pipeline does; units
where that yields nothing or the human comment itself are skipped). The records
(:func:`reviewbot.learning.records.export_record`'s shape) go to
``bench/results/preference_records.jsonl``. ``--heldout-units`` whole units (both of
their records) are held out: each record's fingerprint (sha256 of label, path, critique
and a per-unit salt) is chosen so that :func:`finetune.preference.held_out` at
``--eval-percent`` makes the same decision for a unit's two records. Trains with
:func:`finetune.preference.train_preference` (a fresh LoRA on the full-precision base),
then measures as ``finetune eval --outcomes`` does (:func:`finetune.preference.outcome_eval`,
the production confidence): mean confidence of accepted and rejected findings, their
separation and the AUC, by the base (before) and with the adapter (after), on the
held-out units and on the training units. Prints a table and writes JSON.

    nice -n 10 .venv/bin/python bench/preference_demo.py

Defaults: --units 48 --heldout-units 12 --eval-percent 20 --max-steps 24 --batch-size 4
--lr 5e-4 --beta 0.1 --rank 8 --max-length 320 --max-new-tokens 64 --seed 0 (training is
about 20 s a step on two busy CPU cores). The held-out row is reproducible with the CLI::

    .venv/bin/reviewbot finetune eval --model smollm2 --quantize auto --device cpu \
        --outcomes bench/results/preference_records.jsonl \
        --adapter bench/results/preference_adapter
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

from report import write_figures

from finetune.examples import Example
from finetune.preference import (
    PreferenceSettings,
    held_out,
    outcome_eval,
    read_outcomes,
    record_example,
    train_preference,
)
from finetune.sources import SourceError, load_examples
from finetune.train import TrainError
from reviewbot.learning.records import (
    Evidence,
    LabelledFinding,
    OutcomeLabel,
    PostedFinding,
    RecordError,
    category_of,
    export_record,
)
from reviewbot.model.loading import ModelLoadError, load_model
from reviewbot.model.serving import SharedBase
from reviewbot.model.tokens import prompt_token_ids
from reviewbot.review.pipeline import critique_prompts, filter_critiques
from reviewbot.settings.defaults import (
    CONFIDENCE_METHOD,
    DEMO_MODEL,
    KTO_BETA,
    PREFERENCE_EVAL_PERCENT,
    PROMPT_FORMATS,
    QUANTIZE_CHOICES,
    SEED_PROMPT_FORMAT,
    GenerationSettings,
    ReviewOptions,
    TrainSettings,
)

log = logging.getLogger("preference_demo")
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "review-comments.dev.jsonl"
RESULTS = ROOT / "bench" / "results"
#: Candidate units generated for at a time (generation stops once --units are usable).
CHUNK = 16


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = TrainSettings()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--model", default=DEMO_MODEL)
    p.add_argument("--quantize", choices=QUANTIZE_CHOICES, default="auto")
    p.add_argument("--prompt-format", choices=PROMPT_FORMATS, default=SEED_PROMPT_FORMAT)
    p.add_argument("--units", type=int, default=48, help="units (two records each)")
    p.add_argument("--heldout-units", type=int, default=12, help="units held out (both records)")
    p.add_argument("--eval-percent", type=float, default=PREFERENCE_EVAL_PERCENT)
    p.add_argument("--max-steps", type=int, default=24)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=1)
    # 10× the CLI's preference default (5e-5): a change shows within a CPU budget of 24 steps
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--beta", type=float, default=KTO_BETA)
    p.add_argument("--rank", type=int, default=d.lora_r)
    p.add_argument("--max-length", type=int, default=320, help="longest training sequence")
    p.add_argument("--max-new-tokens", type=int, default=64, help="generated critique length")
    p.add_argument("--gen-batch-size", type=int, default=8, help="generation/scoring batch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--records", type=Path, default=RESULTS / "preference_records.jsonl")
    p.add_argument("--work", type=Path, default=RESULTS / "preference_adapter")
    p.add_argument("--out", type=Path, default=RESULTS / "preference_demo.json")
    args = p.parse_args(argv)
    if not 0 < args.heldout_units < args.units:
        p.error("--heldout-units must be in [1, --units)")
    if not 0 < args.eval_percent < 100:
        p.error("--eval-percent must be in (0, 100)")
    return args


# --------------------------------------------------------------------------- data


def candidates(args: argparse.Namespace, tokenizer: Any, renderer: Any) -> list[Example]:
    """Critique examples of distinct units, commented on the new side, whose prompt plus a
    critique of up to ``--max-new-tokens`` tokens fit ``--max-length`` (so every record
    trains whole), in a seeded order."""
    seen: set[tuple[str, str]] = set()
    out = []
    for ex in load_examples(args.data):
        unit = (str(ex.context.get("path", "")), ex.fields.get("ORIGINAL", ""))
        if ex.task != "critique" or ex.provenance.get("side") != "RIGHT" or unit in seen:
            continue
        seen.add(unit)
        prompt = len(prompt_token_ids(tokenizer, ex.prompt(renderer)))
        human = len(tokenizer(ex.target, add_special_tokens=False)["input_ids"])
        if prompt + args.max_new_tokens + 1 <= args.max_length and human <= args.max_new_tokens:
            out.append(ex)
    random.Random(args.seed).shuffle(out)
    return out


def fingerprints(ex: Example, critiques: dict[str, str], percent: float, hold: bool) -> dict:
    """label → fingerprint: sha256 of label, path, critique and the first salt for which
    :func:`held_out` decides ``hold`` for both of the unit's records."""
    path = str(ex.context.get("path", ""))
    for salt in range(100_000):
        fps = {
            label: hashlib.sha256(f"{label}\n{path}\n{text}\n{salt}".encode()).hexdigest()[:32]
            for label, text in critiques.items()
        }
        if all(held_out(fp, percent) == hold for fp in fps.values()):
            return fps
    raise RuntimeError("no salt gives both records the same held-out decision")


def record(ex: Example, label: str, critique: str, fp: str, engine: Any, why: str) -> dict:
    """The record ``finetune harvest --outcomes`` would export for this finding."""
    prov, ctx = ex.provenance, ex.context
    start = int(ctx.get("start_line", 1))
    finding = PostedFinding(
        repo=str(prov.get("repo") or ""),
        pr_number=int(prov.get("pr") or 0),
        head_sha="",
        path=str(ctx.get("path", "")),
        line=int(prov.get("line_number") or start),
        fingerprint=fp,
        critique=critique,
        original=ex.fields["ORIGINAL"],
        unit_start_line=start,
        changed=tuple(ctx.get("changed", ())),
        category=category_of(critique),
        model=engine.model_name,
        prompt_format=engine.prompt_format,
    )
    return export_record(
        LabelledFinding(finding, OutcomeLabel(label, (Evidence("bench", None, None, why),)))
    )


def build_records(args: argparse.Namespace) -> dict[str, Any]:
    """Generate the demo model's critiques and write the labelled records; what it did."""
    base = load_model(args.model, args.quantize, "cpu")
    settings = GenerationSettings(
        max_new_tokens=args.max_new_tokens, batch_size=args.gen_batch_size
    )
    engine = SharedBase(base, settings).engine(None, args.prompt_format)
    pool = candidates(args, engine.tokenizer, engine.renderer)
    options = ReviewOptions()
    units: list[tuple[Example, str]] = []
    skipped = {"no finding": 0, "same as human": 0}
    generated_tokens, gen_seconds, tried = 0, 0.0, 0
    while len(units) < args.units and tried < len(pool):
        chunk = pool[tried : tried + CHUNK]
        tried += len(chunk)
        unit_list = [ex.unit() for ex in chunk]
        prompts = critique_prompts(unit_list, engine.renderer, options)
        raw = engine.generate(prompts)
        generated_tokens += engine.last_stats.generated_tokens
        gen_seconds += engine.last_stats.seconds
        for ex, unit, prompt, text in zip(chunk, unit_list, prompts, raw, strict=True):
            if prompt != ex.prompt(engine.renderer):
                raise RuntimeError(f"{unit.path}: the example's prompt is not serving's")
            findings, _ = filter_critiques([unit], [text], options)
            if not findings:
                skipped["no finding"] += 1
            elif findings[0].critique.strip() == ex.target.strip():
                skipped["same as human"] += 1
            elif len(units) < args.units:
                units.append((ex, findings[0].critique))
        log.info("%d usable unit(s) of %d tried", len(units), tried)
    if len(units) < args.units:
        raise TrainError(f"only {len(units)} usable units in {args.data} (--units {args.units})")
    order = list(range(len(units)))
    random.Random(args.seed + 1).shuffle(order)
    hold = set(order[: args.heldout_units])
    records, held_fps = [], []
    for i, (ex, generated) in enumerate(units):
        texts = {"accepted": ex.target, "rejected": generated}
        fps = fingerprints(ex, texts, args.eval_percent, i in hold)
        if i in hold:
            held_fps += fps.values()
        records.append(record(ex, "accepted", ex.target, fps["accepted"], engine, "human comment"))
        records.append(
            record(ex, "rejected", generated, fps["rejected"], engine, "demo model's critique")
        )
    for rec, (ex, _) in zip(records[::2], units, strict=True):
        if record_example(rec).prompt(engine.renderer) != ex.prompt(engine.renderer):
            raise RuntimeError(f"{rec['path']}: the record does not prompt as its unit")
    args.records.parent.mkdir(parents=True, exist_ok=True)
    with open(args.records, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return {
        "candidates_tried": tried,
        "skipped": skipped,
        "units": len(units),
        "heldout_units": len(hold),
        "held_out_fingerprints": sorted(held_fps),
        "prompt_format": engine.prompt_format,
        "quantized": engine.quantized,
        "generated_tokens": generated_tokens,
        "generation_seconds": round(gen_seconds, 1),
    }


# --------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> dict:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    phases: dict[str, float] = {}

    t0 = time.perf_counter()
    data = build_records(args)
    phases["data"] = round(time.perf_counter() - t0, 1)
    print(f"data: {data['units']} units in {phases['data']:.0f} s", flush=True)

    t0 = time.perf_counter()
    options = TrainSettings(
        lora_r=args.rank,
        learning_rate=args.lr,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        max_length=args.max_length,
        seed=args.seed,
        quantize=args.quantize,
        prompt_format=args.prompt_format,
        logging_steps=10,
    )
    preference = PreferenceSettings(beta=args.beta, eval_percent=args.eval_percent)
    result = train_preference(
        args.model,
        args.records,
        args.work,
        options,
        preference,
        overwrite=True,
        device="cpu",
        progress=False,
    )
    phases["train"] = round(time.perf_counter() - t0, 1)
    print(f"train: {result.steps} steps in {phases['train']:.0f} s", flush=True)
    recorded = result.metadata["data"]["held_out_fingerprints"]
    if recorded != data["held_out_fingerprints"]:
        raise TrainError("training held out other records than the held-out units'")

    t0 = time.perf_counter()
    outcomes = read_outcomes(args.records)
    held = outcomes.findings(args.eval_percent)
    held_keys = {r.fingerprint for r in held}
    trained = [r for r in outcomes.findings(None) if r.fingerprint not in held_keys]
    shared = SharedBase(
        load_model(args.model, args.quantize, "cpu"),
        GenerationSettings(batch_size=args.gen_batch_size),
    )
    after = shared.engine(str(args.work))
    before = shared.engine(None, after.prompt_format)
    measured = {
        "held_out": outcome_eval(before, after, held, CONFIDENCE_METHOD).to_json(),
        "train": outcome_eval(before, after, trained, CONFIDENCE_METHOD).to_json(),
    }
    phases["measure"] = round(time.perf_counter() - t0, 1)
    print(f"measure: {phases['measure']:.0f} s", flush=True)

    m = result.metrics
    return {
        "command": " ".join(sys.argv),
        "model": args.model,
        "data": str(args.data),
        "records_file": str(args.records),
        "adapter_dir": str(args.work),
        "confidence_method": CONFIDENCE_METHOD,
        "seed": args.seed,
        "eval_percent": args.eval_percent,
        **{k: v for k, v in data.items() if k != "held_out_fingerprints"},
        "train_records": result.metadata["data"]["examples"],
        "steps": result.steps,
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "learning_rate": args.lr,
        "beta": args.beta,
        "lora_r": args.rank,
        "max_length": args.max_length,
        "max_new_tokens": args.max_new_tokens,
        "torch_threads": torch.get_num_threads(),
        "train_loss": round(m["train_loss"], 4),
        "kto": m.get("kto", {}),
        "train_seconds": m["train_seconds"],
        "train_tokens": m["train_tokens"],
        "train_tokens_per_second": m["tokens_per_second"],
        "peak_memory_mb": round(m["peak_memory_bytes"] / 2**20, 1),
        "peak_memory_kind": m["peak_memory_kind"],
        **measured,
        "phase_seconds": phases,
        "total_seconds": round(time.perf_counter() - started, 1),
    }


def _fmt(value: float | None, sign: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.4f}" if sign else f"{value:.4f}"


def table(r: dict) -> str:
    lines = [
        "| model | units | accepted conf | rejected conf | separation | AUC |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for when in ("before", "after"):
        for split, name in (("held_out", "held-out"), ("train", "train")):
            s = r[split][when]
            n = r[split]
            lines.append(
                f"| {'base' if when == 'before' else 'base + adapter'} | {name}"
                f" ({n['accepted']}+{n['rejected']}) | {_fmt(s['mean_confidence_accepted'])}"
                f" | {_fmt(s['mean_confidence_rejected'])} | {_fmt(s['separation'], True)}"
                f" | {_fmt(s['auc'])} |"
            )
    p = r["phase_seconds"]
    lines += [
        "",
        f"units {r['units']} ({r['heldout_units']} held out, tried {r['candidates_tried']},"
        f" skipped {r['skipped']}); {r['steps']} steps × batch"
        f" {r['batch_size'] * r['grad_accum']}, lr {r['learning_rate']:g}, beta {r['beta']:g}",
        f"training {r['train_seconds']:.0f} s, {r['train_tokens_per_second']:.0f} tokens/s;"
        f" phases: data {p['data']:.0f} s, train {p['train']:.0f} s,"
        f" measure {p['measure']:.0f} s; total {r['total_seconds']:.0f} s",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        result = run(args)
    except (SourceError, TrainError, ModelLoadError, RecordError) as e:
        print(f"preference_demo: error: {e}", file=sys.stderr)
        return 2
    write_figures(result, args.out)
    print(table(result))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
