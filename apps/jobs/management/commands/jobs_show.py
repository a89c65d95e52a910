"""manage.py jobs_show ID: print a job and its attempts as JSON."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.jobs import selectors
from apps.jobs.exceptions import JobsError
from apps.jobs.management.commands._output import job_as_dict


class Command(BaseCommand):
    help = "Print a job with its attempts as JSON. Read-only; safe to run any time."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("job_id", help="The job's id (a UUID).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            job = selectors.job_get(job_id=options["job_id"])
        except JobsError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(json.dumps(job_as_dict(job), indent=2))
