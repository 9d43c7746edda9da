# Two commands: `make run` serves the app, `make test` runs the suite. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench versus clean

run: $(VENV)/.runtime
	$(BIN)/python app.py

# The second pass runs the modules marked `database` again on PostgreSQL (tests/conftest.py).
# Most tests wait on processes they started, so a few more workers than cores finish sooner;
# a module's tests stay together on one worker (--dist loadfile), each worker on its own databases.
WORKERS ?= 3
test: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadfile
	SPRIG_TEST_DATABASE=postgresql $(BIN)/python -m pytest -n $(WORKERS) --dist loadfile

lint: $(VENV)/.dev
	$(BIN)/ruff check .

bench: $(VENV)/.dev
	$(BIN)/python bench/cache.py
	$(BIN)/python bench/tasks.py
	$(BIN)/python bench/idle.py

# Sprig beside the Django + Celery shop of ../shared/peer, interleaved (about 9 minutes).
versus: $(VENV)/.dev
	$(BIN)/python bench/versus.py

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Sprig needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache tests/artifacts
