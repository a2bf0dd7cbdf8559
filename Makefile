# The two commands a new user needs: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TASK ?= Explain the CAP theorem

.PHONY: demo test lint format bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: $(BIN)/.installed  ## install, then run the review graph end to end
	$(BIN)/plait run review "$(TASK)"

test: $(BIN)/.installed  ## install, then run the whole test suite
	$(BIN)/python -m pytest

# `make bench`: a few minutes on 2 cores; `make bench BENCH_QUICK=1`: the smoke test's tiny sizes.
BENCH_QUICK ?=
BENCH_JSON ?= bench/results/latest.json
bench: $(BIN)/.installed  ## install, then run the benchmarks and print the table (BENCHMARKS.md)
	@mkdir -p $(dir $(BENCH_JSON))
	$(BIN)/python -m bench $(if $(BENCH_QUICK),--quick) --json $(BENCH_JSON)

lint: $(BIN)/.installed  ## ruff (lint and format) and mypy (types; settings in pyproject.toml)
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples bench
	$(BIN)/mypy

format: $(BIN)/.installed
	$(BIN)/ruff format src tests examples bench
	$(BIN)/ruff check --fix src tests examples bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
