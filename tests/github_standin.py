"""A GitHub REST API stand-in for tests, served over real HTTP on 127.0.0.1.

A Flask app run by werkzeug in a background thread. It answers the endpoints
reviewbot uses with GitHub's response shapes (built from the real webhook
payloads in ``tests/data/webhooks``, URLs pointing back at the
stand-in so PyGithub can follow them), checks auth like GitHub (a JWT signed by
the app's key for ``/app/...``, an issued installation token elsewhere),
validates review comments against the PR's diff like GitHub (422 otherwise),
records every request and can inject failures (5xx, 403/429 rate limits, 422).
It also plays GitHub's web site in the App manifest flow (``web_url``: the "create
app" pages redirect back with a code) and converts that code into the App, handing
out ``app_private_key`` and ``app_webhook_secret``.

Use the fixtures ``github`` and ``app_key`` from a test module by importing them::

    from github_standin import APP_ID, GitHubStandIn, app_key_fixture, github_fixture  # noqa: F401

    def test_x(github: GitHubStandIn, app_key: str) -> None:
        github.add_repo("octo/demo", files_on_default={...})
        github.add_pull("octo/demo", 1, diff=..., head_sha=..., base_sha=...)
        ...

All state is guarded by one lock: tests and worker processes may call it
concurrently. The stand-in imports nothing from reviewbot.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, Response, g, request
from unidiff import PatchSet
from werkzeug.serving import WSGIRequestHandler, make_server

APP_ID = 4242
APP_SLUG = "reviewbot"
FIXTURES = Path(__file__).resolve().parent / "data" / "webhooks"
DOCS = "https://docs.github.com/rest"
DIFF_TYPES = ("application/vnd.github.diff", "application/vnd.github.v3.diff")
_TEMPLATE_REPO = "Codertocat/Hello-World"
_TEMPLATE_API = "https://api.github.com"
_TEMPLATE_HTML = "https://github.com"


def _association(repo: _Repo, user: dict[str, Any]) -> str:
    """GitHub's ``author_association`` of ``user`` on ``repo``: OWNER for the repository's
    owner, COLLABORATOR for anyone given a role, NONE otherwise (organisations and
    earlier contributions are not modelled)."""
    login = user.get("login")
    if login == repo.full_name.split("/")[0]:
        return "OWNER"
    if repo.roles.get(login, "none") != "none":
        return "COLLABORATOR"
    return "NONE"


def _now_iso(offset: float = 0.0) -> str:
    when = datetime.fromtimestamp(time.time() + offset, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _stable_id(*parts: object) -> int:
    digest = hashlib.sha256("\0".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") % 900_000_000 + 1_000_000


def _node_id(kind: str, number: int) -> str:
    return base64.b64encode(f"0:{kind}{number}".encode()).decode()


def _rewrite(obj: Any, pairs: list[tuple[str, str]]) -> Any:
    """``obj`` with every string rewritten by the (old, new) pairs, in order."""
    if isinstance(obj, dict):
        return {k: _rewrite(v, pairs) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rewrite(v, pairs) for v in obj]
    if isinstance(obj, str):
        for old, new in pairs:
            obj = obj.replace(old, new)
    return obj


_fixture_cache: dict[str, dict[str, Any]] = {}


def _fixture(name: str) -> dict[str, Any]:
    if name not in _fixture_cache:
        path = FIXTURES / name
        if not path.is_file():
            raise FileNotFoundError(f"GitHub webhook fixture missing: {path}")
        _fixture_cache[name] = json.loads(path.read_text())
    return copy.deepcopy(_fixture_cache[name])


# --- recorded data ---------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request the stand-in received (the Authorization header left out)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    auth: str | None
    """"jwt", "token" or None: what kind of credential the request carried."""


@dataclass
class _Failure:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int | None
    headers: dict[str, str]
    body: Any
    apply: bool


@dataclass
class Hold:
    """A response held back after the request was performed (see ``GitHubStandIn.hold``)."""

    method: str
    pattern: re.Pattern[str]
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Hunk:
    lines: dict[str, set[int]]
    """Anchorable line numbers by side ("RIGHT": new side, "LEFT": old side)."""
    text: list[str]
    """The hunk's header and lines, for diff_hunk."""
    keys: list[tuple[int | None, int | None]]
    """Per line of ``text`` after the header: its (RIGHT, LEFT) line numbers."""


@dataclass
class _File:
    path: str
    previous: str | None
    status: str
    additions: int
    deletions: int
    patch: str | None
    hunks: list[_Hunk]


@dataclass
class _Pull:
    number: int
    title: str
    diff: str
    head_sha: str
    base_sha: str
    head_ref: str
    base_ref: str
    draft: bool
    state: str
    author: str
    author_type: str
    files: list[_File]
    commits: list[str]
    reviews: list[dict[str, Any]] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    issue_comments: list[dict[str, Any]] = field(default_factory=list)
    resolved: set[int] = field(default_factory=set)
    """Root comment ids of resolved review threads."""
    resolved_by: dict[int, str] = field(default_factory=dict)
    """Who resolved each resolved thread (by root comment id)."""
    merged_at: str | None = None
    """When the pull request was merged (ISO 8601), see ``merge_pull``."""
    body: str = ""
    """The pull request's description (``PATCH /pulls/{n}`` changes it)."""
    labels: list[str] = field(default_factory=list)


@dataclass
class _Repo:
    full_name: str
    id: int
    default_branch: str
    installation_id: int | None
    private: bool
    files: dict[str, dict[str, str]]
    """Files by ref (branch name or commit sha), then by path."""
    pulls: dict[int, _Pull] = field(default_factory=dict)
    compares: dict[tuple[str, str], str] = field(default_factory=dict)
    check_runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    """Collaborator role names by login (others: "read")."""
    git_dir: Path | None = None
    """A real git repository answering contents and compares the stand-in was not told."""


def _parse_diff(diff: str) -> list[_File]:
    files = []
    for pf in PatchSet(diff):
        source = pf.source_file[2:] if pf.source_file.startswith("a/") else pf.source_file
        target = pf.target_file[2:] if pf.target_file.startswith("b/") else pf.target_file
        if pf.is_added_file:
            status, path, previous = "added", target, None
        elif pf.is_removed_file:
            status, path, previous = "removed", source, None
        elif pf.is_rename:
            status, path, previous = "renamed", target, source
        else:
            status, path, previous = "modified", target, None
        hunks = [_hunk(h) for h in pf]
        patch = None if pf.is_binary_file else "".join(str(h) for h in pf).rstrip("\n")
        files.append(_File(path, previous, status, pf.added, pf.removed, patch, hunks))
    return files


def _hunk(h: Any) -> _Hunk:
    lines: dict[str, set[int]] = {"RIGHT": set(), "LEFT": set()}
    text = [str(h).split("\n", 1)[0]]
    keys: list[tuple[int | None, int | None]] = []
    for line in h:
        text.append(str(line).rstrip("\n"))
        right = line.target_line_no if (line.is_added or line.is_context) else None
        left = line.source_line_no if (line.is_removed or line.is_context) else None
        if right is not None:
            lines["RIGHT"].add(right)
        if left is not None:
            lines["LEFT"].add(left)
        keys.append((right, left))
    return _Hunk(lines, text, keys)


