"""The ledger's transitions: forward only, whatever order events arrive in."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.utils import timezone

from apps.jobs import runtime, services
from apps.jobs.admin import STATUS_COLOURS
from apps.jobs.exceptions import InvalidTransition, JobQuarantined
from apps.jobs.models import Job, JobAttempt
from tests.unit.conftest import dead_pid, running_job, worker_id_here

Status = Job.Status

#: Events the broker, the workers and the producer report, each about attempt 1 of one job.
EVENTS: dict[str, Callable[[Job], object]] = {
    "confirmed": lambda job: services.job_mark_queued(job_id=job.pk),
    "started": lambda job: services.job_start(job_id=job.pk),
    "succeeded": lambda job: services.job_succeed(job_id=job.pk, attempt=1, result={"ok": True}),
    "retry_scheduled": lambda job: services.job_retry_scheduled(
        job_id=job.pk, attempt=1, error=ValueError("boom"), traceback="tb", retry_at=timezone.now()
    ),
    "failed": lambda job: services.job_fail(
        job_id=job.pk, attempt=1, error=ValueError("boom"), traceback="tb"
    ),
    "expired": lambda job: services.job_fail_undelivered(job_id=job.pk, reason="too old"),
    "skipped": lambda job: services.job_skip(job_id=job.pk, reason="outdated tick"),
    "cancelled": lambda job: services.job_cancel(job_id=job.pk),
}

PHASE = {Status.PENDING: 0, Status.QUEUED: 1, Status.RUNNING: 2, Status.RETRYING: 3}


def progress_rank(job: Job) -> tuple[float, int]:
    """How far along a job is: final beats everything, then later attempts, then later phases."""
    if job.status in Job.FINAL_STATUSES:
        return (float("inf"), 4)
    return (job.attempts, PHASE[job.status])


def apply(event: str, job: Job) -> None:
    try:
        EVENTS[event](job)
    except (InvalidTransition, JobQuarantined):
        pass  # refused: the normal answer to a late or duplicate event


def test_allowed_from__covers_every_status() -> None:
    assert set(services.ALLOWED_FROM) == set(Status.values)
    assert set(STATUS_COLOURS) == set(Status.values)


@pytest.mark.django_db
@pytest.mark.parametrize(("first", "second"), list(itertools.product(EVENTS, repeat=2)))
def test_transitions__no_ordered_pair_of_events_moves_a_job_backwards(
    job_factory: Callable[..., Job], first: str, second: str
) -> None:
    # Given a job just written, not yet confirmed by the broker
    job = job_factory(status=Status.PENDING)
    ranks = [progress_rank(job)]
    statuses = [job.status]
    # When two events arrive in this order
    for event in (first, second):
        apply(event, job)
        job.refresh_from_db()
        ranks.append(progress_rank(job))
        statuses.append(job.status)
    # Then the job never moved backwards, and a final status was never left
    assert ranks == sorted(ranks), f"{first} then {second}: {statuses}"
    for before, after in itertools.pairwise(statuses):
        if before in Job.FINAL_STATUSES:
            assert after == before, f"{first} then {second}: {statuses}"


@pytest.mark.django_db
@pytest.mark.parametrize("sequence", list(itertools.permutations(["confirmed", "started", "succeeded"])))
def test_transitions__publish_confirmation_racing_the_worker_ends_succeeded_when_the_worker_is_done(
    job_factory: Callable[..., Job], sequence: tuple[str, ...]
) -> None:
    # django-dramatiq #154: the producer's "enqueued" write landing after the worker's "done".
    job = job_factory(status=Status.PENDING)
    for event in sequence:
        apply(event, job)
    job.refresh_from_db()
    if sequence.index("started") < sequence.index("succeeded"):
        assert job.status == Status.SUCCEEDED
        assert job.attempts == 1
    else:
        assert job.status in (Status.RUNNING, Status.QUEUED)
    assert job.enqueued_at is not None or sequence.index("confirmed") > sequence.index("started")


def _start_here(job: Job) -> Job | None:
    """Start the job as a worker thread of this process does: claimed before the ledger is asked."""
    runtime.delivery_open(SimpleNamespace(message_id=str(job.pk)))
    try:
        return services.job_start(job_id=job.pk, redelivered=True)
    finally:
        runtime.delivery_close()


def _in_another_thread(job: Job, started: threading.Event, finish: threading.Event) -> threading.Thread:
    """A worker thread of this process that claims the job, starts it, and holds it until `finish`.

    Like the middleware, it claims the job before asking the ledger, and never marks the delivery
    started: the moment between the start's commit and that is the one a second copy can arrive in.
    """

    def work() -> None:
        try:
            runtime.delivery_open(SimpleNamespace(message_id=str(job.pk)))
            services.job_start(job_id=job.pk)
            started.set()
            finish.wait(10)
        finally:
            runtime.delivery_close()
            connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_job_start__a_copy_reaching_another_thread_of_this_process_mid_start_is_dropped(
    job_factory: Callable[..., Job],
) -> None:
    # Given a thread of this worker process that has just started the job (attempt 1)
    job = job_factory(status=Status.QUEUED)
    started, finish = threading.Event(), threading.Event()
    first = _in_another_thread(job, started, finish)
    assert started.wait(10)
    try:
        # When a second copy of its message reaches another thread of the same process
        second = _start_here(job)
    finally:
        finish.set()
        first.join()

    # Then the copy is dropped and the first attempt keeps the job
    assert second is None
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Status.RUNNING, 1)


@pytest.mark.django_db(transaction=True)
def test_job_start__an_attempt_no_thread_of_this_process_holds_any_more_is_taken_over(
    job_factory: Callable[..., Job],
) -> None:
    # Given attempt 1 started by a thread of this process that has since let go of it unrecorded
    job = job_factory(status=Status.QUEUED)
    started, finish = threading.Event(), threading.Event()
    finish.set()
    _in_another_thread(job, started, finish).join()

    # When its message is redelivered to this process
    second = _start_here(job)

    # Then attempt 2 takes the job over, and attempt 1 is recorded as lost
    assert second is not None and second.attempts == 2
    outcomes = list(second.attempt_set.order_by("number").values_list("outcome", flat=True))
    assert outcomes == [JobAttempt.Outcome.WORKER_LOST, JobAttempt.Outcome.RUNNING]


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.SKIPPED])
def test_job_start__final_jobs_never_run_again(job_factory: Callable[..., Job], status: str) -> None:
    job = job_factory(status=status, attempts=1)
    assert services.job_start(job_id=job.pk, redelivered=True) is None
    job.refresh_from_db()
    assert (job.status, job.attempts) == (status, 1)


@pytest.mark.django_db
def test_job_start__takes_over_a_job_whose_worker_process_died(job_factory: Callable[..., Job]) -> None:
    job = running_job(job_factory, worker=worker_id_here(dead_pid()), heartbeat_age_s=0)
    started = services.job_start(job_id=job.pk, redelivered=True)
    assert started is not None and started.attempts == 2
    outcomes = list(job.attempt_set.order_by("number").values_list("outcome", "redelivered"))
    assert outcomes == [(JobAttempt.Outcome.WORKER_LOST, False), (JobAttempt.Outcome.RUNNING, True)]


@pytest.mark.django_db
def test_job_start__a_job_on_another_host_is_left_alone_while_its_lease_is_fresh(
    job_factory: Callable[..., Job], settings
) -> None:
    settings.JOBS_LEASE_S = 60
    fresh = running_job(job_factory, worker="other-host:b00t:1:1", heartbeat_age_s=5)
    stale = running_job(job_factory, worker="other-host:b00t:1:1", heartbeat_age_s=120)
    assert services.job_start(job_id=fresh.pk, redelivered=True) is None
    taken = services.job_start(job_id=stale.pk, redelivered=True)
    assert taken is not None and taken.attempts == 2


@pytest.mark.django_db
def test_job_start__worker_lost_on_the_last_attempt_fails_the_job(job_factory: Callable[..., Job]) -> None:
    # A message that kills its worker every time must not be redelivered forever.
    job = running_job(job_factory, worker=worker_id_here(dead_pid()), heartbeat_age_s=0, max_retries=0)
    with pytest.raises(JobQuarantined):
        services.job_start(job_id=job.pk, redelivered=True)
    job.refresh_from_db()
    assert job.status == Status.FAILED
    assert job.last_error.startswith("Worker lost")
    assert job.attempt_set.get().outcome == JobAttempt.Outcome.WORKER_LOST


@pytest.mark.django_db
def test_job_succeed__an_outcome_from_a_superseded_attempt_is_refused(
    job_factory: Callable[..., Job],
) -> None:
    # Fencing: the worker of attempt 1 comes back after attempt 2 took the job over.
    job = running_job(job_factory, worker=worker_id_here(dead_pid()), heartbeat_age_s=0)
    services.job_start(job_id=job.pk, redelivered=True)
    assert services.job_succeed(job_id=job.pk, attempt=1, result="late") is None
    job.refresh_from_db()
    assert (job.status, job.attempts, job.result) == (Status.RUNNING, 2, None)
    assert services.job_succeed(job_id=job.pk, attempt=2, result="on time") is not None


@pytest.mark.django_db
def test_transition__writes_one_event_per_change(job_factory: Callable[..., Job]) -> None:
    job = job_factory(status=Status.PENDING)
    services.job_mark_queued(job_id=job.pk)
    services.job_start(job_id=job.pk)
    services.job_succeed(job_id=job.pk, attempt=1)
    services.job_mark_queued(job_id=job.pk)  # late, refused: no event
    events = list(job.events.values_list("from_status", "to_status"))
    assert events == [("pending", "queued"), ("queued", "running"), ("running", "succeeded")]


@pytest.mark.django_db
def test_job_cancel__refused_once_running(job_factory: Callable[..., Job]) -> None:
    job = job_factory(status=Status.QUEUED)
    services.job_start(job_id=job.pk)
    with pytest.raises(InvalidTransition):
        services.job_cancel(job_id=job.pk)


# --- Regressions of the worker-path review (issue 6) ------------------------------------------------


@pytest.mark.django_db
def test_job_interrupt__leaves_the_relay_a_time_to_publish_the_job(job_factory: Callable[..., Job]) -> None:
    # Hole 1: the stopping worker's message may be redelivered to a worker that drops it as a live
    # duplicate; a RETRYING job must then still get a message.
    job = running_job(job_factory, worker=worker_id_here(dead_pid()), heartbeat_age_s=0)
    interrupted = services.job_interrupt(job_id=job.pk, attempt=1)
    assert interrupted is not None and interrupted.status == Status.RETRYING
    assert interrupted.relay_after is not None
    assert interrupted.relay_after <= timezone.now() + timedelta(seconds=60)


@pytest.mark.django_db
def test_job_start__a_copy_of_an_earlier_attempt_does_not_start_a_retry_before_its_backoff(
    job_factory: Callable[..., Job],
) -> None:
    # Hole 8: a late copy of attempt 1's message arriving during the backoff.
    due = timezone.now() + timedelta(minutes=1)
    job = job_factory(status=Status.RETRYING, attempts=1, next_retry_at=due)
    assert services.job_start(job_id=job.pk, redelivered=True) is None
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Status.RETRYING, 1)
    # The copy was dropped, so the relay is sure to publish the retry when due.
    assert job.relay_after == due


@pytest.mark.django_db
def test_job_start__a_retry_arriving_when_due_starts(job_factory: Callable[..., Job]) -> None:
    job = job_factory(status=Status.RETRYING, attempts=1, next_retry_at=timezone.now() + timedelta(seconds=1))
    started = services.job_start(job_id=job.pk)
    assert started is not None and started.attempts == 2 and started.relay_after is None


def _tick_options(minutes_ago: float) -> dict[str, str]:
    return {"scheduled_at": (timezone.now() - timedelta(minutes=minutes_ago)).isoformat()}


@pytest.mark.django_db
def test_job_start__a_tick_that_waited_too_long_for_its_first_attempt_is_skipped(
    job_factory: Callable[..., Job], settings
) -> None:
    settings.SCHEDULE_SKIP_DELAY_S = 300
    late = job_factory(actor_name="jobs.prune_finished_jobs", options=_tick_options(10))
    on_time = job_factory(actor_name="jobs.prune_finished_jobs", options=_tick_options(1))
    assert services.job_start(job_id=late.pk) is None
    late.refresh_from_db()
    assert late.status == Status.SKIPPED
    assert services.job_start(job_id=on_time.pk) is not None


@pytest.mark.django_db
def test_job_start__a_retry_of_a_tick_is_never_skipped(job_factory: Callable[..., Job], settings) -> None:
    # Hole 6: a failed tick retried after the skip delay must run, not hide its error as "skipped".
    settings.SCHEDULE_SKIP_DELAY_S = 300
    job = job_factory(
        actor_name="jobs.prune_finished_jobs",
        options=_tick_options(30),
        status=Status.RETRYING,
        attempts=1,
        next_retry_at=timezone.now(),
    )
    started = services.job_start(job_id=job.pk)
    assert started is not None and (started.status, started.attempts) == (Status.RUNNING, 2)


@pytest.mark.django_db
def test_job_fail_undelivered__a_late_copy_never_fails_a_running_job(job_factory: Callable[..., Job]) -> None:
    # Hole 7: a duplicate rejected by max_age while a live worker runs the job.
    job = running_job(job_factory, worker="other-host:b00t:1:1", heartbeat_age_s=0)
    assert services.job_fail_undelivered(job_id=job.pk, reason="too old") is None
    job.refresh_from_db()
    assert job.status == Status.RUNNING
    assert services.job_succeed(job_id=job.pk, attempt=1, result="done") is not None


@pytest.mark.django_db
def test_job_record_dead_letter__a_copy_dead_lettered_by_an_older_worker_leaves_a_running_job_alone(
    job_factory: Callable[..., Job],
) -> None:
    # Hole 7: during a rolling deploy, an old worker without the actor dead-letters a copy.
    job = running_job(job_factory, worker="other-host:b00t:1:1", heartbeat_age_s=0)
    services.job_record_dead_letter(
        job_id=job.pk, actor_name=job.actor_name, queue_name="default", reason="No actor named it."
    )
    job.refresh_from_db()
    assert job.status == Status.RUNNING
    assert services.job_succeed(job_id=job.pk, attempt=1, result="done") is not None


@pytest.mark.django_db
def test_job_mark_queued__a_late_confirmation_keeps_a_retry_held_for_the_relay(
    job_factory: Callable[..., Job],
) -> None:
    # Hole 7: the first publish's confirmation arrives after attempt 1 failed and its retry was held.
    relay_at = timezone.now() + timedelta(minutes=5)
    job = job_factory(status=Status.RETRYING, attempts=1, relay_after=relay_at, next_retry_at=relay_at)
    services.job_mark_queued(job_id=job.pk)
    job.refresh_from_db()
    assert (job.status, job.relay_after) == (Status.RETRYING, relay_at)
    assert job.enqueued_at is not None


@pytest.mark.django_db
def test_job_start__the_failure_signal_of_a_quarantined_job_carries_the_failed_job(
    job_factory: Callable[..., Job], signal_log: list, django_capture_on_commit_callbacks
) -> None:
    # Hole 12: job_failed was sent with the Job as it was before the failure.
    job = running_job(job_factory, worker=worker_id_here(dead_pid()), heartbeat_age_s=0, max_retries=0)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(JobQuarantined):
        services.job_start(job_id=job.pk, redelivered=True)
    failed = [kwargs["job"] for name, kwargs in signal_log if name == "job_failed"]
    assert [j.status for j in failed] == [Status.FAILED]


@pytest.mark.django_db
def test_job_fail__an_error_text_with_a_nul_character_is_stored(job_factory: Callable[..., Job]) -> None:
    # Hole 4: PostgreSQL refuses NUL in text; the failure must still be recorded.
    job = running_job(job_factory, worker="other-host:b00t:1:1", heartbeat_age_s=0)
    failed = services.job_fail(job_id=job.pk, attempt=1, error=ValueError("bad\x00byte"), traceback="tb\x00")
    assert failed is not None and failed.status == Status.FAILED
    assert "\x00" not in failed.last_error and "bad" in failed.last_error


@pytest.mark.django_db(transaction=True)
def test_job_record_dead_letter__a_row_its_producer_writes_at_the_same_moment_is_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The producer's after_enqueue records actor.send() while the worker's consumer thread
    # dead-letters the message for an unknown actor: the second writer must fail the first's row.
    from apps.jobs.services.ledger import transitions

    job_id = "a05e16e8-1646-44ce-9cb4-231565ee415b"
    create = transitions.job_create

    def producer_wins(**fields: object) -> Job:
        create(id=job_id, status=Status.QUEUED, actor_name="jobs.no_such_actor", queue_name="default")
        return create(**fields)

    monkeypatch.setattr(transitions, "job_create", producer_wins)
    services.job_record_dead_letter(
        job_id=job_id, actor_name="jobs.no_such_actor", queue_name="default", reason="No actor named it."
    )
    job = Job.objects.get(pk=job_id)
    assert job.status == Status.FAILED and "No actor named" in job.last_error
