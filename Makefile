# hubbub: `make run` sets up and serves; `make test` sets up and runs the test suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# What running needs (the hub and its Redis engine) and what testing needs (the
# suite, the checkers) are installed apart: `make run` never pulls in the test tools.
RUN_STAMP  := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
# A second venv with the lowest versions pyproject.toml's bounds allow (uv's
# lowest-direct resolution), made again only when pyproject.toml changes.
LOWEST       := .venv-lowest
LOWEST_STAMP := $(LOWEST)/.installed

.PHONY: run test test-slow test-lowest lint typecheck check clean bench chromium nginx

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[redis]'
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(RUN_STAMP)
	$(BIN)/hubbub serve $(ARGS)

# Two test workers (the machines have two cores); each starts its own redis-server.
# lint-imports checks the layering (pyproject.toml [tool.importlinter]) first, ruff
# and mypy the code (a few seconds); the whole suite runs on the newest versions the
# bounds allow, then its Redis tests (`-k redis`) again with redis-py's own reply
# parser (no hiredis: tests/conftest.py), then its smoke part (every door once,
# `-m smoke`) on the lowest.
test: $(TEST_STAMP) $(LOWEST_STAMP) chromium nginx
	$(BIN)/lint-imports --no-cache --no-logo
	$(BIN)/ruff check --no-cache src tests
	$(BIN)/mypy
	PYTHONASYNCIODEBUG=$(ASYNCIO_DEBUG) $(BIN)/pytest -q -n 2 $(ARGS)
	HUBBUB_TEST_NO_HIREDIS=1 $(BIN)/pytest -q -n 2 -k redis -p no:cacheprovider
	$(LOWEST)/bin/pytest -q -n 2 -m smoke -p no:cacheprovider

test-lowest: $(LOWEST_STAMP)
	$(LOWEST)/bin/pytest -q -n 2 -m smoke -p no:cacheprovider $(ARGS)

$(LOWEST_STAMP): pyproject.toml | $(TEST_STAMP)
	rm -rf $(LOWEST)
	$(BIN)/uv venv --quiet --python $(BIN)/python $(LOWEST)
	$(BIN)/uv pip install --quiet --python $(LOWEST)/bin/python --resolution lowest-direct -e '.[test]'
	touch $@

test-slow: $(TEST_STAMP)
	$(BIN)/pytest -q -m slow $(ARGS)

# Debian packages some tests drive, installed here when missing (those tests are
# skipped, saying so, when they cannot be): $(call apt_install,PACKAGE,WHAT IS SKIPPED)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo -n)
apt_install = command -v apt-get >/dev/null 2>&1 \
	&& { DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $(1) >/dev/null 2>&1 \
	     || { $(SUDO) apt-get update -q >/dev/null \
	          && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $(1) >/dev/null; }; } \
	|| echo "make: could not install $(1): $(2) will be skipped" >&2

# The dashboard's tests (tests/transports/test_dashboard.py) drive a real Chromium
# through Playwright: Debian's package.
chromium:
	@[ -n "$$HUBBUB_CHROMIUM" ] || [ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1 \
	|| { $(call apt_install,chromium,the dashboard's browser tests); }

# The proxy tests (tests/test_proxy.py) put the nginx configuration of
# docs/cluster.md in front of `hubbub serve`: Debian's nginx-light.
nginx:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] \
	|| { $(call apt_install,nginx-light,the proxy tests); }

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

check: lint typecheck test

bench: $(TEST_STAMP)
	benchmarks/run $(ARGS)

clean:
	rm -rf $(VENV) $(LOWEST) .pytest_cache .mypy_cache .ruff_cache
