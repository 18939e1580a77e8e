# Dy-DCA reproduction. `make reproduce` and `make test` each work as the first command on a
# fresh machine: they create .venv, install the pins and fetch the data they need.
SHELL := /bin/bash
PROFILE ?= smoke
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help install data reproduce test test-unit test-notebooks lab clean clean-results

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'
	@echo "  PROFILE=smoke|default|full (now: $(PROFILE)) selects params/<profile>.yaml"

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the pinned packages

data: $(STAMP)  ## fetch and verify the clips the profile needs (into data/)
	$(PY) -m dydca_lib.sources fetch --profile $(PROFILE)

reproduce: data  ## run every notebook headless with papermill; results/<profile>/
	$(PY) -m dydca_lib.reproduce --profile $(PROFILE)

test: test-unit test-notebooks  ## unit tests + notebooks under nbval (smoke defaults)

test-unit: data
	$(PY) -m pytest -q tests

test-notebooks: data
	$(PY) -m pytest -q --nbval-lax --nbval-current-env -p no:cacheprovider notebooks/

lab: $(STAMP)  ## open JupyterLab on the notebooks
	$(VENV)/bin/jupyter lab notebooks/

clean-results:  ## delete results/<profile>/
	rm -rf results/$(PROFILE)

clean:  ## delete .venv (data/ and results/ are kept)
	rm -rf $(VENV)
