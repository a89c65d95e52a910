"""E2E-tier fixtures: Debian's headless Chromium, driven by Playwright, on the admin of live_server.

The unit-tier settings serve: live_server runs Django in a thread of this process, on the StubBroker,
with no worker, and serves the admin's static files itself. live_server needs transactional DB access.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import TimeLimit
from playwright.sync_api import Browser, Page, Request, Response, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
#: Without the background-networking flags Chromium hangs on a closed network.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Milliseconds a page action or expectation waits; the whole tier must stay well under a minute.
TIMEOUT_MS = 10_000
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "admin-password"  # as tests/conftest.py's admin_user

_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
_ALLOWED_ERRORS = pytest.StashKey[list[tuple[int, re.Pattern[str]]]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark everything here `e2e`, and run it after the other tiers when one run collects several.

    From its start until the session ends, Playwright's sync API leaves its event loop marked as
    running in the main thread between calls (playwright/_impl/_greenlets.py, wait_for_future), so
    no test of another tier may run after the first browser test.
    """
    here = Path(__file__).parent
    e2e = [item for item in items if here in item.path.parents]
    for item in e2e:
        item.add_marker(pytest.mark.e2e)
    items[:] = [item for item in items if here not in item.path.parents] + e2e


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Keep each phase's report on the item, so the page fixture knows in teardown whether it failed."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def _required() -> bool:
    """Whether a missing browser fails the run instead of skipping it (CI can never go green by skipping)."""
    return any(
        os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")
        for name in ("CI", "TEST_REQUIRE_SERVICES")
    )


@pytest.fixture(scope="session")
def browser(django_db_setup: None) -> Iterator[Browser]:
    """Headless Chromium for the whole session; skips without it, or fails when CI needs it.

    Django takes the event loop Playwright leaves marked as running in this thread for async code
    and refuses the ORM (microsoft/playwright-pytest#29): DJANGO_ALLOW_ASYNC_UNSAFE lifts that
    while the browser lives. The test database is set up first so it is also dropped after.
    """
    if not CHROMIUM.exists():
        reason = f"Chromium is not installed at {CHROMIUM}; scripts/setup-browser installs it."
        if _required():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    with pytest.MonkeyPatch.context() as env, sync_playwright() as playwright:
        env.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(autouse=True)
def stub_broker() -> Iterator[StubBroker]:
    """The StubBroker, emptied around each test: what a page submits is queued here and never runs."""
    broker = dramatiq.get_broker()
    assert isinstance(broker, StubBroker), "e2e tests run with project.test_settings, never a real broker"
    broker.flush_all()
    yield broker
    broker.flush_all()


@pytest.fixture
def page(
    browser: Browser, live_server: Any, transactional_db: None, request: pytest.FixtureRequest
) -> Iterator[Page]:
    """A fresh browser context on live_server; on failure a screenshot and the HTML go to test-artifacts/e2e/.

    A stylesheet or script that does not load, a server error or an uncaught JavaScript error fails
    an otherwise passing test.
    """
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page = context.new_page()
    problems: list[str] = []
    allowed = request.node.stash.setdefault(_ALLOWED_ERRORS, [])
    page.on("pageerror", lambda error: problems.append(f"JavaScript error: {error}"))
    page.on("requestfailed", lambda req: _request_failed(req, problems))
    page.on("response", lambda response: _bad_response(response, problems, allowed))
    followed: set[str] = set()
    page.on("request", lambda req: _follow(req, followed))
    yield page

    reports = request.node.stash.get(_REPORTS, {})
    try:
        if any(report.failed for report in reports.values()):
            save_artifacts(page, request.config.rootpath, request.node.name)
        elif problems and "call" in reports:
            pytest.fail("The page had problems:\n" + "\n".join(problems), pytrace=False)
    finally:
        _end_event_streams(followed)
        context.close()


#: A job's event stream, as a job page opens it while the job may still change.
_EVENT_STREAM = re.compile(r"/api/jobs/([0-9a-f-]{36})/events/")


def _follow(request: Request, followed: set[str]) -> None:
    if match := _EVENT_STREAM.search(request.url):
        followed.add(match.group(1))


def _end_event_streams(job_ids: set[str]) -> None:
    """End the event streams the test's pages opened, while the test may still use the database.

    live_server serves over WSGI, which reads a stream to its end before sending a byte: the request's
    thread waits until the job ends. After the test, pytest-django refuses the stream's reader the
    database, the reader stops, the stream never ends, and the process hangs on exit waiting for it.
    Deleting a job that is still active ends its stream ("the job no longer exists") at the reader's
    next poll; the database is emptied after the test anyway.
    """
    if not job_ids:
        return
    from django.conf import settings
    from django.db import DatabaseError

    from apps.jobs.models import Job

    try:
        Job.objects.filter(pk__in=job_ids, status__in=Job.ACTIVE_STATUSES).delete()
    except DatabaseError as exc:  # PostgreSQL gone (the chaos tier): the test's own outcome matters more
        print(f"Could not end the event streams of {sorted(job_ids)}: {exc}")
        return
    time.sleep(3 * settings.JOBS_API_EVENTS_POLL_S)  # a finished job's stream ends at that poll too


