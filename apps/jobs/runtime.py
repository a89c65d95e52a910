"""What a worker process knows about the jobs it runs right now (no database access here)."""

from __future__ import annotations

import os
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from uuid import UUID

HOSTNAME = socket.gethostname()


@dataclass
class RunningJob:
    """The attempt the current worker thread runs."""

    job_id: UUID
    attempt: int
    #: Set by the ledger when Retries re-enqueued this message with a delay (ms).
    retry_delay_ms: int | None = None
    #: Set by the broker when it kept Retries' re-enqueue in the ledger instead (ms).
    retry_held_ms: int | None = None
    progress_written_at: float = field(default=0.0)


_local = threading.local()
_running: dict[UUID, RunningJob] = {}
#: Job ids (as text) this process's threads are starting or running, with how many threads do so.
_claims: Counter[str] = Counter()
_running_lock = threading.Lock()


def claim(job_id: UUID | str) -> None:
    """Record that this thread is about to start `job_id`, before the ledger is asked.

    Two copies of one message can reach two threads of one process at once (a republished
    message, a redelivery after a reconnect). The one that starts second must see the first as
    alive even before the first has called begin(), so the claim comes first.
    """
    release()
    with _running_lock:
        _claims[str(job_id)] += 1
    _local.claimed = str(job_id)


def release() -> None:
    """Drop this thread's claim, if it holds one."""
    claimed = getattr(_local, "claimed", None)
    _local.claimed = None
    if claimed is not None:
        with _running_lock:
            _claims[claimed] -= 1
            if _claims[claimed] <= 0:
                del _claims[claimed]


def claimed_by_another_thread(job_id: UUID | str) -> bool:
    """Whether a thread of this process other than the caller is starting or running `job_id`."""
    key = str(job_id)
    own = 1 if getattr(_local, "claimed", None) == key else 0
    with _running_lock:
        return _claims[key] - own > 0


def begin(job_id: UUID, attempt: int) -> RunningJob:
    """Record that this thread now runs `attempt` of `job_id`."""
    running = RunningJob(job_id=job_id, attempt=attempt)
    _local.current = running
    with _running_lock:
        _running[job_id] = running
    return running


def end() -> RunningJob | None:
    """Forget this thread's job and its claim, and return the job."""
    running = getattr(_local, "current", None)
    _local.current = None
    if running is not None:
        with _running_lock:
            if _running.get(running.job_id) is running:
                del _running[running.job_id]
    release()
    return running


def current() -> RunningJob | None:
    """The job this thread runs, or None outside an actor."""
    return getattr(_local, "current", None)


def running_job_ids() -> list[UUID]:
    """Every job running in this process, for heartbeats."""
    with _running_lock:
        return list(_running)


def running_jobs() -> list[RunningJob]:
    """Every job running in this process with its attempt."""
    with _running_lock:
        return list(_running.values())


def process_is_alive(host: str, pid: int) -> bool | None:
    """Whether the worker process `pid` on `host` still lives; None when this host cannot tell."""
    if host != HOSTNAME:
        return None
    if pid == os.getpid():
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            # A zombie has exited; only its exit status is left for its parent to collect.
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        return None
    return state not in ("Z", "X")


# Flags one thread sets for the ledger middleware's hooks that run later in the same thread.
def mark_publishing(message_id: str | None) -> None:
    """Tell after_enqueue that the ledger itself is publishing this message (nothing to record)."""
    _local.publishing = message_id


def is_publishing(message_id: str) -> bool:
    return getattr(_local, "publishing", None) == message_id


def mark_skipped_duplicate(message_id: str | None) -> None:
    _local.skipped_duplicate = message_id


def pop_skipped_duplicate(message_id: str) -> bool:
    skipped = getattr(_local, "skipped_duplicate", None) == message_id
    _local.skipped_duplicate = None
    return skipped