# --- the stand-in ----------------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class GitHubStandIn:
    """The stand-in server; ``.url`` is the ``base_url`` to give PyGithub."""

    def __init__(
        self, app_id: int = APP_ID, public_key: str | bytes = b"", prefix: str = ""
    ) -> None:
        """``prefix`` serves the API under a path, like GitHub Enterprise's ``/api/v3``."""
        self.app_id = app_id
        self.prefix = prefix.rstrip("/")
        self.public_key = public_key
        self.token_lifetime = 3600.0
        """Seconds an issued installation token stays valid."""
        self._lock = threading.RLock()
        self._repos: dict[str, _Repo] = {}
        self._tokens: dict[str, tuple[float, int | None, dict[str, Any]]] = {}
        self._failures: list[_Failure] = []
        self._holds: list[Hold] = []
        self._requests: list[RecordedRequest] = []
        self._reactions: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self._next_id = 1000
        self._users: dict[str, tuple[str, str]] = {}
        """Every account the stand-in has shown, by lowercased login: (login, type)."""
        self.issued_tokens: list[str] = []
        self.seen_jwts: list[str] = []
        self.app_private_key: str | None = None
        """The PEM the manifest flow's conversion hands out (set it to the key whose
        public half verifies the App's JWTs)."""
        self.app_webhook_secret = "whsec-" + secrets.token_hex(16)
        """The webhook secret the manifest flow's conversion hands out."""
        self.manifests: list[dict[str, Any]] = []
        """Each App manifest posted to the web "create app" page: ``org``, ``state``,
        ``manifest`` (the parsed JSON)."""
        self._manifest_codes: dict[str, tuple[float, dict[str, Any]]] = {}
        self._app = self._build_app()
        self._manifest_app = self._build_manifest_app()
        self._server = make_server(
            "127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler
        )
        self.url = f"http://127.0.0.1:{self._server.server_port}{self.prefix}"
        self.bot = self._user(f"{APP_SLUG}[bot]", "Bot")
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        """The Flask app, mounted under ``prefix`` (404 outside it)."""
        path = environ.get("PATH_INFO", "")
        if _MANIFEST_WEB.fullmatch(path) or path.startswith(f"{self.prefix}/app-manifests/"):
            return self._manifest_app(environ, start_response)  # GitHub's web, no auth
        if self.prefix and path == self.prefix.rsplit("/", 1)[0] + "/graphql":
            environ["PATH_INFO"] = "/graphql"  # GHE: /api/v3 → /api/graphql
        elif self.prefix:
            if not path.startswith(self.prefix + "/"):
                return _error(404, "Not Found")(environ, start_response)
            environ["SCRIPT_NAME"] = self.prefix
            environ["PATH_INFO"] = path[len(self.prefix) :]
        return self._app(environ, start_response)

    def stop(self) -> None:
        with self._lock:
            for h in self._holds:
                h.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- test helpers ----------------------------------------------------------------

    def _repo(self, full_name: str) -> _Repo:
        try:
            return self._repos[full_name]
        except KeyError:
            raise KeyError(f"unknown repository {full_name!r}: call add_repo() first") from None

    def add_repo(
        self,
        full_name: str,
        default_branch: str = "main",
        files_on_default: dict[str, str] | None = None,
        installation_id: int | None = None,
        private: bool = False,
    ) -> None:
        """A repository; ``installation_id`` set: only that installation's tokens see it."""
        with self._lock:
            self._repos[full_name] = _Repo(
                full_name=full_name,
                id=_stable_id("repo", full_name),
                default_branch=default_branch,
                installation_id=installation_id,
                private=private,
                files={default_branch: dict(files_on_default or {})},
            )

    def set_file(self, full_name: str, ref: str, path: str, text: str | None) -> None:
        """Create, change or (``text`` None) delete a file at ``ref``."""
        with self._lock:
            files = self._repo(full_name).files.setdefault(ref, {})
            if text is None:
                files.pop(path, None)
            else:
                files[path] = text

    def add_pull(
        self,
        full_name: str,
        number: int,
        diff: str,
        head_sha: str,
        base_sha: str,
        draft: bool = False,
        files_at_head: dict[str, str] | None = None,
        title: str = "Update the code",
        author: str = "Codertocat",
        author_type: str = "User",
        head_ref: str = "changes",
        state: str = "open",
        body: str | None = None,
        labels: list[str] | None = None,
    ) -> None:
        """A pull request (again: a new head on the same PR, reviews kept; its body and
        labels kept unless given)."""
        with self._lock:
            repo = self._repo(full_name)
            old = repo.pulls.get(number)
            pull = _Pull(
                number=number,
                title=title,
                diff=diff,
                head_sha=head_sha,
                base_sha=base_sha,
                head_ref=head_ref,
                base_ref=repo.default_branch,
                draft=draft,
                state=state,
                author=author,
                author_type=author_type,
                files=_parse_diff(diff),
                commits=[*(old.commits if old else []), head_sha],
            )
            if old is not None:
                pull.reviews, pull.comments = old.reviews, old.comments
                pull.issue_comments, pull.resolved = old.issue_comments, old.resolved
                pull.resolved_by, pull.merged_at = old.resolved_by, old.merged_at
                pull.body, pull.labels = old.body, old.labels
            if body is not None:
                pull.body = body
            if labels is not None:
                pull.labels = list(labels)
            repo.pulls[number] = pull
            head_files = dict(files_at_head or {})
            repo.files[head_sha] = head_files
            repo.files[head_ref] = head_files

    def set_compare(self, full_name: str, base: str, head: str, diff: str) -> None:
        with self._lock:
            self._repo(full_name).compares[(base, head)] = diff

    def add_token(self, token: str, login: str = "octocat", user_type: str = "User") -> None:
        """A plain token (like a personal access token) accepted for every repository."""
        with self._lock:
            self._tokens[token] = (float("inf"), None, self._user(login, user_type))

    def fail(
        self,
        method: str,
        path_regex: str,
        status: int,
        times: int | None = 1,
        headers: dict[str, str] | None = None,
        body: Any = None,
        apply: bool = False,
    ) -> None:
        """Answer the next ``times`` (None: all) matching requests with ``status``.

        ``method`` "*" matches any method; ``path_regex`` is searched in the path.
        Default bodies are GitHub's (server error, secondary rate limit, 422).
        ``apply=True`` performs the request first and then fails it (GitHub did
        the work but the response was lost).
        """
        with self._lock:
            self._failures.append(
                _Failure(
                    method.upper(),
                    re.compile(path_regex),
                    status,
                    times,
                    dict(headers or {}),
                    body,
                    apply,
                )
            )

    def hold(self, method: str, path_regex: str) -> Hold:
        """Perform the next matching request, then hold its response back until
        ``hold.release`` is set (``hold.reached`` is set once the work is done):
        the client sees GitHub do the work and then never hears back."""
        h = Hold(method.upper(), re.compile(path_regex))
        with self._lock:
            self._holds.append(h)
        return h

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, method: str, path_regex: str) -> list[RecordedRequest]:
        pattern = re.compile(path_regex)
        return [r for r in self.requests if r.method == method.upper() and pattern.search(r.path)]

    def reviews(self, full_name: str, number: int) -> list[dict[str, Any]]:
        """Posted reviews, each with its inline ``comments`` (GitHub's shapes)."""
        with self._lock:
            pull = self._repo(full_name).pulls[number]
            out = []
            for review in pull.reviews:
                item = copy.deepcopy(review)
                item["comments"] = [
                    copy.deepcopy(c)
                    for c in pull.comments
                    if c["pull_request_review_id"] == review["id"]
                ]
                out.append(item)
            return out

    def review_comments(self, full_name: str, number: int) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._repo(full_name).pulls[number].comments)

    def set_role(self, full_name: str, login: str, role: str) -> None:
        """``login``'s role on the repository (admin, maintain, write, triage, read, none)."""
        with self._lock:
            self._repo(full_name).roles[login] = role

    def add_review_comment(
        self,
        full_name: str,
        number: int,
        body: str,
        path: str = "",
        line: int = 0,
        start_line: int | None = None,
        side: str = "RIGHT",
        login: str = "Codertocat",
        user_type: str = "User",
        in_reply_to: int | None = None,
    ) -> dict[str, Any]:
        """A person's inline review comment (or a reply), as if written on GitHub."""
        with self._lock:
            repo = self._repo(full_name)
            pull = repo.pulls[number]
            user = self._user(login, user_type)
            if in_reply_to is not None:
                return copy.deepcopy(self._reply_json(repo, pull, in_reply_to, body, user))
            c = {"path": path, "line": line, "side": side, "body": body}
            if start_line is not None:
                c["start_line"] = start_line
            problem, hunk = _anchor(pull, c)
            if problem is not None:
                raise ValueError(problem)
            rid = self._new_id()
            pull.reviews.append(
                self._review_json(repo, pull, rid, "", "COMMENTED", pull.head_sha, user)
            )
            comment = self._comment_json(repo, pull, rid, c, hunk, pull.head_sha, user)
            pull.comments.append(comment)
            return copy.deepcopy(comment)

    def add_review(
        self,
        full_name: str,
        number: int,
        body: str,
        login: str = "Codertocat",
        user_type: str = "User",
        state: str = "COMMENTED",
    ) -> dict[str, Any]:
        """A person's review of the pull request at its head, with ``body`` and no comments."""
        with self._lock:
            repo = self._repo(full_name)
            pull = repo.pulls[number]
            user = self._user(login, user_type)
            review = self._review_json(repo, pull, self._new_id(), body, state, pull.head_sha, user)
            pull.reviews.append(review)
            return copy.deepcopy(review)

    def add_issue_comment(
        self, full_name: str, number: int, body: str, login: str = "Codertocat", user_type="User"
    ) -> dict[str, Any]:
        """A comment in the pull request's conversation tab."""
        with self._lock:
            repo = self._repo(full_name)
            pull = repo.pulls[number]
            comment = self._issue_comment_json(repo, pull, body, self._user(login, user_type))
            pull.issue_comments.append(comment)
            return copy.deepcopy(comment)

    def issue_comments(self, full_name: str, number: int) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._repo(full_name).pulls[number].issue_comments)

    def resolve_thread(
        self, full_name: str, number: int, root_id: int, by: str = "Codertocat"
    ) -> None:
        """Resolve the review thread of ``root_id`` as ``by`` (GraphQL's ``resolvedBy``)."""
        with self._lock:
            pull = self._repo(full_name).pulls[number]
            pull.resolved.add(root_id)
            pull.resolved_by[root_id] = by

    def react(
        self,
        full_name: str,
        comment_type: str,
        comment_id: int,
        content: str,
        login: str = "Codertocat",
        user_type: str = "User",
    ) -> dict[str, Any]:
        """A person's reaction (``+1``, ``-1``…) on a comment ("review" or "issue")."""
        with self._lock:
            self._repo(full_name)
            rid = self._new_id()
            reaction = {
                "id": rid,
                "node_id": _node_id("REA", rid),
                "user": self._user(login, user_type),
                "content": content,
                "created_at": _now_iso(),
            }
            self._reactions.setdefault((comment_type, comment_id), []).append(reaction)
            return copy.deepcopy(reaction)

    def use_git(self, full_name: str, git_dir: str | Path) -> None:
        """Answer file contents at any commit and compares between any two commits of
        ``full_name`` from the real git repository at ``git_dir`` (what the stand-in was
        told explicitly still wins)."""
        with self._lock:
            self._repo(full_name).git_dir = Path(git_dir)

    def merge_pull(self, full_name: str, number: int, merged_at: str | None = None) -> None:
        """Close the pull request as merged at ``merged_at`` (ISO 8601; default now)."""
        with self._lock:
            pull = self._repo(full_name).pulls[number]
            pull.state = "closed"
            pull.merged_at = merged_at or _now_iso()

    def reactions(self, comment_type: str, comment_id: int) -> list[str]:
        """The contents of the reactions on a comment ("issue" or "review"), in order."""
        with self._lock:
            return [r["content"] for r in self._reactions.get((comment_type, comment_id), [])]

    def check_runs(self, full_name: str) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._repo(full_name).check_runs.values()))

    # -- shapes ----------------------------------------------------------------------

    def _new_id(self) -> int:
        with self._lock:
            self._next_id += 1
            return self._next_id

    def _api_pairs(self, full_name: str) -> list[tuple[str, str]]:
        return [
            (f"{_TEMPLATE_API}/repos/{_TEMPLATE_REPO}", f"{self.url}/repos/{full_name}"),
            (f"{_TEMPLATE_HTML}/{_TEMPLATE_REPO}", f"{_TEMPLATE_HTML}/{full_name}"),
            (_TEMPLATE_REPO, full_name),
            (_TEMPLATE_API, self.url),
        ]

    def _user(self, login: str, user_type: str = "User") -> dict[str, Any]:
        with self._lock:
            self._users.setdefault(login.lower(), (login, user_type))
        user = _rewrite(
            _fixture("pull_request.opened.json")["sender"],
            [("Codertocat", login), (_TEMPLATE_API, self.url)],
        )
        uid = _stable_id("user", login)
        user.update(id=uid, node_id=_node_id("U", uid), login=login, type=user_type)
        return user

    def _repo_json(self, repo: _Repo) -> dict[str, Any]:
        data = _rewrite(
            _fixture("pull_request.opened.json")["repository"], self._api_pairs(repo.full_name)
        )
        owner, name = repo.full_name.split("/", 1)
        data.update(
            id=repo.id,
            node_id=_node_id("R", repo.id),
            name=name,
            full_name=repo.full_name,
            owner=self._user(owner),
            private=repo.private,
            visibility="private" if repo.private else "public",
            default_branch=repo.default_branch,
        )
        data.pop("master_branch", None)
        return data

    def _pull_json(self, repo: _Repo, pull: _Pull) -> dict[str, Any]:
        template = _fixture("pull_request.opened.json")["pull_request"]
        pairs = [
            (f"/pulls/{template['number']}", f"/pulls/{pull.number}"),
            (f"/issues/{template['number']}", f"/issues/{pull.number}"),
            (f"/pull/{template['number']}", f"/pull/{pull.number}"),
            (template["head"]["sha"], pull.head_sha),
            *self._api_pairs(repo.full_name),
        ]
        data = _rewrite(template, pairs)
        pid = _stable_id("pull", repo.full_name, pull.number)
        owner = repo.full_name.split("/", 1)[0]
        repo_json = self._repo_json(repo)
        data.update(
            id=pid,
            node_id=_node_id("PR", pid),
            number=pull.number,
            state=pull.state,
            title=pull.title,
            draft=pull.draft,
            user=self._user(pull.author, pull.author_type),
            assignees=[],
            requested_reviewers=[],
            author_association="OWNER" if pull.author == owner else "CONTRIBUTOR",
            head={
                "label": f"{owner}:{pull.head_ref}",
                "ref": pull.head_ref,
                "sha": pull.head_sha,
                "user": self._user(owner),
                "repo": repo_json,
            },
            base={
                "label": f"{owner}:{pull.base_ref}",
                "ref": pull.base_ref,
                "sha": pull.base_sha,
                "user": self._user(owner),
                "repo": repo_json,
            },
            commits=len(pull.commits),
            additions=sum(f.additions for f in pull.files),
            deletions=sum(f.deletions for f in pull.files),
            changed_files=len(pull.files),
            review_comments=len(pull.comments),
            body=pull.body,
            labels=[
                {"id": _stable_id("label", n), "name": n, "color": "ededed", "default": False}
                for n in pull.labels
            ],
            merged=pull.merged_at is not None,
            merged_at=pull.merged_at,
            closed_at=pull.merged_at if pull.state == "closed" else None,
            merge_commit_sha=None,
        )
        return data

    def _file_json(self, repo: _Repo, pull: _Pull, f: _File) -> dict[str, Any]:
        sha = hashlib.sha1(f"{pull.head_sha}:{f.path}".encode()).hexdigest()
        data: dict[str, Any] = {
            "sha": sha,
            "filename": f.path,
            "status": f.status,
            "additions": f.additions,
            "deletions": f.deletions,
            "changes": f.additions + f.deletions,
            "blob_url": f"{_TEMPLATE_HTML}/{repo.full_name}/blob/{pull.head_sha}/{f.path}",
            "raw_url": f"{_TEMPLATE_HTML}/{repo.full_name}/raw/{pull.head_sha}/{f.path}",
            "contents_url": f"{self.url}/repos/{repo.full_name}/contents/{f.path}"
            f"?ref={pull.head_sha}",
        }
        if f.patch is not None:
            data["patch"] = f.patch
        if f.previous:
            data["previous_filename"] = f.previous
        return data

    def _review_json(
        self, repo: _Repo, pull: _Pull, rid: int, body: str, state: str, commit: str, user: dict
    ) -> dict[str, Any]:
        html = f"{_TEMPLATE_HTML}/{repo.full_name}/pull/{pull.number}#pullrequestreview-{rid}"
        api = f"{self.url}/repos/{repo.full_name}/pulls/{pull.number}"
        return {
            "id": rid,
            "node_id": _node_id("PRR", rid),
            "user": user,
            "body": body,
            "state": state,
            "html_url": html,
            "pull_request_url": api,
            "author_association": _association(repo, user),
            "_links": {"html": {"href": html}, "pull_request": {"href": api}},
            "submitted_at": None if state == "PENDING" else _now_iso(),
            "commit_id": commit,
        }

    def _comment_json(
        self,
        repo: _Repo,
        pull: _Pull,
        rid: int,
        c: dict[str, Any],
        hunk: _Hunk,
        commit: str,
        user: dict,
    ) -> dict[str, Any]:
        cid = self._new_id()
        api = f"{self.url}/repos/{repo.full_name}/pulls"
        html = f"{_TEMPLATE_HTML}/{repo.full_name}/pull/{pull.number}#discussion_r{cid}"
        side = c.get("side", "RIGHT")
        start_line = c.get("start_line")
        start_side = c.get("start_side", side) if start_line is not None else None
        return {
            "url": f"{api}/comments/{cid}",
            "pull_request_review_id": rid,
            "id": cid,
            "node_id": _node_id("PRRC", cid),
            "diff_hunk": _diff_hunk(hunk, side, c["line"]),
            "path": c["path"],
            "position": None,
            "original_position": None,
            "commit_id": commit,
            "original_commit_id": commit,
            "user": user,
            "body": c["body"],
            "created_at": _now_iso(),
            "updated_at": _now_iso(),
            "html_url": html,
            "pull_request_url": f"{api}/{pull.number}",
            "author_association": _association(repo, user),
            "_links": {
                "self": {"href": f"{api}/comments/{cid}"},
                "html": {"href": html},
                "pull_request": {"href": f"{api}/{pull.number}"},
            },
            "reactions": {"url": f"{api}/comments/{cid}/reactions", "total_count": 0},
            "start_line": start_line,
            "original_start_line": start_line,
            "start_side": start_side,
            "line": c["line"],
            "original_line": c["line"],
            "side": side,
            "subject_type": "line",
        }

    def _reply_json(
        self, repo: _Repo, pull: _Pull, to: int, body: str, user: dict
    ) -> dict[str, Any] | Response:
        """A reply in the thread of top-level review comment ``to`` (added to the PR)."""
        root = next((c for c in pull.comments if c["id"] == to), None)
        if root is None:
            return _error(404, "Not Found")
        if root.get("in_reply_to_id") is not None:
            return _unprocessable("Replies to replies are not supported")
        cid = self._new_id()
        reply = copy.deepcopy(root)
        api = f"{self.url}/repos/{repo.full_name}/pulls"
        html = f"{_TEMPLATE_HTML}/{repo.full_name}/pull/{pull.number}#discussion_r{cid}"
        reply.update(
            id=cid,
            node_id=_node_id("PRRC", cid),
            url=f"{api}/comments/{cid}",
            html_url=html,
            body=body,
            user=user,
            author_association=_association(repo, user),
            in_reply_to_id=to,
            created_at=_now_iso(),
            updated_at=_now_iso(),
        )
        reply["_links"]["self"]["href"] = f"{api}/comments/{cid}"
        reply["_links"]["html"]["href"] = html
        pull.comments.append(reply)
        return reply

    def _issue_comment_json(
        self, repo: _Repo, pull: _Pull, body: str, user: dict
    ) -> dict[str, Any]:
        template = _fixture("issue_comment.created.with-installation.json")["comment"]
        data = _rewrite(template, self._api_pairs(repo.full_name))
        cid = self._new_id()
        api = f"{self.url}/repos/{repo.full_name}/issues"
        data.update(
            id=cid,
            node_id=_node_id("IC", cid),
            url=f"{api}/comments/{cid}",
            html_url=f"{_TEMPLATE_HTML}/{repo.full_name}/pull/{pull.number}#issuecomment-{cid}",
            issue_url=f"{api}/{pull.number}",
            body=body,
            user=user,
            author_association=_association(repo, user),
            created_at=_now_iso(),
            updated_at=_now_iso(),
        )
        return data

    def _check_run_json(self, repo: _Repo, run_id: int, fields: dict[str, Any]) -> dict:
        api = f"{self.url}/repos/{repo.full_name}/check-runs/{run_id}"
        output = fields.get("output") or {}
        return {
            "id": run_id,
            "node_id": _node_id("CR", run_id),
            "head_sha": fields["head_sha"],
            "external_id": fields.get("external_id", ""),
            "url": api,
            "html_url": f"{_TEMPLATE_HTML}/{repo.full_name}/runs/{run_id}",
            "details_url": fields.get("details_url"),
            "status": fields.get("status", "queued"),
            "conclusion": fields.get("conclusion"),
            "started_at": fields.get("started_at") or _now_iso(),
            "completed_at": fields.get("completed_at"),
            "output": {
                "title": output.get("title"),
                "summary": output.get("summary"),
                "text": output.get("text"),
                "annotations_count": 0,
                "annotations_url": f"{api}/annotations",
            },
            "name": fields["name"],
            "check_suite": {"id": _stable_id("suite", repo.full_name, fields["head_sha"])},
            "app": {"id": self.app_id, "slug": APP_SLUG, "name": APP_SLUG, "owner": self.bot},
            "pull_requests": [],
        }

    # -- the Flask app ---------------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask(f"github-standin-{id(self)}")
        app.before_request(self._before)
        app.after_request(self._after)
        routes = [
            ("/app/installations/<int:iid>/access_tokens", self._access_token, ["POST"]),
            ("/app/installations/<int:iid>", self._installation, ["GET"]),
            ("/app", self._get_app, ["GET"]),
            ("/users/<login>", self._get_user, ["GET"]),
            ("/user", self._get_authenticated_user, ["GET"]),
            ("/repos/<owner>/<name>", self._get_repo, ["GET"]),
            ("/repos/<owner>/<name>/pulls", self._list_pulls, ["GET"]),
            ("/repos/<owner>/<name>/pulls/<int:number>", self._get_pull, ["GET"]),
            ("/repos/<owner>/<name>/pulls/<int:number>", self._patch_pull, ["PATCH"]),
            ("/repos/<owner>/<name>/pulls/<int:number>/files", self._get_files, ["GET"]),
            ("/repos/<owner>/<name>/compare/<path:spec>", self._compare, ["GET"]),
            ("/repos/<owner>/<name>/contents/<path:path>", self._contents, ["GET"]),
            ("/repos/<owner>/<name>/pulls/<int:number>/reviews", self._get_reviews, ["GET"]),
            ("/repos/<owner>/<name>/pulls/<int:number>/reviews", self._post_review, ["POST"]),
            ("/repos/<owner>/<name>/pulls/<int:number>/comments", self._get_comments, ["GET"]),
            (
                "/repos/<owner>/<name>/issues/<int:number>/comments",
                self._get_issue_comments,
                ["GET"],
            ),
            (
                "/repos/<owner>/<name>/issues/<int:number>/comments",
                self._post_issue_comment,
                ["POST"],
            ),
            (
                "/repos/<owner>/<name>/pulls/<int:number>/comments/<int:cid>/replies",
                self._post_reply,
                ["POST"],
            ),
            ("/repos/<owner>/<name>/pulls/comments/<int:cid>", self._get_review_comment, ["GET"]),
            (
                "/repos/<owner>/<name>/<any(issues,pulls):where>/comments/<int:cid>/reactions",
                self._post_reaction,
                ["POST"],
            ),
            (
                "/repos/<owner>/<name>/<any(issues,pulls):where>/comments/<int:cid>/reactions",
                self._get_reactions,
                ["GET"],
            ),
            (
                "/repos/<owner>/<name>/<any(issues,pulls):where>/comments/<int:cid>/reactions/"
                "<int:reaction_id>",
                self._delete_reaction,
                ["DELETE"],
            ),
            (
                "/repos/<owner>/<name>/collaborators/<login>/permission",
                self._permission,
                ["GET"],
            ),
            ("/graphql", self._graphql, ["POST"]),
            ("/repos/<owner>/<name>/check-runs", self._create_check_run, ["POST"]),
            (
                "/repos/<owner>/<name>/commits/<path:ref>/check-runs",
                self._list_check_runs_for_ref,
                ["GET"],
            ),
            ("/repos/<owner>/<name>/check-runs/<int:run_id>", self._get_check_run, ["GET"]),
            ("/repos/<owner>/<name>/check-runs/<int:run_id>", self._update_check_run, ["PATCH"]),
        ]
        for rule, view, methods in routes:
            app.add_url_rule(
                rule, f"{view.__name__}_{methods[0]}", view, methods=methods, strict_slashes=False
            )
        app.register_error_handler(404, lambda e: _error(404, "Not Found"))
        app.register_error_handler(405, lambda e: _error(404, "Not Found"))
        return app

    def _before(self) -> Response | None:
        credential = self._credential()
        body = request.get_json(silent=True) if request.data else None
        recorded = _recorded(body, credential)
        with self._lock:
            self._requests.append(recorded)
            failure = self._take_failure()
        if failure is not None:
            if not failure.apply:
                return _failure_response(failure)
            g.failure = failure
        return self._authenticate(credential)

    def _after(self, response: Response) -> Response:
        with self._lock:
            held = next(
                (
                    h
                    for h in self._holds
                    if h.method == request.method and h.pattern.search(request.path)
                ),
                None,
            )
            if held is not None:
                self._holds.remove(held)
        if held is not None:
            held.reached.set()
            held.release.wait(timeout=120)
        failure = g.pop("failure", None)
        if failure is not None:
            response = _failure_response(failure)
        for key, value in {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "4999",
            "x-ratelimit-reset": str(int(time.time()) + 3600),
            "x-ratelimit-used": "1",
            "x-ratelimit-resource": "core",
            "x-github-media-type": "github.v3; format=json",
            "x-github-api-version-selected": "2022-11-28",
        }.items():
            response.headers.setdefault(key, value)
        response.headers.setdefault("x-github-request-id", secrets.token_hex(8).upper())
        return response

    def _take_failure(self) -> _Failure | None:
        for f in self._failures:
            if f.method in ("*", request.method) and f.pattern.search(request.path):
                if f.times is not None:
                    f.times -= 1
                    if f.times <= 0:
                        self._failures.remove(f)
                return f
        return None

    def _credential(self) -> tuple[str, str] | None:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() not in ("token", "bearer") or not value.strip():
            return None
        value = value.strip()
        return ("jwt" if value.count(".") == 2 else "token", value)

    def _authenticate(self, credential: tuple[str, str] | None) -> Response | None:
        """401 unless the request carries the credential its endpoint needs."""
        needs_jwt = request.path.startswith("/app")
        if credential is None and request.method == "GET" and request.path.startswith("/users/"):
            return None  # public profiles need no authentication
        if credential is None:
            return _error(401, "Requires authentication")
        kind, value = credential
        if needs_jwt:
            problem = "A JSON web token could not be decoded"
            if kind == "jwt":
                problem = self._jwt_problem(value)
            return None if problem is None else _error(401, problem)
        with self._lock:
            known = self._tokens.get(value)
        if known is None or known[0] < time.time():
            return _error(401, "Bad credentials")
        g.installation_id = known[1]
        g.user = known[2]
        return None

    def _jwt_problem(self, token: str) -> str | None:
        """Why GitHub would refuse this app JWT, or None when it is valid."""
        with self._lock:
            self.seen_jwts.append(token)
        try:
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=["RS256"],
                options={"require": ["iat", "exp", "iss"]},
                leeway=60,
            )
        except jwt.PyJWTError:
            return "A JSON web token could not be decoded"
        if str(claims["iss"]) != str(self.app_id):
            return "'Issuer' claim ('iss') does not match the GitHub App"
        return None

    def _repo_or_404(self, owner: str, name: str) -> _Repo | Response:
        repo = self._repos.get(f"{owner}/{name}")
        iid = g.get("installation_id")
        if repo is None or (
            iid is not None and repo.installation_id is not None and repo.installation_id != iid
        ):
            return _error(404, "Not Found")
        return repo

    def _pull_or_404(self, owner: str, name: str, number: int) -> tuple[_Repo, _Pull] | Response:
        repo = self._repo_or_404(owner, name)
        if isinstance(repo, Response):
            return repo
        pull = repo.pulls.get(number)
        if pull is None:
            return _error(404, "Not Found")
        return repo, pull

    # -- views -----------------------------------------------------------------------

    def _access_token(self, iid: int) -> Response:
        token = "ghs_" + secrets.token_urlsafe(27).replace("-", "a").replace("_", "b")[:36]
        with self._lock:
            self._tokens[token] = (time.time() + self.token_lifetime, iid, self.bot)
            self.issued_tokens.append(token)
        return _json(
            {
                "token": token,
                "expires_at": _now_iso(self.token_lifetime),
                "permissions": {
                    "checks": "write",
                    "contents": "read",
                    "metadata": "read",
                    "pull_requests": "write",
                },
                "repository_selection": "all",
            },
            201,
        )

    def _get_app(self) -> Response:
        """``GET /app``: the authenticated App (its JWT), GitHub's documented shape."""
        owner = self._user("octo-org", "Organization")
        return _json(
            {
                "id": self.app_id,
                "slug": APP_SLUG,
                "node_id": _node_id("A", self.app_id),
                "client_id": f"Iv1.{hashlib.sha1(str(self.app_id).encode()).hexdigest()[:16]}",
                "owner": owner,
                "name": APP_SLUG,
                "description": "Self-hosted AI code review",
                "external_url": "https://example.com/reviewbot",
                "html_url": f"{_TEMPLATE_HTML}/apps/{APP_SLUG}",
                "created_at": "2024-01-02T03:04:05Z",
                "updated_at": "2024-01-02T03:04:05Z",
                "permissions": {
                    "checks": "write",
                    "contents": "read",
                    "metadata": "read",
                    "pull_requests": "write",
                },
                "events": ["issue_comment", "pull_request", "pull_request_review_comment"],
                "installations_count": 1,
            }
        )

    def _get_authenticated_user(self) -> Response:
        """``GET /user``: the token's own account (an installation token has none: 403)."""
        if g.get("installation_id") is not None:
            return _error(403, "Resource not accessible by integration")
        return self._get_user(g.user["login"])

    def _get_user(self, login: str) -> Response:
        """``GET /users/{login}``: a public profile (404 for an account never shown)."""
        with self._lock:
            known = self._users.get(login.lower())
        if known is None:
            return _error(404, "Not Found")
        user = self._user(*known)
        user.update(
            name=None,
            company=None,
            blog="",
            location=None,
            email=None,
            hireable=None,
            bio=None,
            twitter_username=None,
            public_repos=0,
            public_gists=0,
            followers=0,
            following=0,
            created_at="2024-01-02T03:04:05Z",
            updated_at="2024-01-02T03:04:05Z",
        )
        return _json(user)

    def _installation(self, iid: int) -> Response:
        data = _rewrite(
            _fixture("installation.created.json")["installation"], [(_TEMPLATE_API, self.url)]
        )
        data.update(
            id=iid,
            app_id=self.app_id,
            app_slug=APP_SLUG,
            access_tokens_url=f"{self.url}/app/installations/{iid}/access_tokens",
        )
        return _json(data)

    def _get_repo(self, owner: str, name: str) -> Response:
        with self._lock:
            repo = self._repo_or_404(owner, name)
            return repo if isinstance(repo, Response) else _json(self._repo_json(repo))

    def _get_pull(self, owner: str, name: str, number: int) -> Response:
        with self._lock:
            found = self._pull_or_404(owner, name, number)
            if isinstance(found, Response):
                return found
            repo, pull = found
            if _wants_diff():
                return _diff(pull.diff)
            return _json(self._pull_json(repo, pull))

    def _patch_pull(self, owner: str, name: str, number: int) -> Response:
        """``PATCH /pulls/{n}``: a new ``body`` (and ``title``), as its editor would."""
        data = request.get_json(silent=True)
        if not isinstance(data, dict) or not set(data) <= {"body", "title"}:
            return _unprocessable("Invalid request: only body and title can change here")
        if not all(isinstance(v, str) for v in data.values()):
            return _unprocessable("Invalid request: body and title are strings")
        with self._lock:
            found = self._pull_or_404(owner, name, number)
            if isinstance(found, Response):
                return found
            repo, pull = found
            pull.body = data.get("body", pull.body)
            pull.title = data.get("title", pull.title)
            return _json(self._pull_json(repo, pull))

    def pull_body(self, full_name: str, number: int) -> str:
        with self._lock:
            return self._repo(full_name).pulls[number].body

    def set_pull_body(self, full_name: str, number: int, body: str) -> None:
        """The author edits the pull request's description."""
        with self._lock:
            self._repo(full_name).pulls[number].body = body

    def _list_pulls(self, owner: str, name: str) -> Response:
        """``GET /repos/{o}/{r}/pulls``: ``state`` open/closed/all, ``sort`` created/updated."""
        state = request.args.get("state", "open")
        key = "updated_at" if request.args.get("sort") == "updated" else "created_at"
        with self._lock:
            repo = self._repo_or_404(owner, name)
            if isinstance(repo, Response):
                return repo
            items = []
            for pull in repo.pulls.values():
                if state != "all" and pull.state != state:
                    continue
                item = self._pull_json(repo, pull)
                item.update(
                    merged_at=pull.merged_at,
                    closed_at=pull.merged_at if pull.state == "closed" else None,
                    updated_at=pull.merged_at or item.get("updated_at"),
                    created_at=pull.merged_at or item.get("created_at"),
                )
                items.append(item)
            items.sort(key=lambda i: i[key] or "", reverse=request.args.get("direction") != "asc")
            return _paginate(items)

    def _get_files(self, owner: str, name: str, number: int) -> Response:
        with self._lock:
            found = self._pull_or_404(owner, name, number)
            if isinstance(found, Response):
                return found
            repo, pull = found
            return _paginate([self._file_json(repo, pull, f) for f in pull.files])

    def _compare(self, owner: str, name: str, spec: str) -> Response:
        base, sep, head = spec.partition("...")
        with self._lock:
            repo = self._repo_or_404(owner, name)
            if isinstance(repo, Response):
                return repo
            diff = repo.compares.get((base, head)) if sep else None
            if diff is None and sep and repo.git_dir is not None:
                diff = _git(repo.git_dir, "diff", f"{base}...{head}")
            if diff is None:
                return _error(404, "Not Found")
            if _wants_diff():
                return _diff(diff)
            files = _parse_diff(diff)
            return _json(
                {
                    "url": f"{self.url}/repos/{repo.full_name}/compare/{spec}",
                    "html_url": f"{_TEMPLATE_HTML}/{repo.full_name}/compare/{spec}",
                    "status": "ahead",
                    "ahead_by": 1,
                    "behind_by": 0,
                    "total_commits": 1,
                    "commits": [],
                    "files": [
                        {"filename": f.path, "status": f.status, "patch": f.patch} for f in files
                    ],
                }
            )

    def _contents(self, owner: str, name: str, path: str) -> Response:
        with self._lock:
            repo = self._repo_or_404(owner, name)
            if isinstance(repo, Response):
                return repo
            ref = request.args.get("ref") or repo.default_branch
            files = repo.files.get(ref)
            if (files is None or path not in files) and repo.git_dir is not None:
                text = _git(repo.git_dir, "show", f"{ref}:{path}")
                if text is not None:
                    return _json(self._content_json(repo, ref, path, text))
            if files is None:
                return _error(404, f"No commit found for the ref {ref}")
            if path in files:
                return _json(self._content_json(repo, ref, path, files[path]))
            entries = sorted(
                {p[len(path) + 1 :].split("/")[0] for p in files if p.startswith(path + "/")}
            )
            if not entries:
                return _error(404, "Not Found")
            return _json([self._dir_entry(repo, ref, f"{path}/{e}", files) for e in entries])

    def _content_json(self, repo: _Repo, ref: str, path: str, text: str) -> dict[str, Any]:
        raw = text.encode()
        encoded = base64.b64encode(raw).decode()
        sha = hashlib.sha1(b"blob %d\0" % len(raw) + raw).hexdigest()
        api = f"{self.url}/repos/{repo.full_name}/contents/{path}?ref={ref}"
        html = f"{_TEMPLATE_HTML}/{repo.full_name}/blob/{ref}/{path}"
        git = f"{self.url}/repos/{repo.full_name}/git/blobs/{sha}"
        return {
            "type": "file",
            "encoding": "base64",
            "size": len(raw),
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "content": "\n".join(encoded[i : i + 60] for i in range(0, len(encoded), 60)) + "\n",
            "sha": sha,
            "url": api,
            "git_url": git,
            "html_url": html,
            "download_url": f"https://raw.githubusercontent.com/{repo.full_name}/{ref}/{path}",
            "_links": {"self": api, "git": git, "html": html},
        }

    def _dir_entry(self, repo: _Repo, ref: str, path: str, files: dict[str, str]) -> dict:
        if path in files:
            entry = self._content_json(repo, ref, path, files[path])
            entry.pop("content")
            entry.pop("encoding")
            return entry
        return {
            "type": "dir",
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": hashlib.sha1(path.encode()).hexdigest(),
            "size": 0,
            "url": f"{self.url}/repos/{repo.full_name}/contents/{path}?ref={ref}",
        }

    def _get_reviews(self, owner: str, name: str, number: int) -> Response:
        with self._lock:
            found = self._pull_or_404(owner, name, number)
            return found if isinstance(found, Response) else _paginate(list(found[1].reviews))

    def _get_comments(self, owner: str, name: str, number: int) -> Response:
        with self._lock:
            found = self._pull_or_404(owner, name, number)
            return found if isinstance(found, Response) else _paginate(list(found[1].comments))

    def _post_review(self, owner: str, name: str, number: int) -> Response:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            return _error(400, "Problems parsing JSON")
        with self._lock:
            found = self._pull_or_404(owner, name, number)
            if isinstance(found, Response):
                return found
            repo, pull = found
            problem, anchors = _validate_review(pull, data)
            if problem is not None:
                return _unprocessable(problem)
            rid = self._new_id()
            commit = data.get("commit_id") or pull.head_sha
            event = data.get("event")
            state = _REVIEW_STATES.get(event, "PENDING")
            user = g.get("user") or self.bot
            pull.reviews.append(
                self._review_json(repo, pull, rid, data.get("body") or "", state, commit, user)
            )
            for c, hunk in zip(data.get("comments") or [], anchors, strict=True):
                pull.comments.append(self._comment_json(repo, pull, rid, c, hunk, commit, user))
            return _json(pull.reviews[-1])

    def _get_issue_comments(self, owner: str, name: str, number: int) -> Response:
        with self._lock:
            found = self._pull_or_404(owner, name, number)
            if isinstance(found, Response):
                return found
            return _paginate(list(found[1].issue_comments))

    def _post_issue_comment(self, owner: str, name: str, number: int) -> Response:
        data = request.get_json(silent=True)
        if not isinstance(data, dict) or not isinstance(data.get("body"), str):
            return _unprocessable("Invalid request: body is required")
        if len(data["body"]) > 65536:
            return _unprocessable("Body is too long (maximum is 65536 characters)")
        with self._lock:
            found = self._pull_or_404(owner, name, number)
            if isinstance(found, Response):
                return found
            repo, pull = found
            user = g.get("user") or self.bot
            comment = self._issue_comment_json(repo, pull, data["body"], user)
            pull.issue_comments.append(comment)
            return _json(comment, 201)

    def _post_reply(self, owner: str, name: str, number: int, cid: int) -> Response:
        data = request.get_json(silent=True)
        if not isinstance(data, dict) or not isinstance(data.get("body"), str):
            return _unprocessable("Invalid request: body is required")
        with self._lock:
            found = self._pull_or_404(owner, name, number)
            if isinstance(found, Response):
                return found
            repo, pull = found
            reply = self._reply_json(repo, pull, cid, data["body"], g.get("user") or self.bot)
            return reply if isinstance(reply, Response) else _json(reply, 201)

    def _find_comment(self, repo: _Repo, where: str, cid: int) -> dict[str, Any] | None:
        for pull in repo.pulls.values():
            for c in pull.issue_comments if where == "issues" else pull.comments:
                if c["id"] == cid:
                    return c
        return None

    def _get_review_comment(self, owner: str, name: str, cid: int) -> Response:
        with self._lock:
            repo = self._repo_or_404(owner, name)
            if isinstance(repo, Response):
                return repo
            c = self._find_comment(repo, "pulls", cid)
            return _json(c) if c else _error(404, "Not Found")

    def _post_reaction(self, owner: str, name: str, where: str, cid: int) -> Response:
        data = request.get_json(silent=True) or {}
        content = data.get("content")
        if content not in ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"):
            return _unprocessable(f"Invalid reaction content {content!r}")
        with self._lock:
            repo = self._repo_or_404(owner, name)
            if isinstance(repo, Response):
                return repo
            if self._find_comment(repo, where, cid) is None:
                return _error(404, "Not Found")
            user = g.get("user") or self.bot
            found = self._reactions.setdefault(
                ("issue" if where == "issues" else "review", cid), []
            )
            for r in found:
                if r["content"] == content and r["user"]["login"] == user["login"]:
                    return _json(r, 200)
            rid = self._new_id()
            reaction = {
                "id": rid,
                "node_id": _node_id("REA", rid),
                "user": user,
                "content": content,
                "created_at": _now_iso(),
            }
            found.append(reaction)
            return _json(reaction, 201)

    def _get_reactions(self, owner: str, name: str, where: str, cid: int) -> Response:
        with self._lock:
            key = ("issue" if where == "issues" else "review", cid)
            return _paginate(list(self._reactions.get(key, [])))

    def _delete_reaction(
        self, owner: str, name: str, where: str, cid: int, reaction_id: int
    ) -> Response:
        with self._lock:
            key = ("issue" if where == "issues" else "review", cid)
            found = self._reactions.get(key, [])
            match = next((r for r in found if r["id"] == reaction_id), None)
            if match is None:
                return _error(404, "Not Found")
            found.remove(match)
            return Response(status=204)

    def _permission(self, owner: str, name: str, login: str) -> Response:
        with self._lock:
            repo = self._repo_or_404(owner, name)
            if isinstance(repo, Response):
                return repo
            role = repo.roles.get(login, "read")
            permission = {"maintain": "write", "triage": "read"}.get(role, role)
            return _json({"permission": permission, "role_name": role, "user": self._user(login)})

    def _graphql(self) -> Response:
        """What reviewbot asks of GraphQL: a pull request's review threads, and
        ``resolveReviewThread``."""
        data = request.get_json(silent=True) or {}
        query, variables = data.get("query") or "", data.get("variables") or {}
        if "resolveReviewThread" in query:
            return self._resolve_mutation(str(variables.get("thread") or ""))
        if "reviewThreads" not in query:
            return _json({"errors": [{"message": "unsupported query in the stand-in"}]})
        with self._lock:
            repo = self._repos.get(f"{variables.get('owner')}/{variables.get('name')}")
            pull = repo.pulls.get(variables.get("number")) if repo else None
            if pull is None:
                error = {"type": "NOT_FOUND", "message": "Could not resolve to a PullRequest"}
                return _json({"data": {"repository": None}, "errors": [error]})
            nodes = [
                {
                    "id": f"PRRT_{c['id']}",
                    "isResolved": c["id"] in pull.resolved,
                    "isOutdated": c.get("line") is None,
                    "resolvedBy": _resolver(pull, c["id"]),
                    "comments": {"nodes": [{"databaseId": c["id"]}]},
                }
                for c in pull.comments
                if c.get("in_reply_to_id") is None
            ]
        threads = {"pageInfo": {"hasNextPage": False, "endCursor": None}, "nodes": nodes}
        return _json({"data": {"repository": {"pullRequest": {"reviewThreads": threads}}}})

    def _resolve_mutation(self, thread: str) -> Response:
        """``resolveReviewThread`` as the caller (its login becomes ``resolvedBy``)."""
        root = int(thread.removeprefix("PRRT_")) if thread.startswith("PRRT_") else None
        with self._lock:
            for repo in self._repos.values():
                for pull in repo.pulls.values():
                    if any(c["id"] == root for c in pull.comments):
                        pull.resolved.add(root)
                        pull.resolved_by[root] = (g.get("user") or self.bot)["login"]
                        resolved = {"thread": {"id": thread, "isResolved": True}}
                        return _json({"data": {"resolveReviewThread": resolved}})
        error = {
            "type": "NOT_FOUND",
            "message": f"Could not resolve to a node with the id {thread}",
        }
        return _json({"data": {"resolveReviewThread": None}, "errors": [error]})

    def resolved_threads(self, full_name: str, number: int) -> dict[int, str]:
        """Resolved threads (root comment id → who resolved it)."""
        with self._lock:
            pull = self._repo(full_name).pulls[number]
            return {root: pull.resolved_by.get(root, "") for root in pull.resolved}

    def _create_check_run(self, owner: str, name: str) -> Response:
        data = request.get_json(silent=True) or {}
        with self._lock:
            repo = self._repo_or_404(owner, name)
            if isinstance(repo, Response):
                return repo
            problem = _check_run_problem(data, creating=True)
            if problem:
                return _unprocessable(problem)
            run_id = self._new_id()
            fields = dict(data)
            if fields.get("conclusion") and "status" not in fields:
                fields["status"] = "completed"
            repo.check_runs[run_id] = self._check_run_json(repo, run_id, fields)
            return _json(repo.check_runs[run_id], 201)

    def _list_check_runs_for_ref(self, owner: str, name: str, ref: str) -> Response:
        """GET /repos/{o}/{r}/commits/{ref}/check-runs: ``ref`` a sha or a branch name;
        filtered by ``check_name``, ``status`` and ``app_id``; ``filter=latest`` (the
        default) keeps the newest run of each name and app, ``filter=all`` keeps all.
        Newest first, paginated, as ``{"total_count": n, "check_runs": [...]}``."""
        args = request.args
        status, which = args.get("status"), args.get("filter", "latest")
        if status is not None and status not in ("queued", "in_progress", "completed"):
            return _unprocessable(f"Invalid status {status!r}")
        if which not in ("latest", "all"):
            return _unprocessable(f"Invalid filter {which!r}")
        with self._lock:
            repo = self._repo_or_404(owner, name)
            if isinstance(repo, Response):
                return repo
            heads = {p.head_ref: p.head_sha for p in repo.pulls.values()}
            sha = heads.get(ref, ref)
            runs = sorted(
                (r for r in repo.check_runs.values() if r["head_sha"] == sha),
                key=lambda r: -r["id"],
            )
            if "check_name" in args:
                runs = [r for r in runs if r["name"] == args["check_name"]]
            if "app_id" in args:
                runs = [r for r in runs if str(r["app"]["id"]) == args["app_id"]]
            if which == "latest":
                seen: set[tuple[Any, str]] = set()
                latest = []
                for r in runs:
                    if (r["app"]["id"], r["name"]) not in seen:
                        seen.add((r["app"]["id"], r["name"]))
                        latest.append(r)
                runs = latest
            if status is not None:
                runs = [r for r in runs if r["status"] == status]
            return _paginate(copy.deepcopy(runs), key="check_runs")

    def _get_check_run(self, owner: str, name: str, run_id: int) -> Response:
        with self._lock:
            repo = self._repo_or_404(owner, name)
            if isinstance(repo, Response):
                return repo
            run = repo.check_runs.get(run_id)
            return _json(run) if run else _error(404, "Not Found")

    def _update_check_run(self, owner: str, name: str, run_id: int) -> Response:
        data = request.get_json(silent=True) or {}
        with self._lock:
            repo = self._repo_or_404(owner, name)
            if isinstance(repo, Response):
                return repo
            run = repo.check_runs.get(run_id)
            if run is None:
                return _error(404, "Not Found")
            problem = _check_run_problem(data, creating=False)
            if problem:
                return _unprocessable(problem)
            fields = {
                "head_sha": run["head_sha"],
                "name": run["name"],
                "status": run["status"],
                "conclusion": run["conclusion"],
                "started_at": run["started_at"],
                "completed_at": run["completed_at"],
                "details_url": run["details_url"],
                "external_id": run["external_id"],
                "output": {k: run["output"][k] for k in ("title", "summary", "text")},
            }
            fields.update({k: v for k, v in data.items() if k != "output"})
            if "output" in data:
                fields["output"].update(data["output"])
            if data.get("conclusion") and "status" not in data:
                fields["status"] = "completed"
            if fields["status"] == "completed" and not fields.get("completed_at"):
                fields["completed_at"] = _now_iso()
            repo.check_runs[run_id] = self._check_run_json(repo, run_id, fields)
            return _json(repo.check_runs[run_id])

    # -- GitHub's App manifest flow ---------------------------------------------------

    @property
    def web_url(self) -> str:
        """GitHub's web site on the stand-in (``reviewbot setup --github-url``)."""
        return f"http://127.0.0.1:{self._server.server_port}"

    def _build_manifest_app(self) -> Flask:
        """GitHub's web "create app" pages and the unauthenticated conversion endpoint."""
        app = Flask(f"github-standin-manifest-{id(self)}")
        app.before_request(self._record_manifest_request)
        app.add_url_rule("/settings/apps/new", "new_app", self._new_app, methods=["POST"])
        app.add_url_rule(
            "/organizations/<org>/settings/apps/new",
            "new_org_app",
            self._new_app,
            methods=["POST"],
        )
        app.add_url_rule(
            f"{self.prefix}/app-manifests/<code>/conversions",
            "conversion",
            self._manifest_conversion,
            methods=["POST"],
        )
        app.register_error_handler(404, lambda e: _error(404, "Not Found"))
        app.register_error_handler(405, lambda e: _error(404, "Not Found"))
        return app

    def _record_manifest_request(self) -> None:
        body = request.get_json(silent=True) if request.is_json else None
        recorded = _recorded(body, self._credential())
        with self._lock:
            self._requests.append(recorded)

    def _new_app(self, org: str | None = None) -> Response:
        """The form POST of a manifest (``manifest`` field, ``state`` in the query): the
        person confirms at once; 302 to the manifest's ``redirect_url`` with
        ``?code=...&state=...`` (GitHub's flow, step 2)."""
        try:
            manifest = json.loads(request.form.get("manifest", ""))
        except ValueError:
            return Response("Invalid manifest: not JSON", 400, content_type="text/plain")
        problem = _manifest_problem(manifest)
        if problem:
            return Response(f"Invalid manifest: {problem}", 422, content_type="text/plain")
        state = request.args.get("state")
        code = secrets.token_hex(10)
        with self._lock:
            self.manifests.append({"org": org, "state": state, "manifest": manifest})
            self._manifest_codes[code] = (time.time(), {"org": org, "manifest": manifest})
        query = {"code": code} if state is None else {"code": code, "state": state}
        target = manifest["redirect_url"]
        location = f"{target}{'&' if '?' in target else '?'}{urlencode(query)}"
        return Response(status=302, headers={"Location": location})

    def _manifest_conversion(self, code: str) -> Response:
        """``POST /app-manifests/{code}/conversions``: the App (id ``app_id``, slug
        ``APP_SLUG`` whatever the name) with its key, webhook secret and client
        credentials; a code works once, for an hour (404 otherwise)."""
        with self._lock:
            issued, entry = self._manifest_codes.pop(code, (0.0, None))
            pem = self.app_private_key
        if entry is None or time.time() - issued > 3600:
            return _error(404, "Not Found")
        if pem is None:
            return _error(500, "stand-in: set app_private_key before the manifest flow")
        manifest, org = entry["manifest"], entry["org"]
        owner = self._user(org, "Organization") if org else self._user("Codertocat")
        return _json(
            {
                "id": self.app_id,
                "slug": APP_SLUG,
                "node_id": _node_id("A", self.app_id),
                "owner": owner,
                "name": manifest.get("name") or APP_SLUG,
                "description": manifest.get("description") or "",
                "external_url": manifest["url"],
                "html_url": f"{self.web_url}/apps/{APP_SLUG}",
                "created_at": _now_iso(),
                "updated_at": _now_iso(),
                "permissions": dict(manifest.get("default_permissions") or {}),
                "events": list(manifest.get("default_events") or []),
                "installations_count": 0,
                "client_id": f"Iv1.{hashlib.sha1(str(self.app_id).encode()).hexdigest()[:16]}",
                "client_secret": secrets.token_hex(20),
                "webhook_secret": self.app_webhook_secret,
                "pem": pem,
            },
            201,
        )


