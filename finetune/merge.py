"""Merge a LoRA adapter into its full-precision base: a plain model directory.

The merged directory (model + tokenizer + ``reviewbot.json``, which records the
adapter's prompt format) loads with :func:`reviewbot.model.serving.load_engine` like any
model, in 4-bit or full precision. Merging into a 4-bit base is refused: the
merged weights would have to be re-quantized, losing what the adapter learned.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from reviewbot import __version__
from reviewbot.model.adapters import adapter_metadata, base_signature, check_adapter_base
from reviewbot.model.loading import load_model
from reviewbot.settings.defaults import MERGED_METADATA

log = logging.getLogger(__name__)


class MergeError(ValueError):
    """The adapter cannot be merged as asked (the message says why)."""


FOUR_BIT_REFUSAL = (
    "merging into a 4-bit base is not supported: the merged weights would be re-quantized "
    "and lose what the adapter learned; merge into the full-precision base (--quantize none) "
    "and load the merged model in 4-bit instead"
)


def _base_name(adapter: Path, meta: dict[str, Any], base: str | None) -> str:
    if base:
        return base
    if meta.get("base_model"):
        return str(meta["base_model"])
    try:
        config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise MergeError(f"cannot read {adapter / 'adapter_config.json'}: {e}") from e
    name = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    if not name:
        raise MergeError(f"{adapter} does not record its base model: pass --base")
    return str(name)


def _untie_if_needed(model: Any) -> None:
    """Untie input/output embeddings in the config when merging made them different."""
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    if outputs is None or inputs.weight.data_ptr() == outputs.weight.data_ptr():
        return
    for config in {id(c): c for c in (model.config, model.config.get_text_config())}.values():
        if getattr(config, "tie_word_embeddings", False):
            config.tie_word_embeddings = False
            log.info("the adapter trained the embeddings and the head apart: untying them")


def merge(
    adapter: str | Path,
    output: str | Path,
    base: str | None = None,
    quantize: str = "none",
    device: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Merge ``adapter`` into its base (recorded, or ``base``) and save it to ``output``."""
    if quantize == "4bit":
        raise MergeError(FOUR_BIT_REFUSAL)
    if quantize != "none":
        raise MergeError(f"quantize must be 'none' for a merge, not {quantize!r}")
    source = Path(adapter).expanduser()
    if not (source / "adapter_config.json").is_file():
        raise MergeError(f"{adapter} is not a PEFT adapter directory (no adapter_config.json)")
    out = Path(output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise MergeError(f"output {out} exists and is not empty (pass --overwrite to replace it)")
    meta = adapter_metadata(str(source))
    name = _base_name(source, meta, base)
    loaded = load_model(name, "none", device)
    if loaded.quantized:
        raise MergeError(f"{name} is a quantized checkpoint; {FOUR_BIT_REFUSAL}")
    check_adapter_base(str(source), meta, loaded)

    from peft import PeftModel

    log.info("merging %s into %s", source, name)
    merged = PeftModel.from_pretrained(loaded.model, str(source)).merge_and_unload()
    _untie_if_needed(merged)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    loaded.tokenizer.save_pretrained(out)
    note: dict[str, Any] = {
        "reviewbot_version": __version__,
        "merged_from": str(source.resolve()),
        "base_model": name,
        "base": base_signature(loaded.config),
        "template_fingerprint": meta.get("template_fingerprint"),
        "adapter_metadata": meta,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if meta.get("prompt_format"):
        note["prompt_format"] = meta["prompt_format"]
    (out / MERGED_METADATA).write_text(json.dumps(note, indent=2) + "\n", encoding="utf-8")
    log.info("merged model written to %s", out)
    return out
