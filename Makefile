# influent — the two commands: `make run` (whole system, local default) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test bench bench-quick soak fuzz down status clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install -q --upgrade pip wheel setuptools
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# Installs the Python package, Debian's redis-server when missing, and the Kafka broker jars
# (Maven Central, cached outside the work tree).
setup: $(STAMP)
	$(BIN)/influent dev install

run: setup
	$(BIN)/influent dev up --foreground

# Lint (a short rule set) and the import layers (setup.cfg [importlinter]) first, then the tests.
test: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m benchmarks.run

bench-quick: setup
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m benchmarks.run --quick

# A soak with faults (benchmarks/soak.py): SOAK_ARGS='--minutes 2 --faults worker_kill'.
soak: setup
	$(BIN)/python -m benchmarks.soak $(SOAK_ARGS)

# The big API fuzzing run (at least 5 000 generated requests, counts by status code); `make test`
# runs a bounded one (tests/test_api_fuzz.py).
fuzz: setup
	$(BIN)/python -m benchmarks.fuzz --requests 5000

down:
	$(BIN)/influent dev down

status:
	$(BIN)/influent dev status

clean:
	rm -rf $(VENV) .state
