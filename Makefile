# hubbub: `make run` sets up and serves; `make test` sets up and runs the test suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-slow lint typecheck check clean bench chromium

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,redis]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/hubbub serve $(ARGS)

# Two test workers (the machines have two cores); each starts its own redis-server.
# lint-imports checks the layering (pyproject.toml [tool.importlinter]) first.
test: $(STAMP) chromium
	$(BIN)/lint-imports --no-cache --no-logo
	PYTHONASYNCIODEBUG=$(ASYNCIO_DEBUG) $(BIN)/pytest -q -n 2 $(ARGS)

test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow $(ARGS)

# The dashboard's tests (tests/transports/test_dashboard.py) drive a real Chromium
# through Playwright: Debian's package, installed here when none is found (they
# are skipped, saying so, when it cannot be).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo -n)
chromium:
	@[ -n "$$HUBBUB_CHROMIUM" ] || [ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1 \
	|| { command -v apt-get >/dev/null 2>&1 \
	     && { DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium >/dev/null 2>&1 \
	          || { $(SUDO) apt-get update -q >/dev/null \
	               && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium >/dev/null; }; }; } \
	|| echo "make: could not install chromium: the dashboard's browser tests will be skipped" >&2

lint: $(STAMP)
	$(BIN)/ruff check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

bench: $(STAMP)
	benchmarks/run $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
