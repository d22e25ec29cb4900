# ColdCopy DB Ops. Quick start: `make demo`, `make test`. Both install what they need into .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install system-deps demo test test-fast lint bench faults lock clean data airflow airflow-stop

install: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# Debian packages the jobs and tests drive: pg_dump's companions (gpg, zstd), headless chromium for the UI
# test (Playwright drives it; no browser download), docker-compose to validate docker-compose.yaml, and
# PgBouncer for the pooling tests and bench/load.py.
SYSTEM_PACKAGES := gnupg zstd chromium docker-compose pgbouncer prometheus redis-server
system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# make demo SUPABASE=1: the same on a throwaway cluster shaped like a hosted Supabase project (non-superuser postgres).
demo: install
	SUPABASE=$(SUPABASE) $(BIN)/python scripts/demo.py

# A complete local Airflow (UI on http://127.0.0.1:8080, AIRFLOW_PORT to change) on the embedded default.
airflow: install
	$(BIN)/python scripts/airflow_local.py --executor $(or $(EXECUTOR),local)

airflow-stop:
	$(BIN)/python scripts/airflow_local.py --stop

# Generated data into the coldcopy_db connection's database: make data SCALE=32 (about 1M email_events).
SCALE ?= 1
data: install
	$(BIN)/python scripts/generate_data.py --scale $(SCALE)

# Five pytest processes side by side (CI's 20 minutes, 2 cores; the live stacks mostly wait on their schedulers, the
# database-heavy tiers on PostgreSQL and their client programs), each with its own AIRFLOW_HOME; the others' output
# follows the main one's:
#   LIVE_AIRFLOW_TESTS  a live Airflow with the LocalExecutor (tests/e2e), on a PostgreSQL server of its own
#                       (COLDCOPY_TEST_OWN_SERVER: its db_health must see no other process's sessions, locks or
#                       scratch databases);
#   CELERY_TESTS        the Celery stack's module, then FAULT_TESTS (the fault campaign's seeded sample, on a
#                       throwaway cluster of its own) in the same process: the Celery stack is done in 4 minutes;
#   OWN_CLUSTER_TESTS   the tiers on throwaway clusters of their own (tests/supabase: Supabase-shaped; tests/pitr and
#                       tests/pitr/drills: wal_level=logical);
#   WHOLE_JOB_TESTS     the wings that restore and re-run whole jobs (backups, gdpr, migrations, operators);
#   the rest            on the shared server.
CELERY_TESTS = tests/e2e/test_live_celery.py
FAULT_TESTS = tests/faults
LIVE_AIRFLOW_TESTS = tests/e2e
OWN_CLUSTER_TESTS = tests/supabase tests/pitr
WHOLE_JOB_TESTS = tests/backups tests/gdpr tests/migrations tests/operators
test: install system-deps lint
	@mkdir -p .artifacts
	@AIRFLOW_HOME=$(CURDIR)/.airflow-test-celery $(BIN)/python -m pytest $(CELERY_TESTS) $(FAULT_TESTS) > .artifacts/test-celery.log 2>&1 & \
	celery=$$!; \
	COLDCOPY_TEST_OWN_SERVER=1 AIRFLOW_HOME=$(CURDIR)/.airflow-test-e2e $(BIN)/python -m pytest $(LIVE_AIRFLOW_TESTS) \
	  --ignore=$(CELERY_TESTS) > .artifacts/test-live-airflow.log 2>&1 & \
	live=$$!; \
	AIRFLOW_HOME=$(CURDIR)/.airflow-test-own-cluster $(BIN)/python -m pytest $(OWN_CLUSTER_TESTS) \
	  > .artifacts/test-own-cluster.log 2>&1 & \
	own=$$!; \
	AIRFLOW_HOME=$(CURDIR)/.airflow-test-whole-job $(BIN)/python -m pytest $(WHOLE_JOB_TESTS) > .artifacts/test-whole-job.log 2>&1 & \
	whole=$$!; \
	$(BIN)/python -m pytest --ignore=$(LIVE_AIRFLOW_TESTS) $(addprefix --ignore=,$(OWN_CLUSTER_TESTS) $(WHOLE_JOB_TESTS) $(FAULT_TESTS)); main=$$?; \
	wait $$live; live_rc=$$?; wait $$celery; celery_rc=$$?; wait $$own; own_rc=$$?; wait $$whole; whole_rc=$$?; \
	for log in live-airflow celery own-cluster whole-job; do echo "=== .artifacts/test-$$log.log, run beside the rest ==="; \
	  cat .artifacts/test-$$log.log; done; \
	test $$main -eq 0 -a $$live_rc -eq 0 -a $$celery_rc -eq 0 -a $$own_rc -eq 0 -a $$whole_rc -eq 0

# The edit loop: unit and integration tests (real PostgreSQL, S3, PgBouncer), no live Airflow or Chromium.
test-fast: install
	$(BIN)/python -m pytest -m "not e2e and not supabase"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff check --select AIR3 dags plugins
	$(BIN)/squawk sql/migrations/*.sql

bench: install system-deps
	$(BIN)/python -m bench.migrations_apply
	$(BIN)/python -m bench.rehearsal
	$(BIN)/python -m bench.drift
	$(BIN)/python -m bench.dag_parse
	$(BIN)/python -m bench.refresh
	$(BIN)/python -m bench.incremental
	$(BIN)/python -m bench.partitions
	$(BIN)/python -m bench.backups
	$(BIN)/python -m bench.maintenance
	$(BIN)/python -m bench.health
	$(BIN)/python -m bench.gdpr
	$(BIN)/python -m bench.load
	$(BIN)/python -m bench.make_airflow
	$(BIN)/python -m bench.trust
	$(BIN)/python -m bench.pitr
	$(BIN)/python -m bench.restore
	$(BIN)/python -m bench.pitr_anchor
	$(BIN)/python -m bench.task_imports
	$(BIN)/python -m bench.skips
	$(BIN)/python -m bench.metrics
	$(BIN)/python -m bench.executors
	$(BIN)/python -m bench.faults
	$(BIN)/python -m bench.readme

# The whole fault campaign alone (issue 45; docs/safety.md): every job killed at every step and at random instants.
faults: install system-deps
	$(BIN)/python -m bench.faults
	$(BIN)/python -m bench.readme

# Re-pin requirements.lock from requirements-dev.txt in a clean venv.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -r requirements-dev.txt
	{ echo '# Fully pinned lock of requirements-dev.txt (Python 3.11+, Linux). Generated by `make lock`.'; \
	  .lock-venv/bin/pip freeze --exclude pip; } > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .airflow .airflow-test .airflow-test-celery .airflow-test-e2e .airflow-test-own-cluster .airflow-test-whole-job .airflow-e2e .artifacts .pgdata .demo
