"""What /describe asks the model, and the description it makes of the answers (pure).

One prompt per changed file (``describe-file`` in ``templates/describe.toml``: the
file's diff, cut to :data:`~reviewbot.settings.defaults.DESCRIBE_FILE_DIFF_LINES`
lines) asks for one line on what the change does; then one prompt (``describe``)
asks for an overall summary from the pull request's title and those lines. The
description is reviewbot's Markdown around the model's words, which are made inert
(:func:`reviewbot.review.markdown.inert`); paths are code spans.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reviewbot.review.diffplan import file_diffs
from reviewbot.review.markdown import code_span, inert
from reviewbot.review.prompts import Renderer
from reviewbot.settings.defaults import DESCRIBE_FILE_DIFF_LINES, DESCRIBE_MAX_FILES

#: The heading of a description.
HEADING = "### What this pull request changes"


@dataclass(frozen=True)
class Description:
    """The model's overall summary and its line per file (files past the budget: None)."""

    summary: str
    files: tuple[tuple[str, str | None], ...]

    def markdown(self) -> str:
        """The description as posted: heading, summary, then one bullet per file."""
        lines = [HEADING, "", inert(self.summary) or "_(no summary)_", "", "**Files:**", ""]
        for path, line in self.files:
            said = inert(one_line(line)) if line else "_(not described: too many files)_"
            lines.append(f"- {code_span(path)}: {said}")
        return "\n".join(lines)


def one_line(text: str) -> str:
    """The first non-empty line of a model's answer, stripped."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _cut(diff: str, max_lines: int = DESCRIBE_FILE_DIFF_LINES) -> str:
    lines = diff.rstrip("\n").split("\n")
    if len(lines) <= max_lines:
        return "\n".join(lines)
    return "\n".join([*lines[:max_lines], f"… ({len(lines) - max_lines} more lines)"])


def describe(
    diff: str,
    title: str,
    generate: Callable[[list[str]], list[str]],
    renderer: Renderer,
    max_files: int = DESCRIBE_MAX_FILES,
) -> Description:
    """Describe the pull request whose diff is ``diff``: the model's line per file
    (batched), then its summary. Raises DiffError for a diff that does not parse."""
    files = file_diffs(diff)
    described = files[:max_files]
    prompts = [
        renderer.task("describe-file", PATH=path, DIFF=_cut(text)) for path, text in described
    ]
    answers = generate(prompts) if prompts else []
    per_file: list[tuple[str, str | None]] = [
        (path, one_line(answer)) for (path, _), answer in zip(described, answers, strict=True)
    ]
    per_file += [(path, None) for path, _ in files[max_files:]]
    changes = "\n".join(f"- {path}: {line}" for path, line in per_file if line) or "(none)"
    [summary] = generate([renderer.task("describe", TITLE=title, CHANGES=changes)])
    return Description(summary.strip(), tuple(per_file))
