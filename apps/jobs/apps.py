"""The jobs app."""

from __future__ import annotations

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "apps.jobs"
    label = "jobs"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Every process (web, commands, workers) declares the actors, so job_submit can check names
        # and queues, and messages sent from here carry the actors' options.
        from apps.jobs import schedules  # noqa: F401
