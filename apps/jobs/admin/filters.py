"""List filters whose choices come from the code, not from a DISTINCT over a million rows."""

from __future__ import annotations

from typing import Any

import dramatiq
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.jobs import queues
from apps.jobs.models import Job


class ActorFilter(admin.SimpleListFilter):
    title = "actor"
    parameter_name = "actor_name"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = sorted(dramatiq.get_broker().actors)
        return [(name, name.removeprefix("jobs.")) for name in names]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        return queryset.filter(actor_name=self.value()) if self.value() else queryset


class QueueFilter(admin.SimpleListFilter):
    title = "queue"
    parameter_name = "queue_name"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in queues.queue_names()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        return queryset.filter(queue_name=self.value()) if self.value() else queryset