#: GitHub's web pages that create an App from a manifest (user, organisation).
_MANIFEST_WEB = re.compile(r"/(?:organizations/[^/]+/)?settings/apps/new/?")


def _manifest_problem(manifest: Any) -> str | None:
    """Why GitHub would refuse this manifest (its documented parameters), or None."""
    if not isinstance(manifest, dict):
        return "the manifest must be a JSON object"
    if not isinstance(manifest.get("url"), str) or not manifest["url"]:
        return "url is required"
    hook = manifest.get("hook_attributes")
    if hook is not None and (not isinstance(hook, dict) or not hook.get("url")):
        return "hook_attributes needs a url"
    if not isinstance(manifest.get("redirect_url"), str):
        return "redirect_url is required (by the stand-in)"
    if not isinstance(manifest.get("default_permissions", {}), dict):
        return "default_permissions must be an object"
    if not isinstance(manifest.get("default_events", []), list):
        return "default_events must be a list"
    return None


# --- validation and responses ----------------------------------------------------------

_REVIEW_STATES = {
    "COMMENT": "COMMENTED",
    "APPROVE": "APPROVED",
    "REQUEST_CHANGES": "CHANGES_REQUESTED",
}
_CHECK_STATUSES = ("queued", "in_progress", "completed", "waiting", "requested", "pending")
_CONCLUSIONS = (
    "success",
    "failure",
    "neutral",
    "cancelled",
    "skipped",
    "timed_out",
    "action_required",
)


