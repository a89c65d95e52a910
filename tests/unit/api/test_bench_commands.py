"""jobs_seed_ledger and jobs_bench_lists: the commands that measure the job list on a large ledger."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from apps.jobs.models import Job

pytestmark = pytest.mark.django_db


def test_seed_ledger__writes_realistic_jobs_spread_over_weeks_and_deletes_only_them(
    settings: Any, job_factory: Any
) -> None:
    settings.DEBUG = True
    real = job_factory()

    call_command("jobs_seed_ledger", "--jobs", "300", "--users", "3", "--batch", "100", stdout=StringIO())

    seeded = Job.objects.exclude(pk=real.pk)
    assert seeded.count() == 300
    assert seeded.values("requested_by").distinct().count() == 3
    assert seeded.filter(status=Job.Status.SUCCEEDED).count() > 200
    days = {created.date() for created in seeded.values_list("created_at", flat=True)}
    assert len(days) > 10  # not all stamped "now"
    call_command("jobs_seed_ledger", "--delete", stdout=StringIO())
    assert list(Job.objects.all()) == [real]


def test_seed_ledger__refuses_a_ledger_without_debug(settings: Any) -> None:
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DJANGO_DEBUG"):
        call_command("jobs_seed_ledger", "--jobs", "1")
    assert not Job.objects.exists()


def test_bench_lists__prints_each_listing_without_a_count(settings: Any, admin_user: Any) -> None:
    settings.DEBUG = True
    call_command("jobs_seed_ledger", "--jobs", "120", "--users", "2", stdout=StringIO())
    out = StringIO()

    call_command("jobs_bench_lists", "--runs", "2", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Ledger: 120 jobs")
    rows = [line for line in lines[2:] if line.strip()]
    api_rows = [row for row in rows if not row.startswith("console:")]
    assert len(api_rows) == 9 and len(rows) == 15, rows
    assert all(row.endswith(" no") for row in rows), rows  # neither the API nor the console counts it all
