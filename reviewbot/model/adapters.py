"""LoRA adapters: their metadata, the base they fit, and the prompt format they use.

An adapter directory carries ``reviewbot.json`` (written by finetune/): the base
model's name and architecture signature, and the prompt format it was trained
with. An adapter trained on another base is refused; its recorded format is binding.
"""

from __future__ import annotations

import hashlib
import json
import logging
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from reviewbot.model.loading import (
    ModelLoadError,
    load_config,
    looks_like_path,
    read_metadata,
    resolve_model,
)
from reviewbot.review.prompts import (
    ORIGINAL_LAYOUT,
    Renderer,
    neutralise,
    template_fingerprint,
)
from reviewbot.settings.defaults import DEMO_MODEL, PROMPT_FORMATS, SEED_PROMPT_FORMAT

log = logging.getLogger(__name__)


def resolve_adapter(adapter: str) -> str:
    path = Path(adapter).expanduser()
    if path.exists():
        if not (path / "adapter_config.json").is_file():
            raise ModelLoadError(
                f"{adapter} is not a PEFT adapter directory (no adapter_config.json)"
            )
        return str(path)
    if looks_like_path(adapter):
        raise ModelLoadError(f"adapter directory {adapter} does not exist")
    return adapter


def adapter_metadata(adapter: str) -> dict[str, Any]:
    """The adapter's ``reviewbot.json`` (base model, prompt format, ...), or ``{}``."""
    return read_metadata(Path(adapter).expanduser())


#: Config fields that identify a base model's shape (recorded by finetune/, compared here).
BASE_SIGNATURE_KEYS: tuple[str, ...] = (
    "model_type",
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "tie_word_embeddings",
)


def base_signature(config: Any) -> dict[str, Any]:
    """Architecture + shape of a model config, and a ``fingerprint`` hash of them.

    Stable across transformers versions and across copies of one model (hub id,
    local directory, the converted demo model): only what the weights' shapes
    depend on is recorded.
    """
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    signature: dict[str, Any] = {
        "architectures": list(getattr(config, "architectures", None) or [])
    }
    for key in BASE_SIGNATURE_KEYS:
        value = getattr(text, key, None)
        if value is None:
            value = getattr(config, key, None)
        signature[key] = value
    digest = hashlib.sha256(json.dumps(signature, sort_keys=True).encode()).hexdigest()
    return {**signature, "fingerprint": digest[:16]}


def _describe_base(signature: dict[str, Any]) -> str:
    arch = ",".join(signature.get("architectures") or []) or signature.get("model_type") or "?"
    return (
        f"{arch}, hidden {signature.get('hidden_size')}, {signature.get('num_hidden_layers')} "
        f"layers, vocab {signature.get('vocab_size')}"
    )


def _local_config(name: str) -> Any | None:
    """The config of a model named in adapter metadata, if it is available without a download."""
    from transformers import AutoConfig

    try:
        if name == DEMO_MODEL or Path(name).expanduser().is_dir():
            return load_config(resolve_model(name))
        return AutoConfig.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError):
        return None


def _peft_base_name(adapter: str) -> str | None:
    path = Path(adapter).expanduser() / "adapter_config.json"
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None
    return str(value) if value else None


class BaseModel(Protocol):
    """What :func:`check_adapter_base` reads of a base model (a
    :class:`~reviewbot.model.loading.LoadedModel`, or only its config: ``doctor``)."""

    config: Any
    name: str
    path: str


def check_adapter_base(adapter: str, meta: dict[str, Any], base: BaseModel) -> None:
    """Refuse (ModelLoadError) an adapter trained on another base model than ``base``.

    The adapter's ``reviewbot.json`` records the base's signature (finetune/ writes
    it); without one, the recorded base name is compared as a name and, when it
    names a model available locally, by its config.
    """
    actual = base_signature(base.config)
    recorded = meta.get("base_model") or _peft_base_name(adapter)
    trained_on = recorded or "an unrecorded base model"
    expected = meta.get("base")
    if isinstance(expected, dict) and expected.get("fingerprint"):
        if expected["fingerprint"] == actual["fingerprint"]:
            return
        differs = [
            k for k in ("architectures", *BASE_SIGNATURE_KEYS) if expected.get(k) != actual.get(k)
        ]
        raise ModelLoadError(
            f"adapter {adapter} was trained on {trained_on} ({_describe_base(expected)}) and does "
            f"not fit {base.name} ({_describe_base(actual)}): "
            f"{', '.join(differs) or 'base fingerprint'} differ"
        )
    if not recorded or recorded in (base.name, base.path):
        return
    other = _local_config(recorded)
    if other is None:
        raise ModelLoadError(
            f"adapter {adapter} was trained on {recorded}, not on {base.name}, and records no base "
            f"signature to compare them; load it with --model {recorded}"
        )
    signature = base_signature(other)
    if signature["fingerprint"] != actual["fingerprint"]:
        raise ModelLoadError(
            f"adapter {adapter} was trained on {recorded} ({_describe_base(signature)}) and does "
            f"not fit {base.name} ({_describe_base(actual)})"
        )


