# Two commands set everything up on a fresh machine (Python 3.11+, Node.js with npm, and ffmpeg needed):
#   make explore MEDIA=~/Videos     ingest a folder and serve the explorer in the browser
#   make test                       run the test suite (needs Redis on 127.0.0.1:6379)
PYTHON ?= python3
VENV ?= .venv
MEDIA ?=
BIN := $(VENV)/bin

.PHONY: explore ingest test test-postgres bench install

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

# Front-end libraries (Leaflet) from the npm registry, served as static files.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(BIN)/.installed node_modules/.installed
	$(BIN)/python manage.py migrate --noinput

explore: install
	@test -n "$(MEDIA)" || (echo "usage: make explore MEDIA=/path/to/videos [ARGS='--fps 1']"; exit 2)
	$(BIN)/python manage.py explore $(MEDIA) $(ARGS)

ingest: install
	@test -n "$(MEDIA)" || (echo "usage: make ingest MEDIA=/path/to/videos [ARGS='--collection trip']"; exit 2)
	$(BIN)/python manage.py ingest $(MEDIA) $(ARGS)

# The suite runs on SQLite; with DATABASE_URL=postgres://... it runs on PostgreSQL.
test: $(BIN)/.installed node_modules/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-postgres: $(BIN)/.installed node_modules/.installed
	DATABASE_URL=postgres://postgres@127.0.0.1:5432/explorer $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(BIN)/.installed
	$(BIN)/python tests/benchmarks/bench_sampling.py
