"""Ready or say why: a worker takes jobs only once its job process has loaded the model.

The job process (Celery's prefork child) loads the base model and every adapter the
server serves when it starts (Celery's ``worker_process_init``, before it can take
a job: :func:`load_at_start`), within ``REVIEWBOT_MODEL_LOAD_TIMEOUT``, and reports
on a pipe its parent opened before forking: ``ready``, or ``failed`` and why (it then
exits with :data:`EXIT_NOT_READY`).

In the parent, the :class:`WaitForModel` bootstep runs after the pool has started and
before the consumer: it waits for that report, so the worker consumes no job before
its job process can run one. A failure, the job process's death or no report in time
stops the worker with :data:`EXIT_NOT_READY`, the reason logged and kept in
:data:`failure` for ``reviewbot worker`` to print. Afterwards a watcher thread reads
the reports of replacement job processes (Celery starts one when one dies): one that
cannot load the model stops the worker the same way, instead of failing every job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
import threading
import time
from typing import Any, NoReturn

from celery import bootsteps, signals
from celery.exceptions import WorkerShutdown, WorkerTerminate
from celery.worker import state

from reviewbot import logs, metrics
from reviewbot.settings.defaults import DEMO_MODEL
from reviewbot.settings.server import Settings
from worker import runtime

log = logging.getLogger(__name__)

#: The exit status of a worker whose job process could not load the model (or that
#: could not start otherwise, e.g. its metrics port was taken).
EXIT_NOT_READY = 3
#: Seconds the parent waits past the load timeout before it stops waiting (the job
#: process enforces the timeout itself; this covers one stuck where no signal reaches).
PARENT_GRACE = 30
#: A report is one write of at most this many bytes (under PIPE_BUF: never interleaved).
_REPORT_BYTES = 3000

#: Why the worker stopped without becoming ready (in the parent), else None.
failure: str | None = None
#: The worker's exit status once it has stopped (Celery's ``app.start`` drops it).
exit_code: int | None = None
#: The report pipe (read end, write end), opened by the parent before it forks.
_pipe: tuple[int, int] | None = None


def open_reports() -> None:
    """Open the report pipe (in the parent, before the pool forks)."""
    global _pipe
    if _pipe is None:
        _pipe = os.pipe()


def report(status: str, detail: str = "") -> None:
    """Tell the parent ``status`` (``ready`` or ``failed``) with ``detail`` on one line;
    nothing when there is no report pipe (a process not started by a worker)."""
    if _pipe is None:
        return
    line = " ".join([status, str(os.getpid()), *detail.split()])
    try:
        os.write(_pipe[1], line.encode("utf-8", "replace")[: _REPORT_BYTES - 1] + b"\n")
    except OSError as e:  # the parent is gone
        log.warning("could not report %s to the worker: %s", status, e)


class LoadTimeout(Exception):
    """The model did not load within REVIEWBOT_MODEL_LOAD_TIMEOUT."""


def load_at_start(**_: Any) -> None:
    """In the job process, before it takes a job: load the model and every adapter,
    then report; on failure log why, report it and exit with EXIT_NOT_READY."""
    settings: Settings | None = None
    started = time.perf_counter()
    try:
        settings = runtime.settings()
        with _time_limit(settings.model_load_timeout):
            shared = runtime.preload()
    except Exception as e:
        model = (settings.model if settings else None) or DEMO_MODEL
        reason = logs.mask(f"cannot load the model {model}: {type(e).__name__}: {e}")
        log.error("job process %d: %s", os.getpid(), reason, exc_info=True)
        report("failed", reason)
        _flush_logs()
        os._exit(EXIT_NOT_READY)
    seconds = time.perf_counter() - started
    metrics.worker().model_load_seconds.observe(seconds)
    if hasattr(shared, "base"):
        log.info(
            "model %s loaded in %.1f s on %s with %d adapter(s) (CUDA_VISIBLE_DEVICES=%s)",
            shared.base.name,
            seconds,
            shared.base.device,
            len(shared.adapters),
            os.environ.get("CUDA_VISIBLE_DEVICES", "unset"),
        )
    else:
        log.info(
            "model %s served by %s (tokenizer loaded in %.1f s)", shared.name, shared.url, seconds
        )
    report("ready")


class _time_limit:
    """Raise LoadTimeout in the main thread after ``seconds`` (SIGALRM)."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self.previous: Any = None

    def __enter__(self) -> None:
        def expired(signum: int, frame: Any) -> None:
            raise LoadTimeout(f"not loaded within {self.seconds} s (REVIEWBOT_MODEL_LOAD_TIMEOUT)")

        self.previous = signal.signal(signal.SIGALRM, expired)
        signal.alarm(self.seconds)

    def __exit__(self, *exc: object) -> None:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.previous)


