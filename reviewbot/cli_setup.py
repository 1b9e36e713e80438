"""``reviewbot setup``: register the GitHub App (GitHub's manifest flow) and write ``.env``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reviewbot.cli_errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CliError
from reviewbot.settings.defaults import (
    DEFAULT_APP_NAME,
    DEFAULT_GITHUB_WEB_URL,
    SETUP_HOST,
    SETUP_KEY_FILE,
    SETUP_PORT,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``setup`` command to the ``reviewbot`` parser."""
    p = sub.add_parser(
        "setup",
        help="register the GitHub App in a browser and write its settings (.env)",
        description="Serve a local page whose button registers reviewbot as a GitHub App "
        "(GitHub's manifest flow); on GitHub's redirect back, write the App's settings to "
        ".env and its private key beside it (mode 0600), and print the link that installs "
        "the App. Then run `reviewbot serve` and `reviewbot worker` where .env is.",
    )
    p.add_argument(
        "--webhook-url",
        required=True,
        metavar="URL",
        help="where GitHub delivers the App's webhooks: https://YOUR-HOST/webhook "
        "(reviewbot serve's /webhook)",
    )
    p.add_argument("--org", metavar="ORG", help="register the App for this organisation")
    p.add_argument("--name", default=DEFAULT_APP_NAME, help="the App's name on GitHub")
    p.add_argument(
        "--homepage-url", metavar="URL", help="the App's homepage (default: the webhook's site)"
    )
    p.add_argument(
        "--github-url",
        default=DEFAULT_GITHUB_WEB_URL,
        metavar="URL",
        help=f"GitHub's site (default {DEFAULT_GITHUB_WEB_URL}; GitHub Enterprise: https://HOST)",
    )
    p.add_argument(
        "--github-api-url",
        metavar="URL",
        help="GitHub's API (default: api.github.com for github.com, else GITHUB-URL/api/v3)",
    )
    p.add_argument(
        "--env-file",
        dest="setup_env_file",
        metavar="PATH",
        help="the settings file to write (default: .env in the current directory)",
    )
    p.add_argument(
        "--key-file",
        metavar="PATH",
        help=f"the private key file to write (default: {SETUP_KEY_FILE} beside the .env)",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.add_argument("--host", default=SETUP_HOST, help="the page's address (loopback only)")
    p.add_argument("--port", type=int, default=SETUP_PORT, help="the page's port")
    p.add_argument(
        "--no-browser", action="store_true", help="print the page's address, open no browser"
    )
    p.set_defaults(func=cmd_setup)


def cmd_setup(args: argparse.Namespace) -> int:
    """Register the App, write the settings, print the install link."""
    from reviewbot.setup.app import SetupConfig, SetupFailed, run_setup
    from reviewbot.setup.manifest import (
        SetupError,
        check_name,
        check_org,
        check_url,
        github_urls,
        origin,
    )

    try:
        webhook = check_url(args.webhook_url, "--webhook-url")
        homepage = check_url(args.homepage_url or origin(webhook), "--homepage-url")
        env_file = Path(args.setup_env_file or getattr(args, "env_file", None) or ".env")
        env_file = env_file.expanduser().absolute()
        key_file = Path(args.key_file).expanduser() if args.key_file else None
        config = SetupConfig(
            urls=github_urls(args.github_url, args.github_api_url),
            webhook_url=webhook,
            name=check_name(args.name),
            org=check_org(args.org),
            homepage_url=homepage,
            env_file=env_file,
            key_file=(key_file or env_file.parent / SETUP_KEY_FILE).absolute(),
            force=args.force,
            host=args.host,
            port=args.port,
        )
    except SetupError as e:
        raise CliError(str(e), EXIT_USAGE) from None

    def announce(url: str) -> None:
        print(
            f"reviewbot setup: open {url} and click “Create the GitHub App” (Ctrl-C stops)",
            flush=True,
        )

    def report(message: str) -> None:
        print(f"reviewbot: error: {message}", file=sys.stderr, flush=True)

    try:
        result = run_setup(
            config, open_browser=not args.no_browser, report=report, announce=announce
        )
    except SetupError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    except SetupFailed as e:
        raise CliError(str(e), EXIT_FAILURE) from None
    print(f"registered the GitHub App {result.name} (id {result.app_id}): {result.html_url}")
    print(f"wrote {result.env_file} and {result.key_file} (mode 0600)")
    print(f"install it on your repositories: {result.install_url}")
    print(f"then, in {result.env_file.parent}: reviewbot serve, and reviewbot worker", flush=True)
    return EXIT_OK
