"""Settings of the jobs system, read from the environment (see .env.example)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# --- Django core --------------------------------------------------------------------------------

DEBUG = env.bool("DJANGO_DEBUG", default=False)
DATA_DIR = Path(env.str("DATA_DIR", default=str(BASE_DIR / "var")))
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _local_secret_key(path: Path) -> str:
    """A key made once for this installation and kept in DATA_DIR, shared by its processes."""
    if not path.exists():
        draft = path.with_name(f"{path.name}.{os.getpid()}")
        draft.write_text(secrets.token_urlsafe(50), encoding="ascii")
        try:
            os.link(draft, path)  # atomic: of processes starting together, one key wins
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text(encoding="ascii").strip()


# Hosts that do not share DATA_DIR must all set the same DJANGO_SECRET_KEY.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="") or _local_secret_key(DATA_DIR / "secret-key")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    # Swagger UI's assets, served by this project (no CDN).
    "drf_spectacular_sidecar",
    "project.broker.BrokerConfig",
    "apps.jobs.apps.JobsConfig",
    "apps.workloads.apps.WorkloadsConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "apps.jobs.api.middleware.RequireContentLength",
    # Serves the admin's static files from gunicorn, compressed and cached.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
# Pages that need a signed-in user (a report's download) send visitors to the admin's login.
LOGIN_URL = "admin:login"
WSGI_APPLICATION = "project.wsgi.application"
# Web is served over ASGI (gunicorn with uvicorn workers): a job's event stream waits on the event
# loop, so open streams do not hold a thread or a database connection each.
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------------

DATABASE_URL = env.str("DATABASE_URL", default="") or f"sqlite:///{DATA_DIR / 'jobs.sqlite3'}"
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
# Workers keep their connection between messages: reconnecting per message cost 4x in throughput.
# Health checks make the first query after a database restart reconnect instead of failing.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=600)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
#: A pool of PostgreSQL connections shared by the threads of a process; the ASGI web process turns it on
#: (project/asgi.py). There each request runs on a thread of its own, and a connection kept per thread
#: would be left open by every request: the pool hands connections back instead.
DB_POOL = env.bool("DB_POOL", default=False)
if DB_POOL and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    from psycopg_pool import ConnectionPool

    DATABASES["default"]["CONN_MAX_AGE"] = 0  # a connection goes back to the pool after each request
    DATABASES["default"]["OPTIONS"] = {
        **DATABASES["default"].get("OPTIONS", {}),
        "pool": {
            "min_size": env.int("DB_POOL_MIN_SIZE", default=2),
            "max_size": env.int("DB_POOL_MAX_SIZE", default=20),
            # Seconds a request waits for a free connection before failing.
            "timeout": env.float("DB_POOL_TIMEOUT_S", default=10.0),
            # A connection the database dropped (a restart) is replaced, not handed out.
            "check": ConnectionPool.check_connection,
        },
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded demo database is shared by web, worker and scheduler processes: WAL lets readers
    # run beside the writer, IMMEDIATE takes the write lock up front (no upgrade deadlocks) and the
    # timeout makes concurrent writers wait instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Internationalisation, static and media files -----------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(DATA_DIR / "media")))

# --- Email ----------------------------------------------------------------------------------------

# Console in the demo, locmem in tests, SMTP in production (EMAIL_BACKEND=...smtp.EmailBackend).
EMAIL_BACKEND_PATH = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
_SMTP_OPTIONS = {
    "host": env.str("EMAIL_HOST", default="localhost"),
    "port": env.int("EMAIL_PORT", default=25),
    "username": env.str("EMAIL_HOST_USER", default=""),
    "password": env.str("EMAIL_HOST_PASSWORD", default=""),
    "use_tls": env.bool("EMAIL_USE_TLS", default=False),
    "use_ssl": env.bool("EMAIL_USE_SSL", default=False),
    # Seconds; without it a stalled SMTP server would hold a worker thread until the time limit.
    "timeout": env.int("EMAIL_TIMEOUT", default=10),
}
MAILERS = {
    "default": {
        "BACKEND": EMAIL_BACKEND_PATH,
        "OPTIONS": _SMTP_OPTIONS if EMAIL_BACKEND_PATH.endswith("smtp.EmailBackend") else {},
    },
}
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="jobs@localhost")
#: Domain of the Message-ID header of job emails (<job id>@domain), so duplicates are recognisable.
EMAIL_MESSAGE_ID_DOMAIN = env.str("EMAIL_MESSAGE_ID_DOMAIN", default="jobs.localhost")

# --- Dramatiq broker --------------------------------------------------------------------------------

RABBITMQ_URL = env.str("RABBITMQ_URL", default="amqp://guest:guest@127.0.0.1:5672/%2F")

# Dramatiq's Prometheus exporter reads these at import time; bind it to loopback unless told otherwise.
os.environ.setdefault("dramatiq_prom_host", env.str("PROMETHEUS_HOST", default="127.0.0.1"))
os.environ.setdefault("dramatiq_prom_port", env.str("PROMETHEUS_PORT", default="9191"))

#: The longest a retry waits (ms). RabbitMQ holds a delayed message unacknowledged in the worker and
#: closes the channel when it is older than its consumer_timeout (30 min), so stay well under it.
RETRY_MAX_BACKOFF_MS = 25 * 60 * 1000
#: The first retry waits about this long (ms); each further one doubles it, with jitter.
RETRY_MIN_BACKOFF_MS = env.int("RETRY_MIN_BACKOFF_MS", default=15_000)
#: Retries for actors that do not set their own max_retries.
RETRY_MAX_RETRIES = env.int("RETRY_MAX_RETRIES", default=5)
#: Hard time limit (ms) for actors that do not set their own; kept under RabbitMQ's consumer_timeout.
DEFAULT_TIME_LIMIT_MS = env.int("DEFAULT_TIME_LIMIT_MS", default=10 * 60 * 1000)
#: RabbitMQ priorities 0..N for submit(priority=...); queue arguments are fixed once a queue exists.
BROKER_MAX_PRIORITY = 10

DRAMATIQ_BROKER = {
    # RabbitmqBroker that leaves to the ledger's relay what RabbitMQ cannot take now (an outage)
    # or should not hold (delays longer than its consumer_timeout allows).
    "BROKER": "apps.jobs.brokers.LedgerRabbitmqBroker",
    "OPTIONS": {
        "url": RABBITMQ_URL,
        # Publisher confirms: send() returns only once RabbitMQ has the message, so a publish into a
        # dead connection raises instead of vanishing, and the job stays pending for the relay.
        "confirm_delivery": True,
        "max_priority": BROKER_MAX_PRIORITY,
    },
    # Order matters: before_* hooks run top to bottom, after_* hooks bottom to top.
    "MIDDLEWARE": [
        # Counters and histograms per actor and queue, served on 127.0.0.1 by a forked exporter.
        "dramatiq.middleware.prometheus.Prometheus",
        # Drops messages older than an actor's max_age (dead-lettered, recorded as failed).
        "dramatiq.middleware.AgeLimit",
        # Lets actors with notify_shutdown=True clean up when a worker stops.
        "dramatiq.middleware.ShutdownNotifications",
        # on_success / on_failure actors.
        "dramatiq.middleware.Callbacks",
        # pipeline([...]) chains.
        "dramatiq.middleware.Pipelines",
        # The message being processed, for progress reports and log context.
        "dramatiq.middleware.CurrentMessage",
        # Closes broken or expired DB connections around each message (before the ledger writes).
        "django_dramatiq.middleware.DbConnectionsMiddleware",
        # The periodic=cron(...) actor option for the scheduler (periodiq). It skips nothing itself:
        # the ledger skips a tick that waited past SCHEDULE_SKIP_DELAY_S, on its first attempt only.
        "apps.jobs.middleware.Ticks",
        # The job ledger: every hook becomes a guarded transition in apps.jobs.services, and an actor
        # runs only once its attempt is recorded. Before TimeLimit, so a time limit is armed only
        # after the start is recorded; before Retries, so its after-hook sees Retries' decision.
        "apps.jobs.middleware.LedgerMiddleware",
        # Heartbeats of this process's running jobs and the sweep of dead workers' jobs, on a thread
        # of their own so that a blocked publish never stops a heartbeat.
        "apps.jobs.middleware.Liveness",
        # The outbox relay: publishes jobs whose message RabbitMQ does not have, on its own thread.
        "apps.jobs.middleware.Relay",
        # The hard limit: interrupts an actor that overruns time_limit.
        "dramatiq.middleware.TimeLimit",
        # After the ledger, so its after-hook (retry or dead-letter) runs before the ledger records it.
        "dramatiq.middleware.Retries",
        # A catchable SoftTimeLimitExceeded some seconds before the hard limit, for cleanup. Last,
        # so it is disarmed first when the actor returns.
        "apps.jobs.middleware.SoftTimeLimit",
    ],
}
# Dramatiq's JSON, recording undecodable bodies in the ledger before they are dead-lettered.
DRAMATIQ_ENCODER = "apps.jobs.encoding.LedgerJSONEncoder"
DRAMATIQ_AUTODISCOVER_MODULES = ["actors", "schedules"]
DRAMATIQ_IGNORED_MODULES: list[str] = []

# --- The jobs app -----------------------------------------------------------------------------------

#: A schedule tick that waited longer than this (seconds) for a worker is skipped, not run late.
SCHEDULE_SKIP_DELAY_S = env.int("SCHEDULE_SKIP_DELAY_S", default=300)
#: Seconds between a running job's progress writes (the last report always lands).
JOBS_PROGRESS_MIN_INTERVAL_S = env.float("JOBS_PROGRESS_MIN_INTERVAL_S", default=1.0)
#: Seconds between a worker's heartbeats for the jobs it runs.
JOBS_HEARTBEAT_INTERVAL_S = env.float("JOBS_HEARTBEAT_INTERVAL_S", default=10.0)
#: A running job whose heartbeat is older than this is considered abandoned by its worker.
JOBS_LEASE_S = env.float("JOBS_LEASE_S", default=60.0)
#: Longest delay (ms) handed to RabbitMQ: longer delays and retry waits are held in the database and
#: published by the relay when due, because RabbitMQ's consumer_timeout (30 min) breaks them.
JOBS_MAX_BROKER_DELAY_MS = RETRY_MAX_BACKOFF_MS
#: Longest delay (ms) a submit may ask for (and longest max_age): further out is refused, since
#: nothing waits that long on purpose; a job that must run later is submitted later (or scheduled).
JOBS_MAX_DELAY_MS = env.int("JOBS_MAX_DELAY_MS", default=365 * 24 * 60 * 60 * 1000)
#: Highest time_limit and soft_time_limit (ms) a submit may ask for. RabbitMQ closes the channel of
#: a consumer holding a message unacknowledged longer than its consumer_timeout (30 min by default),
#: so a job must finish, or be stopped by its time limit, well before that.
JOBS_MAX_TIME_LIMIT_MS = env.int("JOBS_MAX_TIME_LIMIT_MS", default=29 * 60 * 1000)
#: Largest encoded message (bytes) a submit may produce. RabbitMQ refuses bodies over its
#: max_message_size (128 MiB on 3.10, 16 MiB on newer versions), and a refused job would stay pending
#: while every relay publishes it again. Keep messages small anyway: pass ids, not data.
JOBS_MAX_MESSAGE_BYTES = env.int("JOBS_MAX_MESSAGE_BYTES", default=16 * 1024 * 1024)
#: Seconds between two runs of a worker's keeper (relay of unpublished jobs, orphan sweep).
JOBS_KEEPER_INTERVAL_S = env.float("JOBS_KEEPER_INTERVAL_S", default=2.0)
#: Seconds a new job is left to its own after-commit publish before the relay publishes it.
JOBS_RELAY_GRACE_S = env.float("JOBS_RELAY_GRACE_S", default=10.0)
#: Seconds a worker keeps retrying a ledger write while the database is unreachable.
JOBS_DB_OUTAGE_WAIT_S = env.float("JOBS_DB_OUTAGE_WAIT_S", default=600.0)
#: Days a finished job stays in the ledger before prune_finished_jobs deletes it.
JOBS_RETENTION_DAYS = env.int("JOBS_RETENTION_DAYS", default=30)
#: Days a failed job stays (kept longer: operators may still want to inspect or retry it).
JOBS_FAILED_RETENTION_DAYS = env.int("JOBS_FAILED_RETENTION_DAYS", default=90)
#: Where sync_external_data reads its records (a JSON list of objects with an "id").
SYNC_SOURCE_URL = env.str("SYNC_SOURCE_URL", default="http://127.0.0.1:8000/demo/external-records.json")
#: Seconds to connect and to read for sync_external_data.
SYNC_CONNECT_TIMEOUT_S = env.float("SYNC_CONNECT_TIMEOUT_S", default=3.0)
SYNC_READ_TIMEOUT_S = env.float("SYNC_READ_TIMEOUT_S", default=15.0)

# --- REST API ---------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first: its WWW-Authenticate header makes an unauthenticated request a 401, not a 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["apps.jobs.api.parsers.JSONBodyParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.jobs.api.errors.exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        # Submissions (POST that create jobs) per user; reads are not throttled.
        "submit": env.str("JOBS_API_SUBMIT_RATE", default="600/minute"),
    },
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
#: Largest request body (bytes) the API parses; larger answers 413.
JOBS_API_MAX_BODY_BYTES = env.int("JOBS_API_MAX_BODY_BYTES", default=1024 * 1024)
#: Deepest nesting of lists and objects an API body may have; deeper answers 400.
JOBS_API_MAX_JSON_DEPTH = env.int("JOBS_API_MAX_JSON_DEPTH", default=32)
#: Seconds between two reads of the ledger for the open event streams of one web process.
JOBS_API_EVENTS_POLL_S = env.float("JOBS_API_EVENTS_POLL_S", default=0.5)
#: Seconds between keep-alive comments on an idle event stream (proxies close silent connections).
JOBS_API_EVENTS_KEEPALIVE_S = env.float("JOBS_API_EVENTS_KEEPALIVE_S", default=15.0)
#: Hours an Idempotency-Key is remembered.
JOBS_API_IDEMPOTENCY_HOURS = env.int("JOBS_API_IDEMPOTENCY_HOURS", default=24)
#: When set, /metrics answers only scrapers sending "Authorization: Bearer <this token>".
JOBS_METRICS_TOKEN = env.str("JOBS_METRICS_TOKEN", default="")
SPECTACULAR_SETTINGS = {
    "TITLE": "Jobs API",
    "DESCRIPTION": "Submit background jobs, follow their status and progress, retry and cancel them.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Logging ------------------------------------------------------------------------------------------

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        # The ledger stores actor results, so Dramatiq's "no Results middleware" warning is noise.
        "results_stored_in_ledger": {"()": "apps.jobs.log_filters.ResultsStoredInLedger"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["results_stored_in_ledger"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "pika": {"level": "WARNING"},
        "django.db.backends": {"level": "INFO"},
    },
}
