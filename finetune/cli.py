"""``reviewbot finetune ...``: harvest, train, merge and evaluate adapters."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from reviewbot.cli_errors import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    add_inference_arguments,
    date_arg,
    inference_arg,
    repo_arg,
)
from reviewbot.jobs.transient import TransientError
from reviewbot.settings.defaults import (
    DEFAULT_GITHUB_API_URL,
    DEMO_MODEL,
    EVAL_MAX_LENGTH,
    EVAL_MAX_NEW_TOKENS,
    EVAL_REVISE_MAX_NEW_TOKENS,
    KTO_BETA,
    MERGE_QUANTIZE_CHOICES,
    PREFERENCE_EVAL_PERCENT,
    PREFERENCE_LEARNING_RATE,
    PROMPT_FORMATS,
    QUANTIZE_CHOICES,
    GenerationSettings,
    TrainSettings,
)

#: Where ``harvest`` finds a token when ``--token`` is not given.
GITHUB_TOKEN_ENV = "GITHUB_TOKEN"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``finetune`` command group to the ``reviewbot`` parser."""
    p = sub.add_parser("finetune", help="build data, train, merge and evaluate LoRA adapters")
    group = p.add_subparsers(dest="finetune_command", required=True)
    _add_harvest(group)
    _add_train(group)
    _add_merge(group)
    _add_eval(group)


# --------------------------------------------------------------------------- harvest


def _add_harvest(group: argparse._SubParsersAction) -> None:
    p = group.add_parser(
        "harvest",
        help="turn a repository's human review comments into training examples",
        description="Walk the pull requests merged since DATE and keep the inline review"
        " comments the team wrote (owners, members and collaborators; bots, reviewbot's own"
        " comments, replies and the PR author's comments are left out); ```suggestion"
        " blocks become revisions.",
    )
    p.add_argument("repo", metavar="OWNER/REPO")
    p.add_argument(
        "--since",
        type=date_arg,
        default=None,
        metavar="DATE",
        help="merged on or after (required without --outcomes; with it, also the findings"
        " posted on or after, and the team's comments are added as label human)",
    )
    p.add_argument("--until", type=date_arg, default=None, metavar="DATE", help="merged up to")
    p.add_argument("--out", required=True, metavar="FILE.jsonl", help="examples JSONL to write")
    p.add_argument("--token", default=None, help="GitHub token (default: $GITHUB_TOKEN)")
    p.add_argument(
        "--api-url",
        default=DEFAULT_GITHUB_API_URL,
        help="REST API base URL (GitHub Enterprise: https://HOST/api/v3)",
    )
    p.add_argument("--max-pulls", type=int, default=None, metavar="N", help="stop after N PRs")
    p.add_argument(
        "--any-author",
        action="store_true",
        help="also keep comments by people outside the team (anyone could plant them)",
    )
    p.add_argument(
        "--outcomes",
        action="store_true",
        help="write reviewbot's posted findings with their outcome labels (accepted /"
        " rejected / unknown, from the findings database: REVIEWBOT_DATABASE_URL), one"
        " record per finding, for `finetune train --preference`",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_harvest)


def cmd_harvest(args: argparse.Namespace) -> int:
    from finetune.examples import write_examples

    repo_arg(args.repo)
    if args.max_pulls is not None and args.max_pulls < 1:
        raise CliError("--max-pulls must be positive", EXIT_USAGE)
    if args.since is not None and args.until is not None and args.until < args.since:
        raise CliError("--until is before --since", EXIT_USAGE)
    if args.outcomes:
        return _harvest_outcomes(args)
    if args.since is None:
        raise CliError("--since is required (or --outcomes)", EXIT_USAGE)
    report = _harvest_comments(args)
    try:
        written = write_examples(report.examples, args.out)
    except OSError as e:
        raise CliError(f"cannot write {args.out}: {e.strerror or e}", EXIT_USAGE) from None
    print(report.summary())
    print(f"wrote {written} example(s) to {args.out}")
    return EXIT_OK


