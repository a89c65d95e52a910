"""E2E-tier fixtures: Debian's headless Chromium, driven by Playwright, on the admin of live_server.

The unit-tier settings serve: live_server runs Django in a thread of this process, on the StubBroker,
with no worker, and serves the admin's static files itself. live_server needs transactional DB access.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
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
    page.on("pageerror", lambda error: problems.append(f"JavaScript error: {error}"))
    page.on("requestfailed", lambda req: _request_failed(req, problems))
    page.on("response", lambda response: _bad_response(response, problems))
    yield page

    reports = request.node.stash.get(_REPORTS, {})
    try:
        if any(report.failed for report in reports.values()):
            save_artifacts(page, request.config.rootpath, request.node.name)
        elif problems and "call" in reports:
            pytest.fail("The page had problems:\n" + "\n".join(problems), pytrace=False)
    finally:
        context.close()


def _request_failed(request: Request, problems: list[str]) -> None:
    if request.resource_type in ("document", "stylesheet", "script"):
        problems.append(f"{request.resource_type} {request.url} failed: {request.failure}")


def _bad_response(response: Response, problems: list[str]) -> None:
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
    page.goto("/admin/login/?next=/admin/")
    page.get_by_label("Username").fill(ADMIN_USERNAME)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/admin/$"))
    expect(page.locator("#user-tools")).to_contain_text(ADMIN_USERNAME)
    return page
