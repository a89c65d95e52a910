"""Plain views of the example workloads: report download, and the demo's stand-in for an external source."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404

from apps.workloads import selectors
from apps.workloads.api.reports import report_file_response


@login_required
def report_download(request: HttpRequest, report_id: int) -> FileResponse:
    """The report's CSV, for its creator or a user with the permission to view reports (else 404)."""
    return report_file_response(get_object_or_404(selectors.reports_visible_to(request.user), pk=report_id))


def demo_external_records(request: HttpRequest) -> JsonResponse:
    """A small JSON list of records for sync_external_data to copy in the demo."""
    records = [
        {"id": f"city-{index}", "name": name, "population": population}
        for index, (name, population) in enumerate(
            [
                ("Lisbon", 545_000),
                ("Porto", 232_000),
                ("Braga", 193_000),
                ("Coimbra", 140_000),
                ("Faro", 64_000),
            ],
            start=1,
        )
    ]
    return JsonResponse(records, safe=False)
