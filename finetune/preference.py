"""Preference training (KTO) on what the team did with reviewbot's findings, and its measure.

The data is a labelled-finding JSONL file: one :func:`reviewbot.learning.records.export_record`
(or human review comment) per line. Each record becomes a critique example exactly as
serving renders it (:func:`record_example`): accepted findings and human comments are
desirable, rejected findings undesirable, ``unknown`` ones are left out (and counted).
Records of one fingerprint count once (the last line wins: the newest label).

:func:`train_preference` trains a LoRA adapter with TRL's KTO trainer (unpaired
preferences): a fresh LoRA on the base, or an SFT adapter continued (``adapter``), the
reference being the policy it starts from (TRL keeps a frozen copy of a given adapter;
a fresh LoRA starts as the base). Examples are encoded as for SFT
(:func:`finetune.encode.encode_example`: the prompt as the engine tokenizes it, loss on
the completion only). The output is an adapter directory like ``finetune train`` writes,
its ``reviewbot.json`` adding ``stage``/``method`` and the preference data's counts.

A deterministic share of the findings (:func:`held_out`, by fingerprint) is kept out of
training; ``finetune eval --outcomes`` (:func:`outcome_eval`) measures on it how the
production confidence (:mod:`reviewbot.review.confidence`) separates accepted from
rejected findings, before and after the adapter.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from finetune.encode import encode_example
from finetune.examples import Example, ExampleError
from finetune.train import (
    TrainError,
    TrainResult,
    adapter_record,
    check_output,
    common_arguments,
    lora_config,
    loss_recorder,
    prepare_base,
    resolve_resume,
    run_metrics,
    trainable_report,
    training_renderer,
    validate,
)
from reviewbot.learning.records import RecordError, check_record, record_context
from reviewbot.model.adapters import (
    adapter_metadata,
    check_adapter_base,
    resolve_adapter,
)
from reviewbot.model.generation import Engine
from reviewbot.model.loading import LoadedModel, ModelLoadError, load_model
from reviewbot.review.confidence import confidences
from reviewbot.settings.defaults import (
    ADAPTER_METADATA,
    CONFIDENCE_METHOD,
    HUMAN_LABEL,
    KTO_BETA,
    LOSS_LOG,
    PREFERENCE_EVAL_PERCENT,
    TrainSettings,
)

log = logging.getLogger(__name__)

#: What each label teaches: desirable (True), undesirable (False); others are left out.
DESIRABLE: dict[str, bool] = {"accepted": True, HUMAN_LABEL: True, "rejected": False}
#: The labels of reviewbot's own findings (human comments are not findings).
FINDING_LABELS: tuple[str, ...] = ("accepted", "rejected")
#: Bad lines named in one error before the rest are only counted.
MAX_REPORTED_ERRORS = 10
#: The last logged KTO figures recorded in the adapter's metrics.
KTO_LOG_KEYS: tuple[str, ...] = (
    "kl",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
)


# --------------------------------------------------------------------------- records


def held_out(fingerprint: str, percent: float) -> bool:
    """Whether the finding ``fingerprint`` is held out of training for evaluation."""
    return int(hashlib.sha256(fingerprint.encode("utf-8")).hexdigest(), 16) % 100 < percent


def record_key(data: dict[str, Any]) -> str:
    """The record's fingerprint; for a record without one (a human comment), a content hash."""
    fingerprint = data.get("fingerprint")
    if fingerprint:
        return str(fingerprint)
    content = json.dumps([data["path"], data["original"], data["critique"]])
    return "content:" + hashlib.sha256(content.encode()).hexdigest()[:16]


def record_example(data: dict[str, Any]) -> Example:
    """The critique example of a record: its code unit, prompted as serving renders it."""
    return Example(
        task="critique",
        fields={"ORIGINAL": data["original"]},
        target=data["critique"],
        source="outcomes",
        provenance={
            "fingerprint": data.get("fingerprint"),
            "pr": data.get("pr"),
            "label": data["label"],
        },
        context=record_context(data),
    )


@dataclass(frozen=True)
class Labelled:
    """One labelled record: its critique example, its label and what that teaches."""

    example: Example
    label: str
    fingerprint: str

    @property
    def desirable(self) -> bool | None:
        """True (accepted, human), False (rejected), None (unknown: not trained on)."""
        return DESIRABLE.get(self.label)

    @property
    def finding(self) -> bool:
        """A finding reviewbot posted that the team accepted or rejected."""
        return self.label in FINDING_LABELS


