"""``reviewbot worker --gpus 0,1,3``: one worker process per GPU, supervised.

Each worker is a ``reviewbot worker`` process of its own, with
``CUDA_VISIBLE_DEVICES`` set to its GPU, its own Celery hostname and its own metrics
port (the configured port plus its index). The supervisor restarts a worker that
crashed, after a backoff, and gives up after repeated immediate failures (a model
that cannot load fails every start): :func:`next_step` is that policy, a pure
function of the worker's past runs. A worker that gave up stops the others, and the
supervisor exits non-zero saying why. SIGTERM and SIGINT are forwarded to every
worker (each runs in its own process group, so a terminal's Ctrl+C reaches it once,
through the supervisor); a second one escalates as it does for Celery (cold shutdown).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reviewbot.settings.defaults import (
    WORKER_GIVE_UP_AFTER,
    WORKER_RESTART_DELAY,
    WORKER_RESTART_MAX_DELAY,
    WORKER_STABLE_SECONDS,
)
from worker.readiness import EXIT_NOT_READY

log = logging.getLogger(__name__)

#: A GPU as ``CUDA_VISIBLE_DEVICES`` names it: an index, or a GPU-/MIG- UUID.
_GPU = re.compile(r"[A-Za-z0-9][A-Za-z0-9:_-]*")
#: The Celery node name of a GPU's worker when ``--hostname`` is not given.
DEFAULT_NODE = "reviewbot"
#: Seconds between two looks at the workers.
POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Run:
    """How one run of a worker ended: its exit code (negative: the signal that killed
    it, as :attr:`subprocess.Popen.returncode`) and how long it ran."""

    exit_code: int
    seconds: float


@dataclass(frozen=True)
class RestartPolicy:
    """When a worker that ended is started again (see :func:`next_step`)."""

    delay: float = WORKER_RESTART_DELAY
    max_delay: float = WORKER_RESTART_MAX_DELAY
    give_up_after: int = WORKER_GIVE_UP_AFTER
    stable_after: float = WORKER_STABLE_SECONDS

    def immediate(self, run: Run) -> bool:
        """Whether ``run`` failed before the worker was of any use: it could not load
        its model (EXIT_NOT_READY), or it failed within ``stable_after`` seconds."""
        return run.exit_code != 0 and (
            run.exit_code == EXIT_NOT_READY or run.seconds < self.stable_after
        )


@dataclass(frozen=True)
class Restart:
    """Start the worker again after ``delay`` seconds."""

    delay: float


@dataclass(frozen=True)
class GiveUp:
    """Do not start the worker again, for ``reason``."""

    reason: str


def next_step(
    runs: Sequence[Run], policy: RestartPolicy = RestartPolicy()
) -> Restart | GiveUp | None:
    """What to do after a worker's latest run (``runs``: all of them, oldest first).

    None: it exited 0 (it was asked to stop), so it stays stopped. Otherwise it
    crashed: restart it after ``policy.delay`` seconds, doubled for each immediate
    failure in a row before this one (up to ``policy.max_delay``); a run that lasted
    (not immediate) ends the streak. ``policy.give_up_after`` immediate failures in
    a row: give up.
    """
    if not runs:
        raise ValueError("no run to decide on")
    last = runs[-1]
    if last.exit_code == 0:
        return None
    streak = 0
    for run in reversed(runs):
        if not policy.immediate(run):
            break
        streak += 1
    if streak >= policy.give_up_after:
        return GiveUp(
            f"{streak} immediate failures in a row (each exited before its model was "
            f"loaded, or within {policy.stable_after:g} s of its start); last {_ended(last)}"
        )
    delay = policy.delay * 2 ** max(streak - 1, 0)
    return Restart(min(delay, policy.max_delay))


def _ended(run: Run) -> str:
    if run.exit_code < 0:
        try:
            name = signal.Signals(-run.exit_code).name
        except ValueError:
            name = f"signal {-run.exit_code}"
        return f"killed by {name} after {run.seconds:.1f} s"
    return f"exit code {run.exit_code} after {run.seconds:.1f} s"


def parse_gpus(text: str) -> list[str]:
    """``0,1,3`` → ["0", "1", "3"]; ValueError for an empty, malformed or repeated id."""
    gpus = [part.strip() for part in text.split(",")]
    bad = [g for g in gpus if not _GPU.fullmatch(g)]
    if bad or not gpus:
        raise ValueError(f"--gpus takes comma-separated GPU ids such as 0,1,3 (got {text!r})")
    if len(set(gpus)) != len(gpus):
        raise ValueError(f"--gpus names a GPU twice ({text!r})")
    return gpus


def node_name(hostname: str | None, gpu: str) -> str:
    """The Celery node name of ``gpu``'s worker: ``--hostname`` with ``-gpuN`` added to
    its name part, else ``reviewbot-gpuN@%h``."""
    name, at, host = (hostname or f"{DEFAULT_NODE}@%h").partition("@")
    suffix = re.sub(r"[^A-Za-z0-9-]", "-", gpu)
    return f"{name}-gpu{suffix}{at}{host}"


@dataclass(frozen=True)
class WorkerSpec:
    """One supervised worker: its name, command line and environment."""

    name: str
    argv: list[str]
    env: dict[str, str]


def gpu_workers(
    gpus: Sequence[str],
    command: Sequence[str],
    hostname: str | None,
    metrics_port: int,
    environ: Mapping[str, str],
) -> list[WorkerSpec]:
    """The workers of ``--gpus``: ``command`` (a ``reviewbot worker`` command line
    without ``--hostname``) per GPU, with its node name, CUDA_VISIBLE_DEVICES and
    metrics port (``metrics_port`` plus its index; 0: none)."""
    if metrics_port and metrics_port + len(gpus) - 1 > 65535:
        raise ValueError(f"REVIEWBOT_METRICS_PORT {metrics_port} leaves no port for each GPU")
    specs = []
    for index, gpu in enumerate(gpus):
        env = {k: v for k, v in environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        env["CUDA_VISIBLE_DEVICES"] = gpu
        env["REVIEWBOT_METRICS_PORT"] = str(metrics_port + index if metrics_port else 0)
        argv = [*command, f"--hostname={node_name(hostname, gpu)}"]
        specs.append(WorkerSpec(f"gpu {gpu}", argv, env))
    return specs


@dataclass
class _Child:
    spec: WorkerSpec
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    runs: list[Run] = field(default_factory=list)
    restart_at: float | None = None


class Supervisor:
    """Runs ``specs`` as child processes until they stop (see the module docstring)."""

    def __init__(
        self,
        specs: Sequence[WorkerSpec],
        policy: RestartPolicy = RestartPolicy(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.children = [_Child(spec) for spec in specs]
        self.policy = policy
        self.clock = clock
        self.stopping = False
        #: Why the supervisor gave up (a worker failed too often), else None.
        self.gave_up: str | None = None
        self._exit_code = 0
        self._signals: list[int] = []

    def run(self) -> int:
        """Start every worker and supervise them until all have stopped; the exit code
        (0: stopped on request; non-zero: a worker was given up, :attr:`gave_up`)."""
        handlers = {s: signal.signal(s, self._forward) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for child in self.children:
                self._start(child)
            while self._supervise():
                time.sleep(POLL_SECONDS)
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        return self._exit_code

    def pids(self) -> dict[str, int]:
        """The running workers' pids by name."""
        return {c.spec.name: c.proc.pid for c in self.children if c.proc is not None}

    def _forward(self, signum: int, frame: Any) -> None:
        """Signal handler: stop supervising, pass the signal on to every worker."""
        self.stopping = True
        self._signals.append(signum)
        self._signal_all(signum)

    def _signal_all(self, signum: int) -> None:
        for child in self.children:
            if child.proc is not None and child.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.proc.pid, signum)

    def _start(self, child: _Child) -> None:
        child.restart_at = None
        child.started = self.clock()
        child.proc = subprocess.Popen(
            child.spec.argv, env=child.spec.env, stdin=subprocess.DEVNULL, process_group=0
        )
        log.info(
            "worker %s started (pid %d, CUDA_VISIBLE_DEVICES=%s)",
            child.spec.name,
            child.proc.pid,
            child.spec.env.get("CUDA_VISIBLE_DEVICES"),
        )

    def _supervise(self) -> bool:
        """One look at the workers; False once none runs or will run again."""
        while self._signals:
            name = signal.Signals(self._signals.pop(0)).name
            log.info("%s: passed on to the workers; no worker is restarted now", name)
        now = self.clock()
        for child in self.children:
            if child.proc is not None:
                code = child.proc.poll()
                if code is not None:
                    self._ended(child, Run(code, now - child.started))
            elif child.restart_at is not None and not self.stopping and now >= child.restart_at:
                self._start(child)
        return any(
            c.proc is not None or (c.restart_at is not None and not self.stopping)
            for c in self.children
        )

    def _ended(self, child: _Child, run: Run) -> None:
        child.proc = None
        child.runs.append(run)
        name = child.spec.name
        if self.stopping:
            log.info("worker %s stopped (%s)", name, _ended(run))
            if run.exit_code != 0 and not self.gave_up:
                self._exit_code = 1
            return
        step = next_step(child.runs, self.policy)
        if step is None:
            log.info("worker %s exited (%s); not restarted", name, _ended(run))
        elif isinstance(step, Restart):
            log.warning("worker %s %s: restarting it in %.1f s", name, _ended(run), step.delay)
            child.restart_at = self.clock() + step.delay
        else:
            self.gave_up = f"worker {name} gave up: {step.reason}"
            self._exit_code = run.exit_code if run.exit_code > 0 else 1
            log.error("%s; stopping the other workers", self.gave_up)
            self.stopping = True
            self._signal_all(signal.SIGTERM)