def _request_failed(request: Request, problems: list[str]) -> None:
    if request.resource_type in ("document", "stylesheet", "script"):
        problems.append(f"{request.resource_type} {request.url} failed: {request.failure}")


def _bad_response(
    response: Response, problems: list[str], allowed: list[tuple[int, re.Pattern[str]]]
) -> None:
    if any(response.status == status and path.search(response.url) for status, path in allowed):
        return
    kind = response.request.resource_type
    if response.status >= 500 or (response.status >= 400 and kind in ("stylesheet", "script")):
        problems.append(f"{kind} {response.url} answered {response.status}")


def save_artifacts(page: Page, root: Path, test_name: str) -> Path:
    """Save a full-page screenshot and the HTML of `page` as test-artifacts/e2e/<test name>.png/.html."""
    directory = root / "test-artifacts" / "e2e"
    directory.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^\w.-]+", "_", test_name)
    screenshot = directory / f"{stem}.png"
    try:
        page.screenshot(path=screenshot, full_page=True)
        (directory / f"{stem}.html").write_text(page.content(), encoding="utf-8")
    except Exception as error:  # a crashed page must not hide the test's own failure
        print(f"Could not save the e2e artifacts of {test_name}: {error}")
    return screenshot


@pytest.fixture
def admin_page(page: Page, admin_user: Any) -> Page:
    """`page`, logged in to the admin as a superuser through the real login form."""
    return log_in(page, ADMIN_USERNAME, ADMIN_PASSWORD)


def log_in(page: Page, username: str, password: str) -> Page:
    """Sign `page` in to the admin through its login form, as `username`, and land on the admin index."""
    page.goto("/admin/login/?next=/admin/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/admin/$"))
    expect(page.locator("#user-tools")).to_contain_text(username)
    return page


@pytest.fixture
def allow_error_status(request: pytest.FixtureRequest) -> Callable[[int, str], None]:
    """Let the page answer `status` on URLs matching the regex `path` without failing the test.

    For pages that answer an error status on purpose, with a page that explains it (the dead letters
    answer 503 while RabbitMQ is unreachable).
    """

    def allow(status: int, path: str) -> None:
        request.node.stash.setdefault(_ALLOWED_ERRORS, []).append((status, re.compile(path)))

    return allow


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Callable[[Page, str], Path]:
    """Save a full-page screenshot as test-artifacts/e2e/console/<name>.png, on every run.

    These are the pictures of the operator's guide (README.md, copied to docs/console/). The admin's
    navigation sidebar is closed first, as its toggle does: the page's own content gets the width, and
    the sidebar (sticky) does not float in the middle of a tall full-page picture.
    """
    directory = request.config.rootpath / "test-artifacts" / "e2e" / "console"

    def take(page: Page, name: str) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        if page.locator("#nav-sidebar").is_visible():
            page.locator("#toggle-nav-sidebar").click()
            expect(page.locator("#nav-sidebar")).to_be_hidden()
        path = directory / f"{name}.png"
        page.screenshot(path=path, full_page=True, animations="disabled", caret="hide")
        return path

    return take


@pytest.fixture
def run_jobs(stub_broker: StubBroker, transactional_db: None) -> Iterator[Callable[[], None]]:
    """`run_jobs()` processes every queue of the StubBroker until idle, with a Dramatiq worker of two
    threads in this process (started on the first call, stopped after the test), as the unit tier does.

    The worker runs the real actors through the ledger's middleware. Its threads use their own
    database connections, which live_server's transactional database allows.
    """
    workers: list[dramatiq.Worker] = []

    def run() -> None:
        if not workers:
            _boot_process_once(stub_broker)
            workers.append(dramatiq.Worker(stub_broker, worker_timeout=50, worker_threads=2))
            workers[0].start()
        for queue in stub_broker.get_declared_queues():
            stub_broker.join(queue, timeout=TIMEOUT_MS, fail_fast=False)
        workers[0].join()

    yield run
    for worker in workers:
        worker.stop()


def _boot_process_once(broker: StubBroker) -> None:
    """Emit process_boot, as the CLI does once in each worker process, unless it was emitted already
    (the unit tier's fixture does it too): TimeLimit's timer thread can start only once."""
    limits = [middleware for middleware in broker.middleware if isinstance(middleware, TimeLimit)]
    manager = limits[0].manager if limits else None
    if isinstance(manager, threading.Thread) and manager.is_alive():
        return
    broker.emit_after("process_boot")