def _recorded(body: Any, credential: tuple[Any, ...] | None) -> RecordedRequest:
    """The current request as recorded (its Authorization header left out)."""
    headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
    return RecordedRequest(
        request.method,
        request.path,
        dict(request.args.items()),
        headers,
        body,
        credential[0] if credential else None,
    )


def _validate_review(pull: _Pull, data: dict[str, Any]) -> tuple[str | None, list[_Hunk]]:
    """GitHub's checks on a new review: (the problem or None, each comment's hunk)."""
    event = data.get("event")
    if event is not None and event not in _REVIEW_STATES:
        return f"Event {event!r} is not valid", []
    if event in ("COMMENT", "REQUEST_CHANGES") and not (data.get("body") or "").strip():
        return f"Body is required when using {event}", []
    commit = data.get("commit_id")
    if commit is not None and commit not in pull.commits:
        return "commit_id is not part of the pull request", []
    anchors = []
    for c in data.get("comments") or []:
        problem, hunk = _anchor(pull, c)
        if problem is not None:
            return problem, []
        anchors.append(hunk)
    return None, anchors


def _anchor(pull: _Pull, c: Any) -> tuple[str | None, Any]:
    if not isinstance(c, dict) or not c.get("body") or "path" not in c:
        return "Invalid request: comments need path and body", None
    f = next((f for f in pull.files if f.path == c["path"]), None)
    if f is None:
        return "Path could not be resolved", None
    line, side = c.get("line"), c.get("side", "RIGHT")
    if not isinstance(line, int) or side not in ("LEFT", "RIGHT"):
        return "Line could not be resolved", None
    start, start_side = c.get("start_line"), c.get("start_side", side)
    for hunk in f.hunks:
        if line not in hunk.lines[side]:
            continue
        if start is None:
            return None, hunk
        if not isinstance(start, int) or start >= line:
            return "Start line must precede the end line", None
        if start not in hunk.lines.get(start_side, set()):
            return "Start line must be part of the same hunk as the line", None
        return None, hunk
    return "Line could not be resolved", None


