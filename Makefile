# hubbub: `make run` sets up and serves; `make test` sets up and runs the test suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-slow lint typecheck check clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,redis]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/hubbub serve $(ARGS)

test: $(STAMP)
	PYTHONASYNCIODEBUG=$(ASYNCIO_DEBUG) $(BIN)/pytest -q $(ARGS)

test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

bench: $(STAMP)
	benchmarks/run $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
