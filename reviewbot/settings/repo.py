"""A repository's own settings, from ``.github/reviewbot.toml`` (pure): the top layer.

The file is read from the repository's default branch (so a pull request cannot
change how it is itself reviewed). Every key is optional; top-level keys only::

    include = ["src/*", "*.py"]      # if set, only paths matching one glob are reviewed
    exclude = ["docs/*"]             # added to the built-in lockfile/vendored/generated list
    max_comments = 20                # inline comments per review; the rest go in the body
    revise = true                    # propose revisions (```suggestion blocks)
    summary = false                  # add a summary of the flaws to the review body
    drafts = false                   # review draft pull requests too (unset: the server's
                                     # REVIEWBOT_REVIEW_DRAFTS, default false)
    extra_instructions = "We target Python 3.9."
    adapter = "python-reviews"       # a LoRA adapter the server knows by this name
    deletions = "skip"               # pure-deletion hunks: "skip" (listed) or "left"
    unauthorized = "reply"           # model commands from users without write access:
                                     # "reply" (once per user and PR) or "ignore"
    profile = "chill"                # or "assertive": how sure a finding must be to be posted
    min_confidence = 0.6             # instead of the profile's threshold (0..1)
    unparsable_suggestions = "plain" # a suggestion that does not parse: "plain" or "drop"
    changed_lines = true             # show the model which lines the pull request changed
    priority = ["src/core/**"]       # reviewed first when the unit budget runs out
    path_instructions = [{ path = "src/api/**", instructions = "Check input validation." }]
    response_language = "de"         # the language reviewbot writes in
    suppress_rejected = true         # never post again what the team rejected here
    auto_review = true               # review pull requests automatically (commands always work)
    ignore_title_patterns = ["WIP*"] # no automatic review when the title matches (globs,
    ignore_labels = ["no-review"]    #   case-insensitive), a label is one of these, the
    ignore_authors = ["dependabot[bot]"] # author is one of these, or the head branch
    ignore_branches = ["release/*"]  #   matches (globs)
    describe = "comment"             # /describe posts a comment, or "body": the PR body
    describe_on_open = false         # describe every pull request when it is opened

Globs are :func:`fnmatch.fnmatch` patterns over the repository-relative path
(``*`` also matches ``/``). Anything else — invalid TOML, an unknown key, a wrong
type or value — raises :class:`RepoConfigError` with a message naming the key,
meant to be shown to the repository's users in the review or check run.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass, fields, replace
from typing import Any

from reviewbot.settings.defaults import (
    ADAPTER_NAME_PATTERN,
    DEFAULT_EXCLUDES,
    DEFAULT_PROFILE,
    DELETION_MODES,
    DESCRIBE_MODES,
    MAX_COMMENTS_LIMIT,
    MAX_EXTRA_INSTRUCTIONS_CHARS,
    MAX_PATH_INSTRUCTIONS,
    MAX_REPO_CONFIG_BYTES,
    MAX_REPO_GLOBS,
    PROFILES,
    REPO_CONFIG_PATH,
    REVIEW_DRAFTS,
    SERVER_REVIEW_DEFAULTS,
    UNAUTHORIZED_MODES,
    UNPARSABLE_MODES,
    DeletionMode,
    PlanLimits,
    ReviewOptions,
)

_ADAPTER_NAME = re.compile(ADAPTER_NAME_PATTERN)
#: A language for replies: a code (de, pt-BR) or a name (German), letters first.
_LANGUAGE = re.compile(r"[A-Za-z][A-Za-z -]{1,39}")
_DEFAULT_OPTIONS = ReviewOptions()
_DEFAULT_LIMITS = PlanLimits()


class RepoConfigError(ValueError):
    """An invalid ``.github/reviewbot.toml``; the message is safe to show to users."""

    user_facing = True

    def __init__(self, message: str, key: str | None = None) -> None:
        self.key = key
        super().__init__(f"{REPO_CONFIG_PATH}: {message}")


@dataclass(frozen=True)
class RepoConfig:
    """The effective per-repository settings (defaults from :mod:`reviewbot.settings.defaults`)."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_comments: int = _DEFAULT_OPTIONS.max_comments
    revise: bool = _DEFAULT_OPTIONS.revise
    summary: bool = _DEFAULT_OPTIONS.summary
    drafts: bool | None = None
    """Review draft pull requests; None (unset): the server's default (:meth:`reviews_drafts`)."""
    extra_instructions: str = ""
    adapter: str | None = None
    deletions: DeletionMode = _DEFAULT_LIMITS.deletions
    unauthorized: str = UNAUTHORIZED_MODES[0]
    profile: str | None = None
    """None (unset): the server's default profile (REVIEWBOT_PROFILE, default chill)."""
    min_confidence: float | None = None
    """Overrides the profile's threshold when set."""
    unparsable_suggestions: str = UNPARSABLE_MODES[0]
    changed_lines: bool | None = None
    """None (unset): the server's default (on unless REVIEWBOT_CHANGED_LINES says no)."""
    priority: tuple[str, ...] = ()
    path_instructions: tuple[tuple[str, str], ...] = ()
    response_language: str = ""
    suppress_rejected: bool = True
    """Findings the team rejected in this repository are not posted again."""
    auto_review: bool = True
    """Review pull requests automatically (on open and push); commands work either way."""
    ignore_title_patterns: tuple[str, ...] = ()
    ignore_labels: tuple[str, ...] = ()
    ignore_authors: tuple[str, ...] = ()
    ignore_branches: tuple[str, ...] = ()
    describe: str = DESCRIBE_MODES[0]
    describe_on_open: bool = False

    def ignore_reason(
        self, title: str, labels: tuple[str, ...], author: str, branch: str
    ) -> str | None:
        """Why a pull request gets no automatic review here (None: it does).

        Titles and branches are matched with case-insensitive globs, labels and authors
        by name (case-insensitively, as GitHub compares them).
        """
        if not self.auto_review:
            return "automatic reviews are off here (`auto_review = false`)"
        lowered = title.lower()
        for pattern in self.ignore_title_patterns:
            if fnmatch.fnmatchcase(lowered, pattern.lower()):
                return f"its title matches `ignore_title_patterns` ({pattern!r})"
        have = {label.lower() for label in labels}
        for label in self.ignore_labels:
            if label.lower() in have:
                return f"it is labelled {label!r} (`ignore_labels`)"
        if author.lower() in {a.lower() for a in self.ignore_authors}:
            return f"its author {author!r} is in `ignore_authors`"
        for pattern in self.ignore_branches:
            if branch and fnmatch.fnmatchcase(branch.lower(), pattern.lower()):
                return f"its branch matches `ignore_branches` ({pattern!r})"
        return None

    def reviews_drafts(self, server_default: bool = REVIEW_DRAFTS) -> bool:
        """Whether draft pull requests are reviewed: the repository's say, else the server's."""
        return server_default if self.drafts is None else self.drafts

    def plan_limits(self, base: PlanLimits = _DEFAULT_LIMITS) -> PlanLimits:
        """``base`` with this repository's globs (excludes add to the built-in ones)."""
        return replace(
            base,
            exclude_globs=base.exclude_globs + self.exclude,
            include_globs=self.include,
            deletions=self.deletions,
            priority_globs=self.priority,
        )

    @property
    def confidence_threshold(self) -> float | None:
        """The least confidence a finding needs: ``min_confidence``, else the profile's;
        None when the repository says neither (the server's default holds)."""
        if self.min_confidence is not None:
            return self.min_confidence
        return PROFILES[self.profile] if self.profile is not None else None

    def review_options(self, base: ReviewOptions = SERVER_REVIEW_DEFAULTS) -> ReviewOptions:
        """``base`` (the server's defaults) with this repository's settings of what a
        review produces."""
        threshold = self.confidence_threshold
        return replace(
            base,
            revise=self.revise,
            summary=self.summary,
            max_comments=self.max_comments,
            extra_instructions=self.extra_instructions,
            path_instructions=self.path_instructions,
            response_language=self.response_language,
            changed_lines=base.changed_lines if self.changed_lines is None else self.changed_lines,
            min_confidence=base.min_confidence if threshold is None else threshold,
            unparsable=self.unparsable_suggestions,
        )

    def to_toml_summary(self, server_drafts: bool = REVIEW_DRAFTS) -> str:
        """The effective configuration as short TOML-like lines (for /help)."""
        lines = [
            f"include = {_toml_list(self.include)}"
            + ("  # every path" if not self.include else ""),
            f"exclude = {_toml_list(self.exclude)}"
            + f"  # plus {len(DEFAULT_EXCLUDES)} built-in lockfile/vendored/generated patterns",
            f"max_comments = {self.max_comments}",
            f"revise = {_toml_bool(self.revise)}",
            f"summary = {_toml_bool(self.summary)}",
            f"drafts = {_toml_bool(self.drafts)}"
            if self.drafts is not None
            else f"# drafts = {_toml_bool(server_drafts)}  (unset: the server's default)",
            f"deletions = {_toml_str(self.deletions)}",
            f"adapter = {_toml_str(self.adapter)}"
            if self.adapter
            else 'adapter = ""  # the server\'s default model',
            f"extra_instructions = {_toml_str(self.extra_instructions)}",
            f"unauthorized = {_toml_str(self.unauthorized)}",
            f"profile = {_toml_str(self.profile)}"
            if self.profile is not None
            else f"# profile = {_toml_str(DEFAULT_PROFILE)}  (unset: the server's default)",
            f"min_confidence = {self.min_confidence}"
            if self.min_confidence is not None
            else "# min_confidence  (unset: the profile's)",
            f"unparsable_suggestions = {_toml_str(self.unparsable_suggestions)}",
            f"changed_lines = {_toml_bool(self.changed_lines)}"
            if self.changed_lines is not None
            else "# changed_lines = true  (unset: the server's default)",
            f"priority = {_toml_list(self.priority)}",
            "path_instructions = ["
            + ", ".join(
                f"{{ path = {_toml_str(p)}, instructions = {_toml_str(i)} }}"
                for p, i in self.path_instructions
            )
            + "]",
            f"response_language = {_toml_str(self.response_language)}",
            f"suppress_rejected = {_toml_bool(self.suppress_rejected)}",
            f"auto_review = {_toml_bool(self.auto_review)}",
            f"ignore_title_patterns = {_toml_list(self.ignore_title_patterns)}",
            f"ignore_labels = {_toml_list(self.ignore_labels)}",
            f"ignore_authors = {_toml_list(self.ignore_authors)}",
            f"ignore_branches = {_toml_list(self.ignore_branches)}",
            f"describe = {_toml_str(self.describe)}",
            f"describe_on_open = {_toml_bool(self.describe_on_open)}",
        ]
        return "\n".join(lines)


