"""The example workloads app: jobs written on the jobs system, the way a user of it writes theirs."""

from __future__ import annotations

from django.apps import AppConfig


class WorkloadsConfig(AppConfig):
    name = "apps.workloads"
    label = "workloads"
    verbose_name = "Example workloads"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Every process (web, commands, workers) declares the actors, so job_submit can check names
        # and queues, and messages sent from here carry the actors' options.
        from apps.workloads import actors, api, schedules, triggers  # noqa: F401

        triggers.connect()
        api.register()
