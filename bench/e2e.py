"""End to end: one pull request of 20 hunks, from the webhook to the posted review.

    python bench/e2e.py [--model smollm2|tiny|DIR] [--max-new-tokens 128] [--hunks 20]
                        [--quantize auto|4bit|none] [--db 9] [--timeout 540] [--json OUT]

The real parts, as the end-to-end tests run them: the GitHub stand-in
(tests/github_standin.py) on loopback serves a pull request whose diff is a
deterministic, synthetic change of ``--hunks`` hunks over four Python modules;
the real Flask app (``reviewbot.server.app.create_app``) takes the signed
``pull_request.opened`` delivery over HTTP and enqueues the job through Celery
into Redis (DB ``--db``, flushed before and after); a real worker subprocess
(``reviewbot worker``: prefork, one child) runs it with the model (on CUDA when torch
sees a GPU, else on the CPU) and posts the review to the stand-in.

A one-hunk pull request goes first, so that the model is loaded and warm (its
figures are printed as the cold start); then the measured one. Stages, back to
back on one clock: webhook (POST sent until the app logged the job queued: HMAC,
dedupe, ``send_task``; the 202 itself is reported apart), queue wait (until the
worker logged ``job … started``), then the worker's ``timings:`` line
(reviewbot/runners/review.py): fetch (markers, pull request, check run, repository
config, diff), plan, model (engine lookup: the model load on a cold start),
generate (critiques and revisions), post (review, check run completion), and
other (the rest of the job: Celery, client set-up, logging). The total runs
from the POST until the worker logged ``finished: posted``. Prints each stage's
seconds and share of the total, and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
import requests
from report import write_figures
from werkzeug.serving import make_server

from reviewbot.github.events import sign
from reviewbot.review.diffplan import plan_diff
from reviewbot.review.hunks import parse_header
from reviewbot.server.app import create_app
from reviewbot.settings.defaults import DEMO_MODEL, QUANTIZE_CHOICES
from reviewbot.settings.server import Settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
try:
    from celery_worker import CeleryWorker, WorkerError
    from github_standin import APP_ID, GitHubStandIn, make_app_key, public_key_of
except ImportError as e:  # the stand-in lives in the test suite and imports pytest
    raise SystemExit(f"bench/e2e.py needs the test tools ({e}): bash scripts/setup.sh --dev") from e

DEFAULT_JSON = ROOT / "bench" / "results" / "e2e.json"
HOOKS = ROOT / "tests" / "data" / "webhooks"
SECRET = "bench-e2e-secret"
REDIS_BASE = "redis://127.0.0.1:6379"
WARMUP_PR = 1
MEASURED_PR = 2
STAGES = ("webhook", "queue wait", "fetch", "plan", "model", "generate", "post", "other")
log = logging.getLogger("bench.e2e")

# ----------------------------------------------------------------------------- the diff

#: (before, after) bodies of one edited function; ``{t}`` is the module's noun.
_EDITS: list[tuple[str, str]] = [
    (
        'def load_{t}(path):\n    with open(path, encoding="utf-8") as f:\n'
        "        return json.load(f)\n",
        "def load_{t}(path):\n    f = open(path)\n    data = json.loads(f.read())\n"
        "    return data\n",
    ),
    (
        "def parse_{t}_count(text):\n    try:\n        return int(text)\n"
        "    except ValueError:\n        return 0\n",
        "def parse_{t}_count(text):\n    try:\n        return int(text.strip())\n"
        "    except:\n        pass\n",
    ),
    (
        "def find_{t}(db, ident):\n"
        '    cursor = db.execute("SELECT * FROM {t}s WHERE id = ?", (ident,))\n'
        "    return cursor.fetchone()\n",
        "def find_{t}(db, ident):\n"
        "    query = \"SELECT * FROM {t}s WHERE id = '%s'\" % ident\n"
        "    cursor = db.execute(query)\n    return cursor.fetchone()\n",
    ),
    (
        "def tag_{t}(item, tags=None):\n    tags = list(tags or [])\n"
        "    tags.append(item.kind)\n    return tags\n",
        "def tag_{t}(item, tags=[]):\n    tags.append(item.kind)\n"
        '    if item.kind == None:\n        tags.append("unknown")\n    return tags\n',
    ),
    (
        "def fetch_{t}(session, url):\n    response = session.get(url, timeout=10)\n"
        "    response.raise_for_status()\n    return response.json()\n",
        "def fetch_{t}(session, url):\n    for attempt in range(1, 5):\n"
        "        response = session.get(url)\n        if response.status_code == 200:\n"
        "            return response.json()\n    return None\n",
    ),
    (
        "def total_{t}(items):\n    return sum(item.price * item.count for item in items)\n",
        "def total_{t}(items):\n    total = 0\n    for i in range(len(items)):\n"
        "        total = total + items[i].price * items[i].count\n    return round(total, 2)\n",
    ),
    (
        "def page_{t}(rows, page, size):\n    start = page * size\n"
        "    return rows[start : start + size]\n",
        "def page_{t}(rows, page, size):\n    start = (page - 1) * size + 1\n"
        "    end = start + size\n    return rows[start:end]\n",
    ),
    (
        'def connect_{t}(config):\n    log.info("connecting to %s", config.host)\n'
        "    return Client(config.host, config.token)\n",
        "def connect_{t}(config):\n"
        '    log.info("connecting to %s with token %s", config.host, config.token)\n'
        "    client = Client(config.host, config.token, verify=False)\n    return client\n",
    ),
]

#: An unchanged function between two edits: more lines than two hunks' context.
_FILLER = (
    "def describe_{t}_{k}(record):\n"
    '    """A one-line description of a {t} record."""\n'
    "    parts = [str(record.id), record.name]\n"
    "    if record.note:\n"
    "        parts.append(record.note)\n"
    '    return " - ".join(parts)\n'
)
_HEADER = (
    '"""{T} records: loading, lookup and pricing."""\n\n'
    "import json\nimport logging\n\nfrom app.client import Client\n\n"
    "log = logging.getLogger(__name__)\n"
)
_NOUNS = ("order", "user", "invoice", "item")


def _module(noun: str, edits: list[int], after: bool) -> str:
    parts = [_HEADER.format(T=noun.capitalize())]
    for k, e in enumerate(edits):
        parts.append(_FILLER.format(t=noun, k=k))
        parts.append(_EDITS[e][after].format(t=noun))
    parts.append(_FILLER.format(t=noun, k=len(edits)))
    return "\n\n".join(parts)


def _blob(text: str) -> str:
    return hashlib.sha1(f"blob {len(text.encode())}\0{text}".encode()).hexdigest()[:7]


def synthetic_pr(hunks: int) -> tuple[str, dict[str, str]]:
    """A git diff of ``hunks`` hunks over up to four modules, and the files at its head."""
    files = min(len(_NOUNS), hunks)
    diff, head = [], {}
    for i, noun in enumerate(_NOUNS[:files]):
        count = hunks // files + (i < hunks % files)
        edits = [(i * 3 + k) % len(_EDITS) for k in range(count)]
        before, after = _module(noun, edits, False), _module(noun, edits, True)
        path = f"app/{noun}s.py"
        head[path] = after
        diff.append(f"diff --git a/{path} b/{path}\n")
        diff.append(f"index {_blob(before)}..{_blob(after)} 100644\n")
        old_lines = before.splitlines(keepends=True)
        for line in difflib.unified_diff(
            old_lines, after.splitlines(keepends=True), f"a/{path}", f"b/{path}", n=3
        ):
            diff.append(_with_section(line, old_lines))
    return "".join(diff), head


def _with_section(line: str, old_lines: list[str]) -> str:
    """A hunk header with git's default section heading (the last line starting a name)."""
    header = parse_header(line)
    if header is None:
        return line
    start = header.old_start - 1
    heading = next((h for h in reversed(old_lines[:start]) if h[:1].isalpha() or h[:1] in "_$"), "")
    return f"{line.rstrip()} {heading.rstrip()}\n" if heading else line


