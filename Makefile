# Every target sets itself up: a virtualenv in .venv, the package installed
# with the extras it needs, and (for tests, demo and bench) a private embedded
# PostgreSQL unless PORTFOLIO_CORE_DATABASE_URL points at a server.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install test lint typecheck pytest demo bench ci clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check portfolio_core tests alembic examples
	$(BIN)/ruff format --check portfolio_core tests alembic examples

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# About 40 s on 2 cores: 30 s of trading with faults, plus set-up and checks.
DEMO_ARGS ?= --faults
demo: $(STAMP)
	$(BIN)/portfolio-core demo $(DEMO_ARGS)

bench: $(STAMP)
	$(BIN)/python -m portfolio_core.bench

ci: test

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .pytest_cache .ruff_cache .hypothesis
