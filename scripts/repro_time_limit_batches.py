"""Issue 13's reproduction: process_batch jobs, 16 at once, with a 1 s soft and a 60 s hard time limit.

The soft limit is raised into each worker thread asynchronously and can land inside a PostgreSQL
call; before the fix some jobs then stayed `running` for good. Run against a live system (the
DATABASE_URL and RABBITMQ_URL of a worker started with `manage.py rundramatiq --threads 16`):

    DATABASE_URL=... RABBITMQ_URL=... .venv/bin/python scripts/repro_time_limit_batches.py

It submits the jobs, waits until every one has a final status (or --timeout passes: kept under
JOBS_LEASE_S, so that the lease sweep cannot rescue a stranded job before it is counted), and
prints how many ended in each status. Exits 1 when a job is not final. Not a test: it needs a
running system and takes tens of seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16, help="jobs submitted at once (16)")
    parser.add_argument("--items", type=int, default=20_000, help="items per batch (20,000)")
    parser.add_argument("--soft-ms", type=int, default=1_000, help="soft time limit, ms (1,000)")
    parser.add_argument("--hard-ms", type=int, default=60_000, help="hard time limit, ms (60,000)")
    parser.add_argument("--timeout", type=float, default=50, help="seconds to wait for final statuses (50)")
    args = parser.parse_args()

    import django

    django.setup()
    from apps.jobs import services
    from apps.jobs.models import Job, JobAttempt

    # Every seventh address is invalid, so items fail as well as succeed.
    items = [f"user{i}@Example.com" if i % 7 else f"not an address {i}" for i in range(args.items)]
    options = {
        "soft_time_limit": args.soft_ms,
        "time_limit": args.hard_ms,
        # Short waits between attempts, so a batch cut short by its soft limit finishes in the window.
        "min_backoff": 200,
        "max_backoff": 1_000,
    }
    started = time.monotonic()
    kwargs = {"items": items, "operation": "validate_email"}
    ids = [
        services.job_submit(actor="jobs.process_batch", kwargs=kwargs, options=options).pk
        for _ in range(args.jobs)
    ]
    jobs = Job.objects.filter(pk__in=ids)
    deadline = started + args.timeout
    while time.monotonic() < deadline:
        if not jobs.exclude(status__in=Job.FINAL_STATUSES).exists():
            break
        time.sleep(0.5)
    elapsed = time.monotonic() - started

    statuses = Counter(jobs.values_list("status", flat=True))
    attempts = JobAttempt.objects.filter(job_id__in=ids)
    outcomes = Counter(attempts.values_list("outcome", flat=True))
    error_classes = attempts.exclude(error_class="").values_list("error_class", flat=True)
    errors = Counter(error.rsplit(".", 1)[-1] for error in error_classes)
    print(
        f"{args.jobs} jobs x {args.items} items, soft {args.soft_ms} ms, hard {args.hard_ms} ms, "
        f"after {elapsed:.1f} s:"
    )
    print("  jobs by status:    " + ", ".join(f"{s} {n}" for s, n in sorted(statuses.items())))
    print("  attempts:          " + ", ".join(f"{o} {n}" for o, n in sorted(outcomes.items())))
    print("  attempt errors:    " + (", ".join(f"{e} {n}" for e, n in sorted(errors.items())) or "none"))
    stranded = jobs.exclude(status__in=Job.FINAL_STATUSES)
    for job in stranded:
        print(f"  NOT FINAL: {job.pk} {job.status} after {job.attempts} attempt(s): {job.last_error[:200]}")
    return 1 if stranded else 0


if __name__ == "__main__":
    sys.exit(main())