def _diff_hunk(hunk: _Hunk, side: str, line: int) -> str:
    """The hunk up to and including the commented line (GitHub's ``diff_hunk``)."""
    column = 0 if side == "RIGHT" else 1
    for i, numbers in enumerate(hunk.keys):
        if numbers[column] == line:
            return "\n".join(hunk.text[: i + 2])
    return "\n".join(hunk.text)


def _check_run_problem(data: dict[str, Any], creating: bool) -> str | None:
    if creating and (not data.get("name") or not data.get("head_sha")):
        return "Invalid request: name and head_sha are required"
    status = data.get("status")
    if status is not None and status not in _CHECK_STATUSES:
        return f"Invalid status {status!r}"
    conclusion = data.get("conclusion")
    if conclusion is not None and conclusion not in _CONCLUSIONS:
        return f"Invalid conclusion {conclusion!r}"
    if status == "completed" and not conclusion:
        return "Conclusion is required when status is completed"
    output = data.get("output")
    if output is not None and (
        not isinstance(output, dict) or not output.get("title") or not output.get("summary")
    ):
        return "Invalid request: output needs title and summary"
    return None


def _resolver(pull: _Pull, root_id: int) -> dict[str, str] | None:
    """GraphQL's ``resolvedBy`` of a thread: who resolved it, or null."""
    by = pull.resolved_by.get(root_id)
    return {"login": by} if by else None


