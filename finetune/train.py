"""LoRA / QLoRA training of a review adapter (peft + transformers' Trainer).

The base model is loaded through :func:`reviewbot.model.loading.load_model` (hub ids, local
directories and the demo model ``smollm2`` alike; 4-bit NF4 prepared for k-bit
training, or full precision). Examples are rendered by the serving renderer and
encoded with the prompt masked (:mod:`finetune.encode`). The output directory is a
PEFT adapter (``PeftModel.from_pretrained`` loads it) plus ``reviewbot.json``: the
base model and its signature, prompt format, template and data hashes, the ORIGINAL
layout's version (``original_layout``), steps and metrics, which
:func:`reviewbot.model.serving.load_engine` checks and uses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
import resource
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from finetune.encode import IGNORE_INDEX, Encoded, encode_example
from finetune.examples import Example, dedupe
from finetune.loss import heldout_loss
from reviewbot import __version__
from reviewbot.model.adapters import base_signature, make_renderer
from reviewbot.model.loading import LoadedModel, load_model
from reviewbot.review.prompts import (
    ORIGINAL_LAYOUT,
    PromptFormatError,
    Renderer,
    template_fingerprint,
)
from reviewbot.settings.defaults import (
    ADAPTER_METADATA,
    EMBEDDING_MODULES,
    LORA_ALL_LINEAR,
    LOSS_LOG,
    PROMPT_FORMATS,
    QUANTIZE_CHOICES,
    TrainSettings,
)

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"


class TrainError(ValueError):
    """Bad training options, data or output directory (the message says which)."""


# --------------------------------------------------------------------------- pure parts


def validate(options: TrainSettings) -> None:
    """Raise TrainError naming the first invalid option."""
    checks = [
        (options.lora_r >= 1, f"rank must be at least 1, not {options.lora_r}"),
        (options.lora_alpha > 0, f"alpha must be positive, not {options.lora_alpha}"),
        (0 <= options.lora_dropout < 1, f"dropout must be in [0, 1), not {options.lora_dropout}"),
        (options.learning_rate > 0, f"learning rate must be positive, not {options.learning_rate}"),
        (0 <= options.warmup_ratio < 1, "warmup ratio must be in [0, 1)"),
        (options.weight_decay >= 0, f"weight decay must be >= 0, not {options.weight_decay}"),
        (options.epochs > 0, f"epochs must be positive, not {options.epochs}"),
        (options.max_steps == -1 or options.max_steps >= 1, "max steps must be positive"),
        (options.batch_size >= 1, f"batch size must be at least 1, not {options.batch_size}"),
        (options.grad_accum >= 1, "grad accumulation must be at least 1"),
        (options.max_length >= 16, f"max length must be at least 16, not {options.max_length}"),
        (
            options.prompt_format in PROMPT_FORMATS,
            f"unknown prompt format {options.prompt_format!r}",
        ),
        (options.quantize in QUANTIZE_CHOICES, f"unknown quantize choice {options.quantize!r}"),
        (0 <= options.eval_fraction < 1, "eval fraction must be in [0, 1)"),
        (options.eval_steps >= 0, "eval steps must be >= 0"),
        (options.save_steps >= 0, "save steps must be >= 0"),
        (options.logging_steps >= 1, "logging steps must be at least 1"),
        (options.eval_batch_size >= 1, "eval batch size must be at least 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise TrainError(message)


def split_examples(
    examples: Sequence[Example], eval_fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """(train, eval): a seeded shuffle; ``eval_fraction`` of them (at least one) held out.

    With fewer than two examples, or a zero fraction, nothing is held out.
    """
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_eval = round(len(examples) * eval_fraction)
    if eval_fraction > 0 and len(examples) >= 2:
        n_eval = min(max(n_eval, 1), len(examples) - 1)
    else:
        n_eval = 0
    held = set(order[:n_eval])
    train = [ex for i, ex in enumerate(examples) if i not in held]
    heldout = [ex for i, ex in enumerate(examples) if i in held]
    return train, heldout


def data_hash(examples: Sequence[Example]) -> str:
    """A hash of the examples (content and order): two runs on the same data share it."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(ex.key.encode())
    return h.hexdigest()[:16]


def features(rows: Sequence[Encoded]) -> list[dict[str, list[int]]]:
    """One training row per example."""
    return [{"input_ids": r.input_ids, "labels": r.labels} for r in rows]