# ----------------------------------------------------------------------------- the parts


def serve_webhook(broker_url: str) -> tuple[Any, str]:
    """The real Flask app over loopback HTTP (a thread); the server and its URL."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = create_app(Settings(webhook_secrets=(SECRET,), redis_url=broker_url))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/webhook"


def opened_payload(number: int, head_sha: str) -> dict[str, Any]:
    payload = json.loads((HOOKS / "pull_request.opened.json").read_text(encoding="utf-8"))
    payload["number"] = payload["pull_request"]["number"] = number
    payload["pull_request"]["head"]["sha"] = head_sha
    return payload


def deliver(url: str, payload: dict[str, Any]) -> tuple[float, float]:
    """POST a signed ``pull_request`` delivery; wall-clock times of the send and the 202."""
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body, SECRET),
    }
    sent = time.time()
    response = requests.post(url, data=body, headers=headers, timeout=30)
    accepted = time.time()
    if response.status_code != 202 or response.json().get("status") != "queued":
        raise SystemExit(f"the webhook answered {response.status_code}: {response.text}")
    return sent, accepted


# ``reviewbot worker``'s log format: "2025-01-01 12:00:00,123 INFO ForkPoolWorker-1 name: message".
_STAMP = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ \S+ \S+: "


def _epoch(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


class Enqueued(logging.Handler):
    """Wall-clock time of each ``queued job KEY`` line of the in-process webhook app."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.at: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"queued job (\S+) on ", record.getMessage())
        if found:
            self.at[found.group(1)] = record.created


