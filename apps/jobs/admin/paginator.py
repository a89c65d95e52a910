"""A paginator that counts a large list approximately, as PostgreSQL's planner does, not with COUNT(*)."""

from __future__ import annotations

import json
from functools import cached_property

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet

#: Up to this many rows the count is exact (a COUNT over at most this many rows is cheap).
EXACT_UP_TO = 10_000


class EstimatedCountPaginator(Paginator):
    """Counts exactly up to EXACT_UP_TO rows; past that, takes the planner's estimate (PostgreSQL).

    An exact COUNT(*) over a million-row ledger takes longer than the page itself, and the page
    numbers only need the order of magnitude. The exact part stops at EXACT_UP_TO rows, so a search
    matching many rows costs a bounded count, not a second full scan.
    """

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet) or connections[queryset.db].vendor != "postgresql":
            return super().count
        bounded = queryset.order_by()[:EXACT_UP_TO].count()
        if bounded < EXACT_UP_TO:
            return bounded
        sql, params = queryset.order_by().values("pk").query.sql_with_params()
        with connections[queryset.db].cursor() as cursor:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            plan = cursor.fetchone()[0]
        plan = json.loads(plan) if isinstance(plan, str) else plan  # psycopg decodes json columns itself
        return max(EXACT_UP_TO, int(plan[0]["Plan"]["Plan Rows"]))
