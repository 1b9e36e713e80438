"""``reviewbot review --post``: review a pull request from CI (GitHub Actions), no server.

The review is posted by the App's own runner (:func:`reviewbot.runners.review.run_review_job`)
with a token-authenticated :class:`~reviewbot.github.client.GitHubClient` as its GitHub and
the command line's model as its engine: the same markers, idempotency (a rerun posts
nothing twice), incremental reviews of new commits, 422 fallback and repository
configuration (``.github/reviewbot.toml`` on the default branch) as the App.

What is reviewed is the pull request at its head as GitHub has it (its diff, and for a
``synchronize`` the commits since the last reviewed head): comment positions are then
always valid, even where actions/checkout checked out the merge commit. The local
``--git BASE..HEAD`` range (or diff file) is a cross-check only: its HEAD should be the
pull request's head (or a merge commit of it); a mismatch, or a HEAD that cannot be
resolved here, is a warning.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reviewbot.cli_errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    REPO_PATTERN,
    CliError,
    inference_arg,
    min_confidence,
)
from reviewbot.jobs.transient import TransientError
from reviewbot.settings.defaults import (
    DEFAULT_GITHUB_API_URL,
    REVIEW_DRAFTS,
    SERVER_REVIEW_DEFAULTS,
    GenerationSettings,
    GitHubSettings,
    PlanLimits,
)
from reviewbot.settings.repo import RepoConfig, RepoConfigError, parse_repo_config

if TYPE_CHECKING:
    from reviewbot.github.client import GitHubClient
    from reviewbot.github.errors import GitHubError
    from reviewbot.github.payload import ReviewPayload
    from reviewbot.jobs.job import Job

log = logging.getLogger(__name__)

#: The account a GitHub Actions ``GITHUB_TOKEN`` posts as.
ACTIONS_BOT_LOGIN = "github-actions[bot]"
#: Workflow events whose payload is a pull request's.
PULL_REQUEST_EVENTS = ("pull_request", "pull_request_target")
#: The GitHub client's settings (the tests make them faster).
GITHUB_SETTINGS = GitHubSettings()
#: ``start_check_run``'s id when GitHub refused the check run (nothing to complete).
NO_CHECK_RUN = 0
#: What each finished job's status means here: (exit code, what is printed).
_RESULTS: dict[str, tuple[int, str]] = {
    "posted": (EXIT_OK, "posted review {review_id}"),
    "nothing-new": (EXIT_OK, "no new findings: nothing posted"),
    "already-reviewed": (EXIT_OK, "already reviewed: nothing posted"),
    "superseded": (EXIT_OK, "the pull request moved on to {detail:.7}: nothing posted"),
    "skipped": (EXIT_OK, "not reviewed ({detail}): nothing posted"),
}
_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
_REV_PREFIX = re.compile(r"[0-9a-fA-F]{7,64}")


def add_post_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``--post`` and its options to the ``review`` parser."""
    g = p.add_argument_group(
        "posting to a pull request (CI)",
        "--post reviews the pull request as GitHub has it, at its head, and posts the review "
        "as the App would (markers, no duplicates, incremental on new pushes); the --git "
        "range (or diff file) is checked against the pull request's head. In GitHub "
        "Actions the repository, pull request and token come from the workflow.",
    )
    g.add_argument("--post", action="store_true", help="post the review to the pull request")
    g.add_argument(
        "--repo", metavar="OWNER/REPO", help="the repository (default: $GITHUB_REPOSITORY)"
    )
    g.add_argument(
        "--pr",
        type=int,
        metavar="N",
        help="the pull request (default: the one of the workflow's pull_request event)",
    )
    g.add_argument("--token", help="GitHub token (default: $GITHUB_TOKEN; prefer the variable)")
    g.add_argument(
        "--api-url",
        metavar="URL",
        help=f"GitHub's API (default: $GITHUB_API_URL, else {DEFAULT_GITHUB_API_URL})",
    )
    g.add_argument(
        "--bot-login",
        metavar="LOGIN",
        help="the account the token posts as, whose markers count as reviewbot's (default: "
        f"the token's own account; in GitHub Actions {ACTIONS_BOT_LOGIN} when the token "
        "has none, as GITHUB_TOKEN)",
    )
    g.add_argument(
        "--config",
        metavar="FILE",
        help="a reviewbot.toml to review with instead of the repository's "
        ".github/reviewbot.toml on the default branch (the workflow chooses the file)",
    )


