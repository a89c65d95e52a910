"""Model-save triggers: a new Report submits its generate_report job once, after the save commits."""

from __future__ import annotations

from typing import Any

import dramatiq
import pytest
from django.db import transaction
from dramatiq.brokers.stub import StubBroker

from apps.jobs.models import Job
from apps.workloads.models import Report
from tests.unit.conftest import run_all

pytestmark = pytest.mark.django_db(transaction=True)


def _message_ids(broker: StubBroker, queue_name: str) -> list[str]:
    return [dramatiq.Message.decode(data).message_id for data in list(broker.queues[queue_name].queue)]


def test_report_created__submits_one_generate_report_job_linked_both_ways(stub_broker: StubBroker) -> None:
    # When a new report is saved
    report = Report.objects.create(type=Report.Type.JOBS)

    # Then exactly one generate_report job exists for it, and each points at the other
    job = Job.objects.get()
    assert job.actor_name == "jobs.generate_report"
    assert job.queue_name == "reports"
    assert job.args == [report.pk]
    assert job.source == Job.Source.TRIGGER
    assert job.trigger == report
    assert report.job == job
    report.refresh_from_db()
    assert report.job_id == job.pk

    # And its message was published once the save committed
    assert _message_ids(stub_broker, "reports") == [str(job.pk)]
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED


def test_report_created__records_the_creator_as_requester(stub_broker: StubBroker, admin_user: Any) -> None:
    report = Report.objects.create(type=Report.Type.USERS, created_by=admin_user)

    job = Job.objects.get(pk=report.job_id)
    assert job.requested_by == admin_user


def test_report_updated__submits_nothing(stub_broker: StubBroker) -> None:
    # Given a saved report and its job
    report = Report.objects.create(type=Report.Type.JOBS)
    job = Job.objects.get()

    # When the report is saved again
    report.filters = {"status": "failed"}
    report.save()
    Report.objects.get(pk=report.pk).save()

    # Then no other job or message appeared
    assert list(Job.objects.values_list("pk", flat=True)) == [job.pk]
    assert _message_ids(stub_broker, "reports") == [str(job.pk)]


def test_report_created__in_a_rolled_back_transaction_leaves_no_job_and_publishes_nothing(
    stub_broker: StubBroker,
) -> None:
    # When a report is created in a transaction that then fails
    with pytest.raises(RuntimeError, match="rolled back"):
        with transaction.atomic():
            Report.objects.create(type=Report.Type.JOBS)
            assert Job.objects.count() == 1  # written in the saving transaction
            raise RuntimeError("rolled back")

    # Then neither the report nor its job exists, and nothing was published
    assert Report.objects.count() == 0
    assert Job.objects.count() == 0
    assert sum(queue.qsize() for queue in stub_broker.queues.values()) == 0


def test_report_created__builds_the_report_with_the_worker(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, settings: Any, tmp_path: Any
) -> None:
    # Given report files go to a temporary directory
    settings.MEDIA_ROOT = tmp_path

    # When a report is saved and the worker runs what that submitted
    report = Report.objects.create(type=Report.Type.JOBS)
    run_all(stub_broker, stub_worker)

    # Then the report's CSV was written, counting the ledger's only job (its own)
    report.refresh_from_db()
    assert report.file
    assert (tmp_path / report.file.name).is_file()
    assert report.row_count == 1
    with report.file.open("rb") as handle:
        lines = handle.read().decode().splitlines()
    assert lines[0].startswith("id,actor,queue,status")
    assert lines[1].startswith(f"{report.job_id},jobs.generate_report,reports,running")
    job = Job.objects.get(pk=report.job_id)
    assert job.status == Job.Status.SUCCEEDED
    assert job.result == {"report_id": report.pk, "rows": 1, "file": report.file.name}