def _harvest_comments(args: argparse.Namespace):
    """The team's review comments on the pull requests merged since ``--since``."""
    from finetune.harvest import HarvestClient, harvest
    from reviewbot.github.errors import GitHubError

    token = args.token or os.environ.get(GITHUB_TOKEN_ENV)
    if not token:
        raise CliError(f"no GitHub token: pass --token or set {GITHUB_TOKEN_ENV}", EXIT_USAGE)
    try:
        with HarvestClient.from_token(token, args.api_url) as client:
            return harvest(
                client,
                args.repo,
                args.since,
                args.until,
                max_pulls=args.max_pulls,
                progress=not args.no_progress,
                any_author=args.any_author,
            )
    except GitHubError as e:
        raise CliError(str(e)) from None


def _harvest_outcomes(args: argparse.Namespace) -> int:
    """``harvest --outcomes``: the posted findings with their labels (and, with
    ``--since``, the team's own comments as ``human`` records) as JSONL."""
    from collections import Counter

    from finetune.harvest import human_records
    from reviewbot.learning.records import StoreError, export_record
    from reviewbot.settings.server import Settings, SettingsError
    from reviewbot.store.sql import SqlFindingStore

    try:
        url = Settings.from_env().database_url
    except SettingsError as e:
        raise CliError(str(e), EXIT_USAGE) from e
    try:
        store = SqlFindingStore.open(url)
        try:
            items = store.labelled(args.repo, args.since)
        finally:
            store.close()
    except StoreError as e:
        raise CliError(f"findings database: {e}") from None
    records = [export_record(i) for i in items]
    if args.since is not None:
        records += human_records(_harvest_comments(args).examples)
    try:
        with open(args.out, "w", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
    except OSError as e:
        raise CliError(f"cannot write {args.out}: {e.strerror or e}", EXIT_USAGE) from None
    counts = Counter(r["label"] for r in records)
    said = ", ".join(f"{counts[k]} {k}" for k in ("accepted", "rejected", "unknown", "human"))
    print(f"wrote {len(records)} record(s) to {args.out}: {said}")
    return EXIT_OK


# --------------------------------------------------------------------------- eval


def _add_eval(group: argparse._SubParsersAction) -> None:
    from finetune.sources import DATA_FORMATS

    p = group.add_parser(
        "eval",
        help="evaluate a model/adapter: loss, BLEU-4, ROUGE-L, exact match, suggestions",
        description="Held-out loss (teacher-forced, prompt masked), CodeReviewer's BLEU-4 and"
        " ROUGE-L of generated critiques, exact match of revisions, the share of revisions"
        " that map to a valid suggestion, line anchoring of review-comment records and a"
        " per-category breakdown, as JSON. With --outcomes instead: how the production"
        " confidence separates the findings the team accepted from those it rejected (means,"
        " separation, AUC), by the base (before) and with the adapter (after).",
    )
    p.add_argument("--model", default=None, help=f"HF id or local dir (default: {DEMO_MODEL})")
    p.add_argument("--adapter", default=None, help="peft LoRA adapter directory")
    p.add_argument("--data", nargs="+", metavar="FILE", help="held-out data")
    p.add_argument(
        "--outcomes",
        default=None,
        metavar="FILE.jsonl",
        help="labelled findings: confidence of accepted vs rejected ones, before and after",
    )
    p.add_argument(
        "--all",
        action="store_true",
        help="with --outcomes: every labelled finding, not only the held-out ones",
    )
    p.add_argument(
        "--eval-percent",
        type=float,
        default=None,
        help="with --outcomes: the held-out percent (default: the adapter's recorded one,"
        f" else {PREFERENCE_EVAL_PERCENT})",
    )
    p.add_argument("--data-format", choices=["auto", *DATA_FORMATS], default="auto")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="first N examples")
    p.add_argument("--out", default=None, metavar="FILE.json", help="also write the JSON here")
    p.add_argument(
        "--quantize",
        choices=QUANTIZE_CHOICES,
        default="4bit",
        help="4-bit NF4 like the workers (default), full precision, or auto",
    )
    p.add_argument("--prompt-format", choices=PROMPT_FORMATS, default=None)
    p.add_argument("--max-new-tokens", type=int, default=EVAL_MAX_NEW_TOKENS)
    p.add_argument("--revise-max-new-tokens", type=int, default=EVAL_REVISE_MAX_NEW_TOKENS)
    p.add_argument("--batch-size", type=int, default=GenerationSettings().batch_size)
    p.add_argument("--max-length", type=int, default=EVAL_MAX_LENGTH, help="loss: longest example")
    p.add_argument("--loss-only", action="store_true", help="no generation, loss only")
    add_inference_arguments(p)
    p.add_argument("--no-anchoring", action="store_true", help="skip the line-anchoring pass")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if any)")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from finetune.evaluate import EvalSettings, evaluate
    from finetune.sources import SourceError, load_examples

    if args.outcomes and args.data:
        raise CliError("pass --data or --outcomes, not both", EXIT_USAGE)
    if args.outcomes:
        return _eval_outcomes(args)
    if not args.data:
        raise CliError("one of --data or --outcomes is required", EXIT_USAGE)
    numbers = (args.max_new_tokens, args.revise_max_new_tokens, args.batch_size, args.max_length)
    if min(numbers) < 1 or (args.limit is not None and args.limit < 1):
        raise CliError(
            "--limit, --max-new-tokens, --revise-max-new-tokens, --batch-size and"
            " --max-length must be positive",
            EXIT_USAGE,
        )
    examples = []
    try:
        for path in args.data:
            examples.extend(load_examples(path, args.data_format))
    except SourceError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    if args.limit is not None:
        examples = examples[: args.limit]

    from reviewbot.model.serving import load_engine

    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    inference = inference_arg(args)
    if inference is not None and args.loss_only:
        raise CliError("--loss-only needs the model here, not --inference-url", EXIT_USAGE)
    try:
        engine = load_engine(
            args.model,
            adapter=args.adapter,
            quantize=args.quantize,
            prompt_format=args.prompt_format,
            settings=settings,
            device=args.device,
            inference=inference,
        )
    except (OSError, ValueError, ImportError, RuntimeError, TransientError) as e:
        raise CliError(f"cannot load model: {e}") from None
    eval_settings = EvalSettings(
        max_new_tokens=args.max_new_tokens,
        revise_max_new_tokens=args.revise_max_new_tokens,
        max_length=args.max_length,
        loss_batch_size=args.batch_size,
        anchoring=not args.no_anchoring,
    )
    try:
        metrics = evaluate(
            engine, examples, eval_settings, generate=not args.loss_only, progress=True
        )
    except (TransientError, OSError) as e:  # the inference server failed
        raise CliError(f"evaluation failed: {e}") from None
    result = {
        "model": engine.model_name,
        "adapter": engine.adapter,
        "prompt_format": engine.prompt_format,
        "quantized": engine.quantized,
        "device": engine.device,
        "data": [str(p) for p in args.data],
        "limit": args.limit,
        **metrics,
    }
    return _print_result(result, args.out)


