"""Dramatiq middleware of the jobs system, one per module; settings.DRAMATIQ_BROKER lists them in order."""

from __future__ import annotations

from apps.jobs.middleware.ledger import LedgerMiddleware
from apps.jobs.middleware.liveness import Liveness
from apps.jobs.middleware.relay import Relay
from apps.jobs.middleware.soft_time_limit import SoftTimeLimit
from apps.jobs.middleware.ticks import Ticks

__all__ = ["LedgerMiddleware", "Liveness", "Relay", "SoftTimeLimit", "Ticks"]
