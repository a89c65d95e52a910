"""manage.py jobs_bench_lists: time the API's job list on the ledger as it is (seed it first)."""

from __future__ import annotations

import statistics
import time
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from apps.jobs.models import Job

#: The listings measured: (what, query string) for an operator, who sees every job.
OPERATOR_QUERIES = [
    ("newest jobs", ""),
    ("failed jobs", "?status=failed"),
    ("one actor", "?actor=jobs.process_batch"),
    ("one queue, running or queued", "?queue=emails&status=running&status=queued"),
    ("created in a day, oldest first", "?created_after={day_ago}&ordering=created_at"),
    ("page 2 (cursor)", "{next}"),
    ("500 per page", "?page_size=500"),
]


class Command(BaseCommand):
    help = (
        "Time GET /api/jobs/ (in process, the whole DRF view, serializer and SQL) for an operator and for "
        "a user seeing their own jobs; prints the median and p95 of each listing, its SQL statements and "
        "whether any counted rows. Fill the ledger first with jobs_seed_ledger."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--runs", type=int, default=20, help="Requests per listing.")
        parser.add_argument("--host", default="localhost", help="Host name the requests are made for.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["runs"] < 1:
            raise CommandError("--runs must be at least 1.")
        operator = get_user_model().objects.filter(is_superuser=True).first()
        if operator is None:
            raise CommandError("No superuser to list every job as; create one (manage.py createsuperuser).")
        owner_id = Job.objects.exclude(requested_by=None).values_list("requested_by", flat=True).first()
        total = Job.objects.count()  # once, for the header: the API itself never counts
        self.stdout.write(f"Ledger: {total:,} jobs.  Runs per listing: {options['runs']}.")
        self.stdout.write(f"{'listing':<44} {'median ms':>10} {'p95 ms':>8} {'SQL':>4}  COUNT")
        client = APIClient(SERVER_NAME=options["host"])
        client.force_authenticate(operator)
        first = client.get("/api/jobs/")
        if first.status_code != 200:
            raise CommandError(f"GET /api/jobs/ answered {first.status_code}: {first.content[:300]!r}")
        next_page = urlsplit(first.json()["next"] or "")
        context = {"next": f"?{next_page.query}", "day_ago": quote(_day_ago())}
        for label, query in OPERATOR_QUERIES:
            self._measure(
                client, f"operator: {label}", "/api/jobs/" + query.format(**context), options["runs"]
            )
        if owner_id is not None:
            client.force_authenticate(get_user_model().objects.get(pk=owner_id))
            self._measure(client, "a user's own jobs", "/api/jobs/", options["runs"])
            self._measure(client, "a user's own failed jobs", "/api/jobs/?status=failed", options["runs"])

    def _measure(self, client: APIClient, label: str, url: str, runs: int) -> None:
        timings = []
        for _ in range(runs):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(url)
                timings.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise CommandError(f"{url} answered {response.status_code}: {response.content[:300]!r}")
        counted = any("COUNT(" in query["sql"].upper() for query in queries.captured_queries)
        p95 = statistics.quantiles(timings, n=20)[-1] if len(timings) > 1 else timings[0]
        self.stdout.write(
            f"{label:<44} {statistics.median(timings):>10.1f} {p95:>8.1f} {len(queries):>4}  "
            + ("yes" if counted else "no")
        )


def _day_ago() -> str:
    return (timezone.now() - timedelta(days=1)).isoformat().replace("+00:00", "Z")
