"""Noise control: clean generated critiques, drop the ones that say nothing,
and merge near-duplicate findings. Pure functions."""

from __future__ import annotations

import difflib
import re
import zlib
from collections.abc import Sequence

from reviewbot.settings.defaults import NoiseSettings

# Where a model that keeps talking starts a new prompt of its own.
_RUNAWAY = re.compile(
    r"\n(?:#{2,3}\s*(?:Instruction|Response|Input)\b|Human:|Assistant:|ORIGINAL:|COMMENT:|REVISED:"
    r"|Below is an instruction)",
    re.I,
)
_WORD = re.compile(r"[A-Za-z0-9_]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def clean_completion(text: str, max_chars: int) -> str:
    """Trim a completion: cut a runaway next prompt, collapse repeated sentences
    and lines, drop a trailing partial sentence when the text was cut short."""
    text = text.replace("\r\n", "\n").strip()
    m = _RUNAWAY.search("\n" + text)
    if m:
        text = ("\n" + text)[: m.start()].strip()
    text = _collapse_repeats(text)
    if len(text) > max_chars:
        cut = text[:max_chars]
        end = max(cut.rfind(". "), cut.rfind(".\n"), cut.rfind("\n\n"))
        text = (cut[: end + 1] if end > max_chars // 2 else cut).rstrip() + " …"
    return text.strip()


def _collapse_repeats(text: str) -> str:
    """Remove sentences/lines that repeat one already said (degenerate loops)."""
    seen: set[str] = set()
    out: list[str] = []
    for line in text.split("\n"):
        parts = [p for p in re.split(r"(?<=[.!?])\s+", line)]
        kept = []
        for part in parts:
            key = _normalise(part)
            if key and len(key) > 12 and key in seen:
                continue
            if key:
                seen.add(key)
            kept.append(part)
        if kept or not line.strip():
            out.append(" ".join(kept))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


def _normalise(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def noise_reason(critique: str, code: str, settings: NoiseSettings) -> str | None:
    """Why ``critique`` (already cleaned) is noise, or None if it is a finding."""
    words = _WORD.findall(critique.lower())
    if not words:
        return "empty"
    if len(words) <= settings.short_no_finding_words:
        norm = " ".join(words)
        for phrase in settings.no_finding_phrases:
            p = " ".join(_WORD.findall(phrase))
            if p and re.search(rf"\b{re.escape(p)}\b", norm):
                return "no finding"
    if len(words) < settings.min_words:
        return "too short"
    if _is_code_echo(critique, code, settings):
        return "repeats the code"
    if len(critique) >= settings.degenerate_min_chars:
        data = critique.encode()
        if len(zlib.compress(data)) / len(data) < settings.degenerate_compress_ratio:
            return "degenerate repetition"
    return None


def _is_code_echo(critique: str, code: str, settings: NoiseSettings) -> bool:
    code_lines = {line.strip() for line in code.split("\n") if line.strip()}
    lines = [line.strip().strip("`") for line in critique.split("\n")]
    lines = [line for line in lines if line and not line.startswith(("```", "~~~"))]
    if not lines:
        return False
    echoed = sum(1 for line in lines if line in code_lines)
    if echoed / len(lines) >= settings.echo_line_share:
        return True
    ratio = difflib.SequenceMatcher(None, critique.strip(), code.strip(), autojunk=False).ratio()
    return ratio >= settings.echo_ratio


def similar(a: str, b: str) -> float:
    """Similarity of two critiques on normalised words (0..1)."""
    return difflib.SequenceMatcher(None, _normalise(a).split(), _normalise(b).split()).ratio()


def group_duplicates(texts: Sequence[str], ratio: float) -> list[list[int]]:
    """Indices grouped so that each group's texts are near-duplicates of its first.

    Groups keep input order; each text joins the first group it matches.
    """
    groups: list[list[int]] = []
    for i, text in enumerate(texts):
        for group in groups:
            if similar(texts[group[0]], text) >= ratio:
                group.append(i)
                break
        else:
            groups.append([i])
    return groups