@dataclass(frozen=True)
class Outcomes:
    """A labelled-finding file's records, one per fingerprint, in file order."""

    records: tuple[Labelled, ...]
    duplicates: int = 0
    """Lines replaced by a later line of the same fingerprint."""
    source: str = ""

    def counts(self) -> dict[str, int]:
        """Records per label, and the duplicates dropped."""
        counts = Counter(r.label for r in self.records)
        return {
            **{k: counts.get(k, 0) for k in ("accepted", "rejected", HUMAN_LABEL, "unknown")},
            "duplicates": self.duplicates,
        }

    def summary(self) -> str:
        """The counts in words: ``4 accepted, 3 rejected, 0 human, 1 unknown, 0 duplicates``."""
        return ", ".join(f"{n} {label}" for label, n in self.counts().items())

    def split(self, percent: float) -> tuple[list[Labelled], list[Labelled]]:
        """(trained on, held out) of the records with a training label: the findings
        :func:`held_out` picks are held out (exactly those :meth:`findings` evaluates);
        human comments, never evaluated on, are always trained on."""
        usable = [r for r in self.records if r.desirable is not None]
        held = [r for r in usable if r.finding and held_out(r.fingerprint, percent)]
        train = [r for r in usable if not (r.finding and held_out(r.fingerprint, percent))]
        return train, held

    def findings(self, percent: float | None) -> list[Labelled]:
        """Accepted and rejected findings: the held-out ones, or all when ``percent`` is None."""
        return [
            r
            for r in self.records
            if r.finding and (percent is None or held_out(r.fingerprint, percent))
        ]


def _parse_line(line: str) -> Labelled:
    try:
        data = json.loads(line)
    except ValueError as e:
        raise RecordError(f"not JSON ({getattr(e, 'msg', e)})") from None
    check_record(data)
    fingerprint = data.get("fingerprint")
    if fingerprint is not None and not isinstance(fingerprint, str):
        raise RecordError("fingerprint is not a string")
    try:
        example = record_example(data)
    except ExampleError as e:
        raise RecordError(str(e)) from None
    return Labelled(example, data["label"], record_key(data))


def read_outcomes(path: str | Path) -> Outcomes:
    """The records of a labelled-finding JSONL file; RecordError naming each bad line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecordError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RecordError(f"cannot read {path}: {e}") from None
    by_key: dict[str, Labelled] = {}
    errors: list[str] = []
    lines = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        lines += 1
        try:
            record = _parse_line(line)
        except RecordError as e:
            errors.append(f"{path}:{lineno}: {e}")
            continue
        by_key.pop(record.fingerprint, None)  # the last line wins, at its place
        by_key[record.fingerprint] = record
    if errors:
        more = len(errors) - MAX_REPORTED_ERRORS
        shown = errors[:MAX_REPORTED_ERRORS] + (
            [f"... and {more} more bad line(s)"] if more > 0 else []
        )
        raise RecordError("\n".join(shown))
    if not by_key:
        raise RecordError(f"{path}: no records")
    return Outcomes(tuple(by_key.values()), lines - len(by_key), str(path))


# --------------------------------------------------------------------------- training data


@dataclass(frozen=True)
class PreferenceSettings:
    """KTO's options of ``finetune train --preference`` (LoRA and optimizer: TrainSettings)."""

    beta: float = KTO_BETA
    desirable_weight: float | None = None
    """Loss weight of desirable examples; None (with ``undesirable_weight`` None too): the
    smaller class is weighted up so both weigh the same (:func:`kto_weights`)."""
    undesirable_weight: float | None = None
    eval_percent: float = PREFERENCE_EVAL_PERCENT
    """Findings held out for ``finetune eval --outcomes`` (:func:`held_out`)."""


