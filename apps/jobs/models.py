"""The job ledger: Job, its attempts and its status events."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import Q

if TYPE_CHECKING:
    from datetime import timedelta


def progress_percent(current: int | None, total: int | None) -> float | None:
    """Progress in percent (at most 100), or None while the total is unknown."""
    if not total or current is None:
        return None
    return min(100.0, 100.0 * current / total)


class Job(models.Model):
    """One unit of background work, from submission to its final outcome."""

    class Status(models.TextChoices):
        #: Written; the publish to RabbitMQ is not confirmed yet (or is due later).
        PENDING = "pending", "Pending"
        #: RabbitMQ confirmed the message; waiting for a worker.
        QUEUED = "queued", "Queued"
        #: A worker runs an attempt now.
        RUNNING = "running", "Running"
        #: An attempt failed; another one is scheduled (next_retry_at).
        RETRYING = "retrying", "Retrying"
        #: Finished; the result is stored.
        SUCCEEDED = "succeeded", "Succeeded"
        #: Retries exhausted or a permanent error; the message is in the queue's dead-letter queue.
        FAILED = "failed", "Failed"
        #: Stopped by an operator before it finished.
        CANCELLED = "cancelled", "Cancelled"
        #: Not run on purpose (an outdated schedule tick).
        SKIPPED = "skipped", "Skipped"

    class Source(models.TextChoices):
        CODE = "code", "Code"
        API = "api", "API"
        ADMIN = "admin", "Admin"
        SCHEDULE = "schedule", "Schedule"
        TRIGGER = "trigger", "Model trigger"

    #: Statuses a job can still leave on its own.
    ACTIVE_STATUSES = (Status.PENDING, Status.QUEUED, Status.RUNNING, Status.RETRYING)
    #: Statuses a job never leaves without an operator.
    FINAL_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.SKIPPED)

    #: The Dramatiq message id, so every broker event finds its row by primary key.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    actor_name = models.CharField(max_length=200)
    queue_name = models.CharField(max_length=100)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    #: Dramatiq message options the job was sent with (max_retries, time_limit, ...).
    options = models.JSONField(default=dict, blank=True)
    #: RabbitMQ priority, 0 (default) to BROKER_MAX_PRIORITY (most urgent).
    priority = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    #: Attempts started so far, counted by the ledger (a killed worker's attempt counts too).
    attempts = models.PositiveIntegerField(default=0)
    #: Attempts a stopping worker abandoned. Like Celery and Sidekiq, a deploy's restart does not
    #: spend the job's retries: these do not count against max_retries.
    interruptions = models.PositiveIntegerField(default=0)
    max_retries = models.PositiveIntegerField(default=0)

    progress_current = models.PositiveBigIntegerField(null=True, blank=True)
    progress_total = models.PositiveBigIntegerField(null=True, blank=True)
    progress_message = models.CharField(max_length=255, blank=True)

    result = models.JSONField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_traceback = models.TextField(blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    #: When the job may first run (delay); null means at once.
    scheduled_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    #: Last sign of life from the worker running the job.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    #: When set, no message of the job is known to be in RabbitMQ: the relay publishes one at this
    #: time (a publish that was never confirmed, a long delay held in the database, an orphan).
    relay_after = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.CODE)
    trigger_content_type = models.ForeignKey(
        ContentType, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    trigger_object_id = models.CharField(max_length=64, blank=True)
    trigger = GenericForeignKey("trigger_content_type", "trigger_object_id")
    #: A caller's key: a second submit with the same key returns the first job.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True, unique=True)
    #: The failed or cancelled job this one runs again (services.job_retry); its history stays there.
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries"
    )
    #: Set for actors declared unique: at most one active job per key.
    unique_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001 - NULL: no key

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "-created_at"], name="job_status_created"),
            models.Index(fields=["actor_name", "-created_at"], name="job_actor_created"),
            # A queue's jobs in some statuses, newest first (and the queues' running counts).
            models.Index(fields=["queue_name", "status", "-created_at"], name="job_queue_status_created"),
            models.Index(fields=["-created_at"], name="job_created"),
            # A user's own jobs, newest first: the API's listing for everyone but operators.
            models.Index(fields=["requested_by", "-created_at"], name="job_requester_created"),
            models.Index(fields=["finished_at"], name="job_finished"),
            models.Index(fields=["trigger_content_type", "trigger_object_id"], name="job_trigger"),
            models.Index(
                fields=["heartbeat_at"], name="job_running_heartbeat", condition=Q(status="running")
            ),
            models.Index(
                fields=["relay_after"], name="job_relay_after", condition=Q(relay_after__isnull=False)
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["unique_key"],
                condition=Q(status__in=["pending", "queued", "running", "retrying"]),
                name="job_unique_key_while_active",
            ),
        ]
        permissions = [
            ("retry_job", "Can retry any user's failed or cancelled jobs"),
            ("cancel_job", "Can cancel any user's waiting jobs"),
            ("requeue_dead_letters", "Can requeue dead-lettered messages"),
            ("purge_dead_letters", "Can purge dead-letter queues"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_name} {self.id}"

    @property
    def counted_attempts(self) -> int:
        """Attempts that count against max_retries: all but those cut short by a shutdown."""
        return self.attempts - self.interruptions

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATUSES

    @property
    def duration(self) -> timedelta | None:
        """Time from the first start to the end, or None while unknown."""
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None

    @property
    def progress_percent(self) -> float | None:
        return progress_percent(self.progress_current, self.progress_total)


class JobAttempt(models.Model):
    """One run of a job by a worker."""

    class Outcome(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        #: Failed with another attempt scheduled.
        RETRIED = "retried", "Failed, retried"
        #: Failed for good.
        FAILED = "failed", "Failed"
        #: The worker died or lost the job (SIGKILL, OOM, lease expired).
        WORKER_LOST = "worker_lost", "Worker lost"
        #: Stopped by a worker shutdown before it finished; the message went back to the queue.
        INTERRUPTED = "interrupted", "Interrupted"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="attempt_set")
    number = models.PositiveIntegerField()
    worker_host = models.CharField(max_length=255)
    worker_pid = models.PositiveIntegerField()
    #: The worker process as host:boot:pid:start time (runtime.worker_id): a pid reused after a
    #: restart is a different worker, so a dead worker is never taken for a live one.
    worker_id = models.CharField(max_length=255, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveBigIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RUNNING)
    error_class = models.CharField(max_length=255, blank=True)
    error_message = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    #: RabbitMQ delivered this message before (a worker died or a connection dropped).
    redelivered = models.BooleanField(default=False)

    class Meta:
        ordering = ["job", "number"]
        constraints = [
            models.UniqueConstraint(fields=["job", "number"], name="job_attempt_number_unique"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.job_id}"


class JobEvent(models.Model):
    """One status change of a job: the ledger's audit trail."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=16, choices=Job.Status.choices, blank=True)
    to_status = models.CharField(max_length=16, choices=Job.Status.choices)
    attempt = models.PositiveIntegerField(default=0)
    at = models.DateTimeField(auto_now_add=True)
    note = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["job", "at", "id"]

    def __str__(self) -> str:
        return f"{self.job_id}: {self.from_status} -> {self.to_status}"


class IdempotentRequest(models.Model):
    """A POST sent with an Idempotency-Key: a repeat of it is answered with the first answer.

    Kept per user and key for settings.JOBS_API_IDEMPOTENCY_HOURS; only successful answers are
    kept, so a request refused for bad input can be corrected and sent again under the same key.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    #: SHA-256 of the method, path and canonical JSON body: the same key with another request is refused.
    fingerprint = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    response_location = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotent_request_user_key"),
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotent_request_created")]

    def __str__(self) -> str:
        return f"{self.key} of user {self.user_id}"


class Worker(models.Model):
    """A worker process, as its last heartbeat described it: the console's list of workers."""

    #: The process as host:boot:pid:start time (runtime.worker_id).
    worker_id = models.CharField(max_length=255, unique=True)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list)
    threads = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    #: Jobs the process was running at its last heartbeat.
    jobs_in_progress = models.PositiveIntegerField(default=0)
    #: Set when the process stopped cleanly; a worker that vanished without it died.
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["host", "pid"]
        indexes = [models.Index(fields=["-last_seen_at"], name="worker_last_seen")]

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}"