def _flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def fail(reason: str) -> NoReturn:
    """Stop the worker (in the parent, while it starts) with EXIT_NOT_READY, saying why."""
    global failure
    failure = reason
    log.error("the worker stops: %s", reason)
    raise WorkerShutdown(EXIT_NOT_READY)


def _shutdown_requested() -> int | None:
    """The exit code of a shutdown someone asked for (SIGTERM, SIGINT), if any."""
    for flag in (state.should_terminate, state.should_stop):
        if flag is not None and flag is not False:
            return int(flag)
    return None


class _Reader:
    """Report lines from the pipe's read end."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""

    def lines(self, timeout: float | None) -> list[tuple[str, int, str]]:
        """The complete reports that arrive within ``timeout`` seconds (None: block)."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise EOFError("the report pipe was closed")
            self.buffer += chunk
        out = []
        while b"\n" in self.buffer:
            raw, self.buffer = self.buffer.split(b"\n", 1)
            status, _, rest = raw.decode("utf-8", "replace").partition(" ")
            pid, _, detail = rest.partition(" ")
            out.append((status, int(pid) if pid.isdigit() else 0, detail))
        return out


def _remember_exit(sender: Any, **_: Any) -> None:
    """Celery's worker_shutdown: keep the worker's exit status for ``reviewbot worker``."""
    global exit_code
    exit_code = getattr(sender, "exitcode", None)


def _job_processes(worker: Any) -> list[Any]:
    """The pool's processes (billiard), if the pool exposes them."""
    pool = getattr(getattr(worker, "pool", None), "_pool", None)
    return list(getattr(pool, "_pool", None) or [])


class WaitForModel(bootsteps.StartStopStep):
    """Between the pool's start and the consumer's: wait until the job process has
    loaded the model; stop the worker, saying why, when it cannot (module docstring)."""

    label = "Model"
    requires = ("worker.observe:Observe",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.reader: _Reader | None = None

    def create(self, worker: Any) -> None:
        open_reports()  # before the pool forks its job process
        signals.worker_process_init.connect(load_at_start, weak=False)
        signals.worker_shutdown.connect(_remember_exit, weak=False)

    def start(self, worker: Any) -> None:
        assert _pipe is not None
        self.reader = _Reader(_pipe[0])
        timeout = runtime.settings().model_load_timeout
        self._wait(worker, time.monotonic() + timeout + PARENT_GRACE, timeout)
        threading.Thread(target=self._watch, name="reviewbot-readiness", daemon=True).start()

    def _wait(self, worker: Any, deadline: float, timeout: int) -> None:
        """Until the first job process reports (see the class docstring)."""
        assert self.reader is not None
        log.info("waiting for the job process to load the model")
        while True:
            for status, pid, detail in self.reader.lines(0.5):
                if status == "ready":
                    log.info("job process %d has loaded the model: taking jobs", pid)
                    return
                fail(detail or f"job process {pid} could not load the model")
            code = _shutdown_requested()
            if code is not None:
                self._kill(worker)
                raise (WorkerTerminate if state.should_terminate else WorkerShutdown)(code)
            dead = [p for p in _job_processes(worker) if p.exitcode is not None]
            if dead:
                fail(
                    f"the job process died while loading the model "
                    f"(exit code {dead[0].exitcode}; killed, or out of memory?)"
                )
            if time.monotonic() > deadline:
                self._kill(worker)
                fail(f"the job process did not load the model within {timeout} s")

    def _kill(self, worker: Any) -> None:
        for process in _job_processes(worker):
            if process.exitcode is None and process.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)

    def _watch(self) -> None:
        """After the start: a replacement job process that cannot load the model stops
        the worker (warm shutdown, EXIT_NOT_READY)."""
        global failure
        assert self.reader is not None
        while True:
            try:
                reports = self.reader.lines(None)
            except (OSError, EOFError):
                return
            for status, pid, detail in reports:
                if status == "ready":
                    log.info("job process %d has loaded the model", pid)
                    continue
                failure = detail or f"job process {pid} could not load the model"
                log.error("the worker stops: %s", failure)
                state.should_stop = EXIT_NOT_READY
