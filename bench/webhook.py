"""Webhook throughput: the real app vs a bare Flask endpoint, same client, same run.

    python bench/webhook.py [--requests N] [--concurrency C] [--json OUT]

A child process serves two apps over loopback HTTP with werkzeug's threaded
server: the real ``reviewbot.web`` app (HMAC check, JSON parse, event parsing,
Redis dedupe, Celery ``send_task`` to a Redis broker) and a bare Flask endpoint
that reads the body and answers 202. The same keep-alive ``http.client`` loop
sends both the same N signed ``pull_request.synchronize`` deliveries (real
GitHub payload, each with a distinct delivery id and head sha, so nothing
dedupes). Prints requests/s and p50/p99 latency of both and their ratio, checks
that every job landed in the broker queue, and writes the figures as JSON.
Redis DB ``--db`` (default 12) is flushed before and after.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import logging
import multiprocessing as mp
import platform
import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import redis
from flask import Flask, request
from report import write_figures

from reviewbot.github.events import sign
from reviewbot.server.app import create_app
from reviewbot.settings.defaults import QUEUE_REVIEWS
from reviewbot.settings.server import Settings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JSON = ROOT / "bench" / "results" / "webhook.json"
FIXTURE = ROOT / "tests" / "data" / "webhooks" / "pull_request.synchronize.json"
SECRET = "bench-webhook-secret"
REDIS_BASE = "redis://127.0.0.1:6379"
WARMUP = 50
log = logging.getLogger("bench.webhook")


@dataclass(frozen=True)
class Delivery:
    """One signed request: body and headers."""

    body: bytes
    headers: dict[str, str]


def deliveries(count: int, seed: str) -> list[Delivery]:
    """``count`` signed synchronize deliveries, each with a new delivery id and head sha."""
    payload = json.loads(FIXTURE.read_text(encoding="utf-8"))
    out = []
    for i in range(count):
        payload["after"] = hashlib.sha1(f"{seed}-{i}".encode()).hexdigest()
        body = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "pull_request",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(body, SECRET),
        }
        out.append(Delivery(body, headers))
    return out


def bare_app() -> Flask:
    """The baseline: reads the body (keep-alive needs it consumed) and answers 202."""
    app = Flask("bare")

    @app.post("/webhook")
    def webhook() -> tuple[str, int]:
        request.get_data()
        return "", 202

    return app


def serve(broker_url: str, conn: Connection) -> None:
    """Child process: serve both apps, send their ports, stop when told."""
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # Every delivery is admitted (a cap far above the run's deliveries): the bench times
    # the whole admission path, not the refusal of an installation over its cap.
    settings = Settings(
        webhook_secrets=(SECRET,), redis_url=broker_url, installation_max_jobs=10**9
    )
    real = create_app(settings)
    servers = {
        "bare": make_server("127.0.0.1", 0, bare_app(), threaded=True),
        "reviewbot": make_server("127.0.0.1", 0, real, threaded=True),
    }
    for server in servers.values():
        threading.Thread(target=server.serve_forever, daemon=True).start()
    conn.send({name: s.server_port for name, s in servers.items()})
    conn.recv()  # stop
    for server in servers.values():
        server.shutdown()
        server.server_close()


def send_all(port: int, items: list[Delivery], concurrency: int) -> tuple[list[float], int]:
    """Latencies (seconds) of POSTing ``items`` over keep-alive connections; non-202 count."""
    chunks = [items[i::concurrency] for i in range(concurrency)]
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda chunk: _send_chunk(port, chunk), chunks))
    latencies = [t for chunk, _ in results for t in chunk]
    return latencies, sum(bad for _, bad in results)


def _send_chunk(port: int, items: list[Delivery]) -> tuple[list[float], int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies, bad = [], 0
    for item in items:
        start = time.perf_counter()
        conn.request("POST", "/webhook", body=item.body, headers=item.headers)
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - start)
        if response.status != 202:
            bad += 1
    conn.close()
    return latencies, bad


def measure(port: int, items: list[Delivery], concurrency: int) -> dict[str, Any]:
    """Warm up, then time ``items``: requests/s and latency percentiles (ms)."""
    send_all(port, items[:WARMUP], 1)
    timed = items[WARMUP:]
    start = time.perf_counter()
    latencies, bad = send_all(port, timed, concurrency)
    wall = time.perf_counter() - start
    ms = sorted(t * 1000 for t in latencies)
    return {
        "requests": len(timed),
        "non_202": bad,
        "seconds": round(wall, 4),
        "requests_per_s": round(len(timed) / wall, 1),
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 3),
        "max_ms": round(ms[-1], 3),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    broker_url = f"{REDIS_BASE}/{args.db}"
    client = redis.Redis.from_url(broker_url)
    client.flushdb()
    items = deliveries(args.requests + WARMUP, uuid.uuid4().hex)
    parent, child = mp.get_context("spawn").Pipe()
    proc = mp.get_context("spawn").Process(target=serve, args=(broker_url, child), daemon=True)
    proc.start()
    try:
        ports = parent.recv()
        bare = measure(ports["bare"], items, args.concurrency)
        real = measure(ports["reviewbot"], items, args.concurrency)
        queued = client.llen(QUEUE_REVIEWS)
    finally:
        parent.send("stop")
        proc.join(10)
        client.flushdb()
    return {
        "bench": "webhook",
        "concurrency": args.concurrency,
        "server": "werkzeug threaded (child process), loopback HTTP keep-alive",
        "payload_bytes": len(items[0].body),
        "bare": bare,
        "reviewbot": real,
        "queued_in_broker": queued,
        "expected_queued": len(items),
        "throughput_ratio_reviewbot_over_bare": round(
            real["requests_per_s"] / bare["requests_per_s"], 3
        ),
        "p50_overhead_ms": round(real["p50_ms"] - bare["p50_ms"], 3),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {mp.cpu_count()} cpus",
    }


def table(r: dict[str, Any]) -> str:
    rows = [
        f"{r['reviewbot']['requests']} signed deliveries ({r['payload_bytes']} B each), "
        f"concurrency {r['concurrency']}, {r['server']}",
        f"{'endpoint':<12} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'non-202':>8}",
    ]
    for name in ("bare", "reviewbot"):
        m = r[name]
        rows.append(
            f"{name:<12} {m['requests_per_s']:>9.1f} {m['p50_ms']:>8.3f} "
            f"{m['p99_ms']:>8.3f} {m['max_ms']:>8.3f} {m['non_202']:>8}"
        )
    rows.append(
        f"reviewbot/bare throughput: {r['throughput_ratio_reviewbot_over_bare']:.3f}x; "
        f"p50 overhead {r['p50_overhead_ms']:.3f} ms; "
        f"jobs in broker queue: {r['queued_in_broker']}/{r['expected_queued']}"
    )
    return "\n".join(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=2000, help="timed requests per endpoint")
    p.add_argument("--concurrency", type=int, default=1, help="client connections in parallel")
    p.add_argument("--db", type=int, default=12, help="Redis DB for broker + dedupe (flushed)")
    p.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the figures")
    args = p.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1:
        p.error("--requests and --concurrency must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = run(args)
    print(table(result), flush=True)
    write_figures(result, args.json)
    bad = result["bare"]["non_202"] + result["reviewbot"]["non_202"]
    return 1 if bad or result["queued_in_broker"] != result["expected_queued"] else 0


if __name__ == "__main__":
    sys.exit(main())