KNOWN_KEYS: tuple[str, ...] = tuple(f.name for f in fields(RepoConfig))


def parse_repo_config(text: str | None) -> RepoConfig:
    """Parse the file's text; ``None`` (no file) gives the defaults."""
    if text is None:
        return RepoConfig()
    if len(text.encode("utf-8", "replace")) > MAX_REPO_CONFIG_BYTES:
        raise RepoConfigError(f"file is larger than {MAX_REPO_CONFIG_BYTES} bytes")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RepoConfigError(f"not valid TOML: {e}") from None
    unknown = [k for k in data if k not in KNOWN_KEYS]
    if unknown:
        raise RepoConfigError(_unknown_key_message(unknown[0]), unknown[0])
    values: dict[str, Any] = {}
    for key, value in data.items():
        values[key] = _PARSERS[key](key, value)
    return RepoConfig(**values)


def _unknown_key_message(key: str) -> str:
    close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key {key!r}{hint} (known keys: {', '.join(KNOWN_KEYS)})"


def _describe(value: Any) -> str:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{shown} ({type(value).__name__})"


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise RepoConfigError(f"{key} must be true or false, got {_describe(value)}", key)
    return value


def _max_comments(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RepoConfigError(f"{key} must be an integer, got {_describe(value)}", key)
    if not 0 <= value <= MAX_COMMENTS_LIMIT:
        raise RepoConfigError(f"{key} must be between 0 and {MAX_COMMENTS_LIMIT}, got {value}", key)
    return value


def _globs(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise RepoConfigError(
            f'{key} must be a list of path globs such as ["src/*"], got {_describe(value)}',
            key,
        )
    if len(value) > MAX_REPO_GLOBS:
        raise RepoConfigError(f"{key} has {len(value)} globs; at most {MAX_REPO_GLOBS}", key)
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise RepoConfigError(
                f"{key}[{i}] must be a non-empty string glob, got {_describe(item)}", key
            )
    return tuple(value)


def _names(key: str, value: Any) -> tuple[str, ...]:
    """A list of short names or title globs (labels, logins, title patterns)."""
    if not isinstance(value, list):
        raise RepoConfigError(f"{key} must be a list of strings, got {_describe(value)}", key)
    if len(value) > MAX_REPO_GLOBS:
        raise RepoConfigError(f"{key} has {len(value)} entries; at most {MAX_REPO_GLOBS}", key)
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip() or len(item) > 200:
            raise RepoConfigError(
                f"{key}[{i}] must be a non-empty string of at most 200 characters, "
                f"got {_describe(item)}",
                key,
            )
    return tuple(item.strip() for item in value)


def _extra_instructions(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise RepoConfigError(f"{key} must be a string, got {_describe(value)}", key)
    if len(value) > MAX_EXTRA_INSTRUCTIONS_CHARS:
        raise RepoConfigError(
            f"{key} is {len(value)} characters long; at most {MAX_EXTRA_INSTRUCTIONS_CHARS}",
            key,
        )
    return value.strip()


def _adapter(key: str, value: Any) -> str | None:
    if not isinstance(value, str):
        raise RepoConfigError(
            f"{key} must be a string (an adapter name), got {_describe(value)}", key
        )
    if value == "":
        return None
    if not _ADAPTER_NAME.fullmatch(value):
        raise RepoConfigError(
            f"{key} must be an adapter name (letters, digits, '.', '_', '-'; not a path), "
            f"got {value!r}",
            key,
        )
    return value


def _deletions(key: str, value: Any) -> DeletionMode:
    if not isinstance(value, str) or value not in DELETION_MODES:
        choices = " or ".join(repr(m) for m in DELETION_MODES)
        raise RepoConfigError(f"{key} must be {choices}, got {_describe(value)}", key)
    return value  # type: ignore[return-value]


def _unauthorized(key: str, value: Any) -> str:
    if not isinstance(value, str) or value not in UNAUTHORIZED_MODES:
        choices = " or ".join(repr(m) for m in UNAUTHORIZED_MODES)
        raise RepoConfigError(f"{key} must be {choices}, got {_describe(value)}", key)
    return value


def _choice(choices: tuple[str, ...]) -> Any:
    def parse(key: str, value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise RepoConfigError(
                f"{key} must be {' or '.join(repr(c) for c in choices)}, got {_describe(value)}",
                key,
            )
        return value

    return parse


def _confidence(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RepoConfigError(
            f"{key} must be a number between 0 and 1, got {_describe(value)}", key
        )
    if not 0.0 <= float(value) <= 1.0:
        raise RepoConfigError(f"{key} must be between 0 and 1, got {value}", key)
    return float(value)


def _path_instructions(key: str, value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        raise RepoConfigError(
            f'{key} must be a list of {{ path = "glob", instructions = "..." }} tables, '
            f"got {_describe(value)}",
            key,
        )
    if len(value) > MAX_PATH_INSTRUCTIONS:
        raise RepoConfigError(
            f"{key} has {len(value)} entries; at most {MAX_PATH_INSTRUCTIONS}", key
        )
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != {"path", "instructions"}:
            raise RepoConfigError(
                f"{key}[{i}] must be a table with exactly the keys path and instructions, "
                f"got {_describe(item)}",
                key,
            )
        path = _globs(f"{key}[{i}].path", [item["path"]])[0]
        text = _extra_instructions(f"{key}[{i}].instructions", item["instructions"])
        out.append((path, text))
    return tuple(out)


def _language(key: str, value: Any) -> str:
    if value == "":
        return ""  # the model's own choice
    if not isinstance(value, str) or not _LANGUAGE.fullmatch(value):
        raise RepoConfigError(
            f'{key} must be a language code or name such as "de" or "pt-BR", '
            f"got {_describe(value)}",
            key,
        )
    return value


_PARSERS: dict[str, Any] = {
    "include": _globs,
    "exclude": _globs,
    "max_comments": _max_comments,
    "revise": _bool,
    "summary": _bool,
    "drafts": _bool,
    "extra_instructions": _extra_instructions,
    "adapter": _adapter,
    "deletions": _deletions,
    "unauthorized": _unauthorized,
    "profile": _choice(tuple(PROFILES)),
    "min_confidence": _confidence,
    "unparsable_suggestions": _choice(UNPARSABLE_MODES),
    "changed_lines": _bool,
    "priority": _globs,
    "path_instructions": _path_instructions,
    "response_language": _language,
    "suppress_rejected": _bool,
    "auto_review": _bool,
    "ignore_title_patterns": _names,
    "ignore_labels": _names,
    "ignore_authors": _names,
    "ignore_branches": _globs,
    "describe": _choice(DESCRIBE_MODES),
    "describe_on_open": _bool,
}


def _toml_str(value: str | None) -> str:
    """A TOML basic string (JSON's escapes are all valid TOML escapes)."""
    return json.dumps(value or "", ensure_ascii=False)


def _toml_bool(value: bool) -> str:
    return "true" if value else "false"


def _toml_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(_toml_str(v) for v in values) + "]"
