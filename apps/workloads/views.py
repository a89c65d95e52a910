"""Plain views of the example workloads: report download, and the demo's stand-in for an external source."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import FileResponse, Http404, HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404

from apps.workloads.models import Report


@staff_member_required
def report_download(request: HttpRequest, report_id: int) -> FileResponse:
    report = get_object_or_404(Report, pk=report_id)
    name = report.file.name  # an unbuilt report's file has no name (and is falsy)
    if not name:
        raise Http404("This report has not been built yet.")
    return FileResponse(
        report.file.open("rb"),
        as_attachment=True,
        filename=name.rsplit("/", 1)[-1],
        content_type="text/csv",
    )


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