def _print_result(result: dict[str, Any], out: str | None) -> int:
    """Print ``result`` as JSON, and write it to ``out`` too when given."""
    text = json.dumps(result, indent=2, ensure_ascii=False)
    if out:
        try:
            Path(out).write_text(text + "\n", encoding="utf-8")
        except OSError as e:
            raise CliError(f"cannot write {out}: {e.strerror or e}", EXIT_USAGE) from None
    print(text)
    return EXIT_OK


def _eval_percent(args: argparse.Namespace) -> float:
    """The held-out percent: given, else the preference adapter's recorded one, else the default."""
    from reviewbot.model.adapters import adapter_metadata

    if args.eval_percent is not None:
        return float(args.eval_percent)
    meta = adapter_metadata(args.adapter) if args.adapter else {}
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    recorded = data.get("eval_percent") if meta.get("stage") == "preference" else None
    if isinstance(recorded, int | float) and not isinstance(recorded, bool):
        return float(recorded)
    return float(PREFERENCE_EVAL_PERCENT)


def _eval_outcomes(args: argparse.Namespace) -> int:
    """``finetune eval --outcomes``: confidence separation before and after the adapter."""
    from finetune.preference import outcome_eval, read_outcomes
    from reviewbot.learning.records import RecordError
    from reviewbot.model.adapters import resolve_adapter
    from reviewbot.model.loading import load_model
    from reviewbot.model.serving import SharedBase
    from reviewbot.settings.defaults import CONFIDENCE_METHOD

    if args.batch_size < 1:
        raise CliError("--batch-size must be positive", EXIT_USAGE)
    if args.eval_percent is not None and not 0 <= args.eval_percent <= 100:
        raise CliError("--eval-percent must be in [0, 100]", EXIT_USAGE)
    try:
        outcomes = read_outcomes(args.outcomes)
        percent = None if args.all else _eval_percent(args)
    except (RecordError, OSError) as e:
        raise CliError(str(e), EXIT_USAGE) from None
    findings = outcomes.findings(percent)
    if not findings:
        which = "" if percent is None else f"held-out ({percent:g}%) "
        hint = "" if percent is None else ": pass --all to evaluate on every labelled finding"
        raise CliError(
            f"no {which}accepted or rejected findings in {args.outcomes}"
            f" ({outcomes.summary()}){hint}",
            EXIT_USAGE,
        )
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    try:
        if args.adapter:
            resolve_adapter(args.adapter)  # fail before loading the model
        # One base for both: the adapter's engine, and the base alone (adapter disabled).
        shared = SharedBase(load_model(args.model, args.quantize, args.device), settings)
        after = shared.engine(args.adapter, args.prompt_format) if args.adapter else None
        before = shared.engine(None, after.prompt_format if after else args.prompt_format)
    except (OSError, ValueError, ImportError, RuntimeError) as e:
        raise CliError(f"cannot load model: {e}") from None
    measured = outcome_eval(before, after, findings, CONFIDENCE_METHOD)
    result = {
        "model": before.model_name,
        "adapter": after.adapter if after else None,
        "prompt_format": before.prompt_format,
        "quantized": before.quantized,
        "device": before.device,
        "outcomes": str(args.outcomes),
        "confidence_method": CONFIDENCE_METHOD,
        "split": "all" if percent is None else "held_out",
        "eval_percent": percent,
        "records": outcomes.counts(),
        **measured.to_json(),
    }
    return _print_result(result, args.out)


