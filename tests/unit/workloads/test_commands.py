"""The example workloads' management command: jobs_demo."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from dramatiq.brokers.stub import StubBroker

from apps.jobs.models import Job
from apps.workloads.models import Report


def _call(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


# --- jobs_demo ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_jobs_demo__submits_a_job_for_every_actor(stub_broker: StubBroker) -> None:
    output = _call("jobs_demo")

    # Every actor of the app has at least one demo job (generate_report through the Report trigger)
    declared = {name for name in stub_broker.actors if name.startswith("jobs.")}
    submitted = set(Job.objects.values_list("actor_name", flat=True))
    assert submitted == declared
    assert Job.objects.count() == 11
    report = Report.objects.get()
    assert report.job is not None
    assert report.job.actor_name == "jobs.generate_report"
    # And each job's id is printed
    for job_id in Job.objects.values_list("pk", flat=True):
        assert str(job_id) in output
    assert "Submitted 11 demo jobs." in output


@pytest.mark.django_db
def test_jobs_demo__records_the_requesting_user(stub_broker: StubBroker, admin_user: Any) -> None:
    _call("jobs_demo", "--user", admin_user.username)

    assert set(Job.objects.values_list("requested_by", flat=True)) == {admin_user.pk}
