"""manage.py jobs_scheduler: restarts periodiq after an error exit, and stops on SIGTERM at any moment."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from apps.jobs.management.commands import jobs_scheduler


class FakeChild:
    """A periodiq process that exits with `code`, or, when `code` is None, runs until signalled."""

    def __init__(self, code: int | None, on_exit: Callable[[], None] | None = None) -> None:
        self.code = code
        self.on_exit = on_exit
        self.signals: list[int] = []
        self._signalled = threading.Event()

    def wait(self) -> int:
        if self.code is None:
            assert self._signalled.wait(timeout=10), "the child was never signalled"
            self.code = -signal.SIGTERM
        if self.on_exit is not None:
            self.on_exit()
        return self.code

    def poll(self) -> int | None:
        return self.code

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)
        self._signalled.set()

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


@pytest.fixture
def restore_signal_handlers() -> Iterator[None]:
    """The command installs its own SIGTERM and SIGINT handlers; put pytest's back afterwards."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def _sigterm_soon(after_s: float = 0.2) -> None:
    """Deliver SIGTERM to the command's installed handler `after_s` from now, from another thread.

    The handler is called directly rather than through os.kill, so a handler that was never
    installed fails the test instead of killing the test process.
    """
    handler = signal.getsignal(signal.SIGTERM)
    assert callable(handler), "jobs_scheduler installed no SIGTERM handler"
    timer = threading.Timer(after_s, handler, args=(signal.SIGTERM, None))
    timer.daemon = True
    timer.start()


def _run(monkeypatch: pytest.MonkeyPatch, children: list[FakeChild], *, delay_s: float) -> list[FakeChild]:
    """Run the command with `children` as the periodiq processes it starts; return the started ones."""
    started: list[FakeChild] = []

    def popen(argv: list[str], **_: Any) -> FakeChild:
        assert children, "the command started more children than the test expected"
        started.append(children.pop(0))
        return started[-1]

    monkeypatch.setattr(jobs_scheduler.subprocess, "Popen", popen)
    monkeypatch.setattr(jobs_scheduler, "RESTART_DELAY_S", delay_s)
    call_command("jobs_scheduler", stdout=StringIO(), stderr=StringIO())
    return started


@pytest.mark.usefixtures("restore_signal_handlers")
def test_jobs_scheduler__sigterm_during_the_restart_delay_starts_no_new_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a periodiq that exits on an error, and a restart delay of 5 s
    # When SIGTERM arrives 0.2 s into that delay
    first = FakeChild(code=1, on_exit=_sigterm_soon)
    spare = FakeChild(code=0)
    began = time.monotonic()
    started = _run(monkeypatch, [first, spare], delay_s=5)

    # Then the command returns promptly, without starting another periodiq
    assert started == [first]
    assert time.monotonic() - began < 2


@pytest.mark.usefixtures("restore_signal_handlers")
def test_jobs_scheduler__sigterm_while_running_is_forwarded_and_not_restarted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a periodiq that runs until it is signalled
    child = FakeChild(code=None)
    threading.Timer(0.2, lambda: signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)).start()

    # When SIGTERM arrives
    started = _run(monkeypatch, [child, FakeChild(code=0)], delay_s=0.01)

    # Then periodiq received it, and was not started again although it exited with a signal
    assert started == [child]
    assert child.signals == [signal.SIGTERM]


@pytest.mark.usefixtures("restore_signal_handlers")
def test_jobs_scheduler__error_exit_restarts_after_the_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a periodiq that exits on an error once, then cleanly
    failing, clean = FakeChild(code=1), FakeChild(code=0)

    # When the command runs
    started = _run(monkeypatch, [failing, clean], delay_s=0.01)

    # Then it restarted periodiq once, and returned when it exited cleanly
    assert started == [failing, clean]