# --------------------------------------------------------------------------- train


def _add_train(group: argparse._SubParsersAction) -> None:
    from finetune.sources import DATA_FORMATS

    d = TrainSettings()
    p = group.add_parser(
        "train",
        help="train a LoRA adapter (QLoRA on a 4-bit base, or full precision)",
        description="Train a peft LoRA adapter on review examples; the output directory is a"
        " PEFT adapter plus reviewbot.json (base model signature, prompt format, data hash,"
        " metrics) that `reviewbot review --adapter` and the workers load. Defaults follow the"
        " seed recipe: alpaca prompts, rank 8, lr 2e-4, warmup 0.05. With --preference"
        " instead of --data: KTO preference training on the findings the team accepted"
        " (desirable, with human comments) and rejected (undesirable), from a fresh LoRA or"
        " continuing --adapter; a share of the findings is held out for"
        " `finetune eval --outcomes`.",
    )
    p.add_argument("--base", default=DEMO_MODEL, help="HF id or local dir (default: %(default)s)")
    p.add_argument("--data", nargs="+", metavar="FILE", help="training data (SFT)")
    p.add_argument(
        "--preference",
        default=None,
        metavar="FILE.jsonl",
        help="labelled findings (accepted/rejected/human/unknown): KTO instead of SFT",
    )
    p.add_argument(
        "--adapter",
        default=None,
        metavar="DIR",
        help="with --preference: continue this adapter (its prompt format is used)",
    )
    p.add_argument("--beta", type=float, default=KTO_BETA, help="KTO beta (default: %(default)s)")
    p.add_argument(
        "--desirable-weight",
        type=float,
        default=None,
        help="KTO loss weight of accepted findings (default: the classes weigh the same)",
    )
    p.add_argument(
        "--undesirable-weight",
        type=float,
        default=None,
        help="KTO loss weight of rejected findings (default: the classes weigh the same)",
    )
    p.add_argument(
        "--eval-percent",
        type=float,
        default=PREFERENCE_EVAL_PERCENT,
        help="percent of the findings held out (by fingerprint) for eval (default: %(default)s)",
    )
    p.add_argument("--data-format", choices=["auto", *DATA_FORMATS], default="auto")
    p.add_argument("--output", required=True, metavar="DIR", help="adapter directory to write")
    p.add_argument(
        "--quantize",
        choices=QUANTIZE_CHOICES,
        default=d.quantize,
        help="auto: 4-bit (QLoRA) on CUDA, full precision on CPU when it fits",
    )
    p.add_argument(
        "--prompt-format",
        choices=PROMPT_FORMATS,
        default=None,
        help=f"default: {d.prompt_format}, or the --adapter's recorded one",
    )
    p.add_argument("-r", "--rank", type=int, default=d.lora_r, help="LoRA rank")
    p.add_argument("--alpha", type=int, default=d.lora_alpha, help="LoRA alpha")
    p.add_argument("--dropout", type=float, default=d.lora_dropout, help="LoRA dropout")
    p.add_argument(
        "--target-modules",
        default=",".join(d.target_modules),
        metavar="A,B",
        help="LoRA target modules, comma-separated (default: every linear layer)",
    )
    p.add_argument(
        "--train-embeddings",
        action="store_true",
        help="also train embed_tokens and lm_head in full (modules_to_save)",
    )
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"peak learning rate (default: {d.learning_rate:g};"
        f" {PREFERENCE_LEARNING_RATE:g} with --preference)",
    )
    p.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--epochs", type=float, default=d.epochs)
    p.add_argument(
        "--max-steps",
        type=int,
        default=d.max_steps,
        help="optimizer steps (overrides --epochs when positive)",
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--grad-accum", type=int, default=d.grad_accum, help="accumulation steps")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--max-length", type=int, default=d.max_length, help="tokens per example")
    p.add_argument("--packing", action="store_true", help="pack examples into full rows")
    p.add_argument(
        "--no-group-by-length",
        action="store_true",
        help="random batches instead of length-grouped ones",
    )
    p.add_argument(
        "--eval-fraction",
        type=float,
        default=d.eval_fraction,
        help="share of examples held out for the eval loss (seeded split)",
    )
    p.add_argument(
        "--eval-steps",
        type=int,
        default=d.eval_steps,
        help="also evaluate every N steps (0: at the end only)",
    )
    p.add_argument(
        "--save-steps",
        type=int,
        default=d.save_steps,
        help="write a resumable checkpoint every N steps (0: none)",
    )
    p.add_argument("--save-total-limit", type=int, default=d.save_total_limit)
    p.add_argument("--logging-steps", type=int, default=d.logging_steps)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="CHECKPOINT",
        help="continue from the latest checkpoint in --output (or CHECKPOINT)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an adapter in --output")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if any)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def train_settings(args: argparse.Namespace) -> TrainSettings:
    """``TrainSettings`` from the parsed ``train`` options."""
    targets = tuple(t.strip() for t in args.target_modules.split(",") if t.strip())
    d = TrainSettings()
    lr = PREFERENCE_LEARNING_RATE if getattr(args, "preference", None) else d.learning_rate
    return TrainSettings(
        lora_r=args.rank,
        lora_alpha=args.alpha,
        lora_dropout=args.dropout,
        target_modules=targets,
        train_embeddings=args.train_embeddings,
        learning_rate=args.lr if args.lr is not None else lr,
        warmup_ratio=args.warmup_ratio,
        weight_decay=args.weight_decay,
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        seed=args.seed,
        max_length=args.max_length,
        prompt_format=args.prompt_format or d.prompt_format,
        quantize=args.quantize,
        packing=args.packing,
        group_by_length=not args.no_group_by_length,
        eval_fraction=args.eval_fraction,
        eval_steps=args.eval_steps,
        save_steps=args.save_steps,
        save_total_limit=args.save_total_limit,
        logging_steps=args.logging_steps,
        gradient_checkpointing=args.gradient_checkpointing,
    )


