# Two commands set everything up: `make demo` and `make test`.
# The virtual environment is created on first use (about 2 minutes: torch).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo test lint format smoke bench clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/losscmp run --config configs/synthetic.yaml

test: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

smoke: $(INSTALLED)
	$(BIN)/losscmp run --config configs/smoke.yaml

bench: $(INSTALLED)
	$(BIN)/python benchmarks/losses.py

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
