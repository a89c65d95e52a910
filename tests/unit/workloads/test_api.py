"""The example workloads' REST endpoints (emails, reports) through DRF's APIClient with token auth."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import dramatiq
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.test import Client
from dramatiq.brokers.stub import StubBroker
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.jobs.models import Job
from apps.workloads.models import Report
from tests.unit.conftest import run_all, run_job

EMAILS = "/api/emails/"
REPORTS = "/api/reports/"
EMAIL = {"to": ["ada@example.com", "grace@example.com"], "subject": "Hello", "body": "Line one.\nLine two."}
CSV_BYTES = b"a,b\n"


def _make_user(username: str, *, permissions: tuple[str, ...] = (), **fields: Any) -> Any:
    """A user with the given "app_label.codename" permissions."""
    user = get_user_model().objects.create_user(username, f"{username}@example.com", "password", **fields)
    for permission in permissions:
        app_label, codename = permission.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def _api(user: Any) -> APIClient:
    """An API client authenticated as `user` with a token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + Token.objects.get_or_create(user=user)[0].key)
    return client


def _browser(user: Any) -> Client:
    """A Django test client logged in as `user` (the admin's session)."""
    client = Client()
    client.force_login(user)
    return client


def _content(response: Any) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def _listed_ids(body: Any) -> set[int]:
    """The ids of a report list, paginated or not."""
    rows = body["results"] if isinstance(body, dict) else body
    return {row["id"] for row in rows}


def _built_report(created_by: Any) -> Report:
    """A report whose CSV file is built (its build job was submitted by the save, never run here)."""
    report = Report.objects.create(type=Report.Type.JOBS, created_by=created_by)
    report.file.save("r.csv", ContentFile(CSV_BYTES))
    return report


def _assert_invalid(response: Any, field: str) -> None:
    """A 400 in the API's error shape, naming `field`."""
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert set(error) == {"status", "code", "message", "fields"}
    assert (error["status"], error["code"]) == (400, "invalid")
    assert isinstance(error["message"], str) and error["message"]
    assert field in error["fields"], error


@pytest.fixture
def user(db: None) -> Any:
    return _make_user("ada")


@pytest.fixture
def other_user(db: None) -> Any:
    return _make_user("bob")


# --- POST /api/emails/ ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_email_post__answers_202_with_the_job_and_its_location(stub_broker: StubBroker, user: Any) -> None:
    client = _api(user)

    # When a user asks for an email
    response = client.post(EMAILS, EMAIL, format="json")

    # Then the answer is 202 with the job that sends it, as the user's, from the API
    assert response.status_code == 202, response.content
    body = response.json()
    job = Job.objects.get()
    assert body["id"] == str(job.pk)
    assert (body["actor"], body["queue"], body["source"], body["kwargs"]) == (
        "jobs.send_email",
        "emails",
        "api",
        EMAIL,
    )
    assert (job.actor_name, job.kwargs, job.source, job.requested_by) == (
        "jobs.send_email",
        EMAIL,
        Job.Source.API,
        user,
    )
    # And Location is the job's own URL, which the user can read
    assert response["Location"] == body["links"]["self"]
    assert urlsplit(response["Location"]).path == f"/api/jobs/{job.pk}/"
    shown = client.get(response["Location"])
    assert shown.status_code == 200
    assert shown.json()["id"] == str(job.pk)


@pytest.mark.django_db
def test_email_post__without_credentials_is_401_and_writes_no_job(db: None) -> None:
    response = APIClient().post(EMAILS, EMAIL, format="json")

    assert response.status_code == 401
    assert response.json()["error"]["status"] == 401
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        pytest.param({**EMAIL, "to": ["not-an-address"]}, "to", id="bad-address"),
        pytest.param({"to": EMAIL["to"], "body": "Body"}, "subject", id="missing-subject"),
        pytest.param({**EMAIL, "from_email": "boss@example.com"}, "from_email", id="unknown-field"),
        pytest.param({**EMAIL, "to": []}, "to", id="no-recipient"),
    ],
)
@pytest.mark.django_db
def test_email_post__invalid_input_is_400_naming_the_field_and_writes_no_job(
    stub_broker: StubBroker, user: Any, payload: dict[str, Any], field: str
) -> None:
    response = _api(user).post(EMAILS, payload, format="json")

    _assert_invalid(response, field)
    assert not Job.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_email_post__the_job_runs_on_a_worker_and_the_api_shows_it_succeeded(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, mailoutbox: list[Any]
) -> None:
    # Given an email asked for through the API (its request commits, so the job is published)
    client = _api(_make_user("ada"))
    response = client.post(EMAILS, EMAIL, format="json")
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["id"])

    # When a worker runs it
    job = run_job(stub_broker, stub_worker, job)
    assert job.status == Job.Status.SUCCEEDED, job.last_error

    # Then the API shows it succeeded, with its result
    shown = client.get(f"/api/jobs/{job.pk}/")
    assert shown.status_code == 200
    body = shown.json()
    assert body["status"] == "succeeded"
    assert body["result"] == {"sent": 1, "to": EMAIL["to"]}
    assert [attempt["outcome"] for attempt in body["attempts"]] == ["succeeded"]
    # And the email went out
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == EMAIL["to"]


