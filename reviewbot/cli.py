"""The ``reviewbot`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from reviewbot import __version__
from reviewbot.cli_errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    add_inference_arguments,
    inference_arg,
    min_confidence,
)
from reviewbot.jobs.transient import TransientError
from reviewbot.review.units import DiffError
from reviewbot.settings.defaults import (
    DEFAULT_PROFILE,
    DEFAULT_QUANTIZE,
    DELETION_MODES,
    DEMO_MODEL,
    OUTPUT_FORMATS,
    PROFILES,
    PROMPT_FORMATS,
    QUANTIZE_CHOICES,
    QUEUE_INTERACTIVE,
    QUEUE_OUTCOMES,
    QUEUE_REVIEWS,
    WEB_WORKER_TIMEOUT,
    WEB_WORKERS,
    GenerationSettings,
    PlanLimits,
    ReviewOptions,
)

if TYPE_CHECKING:
    from reviewbot.review.findings import Review

log = logging.getLogger("reviewbot")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reviewbot", description="Self-hosted AI code review for pull requests."
    )
    parser.add_argument("--version", action="version", version=f"reviewbot {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument(
        "--env-file",
        default=ENV_FILE,
        metavar="PATH",
        help=f"settings file read by {', '.join(ENV_FILE_COMMANDS)} (default: {ENV_FILE} "
        "in the current directory, if there is one); the environment wins over it",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_review(sub)
    _add_serve(sub)
    _add_worker(sub)
    _add_dead_letters(sub)
    _add_doctor(sub)
    from finetune.cli import register as register_finetune
    from reviewbot.cli_model import register as register_model
    from reviewbot.cli_outcomes import register as register_outcomes
    from reviewbot.cli_setup import register as register_setup

    register_finetune(sub)
    register_setup(sub)
    register_outcomes(sub)
    register_model(sub)
    return parser


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the GitHub webhook server (gunicorn)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=WEB_WORKERS, help="server processes")
    p.add_argument(
        "--timeout",
        type=int,
        default=WEB_WORKER_TIMEOUT,
        help="seconds before a stuck server process is replaced",
    )
    p.set_defaults(func=cmd_serve)


def _add_worker(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="run a review worker (one per GPU)")
    p.add_argument(
        "--queues",
        default=f"{QUEUE_INTERACTIVE},{QUEUE_REVIEWS},{QUEUE_OUTCOMES}",
        help="queues in priority order (default: interactive commands first)",
    )
    p.add_argument("--loglevel", default="INFO")
    p.add_argument("--hostname", default=None, help="Celery node name")
    p.add_argument(
        "--gpus",
        default=None,
        metavar="IDS",
        help="run and supervise one worker per GPU (comma-separated CUDA ids, e.g. 0,1,3): "
        "each with CUDA_VISIBLE_DEVICES set, its own node name and metrics port; a crashed "
        "worker is restarted, one that keeps failing at start is given up",
    )
    p.set_defaults(func=cmd_worker)


def _settings(require: str):
    from reviewbot.settings.server import Settings, SettingsError

    try:
        settings = Settings.from_env()
        return settings.require_web() if require == "web" else settings.require_worker()
    except SettingsError as e:
        raise CliError(str(e), EXIT_USAGE) from e


def cmd_serve(args: argparse.Namespace) -> int:
    from reviewbot.server.app import run_server

    if args.workers < 1 or args.timeout < 1:
        raise CliError("--workers and --timeout must be positive", EXIT_USAGE)
    run_server(_settings("web"), args.host, args.port, workers=args.workers, timeout=args.timeout)
    return EXIT_OK


def worker_argv(
    queues: str, loglevel: str, hostname: str | None = None, quiet: bool = False
) -> list[str]:
    """The ``celery`` arguments of ``reviewbot worker`` (the end-to-end tests run this
    same command).

    The prefork pool with one child: the child loads the model when it starts and then
    runs the jobs (the worker consumes none before: :mod:`worker.readiness`); the
    parent enforces Celery's time limits (the solo pool enforces none), replaces a
    child that died, and has the job redelivered. Prefetch 1: one job at a time.
    Gossip, mingle and heartbeats are off: reviewbot's workers share nothing but the
    queue, and they would only add Redis traffic and startup time. ``quiet``: no
    banner (JSON logs: every line is a JSON object).
    """
    argv = [
        *(["--quiet"] if quiet else []),
        "worker",
        "--pool=prefork",
        "--concurrency=1",
        f"--queues={queues}",
        f"--loglevel={loglevel}",
        "--prefetch-multiplier=1",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    return argv


def cmd_worker(args: argparse.Namespace) -> int:
    """A Celery worker with GPU-safe defaults (see :func:`worker_argv`), or with
    ``--gpus`` one per GPU under a supervisor (:mod:`worker.supervisor`). Exits
    non-zero saying why when the worker cannot start (its model does not load)."""
    from reviewbot.logs import configure as configure_logging

    settings = _settings("worker")  # clear errors before Celery starts
    fmt = configure_logging(service=True)  # again: an env file may have set the format
    if args.gpus is not None:
        return _supervise_gpus(args, settings.metrics_port)
    from worker import readiness
    from worker.app import app

    app.start(worker_argv(args.queues, args.loglevel, args.hostname, fmt == "json"))
    if fmt != "json":  # Celery left its log proxies on stdout/stderr (JSON: keep them)
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    code = readiness.exit_code or EXIT_OK  # Celery's app.start does not return it
    if code:
        raise CliError(readiness.failure or f"the worker stopped with exit code {code}", code)
    return EXIT_OK


def _supervise_gpus(args: argparse.Namespace, metrics_port: int) -> int:
    """``reviewbot worker --gpus``: one ``reviewbot worker`` per GPU, supervised."""
    from worker.supervisor import Supervisor, gpu_workers, parse_gpus

    command = [sys.executable, "-m", "reviewbot.cli", *(["-v"] * args.verbose), "worker"]
    command += [f"--queues={args.queues}", f"--loglevel={args.loglevel}"]
    try:
        gpus = parse_gpus(args.gpus)
        specs = gpu_workers(gpus, command, args.hostname, metrics_port, os.environ)
    except ValueError as e:
        raise CliError(str(e), EXIT_USAGE) from e
    supervisor = Supervisor(specs)
    code = supervisor.run()
    if supervisor.gave_up:
        raise CliError(supervisor.gave_up, code or EXIT_FAILURE)
    return code


def _add_doctor(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="check the settings, Redis, the GitHub App, the model, its memory and adapters",
        description="Checks this deployment's settings (the environment and --env-file), "
        "Redis, the GitHub App's credentials, the model and its memory need, bitsandbytes "
        "and every adapter: one line each, ✓ or ✗ with the fix. Exit code 1 on any ✗.",
    )
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from reviewbot.doctor.probes import run_checks
    from reviewbot.doctor.report import healthy, render

    checks = run_checks(os.environ)
    print(render(checks))
    return EXIT_OK if healthy(checks) else EXIT_FAILURE


def _add_dead_letters(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dead-letters",
        help="jobs given up after failing or killing their worker too often: list, requeue",
    )
    actions = p.add_subparsers(dest="action", required=True)
    ls = actions.add_parser("list", help="list the dead letters, oldest first")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(func=cmd_dead_letters_list)
    rq = actions.add_parser(
        "requeue", help="put dead letters back on their queue, their attempt count reset"
    )
    rq.add_argument("keys", nargs="*", metavar="KEY", help="job keys (as listed)")
    rq.add_argument("--all", action="store_true", help="requeue every dead letter")
    rq.set_defaults(func=cmd_dead_letters_requeue)


def _dead_letters():
    """(settings, the dead letters in the queue's Redis) for the dead-letters commands."""
    import redis

    from reviewbot.settings.defaults import REDIS_CONNECT_TIMEOUT, REDIS_SOCKET_TIMEOUT
    from reviewbot.settings.server import Settings, SettingsError
    from worker.deadletters import DeadLetters

    try:
        settings = Settings.from_env()
    except SettingsError as e:
        raise CliError(str(e), EXIT_USAGE) from e
    client = redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
        socket_timeout=REDIS_SOCKET_TIMEOUT,
    )
    return settings, DeadLetters(client)


