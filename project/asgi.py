"""ASGI entry point: the web process (gunicorn with uvicorn workers; see the README's "Serving the API")."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
# Each request's view runs on a thread of its own here, so connections come from a pool (settings).
os.environ.setdefault("DB_POOL", "true")
application = get_asgi_application()
