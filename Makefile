# Quick start: `make run` (the default experiment) and `make test` (the test suite).
# Both create .venv when missing and install alseg with its dev and llm extras (once; again
# only when pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ARGS ?=
PYTEST_ARGS ?=
export WANDB_MODE ?= offline

.PHONY: install run test test-all lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,llm]"
	# Reference for the test of alseg's Cityscapes label table. --no-deps: only its
	# labels.py is used, and its declared deps include the obsolete 'typing' backport.
	$(BIN)/python -m pip install --quiet --no-deps "cityscapesscripts==2.3.0"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/alseg run $(ARGS)

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/pytest -m "" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check alseg tests
	$(BIN)/ruff format --check alseg tests
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format alseg tests
	$(BIN)/ruff check --fix alseg tests

clean:
	rm -rf $(VENV) .cache runs