def run_pr(
    worker: CeleryWorker,
    url: str,
    enqueued: Enqueued,
    pr: int,
    head: str,
    repo: str,
    timeout: float,
) -> dict[str, Any]:
    """Deliver the PR's webhook and wait for its job to post; the stages in seconds."""
    deadline = time.monotonic() + timeout
    sent, accepted = deliver(url, opened_payload(pr, head))
    key = f"auto:{repo}:{pr}:{head}:"
    job = re.escape(key)
    started = worker.wait_for_match(_STAMP + rf"job {job} started", timeout, f"job {key} started")
    left = deadline - time.monotonic()
    finished = worker.wait_for_match(
        _STAMP + rf"job {job} finished: (\S+)", left, f"job {key} done"
    )
    timings = worker.wait_for_match(rf"{job}: timings: (.*)$", 5, f"{key}: timings")
    if finished.group(2) != "posted":
        raise SystemExit(f"the job finished {finished.group(2)!r}:\n{worker.text()[-3000:]}")
    job_log = worker.text()[started.start() : finished.end()]
    counts = re.search(r"(\d+) units, (\d+) findings, (\d+) dropped", job_log)
    t_enqueued = enqueued.at.get(key, accepted)
    t_started, t_finished = _epoch(started.group(1)), _epoch(finished.group(1))
    # The worker log has millisecond stamps: a job picked up at once can seem to start
    # before the web app's log line (written after send_task) by up to a millisecond.
    stages = {"webhook": t_enqueued - sent, "queue wait": max(0.0, t_started - t_enqueued)}
    for name, seconds in re.findall(r"(\w+)=([\d.]+)s", timings.group(1)):
        stages[name] = float(seconds)
    in_worker = sum(v for k, v in stages.items() if k not in ("webhook", "queue wait"))
    stages["other"] = max(0.0, (t_finished - t_started) - in_worker)
    total = max(t_finished - sent, 1e-9)
    return {
        "seconds": {k: round(v, 3) for k, v in stages.items()},
        "share": {k: round(v / total, 4) for k, v in stages.items()},
        "total_s": round(total, 3),
        "response_202_s": round(accepted - sent, 4),
        "findings": int(counts.group(2)) if counts else None,
        "dropped_by_noise_control": int(counts.group(3)) if counts else None,
    }


def measure(args: argparse.Namespace, model: str | None, workdir: Path) -> dict[str, Any]:
    diff, head_files = synthetic_pr(args.hunks)
    plan = plan_diff(diff)
    if len(plan.units) != args.hunks:
        raise SystemExit(f"the synthetic diff plans to {len(plan.units)} units, not {args.hunks}")
    warm_diff, warm_files = synthetic_pr(1)
    key = make_app_key()
    github = GitHubStandIn(APP_ID, public_key_of(key))
    broker_url = f"{REDIS_BASE}/{args.db}"
    client = redis.Redis.from_url(broker_url)
    client.flushdb()
    repo = opened_payload(MEASURED_PR, "0" * 40)["repository"]["full_name"]
    github.add_repo(repo)
    base = hashlib.sha1(b"bench-e2e-base").hexdigest()
    heads = {pr: hashlib.sha1(f"bench-e2e-{pr}".encode()).hexdigest() for pr in (1, 2)}
    github.add_pull(repo, WARMUP_PR, warm_diff, heads[WARMUP_PR], base, files_at_head=warm_files)
    github.add_pull(repo, MEASURED_PR, diff, heads[MEASURED_PR], base, files_at_head=head_files)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWBOT_")}
    env.update(
        REVIEWBOT_REDIS_URL=broker_url,
        REVIEWBOT_APP_ID=str(APP_ID),
        REVIEWBOT_PRIVATE_KEY=key,
        REVIEWBOT_GITHUB_API_URL=github.url,
        REVIEWBOT_QUANTIZE=args.quantize,
        REVIEWBOT_MAX_NEW_TOKENS=str(args.max_new_tokens),
        HF_HUB_OFFLINE="1",
    )
    if model is not None:
        env["REVIEWBOT_MODEL"] = model
    enqueued = Enqueued()
    logging.getLogger("reviewbot.server.app").addHandler(enqueued)
    logging.getLogger("reviewbot.server.app").setLevel(logging.INFO)
    server, url = serve_webhook(broker_url)
    worker = CeleryWorker(env, workdir / "worker.log", name="bench")
    try:
        worker.wait_for_match(r"ready\.", 120)
        cold = run_pr(worker, url, enqueued, WARMUP_PR, heads[WARMUP_PR], repo, args.timeout)
        warm = run_pr(worker, url, enqueued, MEASURED_PR, heads[MEASURED_PR], repo, args.timeout)
        reviews = github.reviews(repo, MEASURED_PR)
        loaded = re.search(r"loading model (\S+) on (\S+) \(([^)]*)\)", worker.text())
    except BaseException:
        log.error("worker log: %s%s", worker.log, "" if args.keep_log else " (removed)")
        raise
    finally:
        worker.stop()
        server.shutdown()
        github.stop()
        client.flushdb()
    if len(reviews) != 1:
        raise SystemExit(f"expected one review on the measured PR, found {len(reviews)}")
    return {
        "bench": "e2e",
        "model": args.model,
        "device": loaded.group(2) if loaded else "?",
        "precision": loaded.group(3) if loaded else "?",
        "max_new_tokens": args.max_new_tokens,
        "hunks": args.hunks,
        "units": len(plan.units),
        "files": len(plan.files),
        "diff_bytes": len(diff.encode()),
        "inline_comments": len(reviews[0]["comments"]),
        "measured": warm,
        "cold_start": cold,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
    }


