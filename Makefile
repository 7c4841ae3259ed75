# The two commands of the README. Both create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test test-fast lint clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test]'
	@# The console's browser tests drive Debian's chromium (Playwright never downloads one).
	@# Without it they skip, except under CI=true, where a failed install stops here.
	command -v chromium >/dev/null || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium) || \
		[ "$$CI" != true ]
	touch $@

run: $(STAMP)
	$(BIN)/skylight serve

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test: $(TEST_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q $(PYTEST_ARGS)

# The suite without the tests marked slow (server processes, browsers, fuzzing, long
# scenarios): the developer's loop. `make test` (what CI runs) stays the whole suite.
test-fast: $(TEST_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	SKYLIGHT_TEST_STORES=sqlite $(BIN)/pytest -q -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/start_throughput.py

clean:
	rm -rf $(VENV) .skylight .pytest_cache .mypy_cache .ruff_cache
