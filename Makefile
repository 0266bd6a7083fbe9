# The two commands: `make run` (whole system) and `make test` (lint + types + all tests).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck pytest docs bench chaos chaos-short clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,local]'
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m devstack run

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy shared services sandbox devstack

pytest: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

docs: $(STAMP)
	$(PY) -m devstack docs

bench: $(STAMP)
	$(PY) -m tests.bench.aggregator_bench throughput
	$(PY) -m tests.bench.aggregator_bench latency
	$(PY) -m tests.bench.publisher_bench

# The chaos suite (tests/chaos/README.md): the long form, and the short form `make test` also runs.
chaos: $(STAMP)
	$(PY) -m tests.chaos --long $(CHAOS_ARGS)

chaos-short: $(STAMP)
	$(PY) -m tests.chaos --short $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
