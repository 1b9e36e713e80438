"""A job's time budget: one deadline that generation and the stages between check.

The worker starts each attempt at a job inside :func:`job_deadline`; whatever runs
within it (the runners between their stages, the engine during generation) asks
:func:`current_deadline` and stops with :class:`DeadlineExceeded` once it has
passed. Nothing outside a job (the ``reviewbot review`` command line, the benches)
has a deadline. The clock is injectable, so the logic is tested without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class DeadlineExceeded(RuntimeError):
    """The job ran past its time budget; its message is written for the user."""

    user_facing = True

    def __init__(self, budget: float, stage: str) -> None:
        self.budget = budget
        self.stage = stage
        super().__init__(f"the job ran past its time budget of {budget:g} s (during {stage})")


class Deadline:
    """``seconds`` from now on ``clock`` (monotonic seconds by default)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        if seconds <= 0:
            raise ValueError(f"a time budget must be positive, not {seconds}")
        self.seconds = seconds
        self.clock = clock
        self.at = clock() + seconds

    def remaining(self) -> float:
        """Seconds left (0 once it has passed)."""
        return max(0.0, self.at - self.clock())

    def expired(self) -> bool:
        """Whether the deadline has passed (and stays passed)."""
        return self.clock() >= self.at

    def check(self, stage: str) -> None:
        """Raise :class:`DeadlineExceeded` (naming ``stage``) if the deadline has passed."""
        if self.expired():
            raise DeadlineExceeded(self.seconds, stage)

    def __repr__(self) -> str:
        return f"Deadline({self.seconds:g} s, {self.remaining():.1f} s left)"


_current: ContextVar[Deadline | None] = ContextVar("reviewbot_job_deadline", default=None)


@contextmanager
def job_deadline(deadline: Deadline) -> Iterator[Deadline]:
    """Run the block as one attempt at a job, under ``deadline``."""
    token = _current.set(deadline)
    try:
        yield deadline
    finally:
        _current.reset(token)


def current_deadline() -> Deadline | None:
    """The deadline of the job being run, or None outside a job."""
    return _current.get()
