"""external_records_sync against a real local HTTP server: which answers are transient, which permanent."""

from __future__ import annotations

from typing import Any

import pytest

from apps.jobs.exceptions import PermanentFailure, TransientFailure
from apps.workloads import services
from apps.workloads.models import ExternalRecord
from tests.unit.workloads.conftest import Source, closed_port


@pytest.mark.parametrize(
    ("status", "payload", "error"),
    [
        pytest.param(500, {"error": "boom"}, TransientFailure, id="500-transient"),
        pytest.param(503, {"error": "busy"}, TransientFailure, id="503-transient"),
        pytest.param(429, {"error": "slow down"}, TransientFailure, id="429-transient"),
        pytest.param(404, {"error": "gone"}, PermanentFailure, id="404-permanent"),
        pytest.param(200, {"not": "a list"}, PermanentFailure, id="object-not-list-permanent"),
        pytest.param(200, [{"name": "no id"}], PermanentFailure, id="item-without-id-permanent"),
    ],
)
@pytest.mark.django_db
def test_external_records_sync__error_answers(
    http_source: tuple[str, Source], status: int, payload: Any, error: type[Exception]
) -> None:
    base_url, source = http_source
    source.routes["/records.json"] = (status, payload)

    with pytest.raises(error):
        services.external_records_sync(url=f"{base_url}/records.json")

    assert ExternalRecord.objects.count() == 0


@pytest.mark.django_db
def test_external_records_sync__unreachable_source_is_transient() -> None:
    with pytest.raises(TransientFailure, match="did not answer"):
        services.external_records_sync(url=f"http://127.0.0.1:{closed_port()}/records.json")


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("not a url", id="no-schema"),
        pytest.param("ftp://127.0.0.1/records.json", id="unsupported-schema"),
        pytest.param("http://", id="no-host"),
    ],
)
@pytest.mark.django_db
def test_external_records_sync__malformed_url_is_permanent(url: str) -> None:
    with pytest.raises(PermanentFailure, match="not a URL that can be fetched"):
        services.external_records_sync(url=url)
