# Two commands on a fresh clone: `make demo`, then `make test`. Both create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint format lock clean

# Bytecode compiled once here: where PYTHONDONTWRITEBYTECODE is set (containers often set
# it), every process (the CLI, each sync worker, each Prefect flow) would otherwise compile
# all of Prefect and SQLAlchemy again: 1.5 s for `dunning --help` instead of 0.7 s.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv
	$(BIN)/uv pip install -q --python $(BIN)/python --compile-bytecode -r requirements.lock -e .
	$(BIN)/python -m compileall -q dunning
	touch $(STAMP)

setup: $(STAMP)  ## create .venv with the pinned dependencies

demo: $(STAMP)  ## the embedded default: SQLite, sample shop, local servers, mail to a folder
	$(BIN)/dunning demo

test: $(STAMP)  ## the whole test suite (PostgreSQL from TEST_DATABASE_URL or testcontainers)
	$(BIN)/pytest -n auto --maxprocesses=4

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

lock:  ## re-pin after changing dependencies in pyproject.toml
	$(BIN)/uv pip compile pyproject.toml --extra test -q -o requirements.lock --python-version 3.11

clean:
	rm -rf $(VENV) .dunning .pytest_cache