# --- POST /api/reports/ and GET /api/reports/{id}/ --------------------------------------------------------


@pytest.mark.django_db
def test_report_post__answers_202_with_the_report_and_its_build_job(
    stub_broker: StubBroker, user: Any
) -> None:
    client = _api(user)
    filters = {"created_from": "2026-01-01", "created_to": "2026-01-31", "status": "failed"}

    # When a user asks for a jobs report
    response = client.post(REPORTS, {"type": "jobs", "filters": filters}, format="json")

    # Then the report is the user's, linked to the build job its save submitted
    assert response.status_code == 202, response.content
    report = Report.objects.get()
    assert report.created_by == user
    # A plain user's jobs report is narrowed to their own jobs
    scoped = {**filters, "requested_by": user.pk}
    assert (report.type, report.filters) == (Report.Type.JOBS, scoped)
    job = Job.objects.get()
    assert report.job_id == job.pk
    assert (job.actor_name, job.args, job.requested_by) == ("jobs.generate_report", [report.pk], user)
    body = response.json()
    assert (body["id"], body["type"], body["filters"], body["download"]) == (report.pk, "jobs", scoped, None)
    assert body["job"]["id"] == str(job.pk)
    # And Location is the report's URL
    assert urlsplit(response["Location"]).path == f"/api/reports/{report.pk}/"

    # When the user reads it there, it shows its job's status and progress
    shown = client.get(response["Location"])
    assert shown.status_code == 200
    assert shown.json()["id"] == report.pk
    shown_job = shown.json()["job"]
    assert (shown_job["id"], shown_job["status"]) == (str(job.pk), "pending")
    assert shown_job["progress"] == {"current": None, "total": None, "percent": None, "message": ""}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        pytest.param({"type": "jobs", "filters": {"owner": "ada"}}, "filters", id="unknown-filter"),
        pytest.param(
            {"type": "jobs", "filters": {"created_from": "2026-02-01", "created_to": "2026-01-01"}},
            "filters",
            id="created_to-before-created_from",
        ),
        pytest.param({"type": "users", "filters": {"status": "failed"}}, "filters", id="status-of-users"),
        pytest.param({"type": "invoices"}, "type", id="unknown-type"),
    ],
)
@pytest.mark.django_db
def test_report_post__bad_filters_are_400_and_write_nothing(
    stub_broker: StubBroker, payload: dict[str, Any], field: str
) -> None:
    # Given a user allowed every report type (so only the input can be refused)
    client = _api(_make_user("ada", permissions=("auth.view_user",)))

    response = client.post(REPORTS, payload, format="json")

    _assert_invalid(response, field)
    assert not Report.objects.exists()
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_report_post__the_users_report_without_the_permission_to_view_users_is_403(
    stub_broker: StubBroker, user: Any
) -> None:
    response = _api(user).post(REPORTS, {"type": "users"}, format="json")

    assert response.status_code == 403
    assert (response.json()["error"]["status"], response.json()["error"]["code"]) == (
        403,
        "permission_denied",
    )
    assert not Report.objects.exists()
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_report_post__the_users_report_with_the_permission_to_view_users_is_202(
    stub_broker: StubBroker,
) -> None:
    allowed = _make_user("ada", permissions=("auth.view_user",))

    response = _api(allowed).post(REPORTS, {"type": "users"}, format="json")

    assert response.status_code == 202, response.content
    report = Report.objects.get()
    assert (report.type, report.created_by, report.job_id) == (
        Report.Type.USERS,
        allowed,
        Job.objects.get().pk,
    )


# --- Report visibility and download ------------------------------------------------------------------------


@pytest.mark.django_db
def test_report_download__its_creator_gets_the_csv_from_the_api_and_the_old_url(
    stub_broker: StubBroker, media_root: Any, user: Any
) -> None:
    report = _built_report(created_by=user)

    api = _api(user).get(f"{REPORTS}{report.pk}/download/")
    old = _browser(user).get(f"/reports/{report.pk}/download")

    for response in (api, old):
        assert response.status_code == 200
        assert response["Content-Type"] == "text/csv"
        assert "attachment" in response["Content-Disposition"]
        assert _content(response) == CSV_BYTES
    # And the report's API view links to its download
    shown = _api(user).get(f"{REPORTS}{report.pk}/").json()
    assert urlsplit(shown["download"]).path == f"{REPORTS}{report.pk}/download/"


@pytest.mark.django_db
def test_report_download__through_the_api_honours_accept_text_csv(
    stub_broker: StubBroker, media_root: Any, user: Any
) -> None:
    # The schema documents the download as text/csv; a client asking for exactly that gets it
    report = _built_report(created_by=user)

    response = _api(user).get(f"{REPORTS}{report.pk}/download/", HTTP_ACCEPT="text/csv")

    assert response.status_code == 200, response.content
    assert _content(response) == CSV_BYTES