def cmd_train(args: argparse.Namespace) -> int:
    from finetune.sources import SourceError, load_examples
    from finetune.train import TrainError, train, validate
    from reviewbot.model.loading import ModelLoadError

    if args.preference and args.data:
        raise CliError(
            "--data (SFT) and --preference (KTO) are separate runs: train on --data first,"
            " then continue its adapter with --preference FILE --adapter DIR",
            EXIT_USAGE,
        )
    if args.preference:
        return _train_preference(args)
    if not args.data:
        raise CliError("one of --data or --preference is required", EXIT_USAGE)
    if args.adapter:
        raise CliError("--adapter continues an adapter with --preference only", EXIT_USAGE)
    options = train_settings(args)
    try:
        validate(options)
    except TrainError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    examples = []
    try:
        for path in args.data:
            examples.extend(load_examples(path, args.data_format))
    except SourceError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    try:
        result = train(
            args.base,
            examples,
            args.output,
            options,
            resume=args.resume,
            overwrite=args.overwrite,
            device=args.device,
            sources=[str(p) for p in args.data],
            progress=not args.no_progress,
        )
    except (TrainError, ModelLoadError) as e:
        raise CliError(str(e), EXIT_USAGE) from None
    except OSError as e:
        raise CliError(f"cannot write {args.output}: {e.strerror or e}", EXIT_USAGE) from None
    print(json.dumps({"output": str(result.output), "steps": result.steps, **result.metrics}))
    return EXIT_OK


