"""Logging filters of the jobs system."""

from __future__ import annotations

import logging


class ResultsStoredInLedger(logging.Filter):
    """Drops Dramatiq's warning that an actor's return value is discarded: the ledger stores it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith("dramatiq.worker") and "Results middleware" in str(record.msg))
