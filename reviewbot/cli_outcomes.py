"""``reviewbot beat``, ``reviewbot outcomes refresh`` and ``reviewbot stats``: what
became of the findings reviewbot posted, on a schedule and on demand, and the figures."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from reviewbot.cli_errors import EXIT_OK, EXIT_USAGE, CliError, date_arg, repo_arg
from reviewbot.settings.defaults import CACHE_ENV, DEFAULT_CACHE_DIR

#: Celery beat's schedule file (when each entry last ran), under the cache dir.
BEAT_SCHEDULE_FILE = "celerybeat-schedule"


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``beat``, ``outcomes`` and ``stats`` to the ``reviewbot`` parser."""
    p = sub.add_parser(
        "beat",
        help="run the scheduler that refreshes the outcomes of posted findings (Celery beat)",
        description="Celery beat: every REVIEWBOT_OUTCOME_REFRESH_SECONDS (default 3600) it "
        "queues one outcome refresh per installation with findings whose outcome is not "
        "settled; `reviewbot worker`s run them (queue `outcomes`). Run exactly one.",
    )
    p.add_argument("--loglevel", default="INFO")
    p.add_argument(
        "--schedule",
        default=None,
        metavar="PATH",
        help=f"beat's schedule file (default: {BEAT_SCHEDULE_FILE} in the cache dir)",
    )
    p.set_defaults(func=cmd_beat)

    p = sub.add_parser("outcomes", help="what became of the findings reviewbot posted")
    actions = p.add_subparsers(dest="action", required=True)
    r = actions.add_parser(
        "refresh",
        help="label a repository's posted findings now (accepted / rejected / unknown)",
        description="Read from GitHub, as the App's installation, what the team did with "
        "each finding reviewbot posted on OWNER/REPO (reactions, replies, resolved threads, "
        "later commits) and store the labels.",
    )
    r.add_argument("repo", metavar="OWNER/REPO")
    r.add_argument(
        "--max-requests",
        type=int,
        default=None,
        metavar="N",
        help="GitHub requests at most (default: REVIEWBOT_OUTCOME_MAX_REQUESTS)",
    )
    r.add_argument(
        "--installation",
        type=int,
        default=None,
        metavar="ID",
        help="the App's installation on the repository (default: as recorded)",
    )
    r.set_defaults(func=cmd_outcomes_refresh)

    p = sub.add_parser(
        "stats",
        help="acceptance figures of reviewbot's findings on a repository",
        description="Comments posted, accepted / rejected / unknown, and the acceptance "
        "rate (accepted of decided) overall and by category, path, adapter, confidence "
        "bucket and week. Run `reviewbot outcomes refresh` first for current labels.",
    )
    p.add_argument("repo", metavar="OWNER/REPO")
    p.add_argument(
        "--since",
        type=date_arg,
        default=None,
        metavar="DATE",
        help="findings posted on or after (YYYY-MM-DD)",
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument(
        "--glob",
        action="append",
        default=[],
        metavar="PATTERN",
        help="path groups, first match wins (repeatable; default: top-level dirs)",
    )
    p.set_defaults(func=cmd_stats)


def _server_settings():
    from reviewbot.settings.server import Settings, SettingsError

    try:
        return Settings.from_env()
    except SettingsError as e:
        raise CliError(str(e), EXIT_USAGE) from e


def _open_store(url: str | None):
    from reviewbot.learning.records import StoreError
    from reviewbot.store.sql import SqlFindingStore

    try:
        return SqlFindingStore.open(url)
    except StoreError as e:
        raise CliError(f"findings database: {e}") from e


def cmd_beat(args: argparse.Namespace) -> int:
    """Celery beat with reviewbot's schedule (:mod:`worker.app`)."""
    settings = _server_settings()
    schedule = Path(
        args.schedule
        or Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR).expanduser() / BEAT_SCHEDULE_FILE
    )
    schedule.parent.mkdir(parents=True, exist_ok=True)
    from reviewbot.logs import configure as configure_logging

    configure_logging(service=True)
    from worker.app import app

    every = settings.outcome_refresh_seconds
    print(f"reviewbot beat: refreshing outcomes every {every} s (schedule {schedule})")
    app.start(["beat", f"--loglevel={args.loglevel}", f"--schedule={schedule}"])
    return EXIT_OK


def cmd_outcomes_refresh(args: argparse.Namespace) -> int:
    """Refresh one repository's outcome labels now, as the App."""
    from reviewbot.github.app import GitHubApp
    from reviewbot.github.errors import GitHubError
    from reviewbot.learning.records import StoreError
    from reviewbot.runners.outcomes import refresh_outcomes
    from reviewbot.settings.server import SettingsError

    repo = repo_arg(args.repo)
    if args.max_requests is not None and args.max_requests < 1:
        raise CliError("--max-requests must be positive", EXIT_USAGE)
    try:
        settings = _server_settings().require_worker()
    except SettingsError as e:
        raise CliError(str(e), EXIT_USAGE) from e
    store = _open_store(settings.database_url)
    try:
        iid = args.installation or _recorded_installation(store, repo)
        assert settings.app_id is not None and settings.private_key is not None
        app = GitHubApp(
            settings.app_id,
            settings.private_key,
            settings.github_api_url,
            bot_login=settings.bot_login,
        )
        with app.installation(iid) as gh:
            report = refresh_outcomes(
                gh,
                store,
                repo=repo,
                max_requests=args.max_requests or settings.outcome_max_requests,
            )
    except (GitHubError, StoreError) as e:
        raise CliError(str(e)) from e
    finally:
        store.close()
    print(f"{repo}: {report.summary()}")
    return EXIT_OK


def _recorded_installation(store, repo: str) -> int:
    """The installation recorded with the repository's findings."""
    for item in store.labelled(repo):
        if item.finding.installation_id is not None:
            return item.finding.installation_id
    raise CliError(f"no findings recorded for {repo} (nothing to refresh)", EXIT_USAGE)


def cmd_stats(args: argparse.Namespace) -> int:
    """Print the acceptance figures of a repository's findings."""
    from reviewbot.learning.records import StoreError
    from reviewbot.learning.stats import acceptance_stats, stats_json, stats_table

    repo = repo_arg(args.repo)
    store = _open_store(_server_settings().database_url)
    try:
        items = store.labelled(repo, args.since)
    except StoreError as e:
        raise CliError(f"findings database: {e}") from e
    finally:
        store.close()
    stats = acceptance_stats(items, args.glob, repo=repo, since=args.since)
    if args.format == "json":
        print(json.dumps(stats_json(stats), indent=2, ensure_ascii=False))
    else:
        print(stats_table(stats))
    return EXIT_OK
