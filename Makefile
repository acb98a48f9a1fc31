# segment-pipeline: every command a user or CI needs. Each target installs what it uses first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# `make demo` and `make dev` each keep their own Dagster instance (data/demo/dagster_home, data/dev/dagster_home),
# made from the settings in dagster_home/dagster.yaml; set DAGSTER_HOME to use another one.

# The bundled simulator stands in for Klaviyo in `make dev`.
SIM_PORT ?= 8765
SIM_SPEED ?= 60
SIM_SEGMENTS ?= 150
# several simulated accounts, in an accounts file (data/dev/accounts.yaml): make dev SIM_ACCOUNTS=3
SIM_ACCOUNTS ?= 1
# where `make dev` keeps its instance and data; `make dev DEV_DATA_DIR=data/demo` opens the demo's runs
DEV_DATA_DIR ?= data/dev

.PHONY: install manifest demo demo-scale dev test test-fast lint benchmark clean browser postgres

install: $(VENV)/.installed

# Re-install whenever pyproject.toml changes. uv installs the same version ranges as pip, much faster.
# --compile-bytecode writes the .pyc files up front: where PYTHONDONTWRITEBYTECODE is set (as in many
# containers) Python would otherwise compile Dagster, dbt and dlt from source in every process it starts,
# several seconds for each run, each dbt command and `dagster definitions validate`.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[test]'
	touch $@

# dbt's manifest.json, which Dagster reads to build the model assets. Never committed.
manifest: install
	cd dbt_project && ../$(BIN)/dbt parse --profiles-dir . --quiet

# The whole pipeline on the bundled simulator: last 90 days, models, analyst copy, chart.
demo: manifest
	$(BIN)/segment-pipeline demo

# The demo on the scaled deployment (docs/deploying.md): a local PostgreSQL (installed if missing) holding Dagster's
# storage and the lake's catalog, 4 simulated accounts' runs queued and started by the Dagster daemon, loading a
# DuckLake at once; everything under data/scale/, its variables in data/scale/connection.env.
demo-scale: manifest postgres
	$(BIN)/segment-pipeline demo-scale

# The Dagster UI on http://127.0.0.1:3000, with the simulator as Klaviyo (data under DEV_DATA_DIR, data/dev/).
dev: manifest
	$(BIN)/segment-pipeline dev --port $(SIM_PORT) --speed $(SIM_SPEED) --segments $(SIM_SEGMENTS) \
		--accounts $(SIM_ACCOUNTS) --data-dir $(DEV_DATA_DIR)

# the report's browser test drives Debian's chromium through playwright (installed by the test extra)
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# the lake tests start a PostgreSQL server of their own (tests/postgres_fixtures.py) from Debian's package
postgres: install
	$(BIN)/python -m segment_pipeline.devtools.postgres install

# four workers on this project's 2-core machines: a worker waiting (for a server to start, Klaviyo's pacing, a
# dbt or Dagster subprocess) leaves its core to another; with two the cores idled half the time. A file's tests stay
# together on one worker, so module-scoped fixtures (a built warehouse, a running webserver, one demo run)
# are made once, and the longest files start first (tests/conftest.py LONGEST_MODULES)
PYTEST_WORKERS ?= 4
# --durations: the slowest tests named at the end of every run, to see where the suite's time goes
test: manifest browser postgres
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --durations=25

# the fast tier (tests/conftest.py FAST_MODULES): pure logic, no servers, Dagster or dbt; under a minute
# only those files are collected: importing the others (Dagster, dlt, dbt) alone takes most of a minute
test-fast: install
	$(BIN)/pytest -m fast -q $$($(BIN)/python -c "from tests.conftest import fast_test_files; print(*fast_test_files())")

# ruff (rules in pyproject.toml): lint and formatting of the Python code
lint: install
	$(BIN)/ruff check segment_pipeline klaviyo_simulator segments_api_simulator tests benchmarks
	$(BIN)/ruff format --check segment_pipeline klaviyo_simulator segments_api_simulator tests benchmarks

# every figure of docs/performance.md at full size (30 to 45 minutes); BENCH_ARGS=--quick for a small run
BENCH_ARGS ?=
benchmark: install browser
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean:
	-test ! -d data/scale/postgres || $(BIN)/python -m segment_pipeline.devtools.postgres stop data/scale/postgres
	rm -rf data/demo data/dev data/scale dbt_project/target dbt_project/logs