def _redis_error(url: str, e: Exception) -> CliError:
    from reviewbot.settings.server import redact_url

    return CliError(f"cannot use Redis at {redact_url(url)}: {e}")


def cmd_dead_letters_list(args: argparse.Namespace) -> int:
    import json
    from datetime import UTC, datetime

    import redis

    settings, letters = _dead_letters()
    try:
        found = letters.letters()
    except redis.RedisError as e:
        raise _redis_error(settings.redis_url, e) from e
    for d in found:
        if args.json:
            print(json.dumps(d.to_dict()))
        else:
            when = datetime.fromtimestamp(d.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            print(f"{d.job.key}\t{when}\t{d.attempts} attempts\t{d.reason}")
    if not found and not args.json:
        print("no dead letters", file=sys.stderr)
    return EXIT_OK


def cmd_dead_letters_requeue(args: argparse.Namespace) -> int:
    import redis
    from kombu.exceptions import OperationalError

    from reviewbot.server.queue import CeleryEnqueuer
    from worker.deadletters import DeadLetterError

    if args.all == bool(args.keys):
        raise CliError("name the job keys to requeue, or --all (not both)", EXIT_USAGE)
    settings, letters = _dead_letters()
    code = EXIT_OK
    try:
        keys = [d.job.key for d in letters.letters()] if args.all else args.keys
        enqueue = CeleryEnqueuer(settings.redis_url)
        for key in keys:
            try:
                job = letters.requeue(key, enqueue)
            except DeadLetterError as e:
                print(f"reviewbot: error: {e}", file=sys.stderr)
                code = EXIT_FAILURE
            else:
                print(f"requeued {job.key} on the {job.queue} queue")
    except (redis.RedisError, OperationalError) as e:
        raise _redis_error(settings.redis_url, e) from e
    return code


def _add_review(sub: argparse._SubParsersAction) -> None:
    gen = GenerationSettings()
    p = sub.add_parser("review", help="review a unified diff")
    src = p.add_mutually_exclusive_group()
    src.add_argument("diff", nargs="?", help="diff file, or - for standard input (default)")
    src.add_argument("--git", metavar="BASE..HEAD", help="review `git diff BASE..HEAD` here")
    p.add_argument("--model", default=None, help=f"HF id or local dir (default: {DEMO_MODEL})")
    p.add_argument("--adapter", default=None, help="peft LoRA adapter directory")
    p.add_argument(
        "--prompt-format",
        choices=PROMPT_FORMATS,
        default=None,
        help="default: the adapter's, else chat if the tokenizer has a template, else alpaca",
    )
    p.add_argument("--revise", action="store_true", help="propose ```suggestion revisions")
    p.add_argument("--summary", action="store_true", help="summarise the flaws found")
    p.add_argument("--quantize", choices=QUANTIZE_CHOICES, default=DEFAULT_QUANTIZE)
    p.add_argument("--max-new-tokens", type=int, default=gen.max_new_tokens)
    p.add_argument("--batch-size", type=int, default=gen.batch_size)
    add_inference_arguments(p)
    p.add_argument("--format", choices=OUTPUT_FORMATS, default=OUTPUT_FORMATS[0])
    p.add_argument("--dry-run", action="store_true", help="plan only; no model is loaded")
    p.add_argument(
        "--deletions",
        choices=DELETION_MODES,
        default=PlanLimits().deletions,
        help="pure-deletion hunks: skip them, or review them on the old (LEFT) side",
    )
    p.add_argument("--include", action="append", default=[], metavar="GLOB")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB")
    p.add_argument(
        "--profile",
        choices=tuple(PROFILES),
        default=DEFAULT_PROFILE,
        help="how sure a finding must be to be shown: "
        + ", ".join(f"{name} (confidence >= {value:g})" for name, value in PROFILES.items())
        + f"; default {DEFAULT_PROFILE}, as in a repository without a profile",
    )
    p.add_argument(
        "--min-confidence",
        type=float,
        default=None,
        metavar="X",
        help="the least confidence (0..1) a finding needs, instead of the profile's",
    )
    from reviewbot.cli_post import add_post_arguments

    add_post_arguments(p)
    p.set_defaults(func=cmd_review)


def read_diff(args: argparse.Namespace) -> str:
    """The diff text from --git, a file, or standard input."""
    if args.git:
        from reviewbot.review.diffplan import git_diff_args

        if ".." not in args.git:
            raise CliError(f"--git expects BASE..HEAD, got {args.git!r}", EXIT_USAGE)
        try:
            proc = subprocess.run(git_diff_args(args.git), capture_output=True, check=False)
        except FileNotFoundError as e:
            raise CliError("git is not installed or not on PATH") from e
        if proc.returncode != 0:
            msg = proc.stderr.decode(errors="replace").strip()
            raise CliError(f"git diff {args.git} failed: {msg}", EXIT_USAGE)
        data = proc.stdout
    elif args.diff in (None, "-"):
        data = sys.stdin.buffer.read()
    else:
        try:
            data = Path(args.diff).read_bytes()
        except OSError as e:
            raise CliError(f"cannot read {args.diff}: {e.strerror}", EXIT_USAGE) from e
    text = data.decode("utf-8", errors="replace")
    if "\ufffd" in text and b"\xef\xbf\xbd" not in data:
        log.warning("the diff is not valid UTF-8; undecodable bytes were replaced")
    return text


def git_file_reader(rev_range: str) -> Callable[[str], str | None]:
    """A file's text at the head of ``BASE..HEAD`` (``git cat-file blob HEAD:path``), for
    parsing suggestions with the whole file; None (logged) when git cannot give it."""
    head = rev_range.split("..", 1)[1].lstrip(".") or "HEAD"

    def read(path: str) -> str | None:
        if head.startswith("-"):
            return None
        proc = subprocess.run(
            ["git", "cat-file", "blob", f"{head}:{path}"], capture_output=True, check=False
        )
        if proc.returncode != 0:
            msg = proc.stderr.decode(errors="replace").strip()
            log.info(
                "cannot read %s at %s (%s): its suggestions are parsed hunk only", path, head, msg
            )
            return None
        return proc.stdout.decode("utf-8", errors="replace")

    return read


def _machine_output(review: Review, fmt: str) -> str:
    """The review for other tools: rdjson (reviewdog) or SARIF (code scanning)."""
    from reviewbot.learning.records import category_of
    from reviewbot.review.formats import review_rdjson, review_sarif

    return review_rdjson(review) if fmt == "rdjson" else review_sarif(review, category_of)


def cmd_review(args: argparse.Namespace) -> int:
    if args.post:  # post to the pull request through the App's review runner
        from reviewbot.cli_post import cmd_post

        return cmd_post(args)
    from reviewbot.review.diffplan import plan_diff
    from reviewbot.review.findings import Review
    from reviewbot.review.render import plan_json, plan_markdown, review_json, review_markdown

    threshold = min_confidence(args)
    inference = inference_arg(args)
    base = PlanLimits()
    limits = PlanLimits(
        deletions=args.deletions,
        include_globs=tuple(args.include),
        exclude_globs=base.exclude_globs + tuple(args.exclude),
    )
    try:
        plan = plan_diff(read_diff(args), limits)
    except DiffError as e:
        raise CliError(str(e), EXIT_USAGE) from e
    if args.dry_run:
        if args.format in ("rdjson", "sarif"):  # a review without findings: a valid document
            out = _machine_output(Review(plan.units, (), None, plan.skipped), args.format)
        else:
            out = plan_json(plan) if args.format == "json" else plan_markdown(plan)
        sys.stdout.write(out)
        return EXIT_OK
    if args.max_new_tokens < 1 or args.batch_size < 1:
        raise CliError("--max-new-tokens and --batch-size must be positive", EXIT_USAGE)

    from reviewbot.model.serving import load_engine
    from reviewbot.review.pipeline import review_plan
    from reviewbot.runners.ports import rating

    if plan.units:
        settings = GenerationSettings(
            max_new_tokens=args.max_new_tokens, batch_size=args.batch_size
        )
        try:
            engine = load_engine(
                args.model,
                adapter=args.adapter,
                quantize=args.quantize,
                prompt_format=args.prompt_format,
                settings=settings,
                inference=inference,
            )
        except (OSError, ValueError, ImportError, TransientError) as e:
            raise CliError(f"cannot load model: {e}") from e
        log.info(
            "model %s on %s (%s), prompt format %s",
            engine.model_name,
            engine.device,
            "4-bit NF4" if engine.quantized else "full precision",
            engine.prompt_format,
        )
        log.info("reviewing %d unit(s)", len(plan.units))
        options = ReviewOptions(revise=args.revise, summary=args.summary, min_confidence=threshold)
        try:
            score, options = rating(engine, options)
            review = review_plan(
                plan,
                lambda ps: engine.generate(ps, progress=True),
                engine.renderer,
                options,
                score=score,
                read_file=git_file_reader(args.git) if args.git else None,
            )
        except (TransientError, OSError) as e:  # the inference server failed
            raise CliError(f"generation failed: {e}") from e
    else:
        log.info("nothing to review: the diff has no reviewable hunks")
        review = Review((), (), None, plan.skipped)
    if args.format in ("rdjson", "sarif"):
        sys.stdout.write(_machine_output(review, args.format))
        return EXIT_OK
    sys.stdout.write(review_json(review) if args.format == "json" else review_markdown(review))
    return EXIT_OK


#: The settings file the service commands read (python-dotenv syntax, written by
#: ``reviewbot setup``).
ENV_FILE = ".env"
#: The commands that read it.
ENV_FILE_COMMANDS: tuple[str, ...] = (
    "setup",
    "doctor",
    "serve",
    "worker",
    "beat",
    "outcomes",
    "stats",
    "model",
)


def load_env_file(path: str, explicit: bool) -> Path | None:
    """Read ``path`` (``KEY=VALUE`` lines) into the environment, never over a variable
    the environment already has. A missing default file is no error; a missing file
    named with ``--env-file`` is. Returns the file read, or None."""
    from dotenv import dotenv_values

    file = Path(path)
    if not file.is_file():
        if explicit:
            raise CliError(f"--env-file {path}: no such file", EXIT_USAGE)
        return None
    try:
        values = dotenv_values(file, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"cannot read {path}: {e}", EXIT_USAGE) from e
    added = [k for k, v in values.items() if v is not None and k not in os.environ]
    for key in added:
        os.environ[key] = values[key]  # type: ignore[assignment]
    log.info("read %d setting(s) from %s (the environment's own win)", len(added), file)
    return file


#: Libraries of the optional roles (pyproject's extras) → the extra that installs them.
_EXTRA_OF: dict[str, str] = {
    **dict.fromkeys(
        ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "gguf", "tokenizers"),
        "worker",
    ),
    "datasets": "finetune",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose + 1, 2)
    # Services log with a timestamp and the process (a worker's job runs in its child);
    # REVIEWBOT_LOG_FORMAT=json: one JSON object per line, in every process.
    from reviewbot.logs import configure as configure_logging

    configure_logging(level, service=args.command in ("serve", "worker"))
    try:
        if args.command in ENV_FILE_COMMANDS:
            # setup writes the file: that it does not exist yet is no error there
            named = args.env_file != ENV_FILE and args.command != "setup"
            load_env_file(args.env_file, explicit=named)
        return args.func(args)
    except CliError as e:
        print(f"reviewbot: error: {e}", file=sys.stderr)
        return e.code
    except ImportError as e:
        extra = _EXTRA_OF.get((e.name or "").split(".")[0])
        if extra is None:
            raise
        print(
            f"reviewbot: error: `reviewbot {args.command}` needs {e.name}, which this "
            f"installation lacks (a web-only install?): pip install 'reviewbot[{extra}]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("reviewbot: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
