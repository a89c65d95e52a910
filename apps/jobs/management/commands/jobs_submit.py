"""manage.py jobs_submit ACTOR: submit a job and print its id (or, with --wait, its outcome)."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.jobs import selectors, services
from apps.jobs.exceptions import JobsError
from apps.jobs.management.commands._output import job_as_dict
from apps.jobs.models import Job

#: Seconds between two looks at the job while waiting for it.
WAIT_POLL_S = 0.2


def _json_option(value: str, name: str, kind: type) -> Any:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{name} is not valid JSON: {exc}") from exc
    if not isinstance(parsed, kind):
        raise CommandError(f"{name} must be a JSON {'list' if kind is list else 'object'}.")
    return parsed


class Command(BaseCommand):
    help = (
        "Submit a job (for example: jobs_submit jobs.probe --kwargs '{\"sleep_ms\": 500}') and print "
        "its id; with --wait, wait for it and print the final job as JSON, exiting 1 unless it succeeded."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "actor", help='The actor\'s name, such as "jobs.probe" (the "jobs." may be left out).'
        )
        parser.add_argument(
            "--args", dest="job_args", default="[]", help="Positional arguments as a JSON list."
        )
        parser.add_argument(
            "--kwargs", dest="job_kwargs", default="{}", help="Keyword arguments as a JSON object."
        )
        parser.add_argument("--queue", help="Send to this queue instead of the actor's own.")
        parser.add_argument("--priority", type=int, default=0, help="RabbitMQ priority, 0 (default) to 10.")
        parser.add_argument("--delay", type=int, help="Milliseconds to wait before the job may run.")
        parser.add_argument(
            "--options",
            dest="job_options",
            default="{}",
            help='Job options as JSON, e.g. {"max_retries": 0}.',
        )
        parser.add_argument(
            "--idempotency-key", help="A second submit with the same key returns the first job."
        )
        parser.add_argument(
            "--wait", type=float, metavar="SECONDS", help="Wait up to SECONDS for the outcome."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        actor = options["actor"] if "." in options["actor"] else f"jobs.{options['actor']}"
        try:
            job = services.job_submit(
                actor=actor,
                args=_json_option(options["job_args"], "--args", list),
                kwargs=_json_option(options["job_kwargs"], "--kwargs", dict),
                queue=options["queue"],
                priority=options["priority"],
                delay=options["delay"],
                options=_json_option(options["job_options"], "--options", dict),
                idempotency_key=options["idempotency_key"],
            )
        except JobsError as exc:
            raise CommandError(exc.message) from exc
        if options["wait"] is None:
            self.stdout.write(str(job.pk))
            return
        job = self._wait(job, options["wait"])
        self.stdout.write(json.dumps(job_as_dict(job), indent=2))
        if job.status != Job.Status.SUCCEEDED:
            raise CommandError(
                f"Job {job.pk} ended {job.status}."
                if job.is_final
                else f"Job {job.pk} is still {job.status} after {options['wait']} s."
            )

    def _wait(self, job: Job, seconds: float) -> Job:
        deadline = time.monotonic() + seconds
        while True:
            job = selectors.job_get(job_id=job.pk)
            if job.is_final or time.monotonic() >= deadline:
                return job
            time.sleep(WAIT_POLL_S)
