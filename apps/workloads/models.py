"""The models the seed's example jobs work on: reports, batch item results, synced records, probe runs."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.jobs.models import Job


class Report(models.Model):
    """A CSV report built by the generate_report job; saving a new one starts that job."""

    class Type(models.TextChoices):
        JOBS = "jobs", "Jobs ledger"
        USERS = "users", "Users"
        EXTERNAL_RECORDS = "external_records", "Synced external records"

    type = models.CharField(max_length=32, choices=Type.choices, default=Type.JOBS)
    #: Narrows the rows: created_from / created_to (ISO dates) and, for jobs, status and actor_name.
    filters = models.JSONField(default=dict, blank=True)
    #: Set for reports made by a schedule, so a second tick for the same period finds the first one.
    key = models.CharField(max_length=100, null=True, blank=True, unique=True)
    file = models.FileField(upload_to="reports/", blank=True)
    row_count = models.PositiveIntegerField(null=True, blank=True)
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="reports")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_type_display()} report #{self.pk}"


class BatchItemResult(models.Model):
    """The outcome of one item of a process_batch job."""

    class Outcome(models.TextChoices):
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="batch_items")
    index = models.PositiveIntegerField()
    item = models.JSONField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["job", "index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "index"], name="batch_item_unique"),
        ]

    def __str__(self) -> str:
        return f"item {self.index} of {self.job_id}: {self.outcome}"


class ExternalRecord(models.Model):
    """A record copied from the external HTTP source by sync_external_data."""

    external_id = models.CharField(max_length=100, unique=True)
    data = models.JSONField()
    first_synced_at = models.DateTimeField(auto_now_add=True)
    last_synced_at = models.DateTimeField()

    class Meta:
        ordering = ["external_id"]

    def __str__(self) -> str:
        return self.external_id


class ProbeRun(models.Model):
    """One completed run of the probe job: counts how often a job's work was really done."""

    job_id = models.UUIDField(db_index=True)
    attempt = models.PositiveIntegerField()
    finished_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-finished_at"]

    def __str__(self) -> str:
        return f"probe run of {self.job_id} (attempt {self.attempt})"
