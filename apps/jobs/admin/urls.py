"""The console's own pages beside the model admin, under /admin/console/ ("console" namespace).

Each view is wrapped by the admin site, so it needs a signed-in staff user like every admin page, and
checks its own permission.
"""

from __future__ import annotations

from django.urls import URLPattern

from apps.jobs.admin import dashboard, dead_letters, workers

app_name = "console"

urlpatterns: list[URLPattern] = [*dashboard.urlpatterns, *workers.urlpatterns, *dead_letters.urlpatterns]
