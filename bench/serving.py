"""One model, many workers: in-process models against a shared inference server.

    python bench/serving.py [--model smollm2|tiny|DIR] [--prs 4] [--hunks 8] [--workers 4]
                            [--max-new-tokens 64] [--llama-server PATH] [--db 12]
                            [--timeout 1200] [--json OUT]

The real parts, as bench/e2e.py runs them: the GitHub stand-in serves ``--prs``
pull requests of ``--hunks`` hunks each (bench/e2e.py's synthetic diff); the real
Flask app takes their signed ``pull_request.opened`` deliveries over HTTP, all at
once, and enqueues the jobs through Celery into Redis (DB ``--db``, flushed before and
after); ``--workers`` real ``reviewbot worker`` processes take them. Each setup, in
one run:

- ``in-process``: every worker loads its own copy of the model (the default today);
- ``server``: the workers set ``REVIEWBOT_INFERENCE_URL`` to one ``reviewbot model
  serve`` (transformers serve, continuous batching) and load only the tokenizer;
- ``llama-server``: the same workers against llama.cpp's server on the demo model's
  GGUF file (``--llama-server PATH``; the row says why when it did not run).

Reported: the wall time from the first delivery until every review was posted, the
tokens generated (the workers' ``generated N tokens`` lines) per second of that wall
time, and the peak resident memory (VmHWM) of the processes that hold a model: the
workers' job processes in-process, the server otherwise (the workers' job processes,
with the tokenizer only, are listed apart). The workers are ready (model or tokenizer
loaded) before the clock starts. Each setup's reviews must all be posted, once.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import requests
from e2e import (
    REDIS_BASE,
    deliver,
    opened_payload,
    serve_webhook,
    synthetic_pr,
)
from report import write_figures

from reviewbot.settings.defaults import DEMO_MODEL

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from celery_worker import CeleryWorker, WorkerError  # noqa: E402
from github_standin import APP_ID, GitHubStandIn, make_app_key, public_key_of  # noqa: E402
from inference_server import ServedModel, ServerError, free_port, wait_healthy  # noqa: E402

DEFAULT_JSON = ROOT / "bench" / "results" / "serving.json"
log = logging.getLogger("bench.serving")
GENERATED = re.compile(r"generated (\d+) tokens for (\d+) prompts")


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of process ``pid``, in MB (0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else 0.0


def warm_up(url: str) -> None:
    """One completion, so that the server's first-request set-up (the continuous
    batching cache) is not on the clock, as the workers' model loads are not."""
    model = requests.get(f"{url}/models", timeout=30).json()["data"][0]["id"]
    body = {"model": model, "prompt": "def f():", "max_tokens": 4, "temperature": 0}
    requests.post(f"{url}/completions", json=body, timeout=600).raise_for_status()


