"""manage.py jobs_seed_ledger: fill a test ledger with many realistic finished jobs, for benchmarks."""

from __future__ import annotations

import random
import time
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from apps.jobs.models import Job

#: Marks seeded rows (Job.options), so --delete removes them and nothing else.
SEED_MARK = "seeded"
#: (actor, queue, share of the jobs).
ACTORS = [
    ("jobs.send_email", "emails", 0.45),
    ("jobs.probe", "default", 0.25),
    ("jobs.process_batch", "batch", 0.2),
    ("jobs.generate_report", "reports", 0.1),
]
#: Outcomes of finished jobs, as a busy system has them: mostly successes.
STATUSES = [
    (Job.Status.SUCCEEDED, 0.9),
    (Job.Status.FAILED, 0.05),
    (Job.Status.CANCELLED, 0.02),
    (Job.Status.SKIPPED, 0.01),
    (Job.Status.QUEUED, 0.02),
]


class Command(BaseCommand):
    help = (
        "Write N realistic jobs (spread over 30 days, several users, mostly succeeded) into the ledger, "
        "without publishing them, to measure the API and the console on a large ledger. Refused unless "
        "DJANGO_DEBUG is on or --force is given: never run it on a production ledger."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--jobs", type=int, default=1_000_000, help="How many jobs to write.")
        parser.add_argument("--users", type=int, default=20, help="Spread the jobs over this many users.")
        parser.add_argument("--batch", type=int, default=5_000, help="Rows per INSERT.")
        parser.add_argument("--seed", type=int, default=1, help="Random seed, for the same ledger again.")
        parser.add_argument("--delete", action="store_true", help="Delete the seeded jobs instead.")
        parser.add_argument("--force", action="store_true", help="Run even with DJANGO_DEBUG off.")

    def handle(self, *args: Any, **options: Any) -> None:
        if not (settings.DEBUG or options["force"]):
            raise CommandError(
                "Refusing to seed a ledger with DJANGO_DEBUG off; pass --force if it is a test one."
            )
        if options["delete"]:
            deleted, _ = Job.objects.filter(options__contains={SEED_MARK: True}).delete()
            self.stdout.write(f"Deleted {deleted} seeded rows.")
            return
        if options["jobs"] < 1 or options["users"] < 1 or options["batch"] < 1:
            raise CommandError("--jobs, --users and --batch must be at least 1.")
        users = self._users(options["users"])
        rng = random.Random(options["seed"])
        started, written = time.monotonic(), 0
        created_at = Job._meta.get_field("created_at")
        # auto_now_add would stamp every row with now; a realistic ledger spreads them over weeks.
        created_at.auto_now_add = False
        try:
            while written < options["jobs"]:
                size = min(options["batch"], options["jobs"] - written)
                Job.objects.bulk_create([self._job(rng, users) for _ in range(size)])
                written += size
                self.stdout.write(f"\r{written:,} jobs", ending="")
                self.stdout.flush()
        finally:
            created_at.auto_now_add = True
        elapsed = time.monotonic() - started
        self.stdout.write(f"\nWrote {written:,} jobs in {elapsed:.0f} s ({written / elapsed:,.0f}/s).")

    def _users(self, count: int) -> list[Any]:
        model = get_user_model()
        return [model.objects.get_or_create(username=f"seed-user-{index}")[0] for index in range(count)]

    def _job(self, rng: random.Random, users: list[Any]) -> Job:
        actor, queue = rng.choices([(a, q) for a, q, _ in ACTORS], [w for *_, w in ACTORS])[0]
        status = rng.choices([s for s, _ in STATUSES], [w for _, w in STATUSES])[0]
        created = timezone.now() - timedelta(seconds=rng.uniform(0, 30 * 86400))
        started = created + timedelta(milliseconds=rng.uniform(5, 2000))
        finished = started + timedelta(milliseconds=rng.lognormvariate(5, 1.5))
        final = status != Job.Status.QUEUED
        return Job(
            id=uuid.UUID(int=rng.getrandbits(128), version=4),
            actor_name=actor,
            queue_name=queue,
            kwargs={"n": rng.randrange(1000)},
            options={SEED_MARK: True},
            status=status,
            attempts=0
            if status in (Job.Status.QUEUED, Job.Status.CANCELLED)
            else rng.choice([1, 1, 1, 2, 3]),
            max_retries=3,
            result={"ok": True} if status == Job.Status.SUCCEEDED else None,
            last_error="TransientFailure: upstream timed out" if status == Job.Status.FAILED else "",
            created_at=created,
            enqueued_at=created,
            started_at=started if final and status != Job.Status.CANCELLED else None,
            finished_at=finished if final else None,
            requested_by=rng.choice(users),
            source=rng.choice([Job.Source.API, Job.Source.CODE, Job.Source.SCHEDULE]),
        )