@dataclass(frozen=True)
class Target:
    """The pull request to review: where, which job kind, at which head."""

    repo: str
    number: int
    kind: str = "auto"
    head_sha: str | None = None
    """None: the pull request's current head (asked from GitHub)."""
    before_sha: str | None = None
    event: str = ""
    """Where the target came from, for logs."""


def cmd_post(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> int:
    """``reviewbot review --post``: run the review job on the pull request, post once."""
    from reviewbot.github.errors import GitHubError, TransientGitHubError
    from reviewbot.jobs.job import Job
    from reviewbot.logs import hide
    from reviewbot.runners.review import run_review_job

    _check_usage(args)
    threshold = min_confidence(args)
    token = args.token or environ.get("GITHUB_TOKEN", "")
    if not token.strip():
        raise CliError(
            "no GitHub token: set GITHUB_TOKEN (in a workflow: `GITHUB_TOKEN: "
            "${{ github.token }}`) or pass --token",
            EXIT_USAGE,
        )
    token = token.strip()
    hide([token])
    target = find_target(args, environ)
    in_actions = environ.get("GITHUB_ACTIONS") == "true"
    api_url = args.api_url or environ.get("GITHUB_API_URL") or DEFAULT_GITHUB_API_URL
    config = _config_file(args.config)
    gh = ci_github(token, api_url, args.bot_login, in_actions, config)
    job: Job | None = None
    try:
        head = target.head_sha or gh.pull(target.repo, target.number).head_sha
        check_local_head(args, head)
        job = Job(
            kind=target.kind,
            repo=target.repo,
            installation_id=0,
            pr_number=target.number,
            head_sha=head,
            before_sha=target.before_sha,
        )
        log.info(
            "%s review of %s#%d at %s (%s)",
            job.kind,
            job.repo,
            job.pr_number,
            head[:7],
            target.event or "--pr",
        )
        defaults = replace(SERVER_REVIEW_DEFAULTS, min_confidence=threshold)
        with _quiet_user_errors(args.verbose):
            outcome = run_review_job(
                job, gh, Engines(args), review_drafts=REVIEW_DRAFTS, defaults=defaults
            )
    except TransientError as e:
        if job is not None:  # no queue retries here: end the check run left in progress
            _give_up(gh, job, str(e))
        what = "GitHub" if isinstance(e, TransientGitHubError) else "the inference server"
        raise CliError(f"{what} did not answer in time, nothing posted: {e}") from None
    except GitHubError as e:
        raise CliError(f"nothing posted: {e}") from None
    finally:
        gh.close()
    code, text = _RESULTS.get(outcome.status, (EXIT_FAILURE, ""))
    where = f"{job.repo}#{job.pr_number} at {job.head_sha[:7]}"
    _write_outputs(environ, outcome.status, outcome.review_id)
    if args.format == "json":
        result = {
            "status": outcome.status,
            "review_id": outcome.review_id,
            "detail": outcome.detail,
            "repo": job.repo,
            "pr": job.pr_number,
            "head_sha": job.head_sha,
            "kind": job.kind,
        }
        print(json.dumps(result), flush=True)
    if code != EXIT_OK:
        raise CliError(f"{where}: the review failed, nothing posted: {outcome.detail}", code)
    if args.format != "json":
        said = text.format(review_id=outcome.review_id, detail=outcome.detail)
        print(f"reviewbot: {where}: {said}", flush=True)
    return EXIT_OK


def _give_up(gh: CiGitHub, job: Job, why: str) -> None:
    """Complete the job's check run left in progress as given up (the App's queue would
    retry; a workflow step does not)."""
    from reviewbot.github.checks import check_run_gave_up
    from reviewbot.github.errors import GitHubError
    from reviewbot.runners.review import gh_safe_complete

    try:
        check_id = gh.find_check_run(job.repo, job.head_sha, job.key)
        if check_id is not None:
            result = check_run_gave_up(1, why)
            gh_safe_complete(gh, job, check_id, result.conclusion, result.title, result.summary)
    except GitHubError as e:
        log.info("could not complete the check run: %s", e)


def _check_usage(args: argparse.Namespace) -> None:
    """Refuse what --post cannot do; warn about options the repository decides."""
    if args.dry_run:
        raise CliError("--post and --dry-run exclude each other", EXIT_USAGE)
    if not args.git and args.diff in (None, "-"):
        raise CliError(
            "--post needs --git BASE..HEAD (in a workflow: --git "
            "${{ github.event.pull_request.base.sha }}..${{ github.event.pull_request.head.sha }}"
            ") or a diff file",
            EXIT_USAGE,
        )
    if args.git and ".." not in args.git:
        raise CliError(f"--git expects BASE..HEAD, got {args.git!r}", EXIT_USAGE)
    if args.diff not in (None, "-") and not Path(args.diff).is_file():
        raise CliError(f"cannot read {args.diff}: no such file", EXIT_USAGE)
    if args.max_new_tokens < 1 or args.batch_size < 1:
        raise CliError("--max-new-tokens and --batch-size must be positive", EXIT_USAGE)
    if args.pr is not None and args.pr < 1:
        raise CliError(f"--pr must be a pull request number, got {args.pr}", EXIT_USAGE)
    limits = PlanLimits()
    ignored = [
        name
        for name, used in (
            ("--revise", args.revise),
            ("--summary", args.summary),
            ("--include", args.include),
            ("--exclude", args.exclude),
            ("--deletions", args.deletions != limits.deletions),
        )
        if used
    ]
    if ignored:
        log.warning(
            "%s: not used with --post; the repository's .github/reviewbot.toml decides, "
            "as for the App",
            ", ".join(ignored),
        )


def find_target(args: argparse.Namespace, environ: Mapping[str, str]) -> Target:
    """The pull request to review: ``--repo``/``--pr``, else the workflow's event.

    ``synchronize`` reviews the new commits (``before`` → ``after``) incrementally;
    any other action reviews the pull request's head in full. ``--pr`` without a
    matching event payload reviews the pull request's current head in full.
    """
    event_name = environ.get("GITHUB_EVENT_NAME", "")
    payload = _read_event(environ)
    pull = payload.get("pull_request") if payload is not None else None
    if not isinstance(pull, Mapping) or (event_name and event_name not in PULL_REQUEST_EVENTS):
        pull = None
    repo = args.repo or environ.get("GITHUB_REPOSITORY") or _get(payload, "repository.full_name")
    if not repo:
        raise CliError(
            "no repository: pass --repo OWNER/REPO (GitHub Actions sets GITHUB_REPOSITORY)",
            EXIT_USAGE,
        )
    if not isinstance(repo, str) or not REPO_PATTERN.fullmatch(repo):
        raise CliError(f"--repo must be OWNER/REPO, got {repo!r}", EXIT_USAGE)
    if pull is None:
        if args.pr is None:
            what = f"a {event_name!r} event" if event_name else "no pull_request event"
            raise CliError(
                f"not a pull request: this run has {what} (GITHUB_EVENT_NAME / "
                "GITHUB_EVENT_PATH); run the workflow on pull_request, or pass --pr N",
                EXIT_USAGE,
            )
        return Target(repo, args.pr)
    assert payload is not None
    number = pull.get("number")
    payload_repo = _get(payload, "repository.full_name")
    if args.pr not in (None, number) or (payload_repo and payload_repo != repo):
        if args.pr is None:
            raise CliError(f"the event is for {payload_repo}, not {repo}: pass --pr", EXIT_USAGE)
        return Target(repo, args.pr)  # another pull request than the event's
    if not isinstance(number, int) or isinstance(number, bool):
        raise CliError("the pull_request event has no pull request number", EXIT_USAGE)
    action = str(payload.get("action") or "")
    event = f"{event_name or 'pull_request'} {action}".strip()
    head = _sha(_get(payload, "pull_request.head.sha"), "pull_request.head.sha")
    if action == "synchronize" and payload.get("before"):
        after = payload.get("after")
        head = _sha(after, "after") if after else head
        before = _sha(payload.get("before"), "before")
        return Target(repo, number, "incremental", head, before, event)
    return Target(repo, number, "auto", head, None, event)


def _read_event(environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The workflow's event payload (``GITHUB_EVENT_PATH``), or None without one."""
    path = environ.get("GITHUB_EVENT_PATH")
    if not path:
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CliError(f"cannot read the event payload GITHUB_EVENT_PATH={path}: {e}") from None
    return data if isinstance(data, dict) else None


def _get(data: Mapping[str, Any] | None, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _sha(value: Any, name: str) -> str:
    if not isinstance(value, str) or not _SHA.fullmatch(value):
        raise CliError(f"the pull_request event's {name} is not a commit sha", EXIT_USAGE)
    return value


def check_local_head(args: argparse.Namespace, head_sha: str) -> bool:
    """Whether the local ``--git`` range's HEAD is the pull request's head (or a merge
    commit of it, as actions/checkout checks out by default); warns when it is not,
    or when that cannot be told. The review covers the pull request's head either way."""
    if not args.git:
        log.warning(
            "%s is not what is posted: --post reviews the pull request's diff at %s from "
            "GitHub (a diff file names no commit to check)",
            args.diff,
            head_sha[:7],
        )
        return False
    head = args.git.split("..", 1)[1].lstrip(".") or "HEAD"
    if _REV_PREFIX.fullmatch(head) and head_sha.startswith(head.lower()):
        return True  # the range names the head itself (a shallow clone need not have it)
    resolved = _git_commit(head)
    if resolved is None:
        log.warning(
            "cannot resolve %s here (not a git checkout, or a shallow one without it): "
            "reviewing the pull request's head %s from GitHub unchecked",
            head,
            head_sha[:7],
        )
        return False
    if resolved == head_sha:
        return True
    if head_sha in _parents(resolved):
        log.info(
            "%s is %s, a merge commit of the pull request's head %s: reviewing the head",
            head,
            resolved[:7],
            head_sha[:7],
        )
        return True
    log.warning(
        "%s is %s, not the pull request's head %s: reviewing and posting on the pull "
        "request's head from GitHub, not the local range",
        head,
        resolved[:7],
        head_sha[:7],
    )
    return False


def _git(*argv: str) -> str | None:
    try:
        proc = subprocess.run(["git", *argv], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return proc.stdout if proc.returncode == 0 else None


def _git_commit(rev: str) -> str | None:
    """The commit ``rev`` names here, or None."""
    if rev.startswith("-"):
        return None
    out = _git("rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    return out.strip() if out else None


def _parents(sha: str) -> list[str]:
    """The parents a commit records (read from the object: a shallow clone hides them)."""
    out = _git("cat-file", "commit", sha) or ""
    parents = []
    for line in out.splitlines():
        if not line:
            break
        if line.startswith("parent "):
            parents.append(line.split(" ", 1)[1].strip())
    return parents


def _write_outputs(environ: Mapping[str, str], status: str, review_id: int | None) -> None:
    """The step's outputs ``status`` and ``review-id``, in GitHub Actions."""
    path = environ.get("GITHUB_OUTPUT")
    if environ.get("GITHUB_ACTIONS") != "true" or not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"status={status}\nreview-id={review_id or ''}\n")
    except OSError as e:
        log.warning("cannot write the step's outputs to GITHUB_OUTPUT: %s", e)


# -- the GitHub port ---------------------------------------------------------------------


class CiGitHub:
    """The App's GitHub client (the runner's GitHub port), for a workflow's token.

    ``config`` (``--config``) replaces the repository's ``.github/reviewbot.toml``.
    A check run GitHub refuses (403: a token without ``checks: write``) is skipped with
    a warning and the review is still posted; a posted review whose author is not the
    account whose markers count is reported (a rerun could not recognise it). Every
    other call is the client's own.
    """

    def __init__(self, client: GitHubClient, config: RepoConfig | None = None) -> None:
        self.client = client
        self.config = config
        self.checks_refused: str | None = None

    def repo_config(self, repo: str) -> RepoConfig:
        """The ``--config`` file's settings when given, else the repository's own."""
        return self.config if self.config is not None else self.client.repo_config(repo)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def _checks_refused(self, error: GitHubError) -> bool:
        from reviewbot.github.errors import TransientGitHubError

        if isinstance(error, TransientGitHubError) or error.status != 403:
            return False
        if self.checks_refused is None:
            log.warning(
                "no check run: %s; the review is posted without one (the workflow needs "
                "`permissions: checks: write`)",
                error,
            )
        self.checks_refused = str(error)
        return True

    def find_check_run(self, repo: str, head_sha: str, external_id: str) -> int | None:
        from reviewbot.github.errors import GitHubError

        if self.checks_refused is not None:
            return None
        try:
            return self.client.find_check_run(repo, head_sha, external_id)
        except GitHubError as e:
            if not self._checks_refused(e):
                raise
            return None

    def start_check_run(self, repo: str, head_sha: str, external_id: str) -> int:
        from reviewbot.github.errors import GitHubError

        if self.checks_refused is not None:
            return NO_CHECK_RUN
        try:
            return self.client.start_check_run(repo, head_sha, external_id)
        except GitHubError as e:
            if not self._checks_refused(e):
                raise
            return NO_CHECK_RUN

    def complete_check_run(
        self, repo: str, check_id: int, conclusion: str, title: str, summary: str
    ) -> None:
        if check_id != NO_CHECK_RUN:
            self.client.complete_check_run(repo, check_id, conclusion, title, summary)

    def post_review(self, repo: str, number: int, payload: ReviewPayload) -> int:
        from reviewbot.github.errors import GitHubError

        review_id = self.client.post_review(repo, number, payload)
        try:
            found = self.client.find_review(repo, number, payload.kind, payload.head_sha)
        except GitHubError as e:
            log.info("cannot check who posted review %d: %s", review_id, e)
            return review_id
        if found is None:
            log.warning(
                "review %d was not posted as %s: a rerun would not recognise it and post "
                "again; pass --bot-login with the account it was posted as",
                review_id,
                self.client.identity.login,
            )
        return review_id


def _config_file(path: str | None) -> RepoConfig | None:
    """The ``--config`` file's settings (None: the repository's own); exit 2 when bad."""
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise CliError(f"cannot read --config {path}: {e.strerror or e}", EXIT_USAGE) from None
    try:
        return parse_repo_config(text)
    except RepoConfigError as e:
        raise CliError(f"--config {path}: {e}", EXIT_USAGE) from None


def ci_github(
    token: str,
    api_url: str,
    login: str | None,
    in_actions: bool,
    config: RepoConfig | None = None,
) -> CiGitHub:
    """The GitHub port of ``--post``. reviewbot's account: ``login``; else the token's own
    (``GET /user``), and in GitHub Actions, for a token that has none (``GITHUB_TOKEN``),
    github-actions[bot]."""
    from reviewbot.github.client import GitHubClient
    from reviewbot.github.data import BotIdentity
    from reviewbot.github.errors import GitHubError, TransientGitHubError

    def token_or_actions_account() -> BotIdentity:
        try:
            return client.account(None)
        except TransientGitHubError:
            raise
        except GitHubError as e:
            if e.status != 403:
                raise
        log.info("the token has no account of its own: posting as %s", ACTIONS_BOT_LOGIN)
        return BotIdentity(ACTIONS_BOT_LOGIN)

    identity: Any = None
    if login:
        identity = BotIdentity(login)
    elif in_actions:
        identity = token_or_actions_account
    client = GitHubClient.from_token(token, api_url, GITHUB_SETTINGS, identity=identity)
    return CiGitHub(client, config)


# -- the model port ----------------------------------------------------------------------


class Engines:
    """The runner's engine provider: the command line's model, loaded on first use
    (a rerun that finds its review posted loads none)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._model: _ProgressModel | None = None

    def __call__(self, adapter_name: str | None) -> _ProgressModel:
        if adapter_name:
            log.warning(
                "the repository's config names the server adapter %r; this run uses %s",
                adapter_name,
                f"--adapter {self.args.adapter}" if self.args.adapter else "the base model",
            )
        if self._model is None:
            self._model = _ProgressModel(self._load())
        return self._model

    def _load(self) -> Any:
        from reviewbot.model.serving import load_engine

        a = self.args
        settings = GenerationSettings(max_new_tokens=a.max_new_tokens, batch_size=a.batch_size)
        try:
            engine = load_engine(
                a.model,
                adapter=a.adapter,
                quantize=a.quantize,
                prompt_format=a.prompt_format,
                settings=settings,
                inference=inference_arg(a),
            )
        except ImportError as e:
            raise ModelUnavailable(
                f"cannot load the model: {e.name} is missing (pip install 'reviewbot[worker]')"
            ) from e
        except (OSError, ValueError) as e:
            raise ModelUnavailable(f"cannot load the model: {e}") from e
        log.info(
            "model %s on %s (%s), prompt format %s",
            engine.model_name,
            engine.device,
            "4-bit NF4" if engine.quantized else "full precision",
            engine.prompt_format,
        )
        return engine


class ModelUnavailable(Exception):
    """The model could not be loaded (shown on the check run and the command line)."""

    user_facing = True


class _ProgressModel:
    """An engine whose generation shows a progress bar (CI logs show it move)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def generate(self, prompts: list[str]) -> list[str]:
        log.info("generating for %d prompt(s)", len(prompts))
        return self.engine.generate(prompts, progress=True)


class _UserErrorFilter(logging.Filter):
    """Drops the traceback of a logged user-facing error (a GitHub refusal, an invalid
    repository config): its message says it all."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and getattr(error, "user_facing", False):
            record.exc_info, record.exc_text = None, None
        return True


@contextmanager
def _quiet_user_errors(verbose: int) -> Iterator[None]:
    """Within the block, the runner logs user-facing errors without tracebacks (``-v``
    keeps them)."""
    if verbose:
        yield
        return
    runner_log = logging.getLogger("reviewbot.runners.review")
    quiet = _UserErrorFilter()
    runner_log.addFilter(quiet)
    try:
        yield
    finally:
        runner_log.removeFilter(quiet)
