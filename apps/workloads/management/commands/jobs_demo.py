"""manage.py jobs_demo: submit a sample of every job, to watch them in the admin."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from apps.jobs import services
from apps.jobs.exceptions import JobsError
from apps.workloads.models import Report


class Command(BaseCommand):
    help = "Submit one sample of every job (probe, email, report, batch and the recurring ones)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", help="Username recorded as the requester of the demo jobs.")

    def handle(self, *args: Any, **options: Any) -> None:
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
        samples: list[tuple[str, str, dict[str, Any]]] = [
            ("probe that succeeds", "jobs.probe", {"sleep_ms": 3000}),
            ("probe failing its first 2 attempts", "jobs.probe", {"fail_attempts": 2}),
            ("probe failing permanently", "jobs.probe", {"permanent": True}),
            (
                "email",
                "jobs.send_email",
                {
                    "to": ["ada@example.com"],
                    "subject": "Hello from the jobs demo",
                    "body": "This email was sent by a background job.",
                },
            ),
            (
                "email to an invalid address",
                "jobs.send_email",
                {"to": ["not-an-address"], "subject": "x", "body": "never sent"},
            ),
            (
                "batch with per-item results",
                "jobs.process_batch",
                {
                    "items": [f"user{i}@example.com" for i in range(200)] + ["broken@", "also broken"],
                    "operation": "validate_email",
                },
            ),
            ("expired-session cleanup", "jobs.cleanup_expired_sessions", {}),
            ("hourly sync from the external source", "jobs.sync_external_data", {}),
            ("daily report", "jobs.generate_daily_report", {}),
            ("ledger retention", "jobs.prune_finished_jobs", {}),
        ]
        try:
            with transaction.atomic():
                for label, actor, kwargs in samples:
                    job = services.job_submit(actor=actor, kwargs=kwargs, requested_by=user)
                    self.stdout.write(f"{job.pk}  {label} ({actor})")
                report = Report.objects.create(type=Report.Type.JOBS, created_by=user)
                self.stdout.write(f"{report.job_id}  jobs report #{report.pk}, started by saving the Report")
        except JobsError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(self.style.SUCCESS(f"Submitted {len(samples) + 1} demo jobs."))
