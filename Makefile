.DEFAULT_GOAL := help
.PHONY: help setup run test chaos lint fmt typecheck migrate

help:  ## List the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup:  ## Create .venv with the dependencies and start RabbitMQ/PostgreSQL if they are down
	scripts/setup

run:  ## Set up and run web + worker + scheduler with demo jobs
	scripts/run

test:  ## Set up and run the whole test suite (lint, unit, e2e, integration, api, chaos)
	scripts/test

chaos:  ## Run only the chaos suite (stops and restarts the local RabbitMQ and PostgreSQL)
	TEST_TIERS=chaos scripts/test

lint:  ## Check the code with ruff and the types with mypy
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

typecheck:  ## Check the types with mypy (apps/ and project/, django-stubs)
	.venv/bin/mypy

fmt:  ## Format the code with ruff
	.venv/bin/ruff check --fix . && .venv/bin/ruff format .

migrate:  ## Apply database migrations
	.venv/bin/python manage.py migrate