def validate_preference(options: TrainSettings, preference: PreferenceSettings) -> None:
    """Raise TrainError naming the first option preference training cannot use."""
    validate(options)
    checks = [
        (
            options.batch_size >= 2,
            "preference training needs --batch-size of at least 2: KTO estimates its KL term"
            f" by pairing each finding with another prompt of its batch (not {options.batch_size})",
        ),
        (not options.packing, "--packing does not apply to preference training"),
        (preference.beta > 0, f"beta must be positive, not {preference.beta}"),
        (
            all(
                w is None or w > 0
                for w in (preference.desirable_weight, preference.undesirable_weight)
            ),
            "desirable and undesirable weights must be positive",
        ),
        (
            0 <= preference.eval_percent < 100,
            f"eval percent must be in [0, 100), not {preference.eval_percent}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise TrainError(message)


def check_labels(train: Sequence[Labelled], outcomes: Outcomes, percent: float) -> None:
    """TrainError unless there is something desirable and something undesirable to train on."""
    desirable = sum(1 for r in train if r.desirable)
    undesirable = sum(1 for r in train if r.desirable is False)
    if desirable and undesirable:
        return
    held = (
        f"; {percent:g}% of the findings are held out for eval (--eval-percent)" if percent else ""
    )
    raise TrainError(
        "preference training needs at least one accepted (or human) and one rejected finding"
        f" to train on: {outcomes.source or 'the data'} has {outcomes.summary()}{held}"
    )


def kto_weights(
    desirable: int, undesirable: int, preference: PreferenceSettings
) -> tuple[float, float]:
    """(desirable_weight, undesirable_weight): the given ones, or by default the smaller
    class weighted up so that ``w_D * n_D == w_U * n_U`` (the KTO paper's Eq. 8 range)."""
    given_d, given_u = preference.desirable_weight, preference.undesirable_weight
    if given_d is not None or given_u is not None:
        return (given_d or 1.0, given_u or 1.0)
    if desirable < undesirable:
        return (undesirable / desirable, 1.0)
    return (1.0, desirable / undesirable)


def kto_order(records: Sequence[Labelled], seed: int) -> list[Labelled]:
    """A seeded shuffle of each class, the two spread evenly through each other (desirable
    first on a tie): every batch mixes both kinds in their overall proportion (KTO's sampler
    is sequential, and its KL term pairs neighbours within a batch)."""
    rng = random.Random(seed)
    good = [r for r in records if r.desirable]
    bad = [r for r in records if r.desirable is False]
    rng.shuffle(good)
    rng.shuffle(bad)
    placed = [
        ((i + 0.5) / len(group), kind, i)
        for kind, group in enumerate((good, bad))
        for i in range(len(group))
    ]
    return [(good, bad)[kind][i] for _, kind, i in sorted(placed)]


def kto_rows(
    tokenizer: Any, renderer: Any, records: Sequence[Labelled], max_length: int
) -> list[dict[str, Any]]:
    """Rows for the KTO trainer: the prompt's and the completion's token ids, as SFT
    encodes them (:func:`finetune.encode.encode_example`), and the label."""
    rows = []
    for record in records:
        encoded = encode_example(tokenizer, renderer, record.example, max_length)
        n_prompt = len(encoded.input_ids) - encoded.response_tokens
        rows.append(
            {
                "prompt_ids": encoded.input_ids[:n_prompt],
                "completion_ids": encoded.input_ids[n_prompt:],
                "label": bool(record.desirable),
            }
        )
    return rows


def preference_hash(records: Sequence[Labelled]) -> str:
    """A hash of the training records (content, label and order)."""
    h = hashlib.sha256()
    for record in records:
        h.update(f"{record.example.key}:{record.label}\n".encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- training


def _trainer_class() -> type:
    """TRL's KTOTrainer, taking rows already encoded as serving encodes them.

    TRL tokenizes prompt + completion as one text (tokens may merge across the boundary,
    and long prompts are cut at their end); rows from :func:`kto_rows` only get KTO's KL
    completions: each row's is its batch neighbour's, as TRL pairs them.
    """
    from trl import KTOTrainer

    class EncodedKTOTrainer(KTOTrainer):
        def _prepare_dataset(
            self, dataset: Any, processing_class: Any, args: Any, dataset_name: str
        ) -> Any:
            if "prompt_ids" not in dataset.column_names:
                return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            if not self.calculate_KL:
                return dataset

            def rotate(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
                done = batch["completion_ids"]
                return {**batch, "KL_completion_ids": [done[-1], *done[:-1]]}

            return dataset.map(rotate, batched=True, batch_size=args.per_device_train_batch_size)

    return EncodedKTOTrainer


def _trainable(loaded: LoadedModel, options: TrainSettings, adapter: str | None) -> Any:
    """The base made trainable: ``adapter`` continued, or a fresh LoRA (as SFT makes it)."""
    from peft import PeftModel, get_peft_model

    model = prepare_base(loaded, options)
    if adapter:
        log.info("continuing adapter %s", adapter)
        try:
            peft_model = PeftModel.from_pretrained(model, adapter, is_trainable=True)
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            raise ModelLoadError(f"cannot load adapter {adapter}: {e}") from e
    else:
        tied = bool(getattr(loaded.config.get_text_config(), "tie_word_embeddings", False))
        peft_model = get_peft_model(model, lora_config(options, tied))
    return trainable_report(peft_model)


def _config(
    output: Path,
    options: TrainSettings,
    weights: tuple[float, float],
    beta: float,
    max_length: int,
    device: torch.device,
    progress: bool,
) -> Any:
    from trl import KTOConfig

    return KTOConfig(
        **common_arguments(output, options, device, progress),
        activation_checkpointing=options.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        beta=beta,
        desirable_weight=weights[0],
        undesirable_weight=weights[1],
        max_length=max_length,
    )


def _kto_figures(log_history: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The last logged value of each of :data:`KTO_LOG_KEYS`."""
    figures: dict[str, float] = {}
    for entry in log_history:
        figures.update({k: float(entry[k]) for k in KTO_LOG_KEYS if k in entry})
    return figures


def _start_adapter(
    adapter: str | Path | None, output: Path, prompt_format: str
) -> tuple[str | None, dict[str, Any]]:
    """The resolved start adapter and its metadata; TrainError when it cannot be continued."""
    if not adapter:
        return None, {}
    path = resolve_adapter(str(adapter))
    if Path(path).resolve() == output.resolve():
        raise TrainError(f"write the preference adapter to another directory than {adapter}")
    meta = adapter_metadata(path)
    recorded = meta.get("prompt_format")
    if recorded and recorded != prompt_format:
        raise TrainError(
            f"adapter {adapter} was trained with the {recorded!r} prompt format, not"
            f" {prompt_format!r}: pass --prompt-format {recorded}"
        )
    return path, meta


def train_preference(
    base: str | None,
    outcomes: str | Path,
    output: str | Path,
    options: TrainSettings | None = None,
    preference: PreferenceSettings | None = None,
    *,
    adapter: str | Path | None = None,
    resume: bool | str | None = None,
    overwrite: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> TrainResult:
    """KTO-train an adapter on the labelled findings of ``outcomes`` into ``output``.

    ``adapter``: an SFT (or earlier preference) adapter to continue, the reference being
    where it starts; without it a fresh LoRA from ``options``. ``resume`` as in
    :func:`finetune.train.train`.
    """
    options = options or TrainSettings()
    preference = preference or PreferenceSettings()
    validate_preference(options, preference)
    out = Path(output)
    checkpoint = resolve_resume(out, resume)
    check_output(out, checkpoint, overwrite)
    start, start_meta = _start_adapter(adapter, out, options.prompt_format)
    try:
        data = read_outcomes(outcomes)
    except RecordError as e:
        raise TrainError(str(e)) from None
    train_set, held = data.split(preference.eval_percent)
    check_labels(train_set, data, preference.eval_percent)
    ordered = kto_order(train_set, options.seed)
    n_good = sum(1 for r in ordered if r.desirable)
    n_bad = len(ordered) - n_good
    weights = kto_weights(n_good, n_bad, preference)

    loaded = load_model(base, options.quantize, device)
    if start:
        check_adapter_base(start, start_meta, loaded)
    renderer, max_length = training_renderer(loaded, options)
    tokenizer = loaded.tokenizer
    rows = kto_rows(tokenizer, renderer, ordered, max_length)
    log.info(
        "KTO on %d desirable and %d undesirable finding(s) (weights %.2f/%.2f), %d held out: %s",
        n_good,
        n_bad,
        *weights,
        len(held),
        data.summary(),
    )

    from datasets import Dataset

    model = _trainable(loaded, options, start)
    out.mkdir(parents=True, exist_ok=True)
    recorder = loss_recorder(out / LOSS_LOG)
    args = _config(out, options, weights, preference.beta, max_length, loaded.device, progress)
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[recorder],
    )
    # TRL casts the LoRA weights of a 4-bit base to bf16, where small updates vanish;
    # keep them in fp32 as SFT does (the optimizer is made in train()).
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    model.save_pretrained(out, selected_adapters=["default"])

    metrics = {
        **run_metrics(result, recorder, loaded),
        "kto": _kto_figures(trainer.state.log_history),
    }
    record = {
        "hash": preference_hash(ordered),
        "files": [str(outcomes)],
        "records": data.counts(),
        "examples": len(ordered),
        "desirable": n_good,
        "undesirable": n_bad,
        "eval_percent": preference.eval_percent,
        "held_out": len(held),
        "held_out_fingerprints": sorted(r.fingerprint for r in held),
        "max_length": max_length,
    }
    steps = int(trainer.state.global_step)
    meta = adapter_record(base=loaded, options=options, data=record, steps=steps, metrics=metrics)
    meta.update(
        stage="preference",
        method="kto",
        preference={
            **dataclasses.asdict(preference),
            "desirable_weight": weights[0],
            "undesirable_weight": weights[1],
            "reference": "start adapter" if start else "base",
        },
        start_adapter=_start_record(start, start_meta),
    )
    (out / ADAPTER_METADATA).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    log.info("preference adapter written to %s after %d steps: %s", out, steps, metrics)
    return TrainResult(out, steps, metrics, meta)


def _start_record(path: str | None, meta: dict[str, Any]) -> dict[str, Any] | None:
    """What the metadata says of the adapter training started from."""
    if not path:
        return None
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    return {
        "path": str(Path(path).resolve()),
        "stage": meta.get("stage", "sft"),
        "data_hash": data.get("hash"),
        "steps": meta.get("steps"),
    }


# --------------------------------------------------------------------------- evaluation


def auc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """The chance a random positive scores above a random negative (ties count half):
    the ROC AUC (Mann-Whitney U over all pairs); None when either side is empty."""
    if not positive or not negative:
        return None
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positive for n in negative)
    return wins / (len(positive) * len(negative))


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def confidence_stats(values: Sequence[float], accepted: Sequence[bool]) -> dict[str, Any]:
    """Mean confidence of accepted and rejected findings, their difference and the AUC."""
    yes = [v for v, a in zip(values, accepted, strict=True) if a]
    no = [v for v, a in zip(values, accepted, strict=True) if not a]
    mean_yes, mean_no = _mean(yes), _mean(no)
    area = auc(yes, no)
    return {
        "mean_confidence_accepted": _round(mean_yes),
        "mean_confidence_rejected": _round(mean_no),
        "separation": _round(mean_yes - mean_no)
        if mean_yes is not None and mean_no is not None
        else None,
        "auc": _round(area),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def finding_confidences(
    engine: Engine, findings: Sequence[Labelled], method: str = CONFIDENCE_METHOD
) -> list[float]:
    """The production confidence of each finding's critique, given its prompt as served."""
    prompts = [f.example.prompt(engine.renderer) for f in findings]
    critiques = [f.example.target for f in findings]
    return confidences(prompts, critiques, engine.score, method)


@dataclass(frozen=True)
class OutcomeEval:
    """What ``finetune eval --outcomes`` measured on the labelled findings."""

    findings: int
    accepted: int
    rejected: int
    before: dict[str, Any]
    after: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "findings": self.findings,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "before": self.before,
            "after": self.after,
        }


def outcome_eval(
    before: Engine,
    after: Engine | None,
    findings: Sequence[Labelled],
    method: str = CONFIDENCE_METHOD,
) -> OutcomeEval:
    """Confidence separation of accepted vs rejected ``findings`` by ``before`` (the base)
    and ``after`` (the adapter); ValueError without findings."""
    if not findings:
        raise ValueError("no accepted or rejected findings to evaluate")
    accepted = [f.label == "accepted" for f in findings]
    stats = {}
    for name, engine in (("before", before), ("after", after)):
        if engine is None:
            continue
        values = finding_confidences(engine, findings, method)
        stats[name] = confidence_stats(values, accepted)
        log.info("%s: %s", name, stats[name])
    return OutcomeEval(
        findings=len(findings),
        accepted=sum(accepted),
        rejected=len(findings) - sum(accepted),
        before=stats["before"],
        after=stats.get("after"),
    )