class Setup:
    """A stand-in with ``prs`` pull requests, the webhook app, and a fresh broker."""

    def __init__(self, args: argparse.Namespace, tag: str) -> None:
        self.key = make_app_key()
        self.github = GitHubStandIn(APP_ID, public_key_of(self.key))
        self.broker_url = f"{REDIS_BASE}/{args.db}"
        self.client = redis.Redis.from_url(self.broker_url)
        self.client.flushdb()
        self.repo = opened_payload(1, "0" * 40)["repository"]["full_name"]
        self.github.add_repo(self.repo)
        diff, files = synthetic_pr(args.hunks)
        base = hashlib.sha1(b"bench-serving-base").hexdigest()
        self.heads = {
            pr: hashlib.sha1(f"bench-serving-{tag}-{pr}".encode()).hexdigest()
            for pr in range(1, args.prs + 1)
        }
        for pr, head in self.heads.items():
            self.github.add_pull(self.repo, pr, diff, head, base, files_at_head=files)
        self.server, self.url = serve_webhook(self.broker_url)

    def env(self, args: argparse.Namespace, model: str | None, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWBOT_")}
        env.update(
            REVIEWBOT_REDIS_URL=self.broker_url,
            REVIEWBOT_APP_ID=str(APP_ID),
            REVIEWBOT_PRIVATE_KEY=self.key,
            REVIEWBOT_GITHUB_API_URL=self.github.url,
            REVIEWBOT_MAX_NEW_TOKENS=str(args.max_new_tokens),
            REVIEWBOT_PROFILE="assertive",
            HF_HUB_OFFLINE="1",
            **extra,
        )
        if model is not None:
            env["REVIEWBOT_MODEL"] = model
        return env

    def close(self) -> None:
        self.server.shutdown()
        self.github.stop()
        self.client.flushdb()


def review_all(
    args: argparse.Namespace, setup: Setup, env: dict[str, str], workdir: Path, tag: str
) -> dict[str, Any]:
    """Start the workers, wait until ready, deliver every PR at once, wait for every
    review; wall time, tokens and the job processes' peak memory."""
    workers = [
        CeleryWorker(env, workdir / f"{tag}-worker{i}.log", name=f"bench-{tag}{i}")
        for i in range(args.workers)
    ]
    try:
        for w in workers:
            w.wait_for_match(r"ready\.", args.timeout)
        started = time.monotonic()
        for pr, head in setup.heads.items():
            deliver(setup.url, opened_payload(pr, head))
        deadline = started + args.timeout
        while True:
            done = sum(w.text().count("finished: posted") for w in workers)
            failed = [w for w in workers if re.search(r"finished: (?!posted)", w.text())]
            if failed:
                raise SystemExit(f"a job did not post:\n{failed[0].text()[-3000:]}")
            if done >= args.prs:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{done} of {args.prs} reviews after {args.timeout:.0f}s")
            time.sleep(0.1)
        wall = time.monotonic() - started
        tokens = sum(int(n) for w in workers for n, _ in GENERATED.findall(w.text()))
        jobs = [pid for w in workers for pid in w.job_processes()]
        job_rss = sum(peak_rss_mb(pid) for pid in jobs)
        per_worker = [w.text().count("finished: posted") for w in workers]
    finally:
        for w in workers:
            w.stop()
    reviews = [len(setup.github.reviews(setup.repo, pr)) for pr in setup.heads]
    if reviews != [1] * args.prs:
        raise SystemExit(f"{tag}: reviews posted per PR {reviews}, not one each")
    return {
        "wall_s": round(wall, 2),
        "generated_tokens": tokens,
        "tokens_per_s": round(tokens / wall, 2),
        "job_processes_peak_rss_mb": round(job_rss, 1),
        "reviews_per_worker": per_worker,
    }


def in_process(args: argparse.Namespace, model: str | None, workdir: Path) -> dict[str, Any]:
    setup = Setup(args, "in-process")
    try:
        r = review_all(args, setup, setup.env(args, model), workdir, "in-process")
    finally:
        setup.close()
    r["model_copies"] = args.workers
    r["model_processes_peak_rss_mb"] = r["job_processes_peak_rss_mb"]
    return r


def shared_server(
    args: argparse.Namespace, model: str | None, workdir: Path, tag: str, start: Any
) -> dict[str, Any]:
    """The workers against one server started by ``start()`` → (url, pid, stop)."""
    url, pid, stop = start()
    setup = Setup(args, tag)
    try:
        env = setup.env(args, model, REVIEWBOT_INFERENCE_URL=url)
        r = review_all(args, setup, env, workdir, tag)
        r["model_processes_peak_rss_mb"] = round(peak_rss_mb(pid), 1)
    finally:
        setup.close()
        stop()
    r["model_copies"] = 1
    return r


def transformers_server(model: str | None, workdir: Path) -> Any:
    def start() -> tuple[str, int, Any]:
        served = ServedModel(model or DEMO_MODEL, workdir / "transformers-serve.log")
        served.start(timeout=600)
        warm_up(served.url)
        return served.url, served.pid(), served.stop

    return start


def llama_server(binary: str, workdir: Path, parallel: int) -> Any:
    from reviewbot.model.demo import find_gguf

    def start() -> tuple[str, int, Any]:
        port = free_port()
        out = open(workdir / "llama-server.log", "w")  # noqa: SIM115 - closed by stop
        threads = str(os.cpu_count() or 1)
        argv = [binary, "-m", str(find_gguf()), "--host", "127.0.0.1", "--port", str(port)]
        argv += ["-c", str(2048 * parallel), "-np", str(parallel), "-t", threads]
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        wait_healthy(f"http://127.0.0.1:{port}/health", proc, 300, workdir / "llama-server.log")
        warm_up(f"http://127.0.0.1:{port}/v1")

        def stop() -> None:
            proc.terminate()
            proc.wait(timeout=30)
            out.close()

        return f"http://127.0.0.1:{port}/v1", proc.pid, stop

    return start


def table(r: dict[str, Any]) -> str:
    rows = [
        f"{r['prs']} PRs of {r['hunks']} hunks, {r['workers']} Celery workers, model {r['model']}, "
        f"max_new_tokens {r['max_new_tokens']}, {r['machine']}",
        "",
        f"{'setup':<14}{'copies':>7}{'wall s':>9}{'tokens':>8}{'tok/s':>8}"
        f"{'model RSS MB':>14}{'job RSS MB':>12}  vs in-process",
    ]
    base = r["setups"].get("in-process")
    for name, s in r["setups"].items():
        if "skipped" in s:
            rows.append(f"{name:<14}  not run: {s['skipped']}")
            continue
        ratio = ""
        if base and name != "in-process":
            ratio = f"{base['wall_s'] / s['wall_s']:.2f}x the speed, {s['model_copies']} copy"
        rows.append(
            f"{name:<14}{s['model_copies']:>7}{s['wall_s']:>9.1f}{s['generated_tokens']:>8}"
            f"{s['tokens_per_s']:>8.1f}{s['model_processes_peak_rss_mb']:>14.0f}"
            f"{s['job_processes_peak_rss_mb']:>12.0f}  {ratio}"
        )
    rows += [
        "",
        "wall: first delivery until every review was posted (workers ready before); tokens: "
        "generated, all PRs; model RSS: peak resident memory of the processes holding the "
        "model (the workers' job processes in-process, the server otherwise); job RSS: the "
        "workers' job processes",
    ]
    return "\n".join(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=DEMO_MODEL, help="smollm2 (default), tiny, a dir or hub id")
    p.add_argument("--prs", type=int, default=4)
    p.add_argument("--hunks", type=int, default=8, help="hunks per PR")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=64, help="REVIEWBOT_MAX_NEW_TOKENS")
    p.add_argument("--llama-server", metavar="PATH", help="llama.cpp's llama-server binary")
    p.add_argument(
        "--setups",
        default="in-process,server,llama-server",
        help="comma-separated: in-process, server, llama-server",
    )
    p.add_argument("--db", type=int, default=12, help="Redis DB of the broker (flushed)")
    p.add_argument("--timeout", type=float, default=1200, help="seconds per setup")
    p.add_argument("--keep-log", action="store_true", help="keep the logs (temp dir)")
    p.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the figures")
    args = p.parse_args(argv)
    if min(args.prs, args.hunks, args.workers, args.max_new_tokens) < 1:
        p.error("--prs, --hunks, --workers and --max-new-tokens must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    workdir = Path(tempfile.mkdtemp(prefix="reviewbot-bench-serving-"))
    wanted = [s.strip() for s in args.setups.split(",") if s.strip()]
    setups: dict[str, Any] = {}
    try:
        if args.model == "tiny":
            from tinymodel import build_tiny_model

            model: str | None = str(build_tiny_model(workdir / "tiny"))
        else:
            model = None if args.model == DEMO_MODEL else args.model
        for name in wanted:
            log.info("setup %s", name)
            if name == "in-process":
                setups[name] = in_process(args, model, workdir)
            elif name == "server":
                start = transformers_server(model, workdir)
                setups[name] = shared_server(args, model, workdir, name, start)
            elif name == "llama-server":
                binary = args.llama_server or shutil.which("llama-server")
                if model is not None:
                    setups[name] = {"skipped": "llama-server runs the demo model's GGUF only"}
                elif binary is None:
                    setups[name] = {"skipped": "no --llama-server PATH and none on PATH"}
                else:
                    start = llama_server(binary, workdir, args.workers)
                    setups[name] = shared_server(args, model, workdir, name, start)
            else:
                raise SystemExit(f"unknown setup {name!r}")
    except (WorkerError, ServerError) as e:
        raise SystemExit(str(e)) from None
    finally:
        if args.keep_log:
            log.info("logs kept in %s", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    result = {
        "bench": "serving",
        "model": args.model,
        "prs": args.prs,
        "hunks": args.hunks,
        "workers": args.workers,
        "max_new_tokens": args.max_new_tokens,
        "setups": setups,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
    }
    print(table(result), flush=True)
    write_figures(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