#: What each stage covers, for the table.
STAGE_NOTES = {
    "webhook": "POST sent until the app logged the job queued (HMAC, dedupe, send_task)",
    "queue wait": "queued until the worker logged 'job ... started'",
    "fetch": "markers, PR, check run, repo config, diff (+ token when cold; paced)",
    "plan": "plan_diff",
    "model": "engine lookup (the model load on a cold start)",
    "generate": "critiques + revisions (repo defaults: revise on, summary off)",
    "post": "review + check run completion (1 s pacing between writes)",
    "other": "rest of the job: Celery, client set-up, logging",
}


def table(r: dict[str, Any]) -> str:
    m, c = r["measured"], r["cold_start"]
    rows = [
        f"PR of {r['hunks']} hunks over {r['files']} files ({r['diff_bytes']:,} B of diff), "
        f"model {r['model']} on {r['device']} ({r['precision']}), "
        f"max_new_tokens {r['max_new_tokens']}: {r['units']} units, {m['findings']} findings "
        f"({m['dropped_by_noise_control']} critiques dropped as noise), "
        f"{r['inline_comments']} inline comments posted",
        "",
        f"{'stage':<12}{'seconds':>9}{'share':>8}{'cold':>9}  covers",
    ]
    for stage in STAGES:
        rows.append(
            f"{stage:<12}{m['seconds'].get(stage, 0.0):>9.3f}{m['share'].get(stage, 0.0):>8.1%}"
            f"{c['seconds'].get(stage, 0.0):>9.3f}  {STAGE_NOTES[stage]}"
        )
    rows += [
        f"{'total':<12}{m['total_s']:>9.3f}{1:>8.1%}{c['total_s']:>9.3f}  "
        "webhook POST sent until the worker logged 'finished: posted'",
        "",
        f"202 answered after {m['response_202_s'] * 1000:.1f} ms; share: of the total; "
        "cold: the warm-up PR (1 hunk) that loads the model",
    ]
    return "\n".join(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=DEMO_MODEL, help="smollm2 (default), tiny, a dir or hub id")
    p.add_argument("--max-new-tokens", type=int, default=128, help="REVIEWBOT_MAX_NEW_TOKENS")
    p.add_argument("--quantize", choices=QUANTIZE_CHOICES, default="auto")
    p.add_argument("--hunks", type=int, default=20, help="hunks of the measured PR")
    p.add_argument("--db", type=int, default=9, help="Redis DB for broker + dedupe (flushed)")
    p.add_argument("--timeout", type=float, default=540, help="seconds each PR may take")
    p.add_argument("--keep-log", action="store_true", help="keep the worker log (temp dir)")
    p.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the figures")
    args = p.parse_args(argv)
    if args.hunks < 1 or args.max_new_tokens < 1:
        p.error("--hunks and --max-new-tokens must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    workdir = Path(tempfile.mkdtemp(prefix="reviewbot-bench-e2e-"))
    try:
        if args.model == "tiny":
            from tinymodel import build_tiny_model

            model: str | None = str(build_tiny_model(workdir / "tiny"))
        else:
            model = None if args.model == DEMO_MODEL else args.model
        result = measure(args, model, workdir)
    except WorkerError as e:
        raise SystemExit(str(e)) from None
    finally:
        if not args.keep_log:
            shutil.rmtree(workdir, ignore_errors=True)
    print(table(result), flush=True)
    write_figures(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
