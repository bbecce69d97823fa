# Two commands set everything up on a fresh machine (after the README's apt-get line):
#   make explore MEDIA=~/Videos     ingest a folder and serve the explorer in the browser
#   make test                       run the test suite (needs Redis on 127.0.0.1:6379)
PYTHON ?= python3
VENV ?= .venv
MEDIA ?=
BIN := $(VENV)/bin

.PHONY: explore ingest test test-postgres bench install lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# What the product runs on: the runtime lock alone, every file checked against its hash
# (docker/Dockerfile installs the same). A changed lock installs again.
$(BIN)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements.txt
	touch $@

# Tests and tools on top of it: pytest, Selenium, schemathesis, uv.
$(BIN)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements.txt -r requirements-dev.txt
	touch $(BIN)/.installed $@

# Front-end libraries (Leaflet) from the npm registry, served as static files.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(BIN)/.installed node_modules/.installed
	$(BIN)/python manage.py migrate --noinput --verbosity 0

explore: install
	@test -n "$(MEDIA)" || (echo "usage: make explore MEDIA=/path/to/videos [ARGS='--fps 1']"; exit 2)
	$(BIN)/python manage.py explore $(MEDIA) $(ARGS)

ingest: install
	@test -n "$(MEDIA)" || (echo "usage: make ingest MEDIA=/path/to/videos [ARGS='--collection trip']"; exit 2)
	$(BIN)/python manage.py ingest $(MEDIA) $(ARGS)

# The suite runs on SQLite; with DATABASE_URL=postgres://... it runs on PostgreSQL.
test: $(BIN)/.installed-dev node_modules/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# A role that may create databases, over TCP: the tests create test_<name> beside <name>
# and drop it after (README, "Tests and benchmarks"). Another: make test-postgres DATABASE_URL=...
test-postgres: DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/explorer
test-postgres: $(BIN)/.installed-dev node_modules/.installed
	DATABASE_URL='$(DATABASE_URL)' $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(BIN)/.installed
	$(BIN)/python tests/benchmarks/bench_sampling.py

# After editing requirements.in or requirements-dev.in: write both locks again, keeping
# every version that still fits (LOCK_ARGS=--upgrade takes the newest of everything;
# LOCK_ARGS='--upgrade-package NAME' of one). Python 3.11 and newer, any platform.
LOCK := $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command 'make lock' $(LOCK_ARGS)
lock: $(BIN)/.installed-dev
	$(LOCK) requirements.in -o requirements.txt
	$(LOCK) requirements-dev.in -o requirements-dev.txt