def _train_preference(args: argparse.Namespace) -> int:
    """``finetune train --preference``: KTO on labelled findings."""
    from finetune.preference import PreferenceSettings, train_preference, validate_preference
    from finetune.train import TrainError
    from reviewbot.model.adapters import adapter_metadata
    from reviewbot.model.loading import ModelLoadError

    options = train_settings(args)
    try:
        recorded = adapter_metadata(args.adapter).get("prompt_format") if args.adapter else None
    except ModelLoadError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    if args.prompt_format is None and recorded:
        options = dataclasses.replace(options, prompt_format=str(recorded))
    preference = PreferenceSettings(
        beta=args.beta,
        desirable_weight=args.desirable_weight,
        undesirable_weight=args.undesirable_weight,
        eval_percent=args.eval_percent,
    )
    try:
        validate_preference(options, preference)
        result = train_preference(
            args.base,
            args.preference,
            args.output,
            options,
            preference,
            adapter=args.adapter,
            resume=args.resume,
            overwrite=args.overwrite,
            device=args.device,
            progress=not args.no_progress,
        )
    except (TrainError, ModelLoadError) as e:
        raise CliError(str(e), EXIT_USAGE) from None
    except OSError as e:
        raise CliError(f"cannot write {args.output}: {e.strerror or e}", EXIT_USAGE) from None
    data = result.metadata["data"]
    counts = {k: data[k] for k in ("desirable", "undesirable", "held_out")}
    print(
        json.dumps(
            {"output": str(result.output), "steps": result.steps, **counts, **result.metrics}
        )
    )
    return EXIT_OK


# --------------------------------------------------------------------------- merge


def _add_merge(group: argparse._SubParsersAction) -> None:
    p = group.add_parser(
        "merge",
        help="merge a LoRA adapter into its full-precision base model",
        description="Write base + adapter as one full-precision model directory (model,"
        " tokenizer, reviewbot.json with the adapter's prompt format) that --model loads."
        " Merging into a 4-bit base is refused.",
    )
    p.add_argument("--adapter", required=True, metavar="DIR", help="peft adapter directory")
    p.add_argument("--output", required=True, metavar="DIR", help="merged model directory")
    p.add_argument("--base", default=None, help="base model (default: the adapter's recorded one)")
    p.add_argument(
        "--quantize",
        choices=MERGE_QUANTIZE_CHOICES,
        default="none",
        help="the base's precision: none (4bit is refused)",
    )
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --output")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if any)")
    p.set_defaults(func=cmd_merge)


def cmd_merge(args: argparse.Namespace) -> int:
    from finetune.merge import MergeError, merge
    from reviewbot.model.loading import ModelLoadError

    try:
        out = merge(
            args.adapter,
            args.output,
            base=args.base,
            quantize=args.quantize,
            device=args.device,
            overwrite=args.overwrite,
        )
    except (MergeError, ModelLoadError) as e:
        raise CliError(str(e), EXIT_USAGE) from None
    except OSError as e:
        raise CliError(f"cannot write {args.output}: {e.strerror or e}", EXIT_USAGE) from None
    print(f"merged model written to {out}")
    return EXIT_OK