def _git(git_dir: Path, *args: str) -> str | None:
    """A git command's output in ``git_dir``, or None when git says no (unknown ref…)."""
    done = subprocess.run(
        ["git", "-C", str(git_dir), *args], capture_output=True, text=True, check=False
    )
    return done.stdout if done.returncode == 0 else None


def _wants_diff() -> bool:
    accept = request.headers.get("Accept", "")
    return any(t in accept for t in DIFF_TYPES)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(
        json.dumps(data), status=status, content_type="application/json; charset=utf-8"
    )
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _diff(text: str) -> Response:
    return Response(text, content_type="application/vnd.github.diff; charset=utf-8")


def _error(status: int, message: str, errors: list[Any] | None = None) -> Response:
    data: dict[str, Any] = {"message": message, "documentation_url": DOCS, "status": str(status)}
    if errors is not None:
        data["errors"] = errors
    return _json(data, status)


def _unprocessable(problem: str) -> Response:
    return _json(
        {
            "message": "Unprocessable Entity",
            "errors": [problem],
            "documentation_url": f"{DOCS}/pulls/reviews#create-a-review-for-a-pull-request",
            "status": "422",
        },
        422,
    )


_DEFAULT_FAILURE_BODIES = {
    403: "You have exceeded a secondary rate limit. Please wait a few minutes before you "
    "try again. If you reach out to GitHub Support for help, please include the request ID.",
    429: "API rate limit exceeded for installation. If you reach out to GitHub Support "
    "for help, please include the request ID.",
    422: "Unprocessable Entity",
}


