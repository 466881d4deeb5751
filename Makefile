# Two commands: `make run` serves the app, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint bench clean

# The tests that store something: `make test` runs them on SQLite and again on PostgreSQL
# (tests/auth runs on both by itself). Any one pass: TRAINBOARD_TEST_DB=postgres pytest tests/runs
POSTGRES_TESTS := tests/runs tests/core tests/ingest tests/api tests/web tests/compare tests/datasets tests/sweeps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[dev,ray]"
	touch $@

## run: set up .venv, apply migrations and serve on http://$(HOST):$(PORT) (SQLite under ./data/)
run: $(VENV)/.installed
	$(BIN)/trainboard serve --host $(HOST) --port $(PORT)

## test: set up what the tests need (dev extras, Chromium) and run the whole suite
test: $(VENV)/.installed-dev
	@command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || { \
	  if [ "$$(id -u)" = "0" ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Chromium is missing: install it (apt-get install chromium) and run make test again"; exit 1; fi; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else echo "PostgreSQL is missing: install it (apt-get install postgresql) and run make test again"; exit 1; fi; }
	@command -v docker-compose >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; \
	  else echo "docker-compose is missing (it validates docker-compose.yml): apt-get install docker-compose"; exit 1; fi; }
	$(BIN)/ruff check app tests bench
	TRAINBOARD_STRICT_TESTS=1 $(BIN)/python -m pytest -n 2 --dist loadgroup --durations=15 $(PYTEST_ARGS)
	@echo "--- the storage, runs and API tests again, on PostgreSQL (a server the tests start) ---"
	TRAINBOARD_STRICT_TESTS=1 TRAINBOARD_TEST_DB=postgres $(BIN)/python -m pytest -n 2 --dist loadgroup --durations=10 \
	  $(POSTGRES_TESTS) $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check app tests bench

## bench: engine vs the fair reference loop, the API vs it, start-up (cold and warm first metric), the CNN
## in fp32 vs precision auto, the recipes' time to 0.974, histogram recording's cost, SSE fan-out under a
## writing run, local vs Ray executor (and ingest over HTTP vs direct writes), how a trainer starts on Ray
## (interleaved pairs at equal threads, printed; figures and how to read them: docs/benchmarks.md)
bench: $(VENV)/.installed-dev
	$(BIN)/python bench/seed_mnist.py --pairs 3 --threads 1 --timeout 900
	$(BIN)/python bench/api_seed_mnist.py --pairs 7 --threads 1 --timeout 900
	$(BIN)/python bench/startup.py --pairs 3 --threads 1 --timeout 600
	$(BIN)/python bench/precision.py --threads 2
	$(BIN)/python bench/time_to_accuracy.py
	$(BIN)/python bench/insight_overhead.py
	$(BIN)/python bench/sse_fanout.py --clients 500 1000 --threads 1 --timeout 600
	$(BIN)/python bench/ray_executor.py --pairs 3 --threads 1 --timeout 900
	$(BIN)/python bench/ray_start_paths.py --pairs 3 --timeout 600

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
