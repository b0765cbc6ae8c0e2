# shopsentry: two commands do everything on a fresh machine.
#   make demo   create .venv, install, run the whole system on embedded defaults
#   make test   install test dependencies and services, run the whole suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install system-deps kafka-jars demo test test-unit test-integration lint bench clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS=":.*## "} {printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@echo "installing shopsentry and its dependencies (Airflow, dbt, MLflow: a few minutes on a fresh machine)"
	$(BIN)/pip install --progress-bar on -U pip setuptools wheel
	$(BIN)/pip install --progress-bar on -e '.[test,airflow]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install shopsentry with test and Airflow extras

system-deps: ## Install Debian packages the integration tests use (redis-server, kcat, chromium)
	bash scripts/install-system-deps.sh

kafka-jars: ## Fetch the Apache Kafka broker jars with Maven (cached in ~/.m2)
	bash scripts/kafka/fetch.sh

demo: install ## Run the whole system on embedded defaults (Ctrl-C stops it)
	$(BIN)/shopsentry demo

test-unit: install ## Unit tests only (no services, seconds)
	$(BIN)/pytest -q tests/unit

test-integration: install system-deps kafka-jars ## Integration tests (real Kafka, Redis, Airflow, dbt, Chromium)
	$(BIN)/pytest -q tests/integration

test: install system-deps kafka-jars ## The whole suite
	$(BIN)/pytest -q --durations=25 tests/unit tests/integration

lint: install ## ruff and mypy
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: install kafka-jars ## Run every benchmark, writing benchmarks/results/
	$(BIN)/python -m benchmarks.run_all

clean: ## Remove the venv and local data
	rm -rf $(VENV) data .pytest_cache
