# Two entry points: `make demo` runs the demo sweep, `make test` runs the test suite.
# Each creates .venv on first use (Python 3.10+ with venv is all that is needed).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SPEC   ?= search_spaces/layers.yaml

.PHONY: demo test test-fast lint clean

$(BIN)/orchestrator: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: $(BIN)/orchestrator
	$(BIN)/orchestrator sweep $(SPEC)

test: $(BIN)/orchestrator
	$(BIN)/ruff check orchestrator trainables tests benchmarks
	$(BIN)/python -m pytest --durations=25

# Unit and contract tests (no integration sweeps): well under two minutes.
test-fast: $(BIN)/orchestrator
	$(BIN)/ruff check orchestrator trainables tests benchmarks
	$(BIN)/python -m pytest -m "not integration"

lint: $(BIN)/orchestrator
	$(BIN)/ruff check orchestrator trainables tests benchmarks

clean:
	rm -rf runs mlflow.db mlartifacts
