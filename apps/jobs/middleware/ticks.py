"""periodiq's `periodic` actor option, with its skip-if-late rule left to the ledger."""

from __future__ import annotations

from typing import Any

from periodiq import PeriodiqMiddleware


class Ticks(PeriodiqMiddleware):
    """Declares the `periodic=cron(...)` actor option for the scheduler, and skips nothing itself.

    periodiq skips every delivery of a tick older than its skip delay, retries included: a tick that
    failed and is retried five minutes later would show as "skipped" and hide its real error. The
    ledger applies the same rule (SCHEDULE_SKIP_DELAY_S) to a tick's first attempt only, under the
    job's row lock (services.ledger.job_start).
    """

    def __init__(self) -> None:
        super().__init__(skip_delay=0)

    def before_process_message(self, broker: Any, message: Any) -> None:
        return None