def choose_prompt_format(
    prompt_format: str | None,
    adapter_meta: dict[str, Any],
    tokenizer: Any,
    model_meta: dict[str, Any] | None = None,
    fallback: str | None = None,
) -> str:
    """The prompt format: recorded (adapter, else merged model) → explicit → fallback → default.

    A format recorded by training is binding: an explicit different one is an
    error, since the adapter only learned its own. Without a record the explicit
    choice, then ``fallback`` (a server default), then ``chat`` when the
    tokenizer has a chat template, else ``alpaca``.
    """
    for meta, what in ((adapter_meta, "adapter"), (model_meta or {}, "merged model")):
        recorded = meta.get("prompt_format")
        if not recorded:
            continue
        if recorded not in PROMPT_FORMATS:
            raise ModelLoadError(
                f"the {what}'s metadata names an unknown prompt format {recorded!r} "
                f"(known: {', '.join(PROMPT_FORMATS)})"
            )
        if prompt_format and prompt_format != recorded:
            raise ModelLoadError(
                f"the {what} was trained with the {recorded!r} prompt format, not "
                f"{prompt_format!r}: leave the prompt format unset to use the recorded one"
            )
        return str(recorded)
    if prompt_format:
        return prompt_format
    if fallback:
        return fallback
    if getattr(tokenizer, "chat_template", None):
        return "chat"
    return SEED_PROMPT_FORMAT


def special_token_strings(tokenizer: Any) -> tuple[str, ...]:
    """The strings ``tokenizer`` turns into one added (special) token each.

    Its special tokens (``all_special_tokens``) and every added token
    (``get_added_vocab``: chat-role markers such as ``<|im_start|>``, tool and
    thinking tags some models do not flag as special), except whitespace-only
    ones (formatting, not control) and single characters (nothing can be
    inserted into them; logged).
    """
    found = set(getattr(tokenizer, "all_special_tokens", None) or ())
    get_added = getattr(tokenizer, "get_added_vocab", None)
    if callable(get_added):
        found.update(get_added())
    kept = []
    for token in sorted(found):
        if not token.strip():
            continue
        if len(token) == 1:
            log.warning("special token %r is one character: it cannot be neutralised", token)
            continue
        kept.append(token)
    return tuple(kept)


def make_renderer(fmt: str, tokenizer: Any) -> Renderer:
    """A ``Renderer`` for ``fmt`` that keeps untrusted text from forming special tokens.

    ``chat`` renders through the tokenizer's template, whose own special tokens
    stay special; the renderer knows the tokenizer's special-token strings
    (:func:`special_token_strings`) and neutralises them in the text of every
    turn (:mod:`reviewbot.review.prompts`). Serving and finetune/ both render
    through this renderer and tokenize its prompt the same way
    (:func:`reviewbot.model.tokens.prompt_token_ids`), so they see the same
    ids. Refused (ModelLoadError) for a tokenizer that still reads a special
    token in a neutralised string (say, one whose normalizer drops the
    zero-width space).
    """
    template = None
    if getattr(tokenizer, "chat_template", None):
        template = partial(
            tokenizer.apply_chat_template, tokenize=False, add_generation_prompt=True
        )
    specials = special_token_strings(tokenizer)
    _check_neutralised(tokenizer, specials)
    return Renderer(fmt, template, specials)


def _check_neutralised(tokenizer: Any, specials: tuple[str, ...]) -> None:
    """ModelLoadError unless every neutralised special-token string is ordinary text."""
    if not specials:
        return
    convert = tokenizer.convert_tokens_to_ids
    special_ids = {convert(s) for s in specials} - {tokenizer.unk_token_id, None}
    for token in specials:
        ids = tokenizer(neutralise(token, specials), add_special_tokens=False)["input_ids"]
        if special_ids.intersection(ids):
            raise ModelLoadError(
                f"the tokenizer still reads a special token in {token!r} with a zero-width "
                "space inserted: untrusted text could fake its control tokens"
            )


def original_layout(meta: dict[str, Any]) -> int | None:
    """The ORIGINAL layout an adapter was trained on (:data:`ORIGINAL_LAYOUT` is today's):
    the one its metadata records; 0 (the plain code, before layouts) for an adapter of
    reviewbot's whose templates differ from today's and that records none; None when
    unknown (metadata without a template fingerprint: not trained by reviewbot)."""
    recorded = meta.get("original_layout")
    if isinstance(recorded, int) and not isinstance(recorded, bool):
        return recorded
    fingerprint = meta.get("template_fingerprint")
    if not fingerprint:
        return None
    return ORIGINAL_LAYOUT if fingerprint == template_fingerprint() else 0


def warn_on_template_change(adapter: str, meta: dict[str, Any]) -> None:
    """Log a warning when ``adapter`` was trained on other prompts than those rendered now:
    other templates, or another layout of ORIGINAL (:func:`original_layout`)."""
    recorded = meta.get("template_fingerprint")
    if recorded and recorded != template_fingerprint():
        log.warning(
            "adapter %s was trained on other prompt templates (%s, now %s): its prompts differ",
            adapter,
            recorded,
            template_fingerprint(),
        )
    layout = original_layout(meta)
    if layout is not None and layout != ORIGINAL_LAYOUT:
        trained = "the plain code (layout 0)" if layout == 0 else f"layout {layout}"
        log.warning(
            "adapter %s was trained with ORIGINAL as %s; reviewbot now renders layout %d "
            "(file path, language, changed lines): retrain it on data rendered today",
            adapter,
            trained,
            ORIGINAL_LAYOUT,
        )
