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
from django.test import Client
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
#: The console's job list (the admin changelist), for an operator.
ADMIN_QUERIES = [
    ("newest jobs", ""),
    ("failed jobs", "?status__exact=failed"),
    ("one actor, failed", "?actor_name=jobs.process_batch&status__exact=failed"),
    ("search: id prefix", "?q={id_prefix}"),
    ("search: error text", "?q=timed+out"),
    ("a page deep in the list", "?p={deep_page}"),
]


class Command(BaseCommand):
    help = (
        "Time GET /api/jobs/ (in process, the whole DRF view, serializer and SQL) for an operator and for "
        "a user seeing their own jobs, and the console's job list (the admin changelist, rendered); prints "
        "the median and p95 of each listing, its SQL statements and whether any counted rows exactly. "
        "Fill the ledger first with jobs_seed_ledger."
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
        self.stdout.write(f"{'listing':<44} {'median ms':>10} {'p95 ms':>8} {'SQL':>4}  full COUNT")
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
        console = Client(SERVER_NAME=options["host"])
        console.force_login(operator)
        id_prefix = str(Job.objects.values_list("pk", flat=True).first())[:8]
        for label, query in ADMIN_QUERIES:
            deep_page = max(1, min(100, total // 50))  # page 100, or the last one of a smaller ledger
            url = "/admin/jobs/job/" + query.format(id_prefix=id_prefix, deep_page=deep_page)
            self._measure(console, f"console: {label}", url, options["runs"])

    def _measure(self, client: Client, label: str, url: str, runs: int) -> None:
        timings = []
        for _ in range(runs):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(url)
                timings.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise CommandError(f"{url} answered {response.status_code}: {response.content[:300]!r}")
        # A COUNT over the whole result (a bounded one, COUNT over a LIMIT, costs a page at most).
        counted = any(
            "COUNT(" in sql and "LIMIT" not in sql
            for sql in (q["sql"].upper() for q in queries.captured_queries)
        )
        p95 = statistics.quantiles(timings, n=20)[-1] if len(timings) > 1 else timings[0]
        self.stdout.write(
            f"{label:<44} {statistics.median(timings):>10.1f} {p95:>8.1f} {len(queries):>4}  "
            + ("yes" if counted else "no")
        )


def _day_ago() -> str:
    return (timezone.now() - timedelta(days=1)).isoformat().replace("+00:00", "Z")
