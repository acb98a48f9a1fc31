# segment-pipeline: every command a user or CI needs. Each target installs what it uses first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)/dagster_home

# The bundled simulator stands in for Klaviyo in `make dev`; its key is not a secret.
SIM_PORT ?= 8765
SIM_SPEED ?= 60
SIM_SEGMENTS ?= 150
SIM_KEY := pk_simulator_demo_key

.PHONY: install manifest demo dev test lint benchmark clean

install: $(VENV)/.installed

# Re-install whenever pyproject.toml changes. uv installs the same version ranges as pip, much faster.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[test]'
	touch $@

# dbt's manifest.json, which Dagster reads to build the model assets. Never committed.
manifest: install
	cd dbt_project && ../$(BIN)/dbt parse --profiles-dir . --quiet

# The whole pipeline on the bundled simulator: last 90 days, models, analyst copy, chart.
demo: manifest
	$(BIN)/segment-pipeline demo

# The Dagster UI on http://127.0.0.1:3000, with the simulator as Klaviyo (data under data/dev/).
dev: manifest
	@set -e; \
	$(BIN)/segment-pipeline simulator --port $(SIM_PORT) --speed $(SIM_SPEED) --segments $(SIM_SEGMENTS) \
		--api-key $(SIM_KEY) --timezone US/Eastern & sim=$$!; \
	trap 'kill $$sim 2>/dev/null' EXIT INT TERM; \
	KLAVIYO_BASE_URL=http://127.0.0.1:$(SIM_PORT) KLAVIYO_API_KEY=$(SIM_KEY) KLAVIYO_TIMEZONE=US/Eastern \
	KLAVIYO_REPORT_RATE_PER_MINUTE=$$(( 2 * $(SIM_SPEED) )) \
	WAREHOUSE_PATH=data/dev/warehouse.duckdb ANALYTICS_PATH=data/dev/analytics.duckdb \
	PIPELINE_STATE_DIR=data/dev/state CHARTS_DIR=data/dev/charts \
	$(BIN)/dagster dev -w workspace.yaml

test: manifest
	$(BIN)/pytest

# ruff (rules in pyproject.toml): lint and formatting of the Python code
lint: install
	$(BIN)/ruff check segment_pipeline tests benchmarks
	$(BIN)/ruff format --check segment_pipeline tests benchmarks

benchmark: install
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf data/demo data/dev dbt_project/target dbt_project/logs
