"""The operations console: the Django admin of the job ledger, its dashboard, workers and dead letters."""

from __future__ import annotations

from django.contrib import admin
from django_dramatiq.models import Task

from apps.jobs.admin import jobs
from apps.jobs.admin.display import STATUS_COLOURS, pretty_json, status_badge
from apps.jobs.admin.mixins import TriggeredJobsMixin

# The admin index opens with the console's pages: what operators use every day.
admin.site.index_template = "admin/jobs/index.html"
admin.site.site_header = "Jobs console"
admin.site.site_title = "Jobs console"

# django_dramatiq's task list stays empty (the ledger records jobs): keep it out of the console.
if admin.site.is_registered(Task):
    admin.site.unregister(Task)

__all__ = ["STATUS_COLOURS", "TriggeredJobsMixin", "jobs", "pretty_json", "status_badge"]