@pytest.mark.django_db
def test_report_download__another_plain_user_gets_404_and_does_not_list_it(
    stub_broker: StubBroker, media_root: Any, user: Any, other_user: Any
) -> None:
    # Given ada's built report, and a report of bob's
    report = _built_report(created_by=user)
    own = Report.objects.create(type=Report.Type.JOBS, created_by=other_user)

    # When bob asks for ada's report, it does not exist for him
    client = _api(other_user)
    assert client.get(f"{REPORTS}{report.pk}/").status_code == 404
    assert client.get(f"{REPORTS}{report.pk}/download/").status_code == 404
    assert _browser(other_user).get(f"/reports/{report.pk}/download").status_code == 404
    # And his list shows his own report only
    listed = client.get(REPORTS)
    assert listed.status_code == 200
    assert _listed_ids(listed.json()) == {own.pk}


@pytest.mark.django_db
def test_report_download__a_staff_user_without_the_permission_gets_404(
    stub_broker: StubBroker, media_root: Any, user: Any
) -> None:
    # Given a staff user who may not view reports (the old view let any staff user download any report)
    staff = _make_user("staff", is_staff=True)
    report = _built_report(created_by=user)

    # When the staff user downloads another user's report, through the old URL or the API
    old = _browser(staff).get(f"/reports/{report.pk}/download")
    api = _api(staff).get(f"{REPORTS}{report.pk}/download/")

    # Then both answer 404, and the report is not in the staff user's list
    assert old.status_code == 404
    assert api.status_code == 404
    assert _listed_ids(_api(staff).get(REPORTS).json()) == set()


@pytest.mark.django_db
def test_report_download__a_user_with_the_permission_to_view_reports_gets_any_report(
    stub_broker: StubBroker, media_root: Any, user: Any
) -> None:
    viewer = _make_user("viewer", permissions=("workloads.view_report",))
    report = _built_report(created_by=user)

    old = _browser(viewer).get(f"/reports/{report.pk}/download")
    api = _api(viewer).get(f"{REPORTS}{report.pk}/download/")

    assert (old.status_code, _content(old)) == (200, CSV_BYTES)
    assert (api.status_code, _content(api)) == (200, CSV_BYTES)
    assert report.pk in _listed_ids(_api(viewer).get(REPORTS).json())


@pytest.mark.django_db
def test_report_download__an_unbuilt_report_is_404(
    stub_broker: StubBroker, media_root: Any, user: Any
) -> None:
    report = Report.objects.create(type=Report.Type.JOBS, created_by=user)

    api = _api(user).get(f"{REPORTS}{report.pk}/download/")
    old = _browser(user).get(f"/reports/{report.pk}/download")

    assert api.status_code == 404
    assert api.json()["error"]["status"] == 404
    assert old.status_code == 404
    assert _api(user).get(f"{REPORTS}{report.pk}/").json()["download"] is None


@pytest.mark.django_db
def test_report_download__the_old_url_sends_an_anonymous_visitor_to_log_in(
    stub_broker: StubBroker, media_root: Any, user: Any
) -> None:
    report = _built_report(created_by=user)

    response = Client().get(f"/reports/{report.pk}/download")

    assert response.status_code == 302
    assert CSV_BYTES not in _content(response)


@pytest.mark.django_db(transaction=True)
def test_jobs_report__of_a_plain_user_lists_only_their_own_jobs(
    stub_broker: Any, stub_worker: Any, job_factory: Callable[..., Job]
) -> None:
    # Given jobs of two users and one nobody submitted
    alice = get_user_model().objects.create_user("alice-r")
    bob = get_user_model().objects.create_user("bob-r")
    mine = job_factory(requested_by=alice, status=Job.Status.SUCCEEDED)
    job_factory(requested_by=bob, status=Job.Status.SUCCEEDED)
    job_factory(status=Job.Status.SUCCEEDED)
    client = APIClient()
    client.force_authenticate(alice)

    # When Alice asks for a jobs report and it is built
    created = client.post("/api/reports/", {"type": "jobs"}, format="json")
    assert created.status_code == 202, created.json()
    run_all(stub_broker, stub_worker)

    # Then its file lists her job alone (and the report's own build job, which is hers too)
    report = Report.objects.get(pk=created.json()["id"])
    rows = report.file.open("rb").read().decode().splitlines()[1:]
    listed = {row.split(",")[0] for row in rows}
    assert str(mine.pk) in listed
    assert listed <= {str(mine.pk), str(report.job_id)}


def test_external_records_report__needs_the_permission(db: None) -> None:
    user = get_user_model().objects.create_user("carol-r")
    client = APIClient()
    client.force_authenticate(user)

    response = client.post("/api/reports/", {"type": "external_records"}, format="json")

    assert response.status_code == 403
    assert "workloads.view_externalrecord" in response.json()["error"]["message"]
    assert not Report.objects.exists() and not Job.objects.exists()
