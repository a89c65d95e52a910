"""What a worker process knows without the database: who it is, and the deliveries its threads run.

Two kinds of state live here, both documented in one place so no hook has to guess:

- the process: its worker id (host, boot, pid and the pid's start time, so a reused pid is a
  different worker), and which job ids its threads hold right now;
- the delivery: one `Delivery` per worker thread for the message it is processing. The ledger
  middleware opens it before the actor runs and closes it after the outcome is recorded; the
  broker, the progress helper and the middleware's later hooks read it instead of passing flags.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from uuid import UUID

HOSTNAME = socket.gethostname()


# --- the worker process ---------------------------------------------------------------------------


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            return file.read().strip()[:8]
    except OSError:
        return "noboot"


def _start_ticks(pid: int) -> str | None:
    """The start time of process `pid` (clock ticks since boot), None if there is no such process.

    A pid is reused after its process exits (a container restart starts from pid 1 again); the
    start time tells the new process from the old one.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command name: state is field 3, starttime field 22 of proc(5).
    if fields[0] in ("Z", "X"):
        return None  # a zombie has exited; only its exit status is left for its parent
    return fields[19]


_identity: tuple[int, str] | None = None


def worker_id() -> str:
    """This process as `host:boot:pid:start`, computed once per process (a fork gets its own)."""
    global _identity
    pid = os.getpid()
    if _identity is None or _identity[0] != pid:
        _identity = (pid, f"{HOSTNAME}:{_boot_id()}:{pid}:{_start_ticks(pid) or 0}")
    return _identity[1]


def is_this_process(worker: str) -> bool:
    return worker == worker_id()


def process_is_alive(worker: str) -> bool | None:
    """Whether the worker process `worker` (a worker_id) still lives; None when this host cannot tell."""
    try:
        host, boot, pid, start = worker.rsplit(":", 3)
    except ValueError:
        return None
    if host != HOSTNAME:
        return None
    if boot != _boot_id():
        return False  # the machine rebooted since
    return _start_ticks(int(pid)) == start


# --- which jobs this process's threads hold -------------------------------------------------------

#: Job ids (as text) this process's threads are starting or running, with how many threads do so.
_claims: Counter[str] = Counter()
_deliveries: dict[str, Delivery] = {}
_lock = threading.Lock()


def claimed_by_another_thread(job_id: UUID | str) -> bool:
    """Whether a thread of this process other than the caller is starting or running `job_id`."""
    key = str(job_id)
    delivery = current()
    own = 1 if delivery is not None and delivery.job_id == key else 0
    with _lock:
        return _claims[key] - own > 0


def running() -> list[tuple[str, int]]:
    """(job id, attempt) of every job this process runs now, for heartbeats and shutdown."""
    return [(d.job_id, d.started_attempt) for d in running_deliveries()]


def running_deliveries() -> list[Delivery]:
    with _lock:
        return [d for d in _deliveries.values() if d.attempt is not None]


# --- the delivery a worker thread processes -------------------------------------------------------


@dataclass(eq=False)
class Delivery:
    """One message being processed by one worker thread, from the ledger's start to its outcome."""

    #: The MessageProxy Dramatiq handed to the hooks (identity tells this delivery from a later one).
    message: Any
    job_id: str
    thread_id: int = field(default_factory=threading.get_ident)
    #: The attempt the ledger started; None until it did (the actor must not run before).
    attempt: int | None = None
    #: Set when the ledger itself decided to skip this delivery (duplicate, quarantine, postponed).
    skipped_by_ledger: bool = False
    #: The delay (ms) of the retry Retries asked for. The broker does not publish it: the ledger
    #: records the retry first and publishes it after that commits.
    retry_delay_ms: int | None = None
    #: Set once the actor returned or raised: the outcome is being recorded, nothing to interrupt.
    actor_done: bool = False
    #: Set when the worker's shutdown interrupted this delivery's actor (at the shutdown timeout).
    interrupted: bool = False
    #: When the progress helper last wrote (time.monotonic()).
    progress_written_at: float = 0.0

    @property
    def started_attempt(self) -> int:
        """The attempt the ledger started, for a delivery known to have started (running_job())."""
        if self.attempt is None:
            raise RuntimeError(f"The attempt of job {self.job_id} has not started.")
        return self.attempt


_local = threading.local()


def delivery_open(message: Any) -> Delivery:
    """Start tracking `message` in this thread; it claims the job before the ledger is asked.

    Two copies of one message can reach two threads of one process at once (a republished message,
    a redelivery after a reconnect). The one that starts second must see the first as alive even
    before the first has started its attempt, so the claim comes first.
    """
    delivery_close()
    delivery = Delivery(message=message, job_id=str(message.message_id))
    with _lock:
        _claims[delivery.job_id] += 1
    _local.delivery = delivery
    return delivery


def delivery_started(delivery: Delivery, attempt: int) -> None:
    """The ledger started `attempt`: from now on the job is heartbeated and may run."""
    delivery.attempt = attempt
    with _lock:
        _deliveries[delivery.job_id] = delivery


def delivery_close() -> Delivery | None:
    """Forget this thread's delivery and its claim; returns it."""
    delivery: Delivery | None = getattr(_local, "delivery", None)
    _local.delivery = None
    if delivery is not None:
        with _lock:
            if _deliveries.get(delivery.job_id) is delivery:
                del _deliveries[delivery.job_id]
            _claims[delivery.job_id] -= 1
            if _claims[delivery.job_id] <= 0:
                del _claims[delivery.job_id]
    return delivery


def current() -> Delivery | None:
    """The delivery this thread processes, or None outside a worker thread's message."""
    return getattr(_local, "delivery", None)


def current_for(message: Any) -> Delivery | None:
    """This thread's delivery if it is the one of `message` (the same MessageProxy object)."""
    delivery = current()
    return delivery if delivery is not None and delivery.message is message else None


def running_job() -> Delivery | None:
    """This thread's delivery once its attempt has started (what actors and progress reports see)."""
    delivery = current()
    return delivery if delivery is not None and delivery.attempt is not None else None


# --- producer side: the ledger's own publishes ----------------------------------------------------

_publishing: contextvars.ContextVar[str | None] = contextvars.ContextVar("jobs_publishing", default=None)


@contextlib.contextmanager
def ledger_publish(message_id: str) -> Iterator[None]:
    """Mark a publish made by the ledger itself (submit, relay, retry, postpone).

    The broker and the after_enqueue hook leave such a publish alone: the ledger already has the
    row and records the publish's outcome itself.
    """
    token = _publishing.set(message_id)
    try:
        yield
    finally:
        _publishing.reset(token)


def is_ledger_publish(message_id: str) -> bool:
    return _publishing.get() == message_id
