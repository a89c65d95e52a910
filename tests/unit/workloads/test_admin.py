"""The example workloads' admin pages, through the Django test client."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from dramatiq.brokers.stub import StubBroker

from apps.jobs.models import Job
from apps.workloads.models import Report

REPORT_LIST = "/admin/workloads/report/"


@pytest.fixture
def admin_client_logged_in(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.mark.django_db
def test_report_changelist__reads_each_reports_job_in_the_same_query(
    stub_broker: StubBroker, admin_client_logged_in: Client, django_assert_max_num_queries: Any
) -> None:
    # Given 20 reports, each with the job its save submitted
    reports = [Report.objects.create(type=Report.Type.JOBS) for _ in range(20)]
    assert Job.objects.filter(pk__in=[report.job_id for report in reports]).count() == 20

    # When an operator opens the report list, it takes a fixed number of queries, not one per row
    with django_assert_max_num_queries(10):
        response = admin_client_logged_in.get(REPORT_LIST)

    # And every row shows its job's status badge
    assert response.status_code == 200
    assert response.content.decode().count('class="job-status job-status-') == 20
