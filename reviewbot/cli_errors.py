"""What the ``reviewbot`` and ``reviewbot finetune`` command lines share: exit codes,
the error that carries one (printed without a traceback), and the argument readers
several commands use (dates, repositories, the confidence threshold)."""

from __future__ import annotations

import argparse
import os
import re
from datetime import UTC, datetime

from reviewbot.settings.defaults import PROFILES, InferenceSettings

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A user-facing error: printed without a traceback, exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


#: ``OWNER/REPO`` as a command line takes it.
REPO_PATTERN = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


def date_arg(text: str) -> datetime:
    """A ``--since``/``--until`` value: YYYY-MM-DD or ISO 8601 (UTC unless it says)."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def repo_arg(text: str) -> str:
    """``text`` if it names a repository (OWNER/REPO), else a usage error."""
    if not REPO_PATTERN.fullmatch(text):
        raise CliError(f"not a repository (OWNER/REPO): {text!r}", EXIT_USAGE)
    return text


def min_confidence(args: argparse.Namespace) -> float:
    """The confidence threshold of ``--min-confidence``, else of ``--profile``."""
    if args.min_confidence is None:
        return PROFILES[args.profile]
    if not 0.0 <= args.min_confidence <= 1.0:
        raise CliError(
            f"--min-confidence must be between 0 and 1, got {args.min_confidence:g}", EXIT_USAGE
        )
    return args.min_confidence


def add_inference_arguments(p: argparse.ArgumentParser) -> None:
    """``--inference-url``/``--inference-model``: generate with an OpenAI-compatible server
    (defaults: REVIEWBOT_INFERENCE_URL/MODEL; the key only from REVIEWBOT_INFERENCE_API_KEY)."""
    p.add_argument(
        "--inference-url",
        default=None,
        metavar="URL",
        help="generate with this OpenAI-compatible server (e.g. http://127.0.0.1:8000/v1; "
        "default: REVIEWBOT_INFERENCE_URL) instead of loading the model; --model then names "
        "the model it serves (for its tokenizer), --adapter a served name (served:NAME)",
    )
    p.add_argument(
        "--inference-model",
        default=None,
        metavar="NAME",
        help="the served model name (default: REVIEWBOT_INFERENCE_MODEL, else the server's one)",
    )


def inference_arg(args: argparse.Namespace) -> InferenceSettings | None:
    """The inference server the command line names (its options over the
    ``REVIEWBOT_INFERENCE_*`` variables, read by the settings' own rules), or None (load
    the model here)."""
    from reviewbot.settings.server import (
        INFERENCE_MODEL,
        INFERENCE_URL,
        SettingsError,
        inference_from_env,
    )

    environ = dict(os.environ)
    if getattr(args, "inference_url", None):
        environ[INFERENCE_URL] = args.inference_url
    if getattr(args, "inference_model", None):
        environ[INFERENCE_MODEL] = args.inference_model
    try:
        return inference_from_env(environ)
    except SettingsError as e:
        raise CliError("; ".join(e.problems), EXIT_USAGE) from None
