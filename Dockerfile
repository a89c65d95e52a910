# One image for every process of the jobs system: web (the default command), workers, scheduler
# and migrations; docker-compose.yml picks the command per service.
FROM python:3.12-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    DJANGO_SETTINGS_MODULE=project.settings \
    DATA_DIR=/app/var

RUN useradd --create-home --user-group --uid 10001 app

WORKDIR /app

# Dependencies first, so that code changes reuse this layer. pyproject.toml lists no packages
# ([tool.setuptools] packages = []): installing "." installs only the dependencies.
COPY pyproject.toml README.md ./
RUN pip install --no-cache-dir . && rm -rf build ./*.egg-info

# The code stays owned by root and read-only for the app user; only var/ (DATA_DIR: static files,
# media, the SQLite fallback) is writable. A named volume mounted there takes this ownership.
COPY . .
RUN python -m compileall -q apps project \
    && mkdir -p var \
    && chown app:app var

USER app

EXPOSE 8000
CMD ["gunicorn", "project.asgi:application", "-k", "uvicorn_worker.UvicornWorker", "--bind", "0.0.0.0:8000", "--workers", "3"]
