PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: test lint demo bench

$(BIN)/activate: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/activate

test: $(BIN)/activate
	$(BIN)/python -m pytest

lint: $(BIN)/activate
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

demo: $(BIN)/activate
	$(BIN)/python -m demo