def _failure_response(f: _Failure) -> Response:
    if f.body is not None:
        body = f.body
    elif f.status == 422:
        body = {
            "message": "Unprocessable Entity",
            "errors": ["Line could not be resolved"],
            "documentation_url": f"{DOCS}/pulls/reviews#create-a-review-for-a-pull-request",
            "status": "422",
        }
    else:
        message = _DEFAULT_FAILURE_BODIES.get(f.status, "Server Error")
        body = {"message": message, "documentation_url": DOCS, "status": str(f.status)}
    if isinstance(body, str):
        response = Response(body, status=f.status, content_type="text/plain")
    else:
        response = _json(body, f.status)
    for key, value in f.headers.items():
        response.headers[key] = value
    return response


def _paginate(items: list[Any], key: str | None = None) -> Response:
    """One page of ``items`` with GitHub's ``Link`` header (``page`` / ``per_page``);
    ``key``: the page goes in an object, ``{"total_count": n, key: [...]}``."""
    per_page = max(1, min(100, int(request.args.get("per_page", 30))))
    page = max(1, int(request.args.get("page", 1)))
    last = max(1, -(-len(items) // per_page))
    chunk = items[(page - 1) * per_page : page * per_page]
    links = []

    def link(p: int, rel: str) -> str:
        query = dict(request.args.items(), page=str(p), per_page=str(per_page))
        return f'<{request.base_url}?{urlencode(query)}>; rel="{rel}"'

    if page < last:
        links += [link(page + 1, "next"), link(last, "last")]
    if page > 1:
        links += [link(1, "first"), link(page - 1, "prev")]
    body: Any = chunk if key is None else {"total_count": len(items), key: chunk}
    return _json(body, headers={"Link": ", ".join(links)} if links else None)


# --- fixtures --------------------------------------------------------------------------


def make_app_key() -> str:
    """A fresh RSA private key (PEM text) for a test GitHub App."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def public_key_of(private_pem: str) -> bytes:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="session", name="app_key")
def app_key_fixture() -> str:
    """The test GitHub App's private key (PEM text)."""
    return make_app_key()


@pytest.fixture(name="github")
def github_fixture(app_key: str) -> Iterator[GitHubStandIn]:
    """A running stand-in for app ``APP_ID`` whose JWTs must be signed with ``app_key``."""
    server = GitHubStandIn(APP_ID, public_key_of(app_key))
    try:
        yield server
    finally:
        server.stop()
