"""Settings for the unit tests: the real settings with the in-memory broker (the ledger's StubBroker)."""

from __future__ import annotations

from project.settings import *  # noqa: F403
from project.settings import DRAMATIQ_BROKER

# Only the broker class changes: actor options such as periodic= are checked against the middleware
# list when actors are declared, so it must stay the one production uses. Prometheus is the one
# exception: its metrics are built in after_process_boot, which hand-built test workers never emit.
DRAMATIQ_BROKER = {
    "BROKER": "apps.jobs.brokers.LedgerStubBroker",
    "OPTIONS": {},
    "MIDDLEWARE": [m for m in DRAMATIQ_BROKER["MIDDLEWARE"] if not m.endswith("Prometheus")],
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
JOBS_PROGRESS_MIN_INTERVAL_S = 0.5