def pack(rows: Sequence[Encoded], max_length: int) -> list[dict[str, list[int]]]:
    """Examples packed into rows of at most ``max_length`` tokens (first fit, longest first).

    Each row carries ``position_ids`` restarting at 0 for every example; without an
    attention mask, transformers then keeps the packed examples from attending to
    each other (block-diagonal causal attention).
    """
    bins: list[list[Encoded]] = []
    sizes: list[int] = []
    for row in sorted(rows, key=lambda r: -len(r.input_ids)):
        size = len(row.input_ids)
        for i, used in enumerate(sizes):
            if used + size <= max_length:
                bins[i].append(row)
                sizes[i] += size
                break
        else:
            bins.append([row])
            sizes.append(size)
    packed = []
    for members in bins:
        packed.append(
            {
                "input_ids": [t for r in members for t in r.input_ids],
                "labels": [t for r in members for t in r.labels],
                "position_ids": [p for r in members for p in range(len(r.input_ids))],
            }
        )
    return packed


@dataclass(frozen=True)
class Collator:
    """Right-pads a batch: input_ids with the pad id, labels with -100.

    Unpacked rows get an attention mask; packed rows (with ``position_ids``) get
    none, and their padding continues as one more sequence of its own.
    """

    pad_id: int

    def __call__(self, batch: Sequence[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in batch)
        out = {
            "input_ids": torch.tensor(
                [f["input_ids"] + [self.pad_id] * (width - len(f["input_ids"])) for f in batch]
            ),
            "labels": torch.tensor(
                [f["labels"] + [IGNORE_INDEX] * (width - len(f["labels"])) for f in batch]
            ),
        }
        if "position_ids" in batch[0]:
            out["position_ids"] = torch.tensor(
                [f["position_ids"] + list(range(width - len(f["position_ids"]))) for f in batch]
            )
        else:
            out["attention_mask"] = torch.tensor(
                [[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in batch]
            )
        return out


def lora_config(options: TrainSettings, tied_embeddings: bool = False) -> Any:
    """The peft ``LoraConfig`` for ``options``."""
    from peft import LoraConfig

    targets: Any = list(options.target_modules) if options.target_modules else LORA_ALL_LINEAR
    extra: dict[str, Any] = {}
    if options.train_embeddings:
        extra["modules_to_save"] = list(EMBEDDING_MODULES)
        extra["ensure_weight_tying"] = tied_embeddings
    return LoraConfig(
        r=options.lora_r,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
        **extra,
    )


def latest_checkpoint(output: Path) -> Path | None:
    """The checkpoint with the highest step under ``output``, or None."""
    found = [
        (int(p.name[len(CHECKPOINT_PREFIX) :]), p)
        for p in output.glob(f"{CHECKPOINT_PREFIX}*")
        if p.is_dir() and p.name[len(CHECKPOINT_PREFIX) :].isdigit()
    ]
    return max(found)[1] if found else None


def resolve_resume(output: Path, resume: bool | str | None) -> str | None:
    """The checkpoint directory to resume from (``True``: the latest under ``output``)."""
    if not resume:
        return None
    if resume is True:
        latest = latest_checkpoint(output)
        if latest is None:
            raise TrainError(f"nothing to resume: {output} has no {CHECKPOINT_PREFIX}N directory")
        return str(latest)
    path = Path(resume)
    if not (path / "trainer_state.json").is_file():
        raise TrainError(f"{resume} is not a training checkpoint (no trainer_state.json)")
    return str(path)


def check_output(output: Path, resume: str | None, overwrite: bool) -> None:
    """Refuse to train over an existing adapter or checkpoints unless resuming/overwriting."""
    if output.exists() and not output.is_dir():
        raise TrainError(f"output {output} exists and is not a directory")
    if resume or not output.is_dir():
        return
    taken = (output / "adapter_config.json").exists() or latest_checkpoint(output) is not None
    if taken and not overwrite:
        raise TrainError(
            f"{output} already holds an adapter or checkpoints: "
            "pass --resume to continue it, --overwrite to replace it, or another --output"
        )
    if taken:
        for old in output.glob(f"{CHECKPOINT_PREFIX}*"):
            shutil.rmtree(old, ignore_errors=True)
        (output / LOSS_LOG).unlink(missing_ok=True)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of training: CUDA allocations on a GPU, else this process's peak RSS."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def adapter_record(
    *,
    base: LoadedModel,
    options: TrainSettings,
    data: dict[str, Any],
    steps: int,
    metrics: dict[str, Any],
) -> dict[str, Any]:
    """The adapter's ``reviewbot.json``: what the engine checks and what a reader wants."""
    return {
        "reviewbot_version": __version__,
        "base_model": base.name,
        "base_model_path": base.path,
        "base": base_signature(base.config),
        "base_quantized": base.quantized,
        "prompt_format": options.prompt_format,
        "template_fingerprint": template_fingerprint(),
        "original_layout": ORIGINAL_LAYOUT,
        "data": data,
        "training": dataclasses.asdict(options),
        "steps": steps,
        "metrics": metrics,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# --------------------------------------------------------------------------- training


def loss_recorder(path: Path) -> Any:
    """A TrainerCallback appending every log to ``path`` and timing the training."""
    from transformers import TrainerCallback

    class Recorder(TrainerCallback):
        def __init__(self) -> None:
            self.started = 0.0
            self.seconds = 0.0
            self.tokens_at_start = 0
            self.tokens = 0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.perf_counter()
            self.tokens_at_start = state.num_input_tokens_seen

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.seconds = time.perf_counter() - self.started
            self.tokens = state.num_input_tokens_seen - self.tokens_at_start

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            record = {"step": state.global_step, "epoch": state.epoch, **(logs or {})}
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    return Recorder()


def prepare_base(loaded: LoadedModel, options: TrainSettings) -> Any:
    """The base ready for adapter training (every stage: SFT, preference): no KV cache,
    k-bit preparation for a 4-bit base, gradient checkpointing, the seed set."""
    from peft import prepare_model_for_kbit_training
    from transformers import set_seed

    model = loaded.model
    # No KV cache while training: with one, transformers ignores packed position ids
    # (and lets packed examples attend to each other).
    model.config.use_cache = False
    kwargs = {"use_reentrant": False}
    if loaded.quantized:
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=options.gradient_checkpointing,
            gradient_checkpointing_kwargs=kwargs,
        )
    elif options.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        model.enable_input_require_grads()
    set_seed(options.seed)
    return model


def trainable_report(peft_model: Any) -> Any:
    """Log how many parameters train; ``peft_model`` itself."""
    trainable, total = peft_model.get_nb_trainable_parameters()
    log.info("training %d of %d parameters (%.2f%%)", trainable, total, 100 * trainable / total)
    return peft_model


def _prepare(loaded: LoadedModel, options: TrainSettings) -> Any:
    """The base made trainable with a fresh LoRA."""
    from peft import get_peft_model

    model = prepare_base(loaded, options)
    tied = bool(getattr(loaded.config.get_text_config(), "tie_word_embeddings", False))
    return trainable_report(get_peft_model(model, lora_config(options, tied)))


def training_renderer(loaded: LoadedModel, options: TrainSettings) -> tuple[Renderer, int]:
    """What every training stage renders with: the prompt format's renderer (TrainError
    when the model has no chat template for ``chat``) and the longest example, within
    the model's context; the GPU's peak-memory counter is reset for the run."""
    if torch.cuda.is_available() and loaded.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(loaded.device)
    try:
        renderer = make_renderer(options.prompt_format, loaded.tokenizer)
    except PromptFormatError as e:
        raise TrainError(f"{e} ({loaded.name} has none): pick another --prompt-format") from e
    context = int(getattr(loaded.config.get_text_config(), "max_position_embeddings", 0) or 0)
    return renderer, min(options.max_length, context) if context else options.max_length


def run_metrics(result: Any, recorder: Any, loaded: LoadedModel) -> dict[str, Any]:
    """What every training stage reports of its run: loss, time, tokens, peak memory."""
    return {
        "train_loss": float(result.training_loss),
        "train_seconds": round(recorder.seconds, 3),
        "train_tokens": int(recorder.tokens),
        "tokens_per_second": round(recorder.tokens / recorder.seconds, 2)
        if recorder.seconds
        else 0.0,
        "peak_memory_bytes": peak_memory_bytes(loaded.device),
        "peak_memory_kind": "cuda_allocated" if loaded.device.type == "cuda" else "rss",
    }


def common_arguments(
    output: Path, options: TrainSettings, device: torch.device, progress: bool
) -> dict[str, Any]:
    """The trainer arguments every training stage shares (SFT here, preference in
    :mod:`finetune.preference`): batch, schedule, seed, logging, saving, device."""
    return dict(
        output_dir=str(output),
        per_device_train_batch_size=options.batch_size,
        gradient_accumulation_steps=options.grad_accum,
        learning_rate=options.learning_rate,
        warmup_steps=options.warmup_ratio,
        weight_decay=options.weight_decay,
        num_train_epochs=options.epochs,
        max_steps=options.max_steps,
        lr_scheduler_type="linear",
        seed=options.seed,
        data_seed=options.seed,
        logging_steps=options.logging_steps,
        logging_first_step=True,
        save_strategy="steps" if options.save_steps else "no",
        save_steps=options.save_steps or 500,
        save_total_limit=options.save_total_limit,
        include_num_input_tokens_seen="non_padding",
        use_cpu=device.type == "cpu",
        bf16=device.type == "cuda" and torch.cuda.is_bf16_supported(),
        dataloader_pin_memory=device.type == "cuda",
        report_to="none",
        disable_tqdm=not progress,
    )


def _arguments(
    output: Path, options: TrainSettings, device: torch.device, has_eval: bool, progress: bool
) -> Any:
    from transformers import TrainingArguments

    evaluate = has_eval and options.eval_steps > 0
    return TrainingArguments(
        **common_arguments(output, options, device, progress),
        per_device_eval_batch_size=options.eval_batch_size,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=options.eval_steps if evaluate else None,
        train_sampling_strategy=(
            "group_by_length" if options.group_by_length and not options.packing else "random"
        ),
        remove_unused_columns=False,
        label_names=["labels"],
    )


@dataclass(frozen=True)
class TrainResult:
    """What a training run wrote: the adapter directory and its metadata."""

    output: Path
    steps: int
    metrics: dict[str, Any]
    metadata: dict[str, Any]


def train(
    base: str | None,
    examples: Sequence[Example],
    output: str | Path,
    options: TrainSettings | None = None,
    *,
    resume: bool | str | None = None,
    overwrite: bool = False,
    device: str | None = None,
    sources: Sequence[str] = (),
    progress: bool = True,
) -> TrainResult:
    """Train a LoRA adapter on ``examples`` into ``output``; returns what was written.

    ``resume``: ``True`` continues from the latest checkpoint in ``output``, a path
    from that checkpoint (the data and options must be the same). ``sources``
    (the data files) are recorded in the metadata.
    """
    options = options or TrainSettings()
    validate(options)
    out = Path(output)
    checkpoint = resolve_resume(out, resume)
    check_output(out, checkpoint, overwrite)
    unique = dedupe(examples)
    if not unique:
        raise TrainError("no training examples")
    train_set, eval_set = split_examples(unique, options.eval_fraction, options.seed)

    loaded = load_model(base, options.quantize, device)
    renderer, max_length = training_renderer(loaded, options)
    tokenizer = loaded.tokenizer
    rows = [encode_example(tokenizer, renderer, ex, max_length) for ex in train_set]
    train_rows = pack(rows, max_length) if options.packing else features(rows)
    eval_rows = features([encode_example(tokenizer, renderer, ex, max_length) for ex in eval_set])
    log.info(
        "%d training example(s) in %d row(s), %d held out; %d response tokens",
        len(train_set),
        len(train_rows),
        len(eval_set),
        sum(r.response_tokens for r in rows),
    )

    from transformers import Trainer

    model = _prepare(loaded, options)
    out.mkdir(parents=True, exist_ok=True)
    recorder = loss_recorder(out / LOSS_LOG)
    trainer = Trainer(
        model=model,
        args=_arguments(out, options, loaded.device, bool(eval_set), progress),
        train_dataset=train_rows,
        eval_dataset=eval_rows or None,
        data_collator=Collator(int(tokenizer.pad_token_id)),
        processing_class=tokenizer,
        callbacks=[recorder],
    )
    result = trainer.train(resume_from_checkpoint=checkpoint)
    model.save_pretrained(out)

    metrics = run_metrics(result, recorder, loaded)
    if eval_set:
        score = dict(
            tokenizer=tokenizer,
            renderer=renderer,
            examples=eval_set,
            max_length=max_length,
            batch_size=options.eval_batch_size,
        )
        metrics["eval_loss"] = heldout_loss(model, **score)
        with model.disable_adapter():
            metrics["base_eval_loss"] = heldout_loss(model, **score)
        with open(out / LOSS_LOG, "a", encoding="utf-8") as f:
            final = {k: metrics[k] for k in ("eval_loss", "base_eval_loss")}
            f.write(json.dumps({"step": trainer.state.global_step, "final": True, **final}) + "\n")
    data = {
        "hash": data_hash(unique),
        "files": list(sources),
        "examples": len(unique),
        "train_examples": len(train_set),
        "eval_examples": len(eval_set),
        "max_length": max_length,
    }
    steps = int(trainer.state.global_step)
    meta = adapter_record(base=loaded, options=options, data=data, steps=steps, metrics=metrics)
    (out / ADAPTER_METADATA).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    log.info("adapter written to %s after %d steps: %s", out, steps, metrics)
    return TrainResult(out, steps, metrics, meta)
